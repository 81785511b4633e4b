"""The fitted map from quality signals to a particle's confidence and a scan's estimated F1.

The numbers live in ``calibration.json`` beside this module, written by
``benchmarks/quality.py`` (the file records the exact command); this module only reads
and applies them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.errors import CorruptDataError, MissingInputError

__all__ = ["CALIBRATION_PATH", "apply_map", "load_calibration"]

#: The shipped calibration.
CALIBRATION_PATH = Path(__file__).with_name("calibration.json")


def load_calibration(path=None) -> dict:
    """Read a quality calibration (default: the shipped one).

    Parameters
    ----------
    path : str or Path, optional
        A calibration JSON written by ``benchmarks/quality.py``.

    Returns
    -------
    dict
        With ``command`` (how it was made), ``default_variants`` and ``maps``: per number
        of variants (a string key), a ``particle`` and a ``scan`` map.

    Raises
    ------
    MissingInputError
        If the file does not exist.
    CorruptDataError
        If it is not a calibration.
    """
    return _load(str(CALIBRATION_PATH if path is None else path))


@lru_cache(maxsize=4)
def _load(path: str) -> dict:
    if not Path(path).is_file():
        raise MissingInputError(f"quality calibration {path} not found; run benchmarks/quality.py to make one")
    try:
        calibration = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CorruptDataError(f"quality calibration {path} is not JSON: {err}") from None
    if not isinstance(calibration, dict) or not {"command", "maps", "default_variants"} <= set(calibration):
        raise CorruptDataError(f"quality calibration {path} lacks 'command', 'maps' or 'default_variants'")
    return calibration


def apply_map(spec: dict, features: dict) -> np.ndarray:
    """A linear map of named features, through its link (``logistic`` or ``identity``), clipped to [0, 1].

    Parameters
    ----------
    spec : dict
        ``intercept``, ``coef`` (feature name -> weight), ``link``, and the features'
        ``center``/``scale`` used when it was fitted.
    features : dict
        Feature name -> value or array (all the same length).

    Raises
    ------
    CorruptDataError
        If the map names a feature that is not measured.
    """
    missing = set(spec["coef"]) - set(features)
    if missing:
        raise CorruptDataError(f"the quality calibration uses unknown features {sorted(missing)}")
    value = np.asarray(spec["intercept"], dtype=np.float64)
    for name, weight in spec["coef"].items():
        x = np.asarray(features[name], dtype=np.float64)
        center = spec["center"][name]
        value = value + weight * (np.nan_to_num(x, nan=center) - center) / spec["scale"][name]
    if spec.get("link") == "logistic":
        value = 1.0 / (1.0 + np.exp(-value))
    return np.clip(value, 0.0, 1.0)
