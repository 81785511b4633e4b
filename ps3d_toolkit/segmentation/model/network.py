"""The border-core 3D U-Net and its weight files.

A MONAI ``UNet`` with residual units: strided convolutions down, transposed
convolutions up, instance norm. Its first convolution already halves the
resolution, which makes it several times faster on a CPU than a U-Net with a
full-resolution encoder stage, at no measurable cost for 2-voxel borders
(see docs/model_card.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
from monai.networks.nets import UNet

from ps3d_toolkit.core.errors import InputError, MissingInputError

__all__ = ["DEFAULT_CONFIG", "build_network", "save_weights", "load_weights",
           "resolve_inference_diameter_vox"]

#: Everything inference needs to know besides the weights. Stored in every weight file.
DEFAULT_CONFIG: dict = {
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
    "num_res_units": 2,
    # Mean particle diameter in voxels on the grid the model is trained at; see
    # model_card.md for why 18 (speed vs. accuracy).
    "train_diameter_vox": 18.0,
    # Mean particle diameter in voxels on the grid inference runs at (None: the
    # training one). Set on export from development scans; see model_card.md.
    "inference_diameter_vox": None,
    # Border shell thickness in voxels on the training grid.
    "border_vox": 2.0,
    "intensity_percentiles": (0.5, 99.9),
}

# Config keys renamed since weight files were first written: old -> new. Files keep
# their bytes (the shipped one too); load_weights reads the old key under the new name.
_RENAMED_CONFIG_KEYS = {"target_diameter_vox": "train_diameter_vox"}


def resolve_inference_diameter_vox(config: dict, override: float | None = None) -> float:
    """Mean particle diameter in voxels on the network's grid at inference.

    ``override`` if given, else the weights' ``inference_diameter_vox``, else
    the diameter they were trained at (``train_diameter_vox``).
    """
    return override or config.get("inference_diameter_vox") or config["train_diameter_vox"]


def build_network(config: dict | None = None) -> torch.nn.Module:
    """Build the U-Net described by ``config`` (defaults: :data:`DEFAULT_CONFIG`)."""
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    return UNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=3,
        channels=tuple(cfg["channels"]),
        strides=tuple(cfg["strides"]),
        num_res_units=int(cfg["num_res_units"]),
    )


def save_weights(model: torch.nn.Module, path, config: dict, metadata: dict | None = None,
                 half: bool = True) -> Path:
    """Save weights + config in a file that ``torch.load(weights_only=True)`` reads.

    Parameters
    ----------
    model : torch.nn.Module
        The trained network.
    path : str or Path
        Destination ``.pt`` file (written atomically).
    config : dict
        Network and preprocessing configuration.
    metadata : dict, optional
        Training provenance (command, seed, steps, scores); plain values only.
    half : bool
        Store float16 weights (halves the file; the network runs in float32).
    """
    from ps3d_toolkit.core.atomic import atomic_path

    state = {k: (v.half() if half and v.is_floating_point() else v).clone()
             for k, v in model.state_dict().items()}
    payload = {"state_dict": state, "config": _plain(config), "metadata": _plain(metadata or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_weights(path, device="cpu") -> tuple[torch.nn.Module, dict, dict]:
    """Load a weight file written by :func:`save_weights`.

    The file is read with ``torch.load(weights_only=True)``: plain data and
    tensors only, so that a crafted pickle cannot run code.

    Returns
    -------
    model, config, metadata

    Raises
    ------
    MissingInputError
        If the file does not exist.
    InputError
        If it is not a torch file of plain data, or not the weights of this
        network (keys or shapes that do not match the network its config describes).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or unsafe file
        raise InputError(f"cannot read weights file {path}: {' '.join(str(error).split())[:300]}") from None
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} is not a ps3d_toolkit weights file (no state_dict of tensors)")
    config = payload.get("config", {})
    if not isinstance(config, dict):
        raise InputError(f"{path} is not a ps3d_toolkit weights file (its config is not a dict)")
    config = _migrate_config(config)
    try:
        model = build_network(config)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError) as error:
        raise InputError(f"{path} describes a network this version cannot build: {error}") from None
    _check_state_fits(model, state, path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.to(device).eval()
    return model, config, payload.get("metadata", {})


def _check_state_fits(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Refuse a state dict whose keys or shapes differ from the network's, naming a few of each."""
    expected = model.state_dict()

    def some(names) -> str:
        names = sorted(names)
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    reshaped = {k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k].shape)}
    problems = [f"{what} {some(names)}" for what, names in (
        ("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes for", reshaped)) if names]
    if problems:
        raise InputError(f"{path} is not a weights file for this network: {'; '.join(problems)}; use weights "
                         "written by `ps3d train` or `ps3d export`, or the shipped ones")


def _migrate_config(stored: dict) -> dict:
    """A weight file's config under today's key names, completed with the defaults."""
    stored = dict(stored)
    for old, new in _RENAMED_CONFIG_KEYS.items():
        if old in stored:
            value = stored.pop(old)
            stored.setdefault(new, value)
    return {**DEFAULT_CONFIG, **stored}


def _plain(value):
    """Plain data for the payload: tuples to lists, other objects to text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    # anything else (e.g. torch's TorchVersion) as text: weights_only loading
    # accepts plain data only
    return str(value)
