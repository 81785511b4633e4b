"""Segmentation methods: one object each, found by name.

- :mod:`.base`: what a method is (:class:`~.base.SegmentationMethod`; an outside object needs
  only ``name`` and ``segment_block``);
- :mod:`.model`: the border-core U-Net; :mod:`.otsu_watershed`; :mod:`.snow`.

Methods of other packages register through the entry-point group ``ps3d_toolkit.methods``; the
entry point names the method object itself (``mylab = mypkg.segmenter:method``,
docs/plugins.md). :func:`get_method` finds a method by name among the built-in ones and the
entry points; an unknown name fails, listing the methods there are.
"""

from __future__ import annotations

import logging
from importlib import metadata

from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation.methods import model, otsu_watershed, snow
from ps3d_toolkit.segmentation.methods.base import SegmentationMethod, as_method

__all__ = ["BUILT_IN", "ENTRY_POINT_GROUP", "SegmentationMethod", "available_methods", "check_method",
           "default_method", "get_method", "method_names"]

logger = logging.getLogger(__name__)

#: The entry-point group outside packages register their methods in.
ENTRY_POINT_GROUP = "ps3d_toolkit.methods"

#: The methods that ship with the toolkit, by name.
BUILT_IN = {m.name: m for m in (model.METHOD, otsu_watershed.METHOD, snow.METHOD)}

# entry point (name, value) -> its loaded method
_LOADED: dict = {}


def _entry_points() -> dict:
    """Name -> entry point of the outside methods installed now (read each time: a package may come later)."""
    found = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILT_IN:
            logger.warning("the entry point %s = %s names a built-in method; it is ignored", entry.name, entry.value)
            continue
        found.setdefault(entry.name, entry)
    return found


def method_names() -> tuple:
    """Every method's name: the built-in ones, then those registered by entry points (sorted)."""
    return tuple(BUILT_IN) + tuple(sorted(_entry_points()))


def get_method(name: str) -> SegmentationMethod:
    """The method called ``name``: a built-in one or one registered by an entry point.

    Raises
    ------
    InputError
        If no method has that name (the message lists those there are), or its entry point
        does not load or names something that is not a method.
    """
    if name in BUILT_IN:
        return BUILT_IN[name]
    entries = _entry_points()
    if name not in entries:
        raise InputError(f"method must be one of {method_names()}, got {name!r}")
    entry = entries[name]
    key = (entry.name, entry.value)
    if key not in _LOADED:
        try:
            loaded = entry.load()
        except Exception as error:
            raise InputError(f"the method {name!r} ({ENTRY_POINT_GROUP} entry point {entry.value}) does not load: "
                             f"{type(error).__name__}: {error}") from error
        method = as_method(loaded)
        if method.name != name:
            raise InputError(f"the entry point {name!r} names a method called {method.name!r}; the two must agree")
        _LOADED[key] = method
    return _LOADED[key]


def default_method() -> str:
    """The method used when none is named: the model when its weights ship, else otsu-watershed."""
    return "model" if model.METHOD.available() else "otsu-watershed"


def check_method(name) -> str:
    """The method to run: ``name``, or the default when it is None; one that can run here.

    Raises
    ------
    InputError
        If no method has that name.
    MissingDependencyError
        If its packages are not installed (SNOW without porespy).
    """
    name = name or default_method()
    get_method(name).require()
    return name


def available_methods() -> tuple:
    """The methods that can run here: the model when its weights ship, SNOW when porespy is installed, and
    every outside method that loads."""
    ready = []
    for name in method_names():
        try:
            if get_method(name).available():
                ready.append(name)
        except InputError as error:
            logger.warning("%s", error)
    return tuple(ready)
