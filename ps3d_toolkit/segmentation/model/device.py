"""Where the network runs, and the network itself: the device check and the cache of loaded weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ps3d_toolkit.core.errors import DeviceError, InputError, MissingInputError
from ps3d_toolkit.segmentation.model.network import load_weights

__all__ = ["Device", "check_tta", "load_model", "open_model", "select_device"]

Device = Literal["auto", "cpu", "cuda", "mps"]

_MODEL_CACHE: dict = {}


def select_device(device: Device | str | None = "auto") -> torch.device:
    """The torch device to run on, checked to exist; ``"auto"`` picks CUDA, then Apple MPS, then the CPU.

    Cheap (no scan, no network, no weights): call it first to refuse a missing
    device before any work.

    Raises
    ------
    DeviceError
        If ``device`` is not one of "auto", "cpu", "cuda" (or "cuda:N") and
        "mps", or names a device this machine does not have.
    """
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    if chosen.type == "cuda" and not (torch.cuda.is_available()
                                      and (chosen.index or 0) < torch.cuda.device_count()):
        raise DeviceError(f"device {str(device)!r} is not available on this machine (it has "
                          f"{_available_devices()}); use device='cpu' or 'auto'")
    if chosen.type == "mps" and not _mps_available():
        raise DeviceError(f"device 'mps' is not available on this machine (it has {_available_devices()}); "
                          "use device='cpu' or 'auto'")
    return chosen


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _available_devices() -> str:
    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices.append(f"cuda (cuda:0-{count - 1})" if count > 1 else "cuda")
    if _mps_available():
        devices.append("mps")
    return ", ".join(devices)


def load_model(weights=None, device="cpu"):
    """Load (and cache) a weight file; ``None`` means the shipped default weights."""
    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is None and not path.is_file():
        raise MissingInputError(
            f"no shipped model weights at {path}; train them with `ps3d train` "
            "or use method='otsu-watershed'")
    key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_weights(path, device=device)
    return _MODEL_CACHE[key]


def check_tta(tta, device: torch.device) -> bool:
    """Whether to average the mirrorings: ``"auto"`` on a GPU only, else ``tta`` itself (a bool)."""
    if tta == "auto":
        return device.type != "cpu"
    if not isinstance(tta, (bool, np.bool_)):
        raise InputError(f"tta must be True, False or 'auto', got {tta!r}")
    return bool(tta)


def open_model(weights, device: torch.device) -> tuple:
    """The network on ``device`` and its config, from a file or a ``(model, config)`` pair."""
    if isinstance(weights, tuple):
        return weights[0].to(device).eval(), weights[1]
    model, config, _ = load_model(weights, device=device)
    return model, config
