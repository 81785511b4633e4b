"""The tuner's parameter table: which options of each method it offers, and on which control.

The controls (kind, range or choices, help) are the tuner's own; every default
is read from the segmenter's signature, so that the tuner starts where
:func:`ps3d_toolkit.segmentation.segment` does. What "auto" means for the
model's choices is read from the weights' config (:func:`auto_values`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from ps3d_toolkit.core.errors import InputError

__all__ = ["PARAMETERS", "Parameter", "auto_values", "available_methods", "check_value", "defaults", "parameters"]


class Parameter(NamedTuple):
    """One tunable option.

    ``kind`` is "log" (log-scale slider), "float", "int", "bool" or "choice"
    (then ``low`` holds the choices, ``None`` meaning "auto").
    """

    kind: str
    default: object
    low: object
    high: object
    help: str


_FRACTION_HELP = "drop particles below this fraction of the mean volume"
_N_CLASSES = ("choice", (None, 2, 3, 4), None, "Otsu classes (threshold): auto, or 2 for a crop without air")

# name -> (kind, low, high, help): the control of each option; the default comes from the segmenter.
_CONTROLS = {
    "otsu-watershed": {
        "min_particle_fraction": ("log", 1e-4, 0.3, _FRACTION_HELP),
        "n_classes": _N_CLASSES,
        "min_distance_fraction": ("float", 0.2, 1.5, "seed spacing / mean radius: lower splits more"),
    },
    "snow": {
        "min_particle_fraction": ("log", 1e-4, 0.3, _FRACTION_HELP),
        "n_classes": _N_CLASSES,
        "sigma": ("float", 0.0, 2.0, "blur of the distance map (voxels) before the peak search"),
    },
    "model": {
        "min_particle_fraction": ("log", 1e-4, 0.3, "drop particles below this fraction of the expected volume"),
        "min_core_voxels": ("int", 1, 200, "smallest core (network voxels) that seeds a particle"),
        "overlap": ("float", 0.0, 0.75, "overlap of the sliding windows"),
        "inference_diameter_vox": ("choice", (None, 16, 18, 20, 22, 24), None,
                                   "particle diameter on the network's grid (voxels): auto = the "
                                   "weights' own; larger is slower"),
        "core_threshold": ("choice", (None, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9), None,
                           "core probability that seeds a particle: auto = the weights' own; "
                           "higher splits touching grains, lower keeps small ones"),
        "tta": ("bool", None, None, "average over mirrored inputs (8x slower)"),
    },
}

# Options of segment() itself, offered with every method (their defaults read from segment()).
_COMMON_CONTROLS = {
    "grains": ("choice", ("brighter", "darker", "auto"), None,
               "grains brighter or darker than their matrix (auto: decided from the scan)"),
}

# Where the tuner starts elsewhere than the segmenter: the model's tta="auto" turns
# mirroring on with a GPU, which makes every preview 8x slower; a checkbox starts off.
_TUNER_DEFAULTS = {"model": {"tta": False}}


@functools.lru_cache(maxsize=None)
def parameters(method: str) -> dict:
    """The tunable options of ``method``: name -> :class:`Parameter`.

    Raises
    ------
    ValueError
        If ``method`` is not a segmentation method.
    """
    from ps3d_toolkit.segmentation import method_function
    from ps3d_toolkit.segmentation.registry import segment

    if method not in _CONTROLS:
        raise InputError(f"method must be one of {tuple(_CONTROLS)}, got {method!r}")
    signature = inspect.signature(method_function(method)).parameters
    common = inspect.signature(segment).parameters
    own = _TUNER_DEFAULTS.get(method, {})
    table = {name: Parameter(kind, common[name].default, low, high, help_text)
             for name, (kind, low, high, help_text) in _COMMON_CONTROLS.items()}
    for name, (kind, low, high, help_text) in _CONTROLS[method].items():
        default = own[name] if name in own else signature[name].default
        table[name] = Parameter(kind, default, low, high, help_text)
    return table


class _Parameters(Mapping):
    """method -> its options; a method's table is read (and its module imported) on first use."""

    def __getitem__(self, method):
        if method not in _CONTROLS:
            raise KeyError(method)
        return parameters(method)

    def __iter__(self):
        return iter(_CONTROLS)

    def __len__(self):
        return len(_CONTROLS)


#: The tunable options of each method: method -> {name: :class:`Parameter`}.
PARAMETERS: Mapping = _Parameters()


def defaults(method: str, particle_size_mm: float) -> dict:
    """The starting settings of ``method``: its options' defaults and the particle size."""
    params = {"method": method, "particle_size_mm": float(particle_size_mm)}
    params.update({name: spec.default for name, spec in parameters(method).items()})
    return params


def check_value(name: str, value, method: str):
    """``value`` checked against the control of option ``name`` of ``method``.

    Raises
    ------
    ValueError
        If ``name`` is not an option of ``method`` or ``value`` is outside its range or choices.
    """
    from ps3d_toolkit.core.checks import check_positive

    if name == "particle_size_mm":
        return check_positive(value, "particle_size_mm")
    spec = parameters(method).get(name)
    if spec is None:
        raise InputError(f"{name!r} is not a parameter of method {method!r}; "
                         f"parameters: particle_size_mm, {', '.join(parameters(method))}")
    if spec.kind == "choice":
        if value not in spec.low:
            raise InputError(f"{name} must be one of {spec.low}, got {value!r}")
        return value
    if spec.kind == "bool":
        return bool(value)
    number = int(value) if spec.kind == "int" else float(value)
    if not spec.low <= number <= spec.high:
        raise InputError(f"{name} must be in [{spec.low}, {spec.high}], got {value!r}")
    return number


def auto_values(method: str, weights=None) -> dict:
    """What the "auto" choice of each option means, where the weights say: name -> value.

    For the model, ``core_threshold`` and ``inference_diameter_vox`` as the
    weights' config sets them (``weights`` or the shipped ones); empty for the
    classic methods, whose "auto" is decided on the scan.
    """
    if method != "model":
        return {}
    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    return dict(_weights_auto_values(str(Path(weights or DEFAULT_WEIGHTS))))


@functools.lru_cache(maxsize=8)
def _weights_auto_values(path: str) -> tuple:
    from ps3d_toolkit.segmentation.model.network import load_weights, resolve_inference_diameter_vox

    _, config, _ = load_weights(path)
    values = {"inference_diameter_vox": resolve_inference_diameter_vox(config)}
    if config.get("core_threshold") is not None:
        values["core_threshold"] = config["core_threshold"]
    return tuple(values.items())


def available_methods() -> tuple:
    """The methods the tuner offers: those that can run here (the model when its weights ship, SNOW with porespy)."""
    from ps3d_toolkit.segmentation.registry import available_methods as runnable

    return runnable()
