"""The tuner's parameter table: which options of each method it offers, and on which control.

The controls (kind, range or choices, help) and the defaults are the method
object's own (``controls``, ``defaults``), so that the tuner starts where
:func:`ps3d_toolkit.segmentation.segment` does and offers the methods of other
packages too. What "auto" means for the
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


# Options of segment() itself, offered with every method (their defaults read from segment()).
_COMMON_CONTROLS = {
    "grains": ("choice", ("brighter", "darker", "auto"), None,
               "grains brighter or darker than their matrix (auto: decided from the scan)"),
}

def parameters(method: str) -> dict:
    """The tunable options of ``method``: name -> :class:`Parameter`.

    Each method object holds its own controls and defaults
    (:class:`~ps3d_toolkit.segmentation.methods.base.SegmentationMethod`: ``controls``,
    ``defaults``, ``tuner_defaults``); a method of another package offers the controls it declares.

    Raises
    ------
    ValueError
        If ``method`` is not a segmentation method.
    """
    from ps3d_toolkit.segmentation.methods import get_method
    from ps3d_toolkit.segmentation.registry import segment

    found = get_method(method)
    common = inspect.signature(segment).parameters
    table = {name: Parameter(kind, common[name].default, low, high, help_text)
             for name, (kind, low, high, help_text) in _COMMON_CONTROLS.items()}
    for name, (kind, low, high, help_text) in found.controls.items():
        default = found.tuner_defaults.get(name, found.defaults.get(name))
        table[name] = Parameter(kind, default, low, high, help_text)
    return table


class _Parameters(Mapping):
    """method -> its options; a method's table is read (and its module imported) on first use."""

    def __getitem__(self, method):
        from ps3d_toolkit.segmentation.methods import method_names

        if method not in method_names():
            raise KeyError(method)
        return parameters(method)

    def __iter__(self):
        from ps3d_toolkit.segmentation.methods import method_names

        return iter(method_names())

    def __len__(self):
        from ps3d_toolkit.segmentation.methods import method_names

        return len(method_names())


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
    from ps3d_toolkit.segmentation.methods import available_methods as runnable

    return runnable()
