"""The classic baselines by name: Otsu + watershed and porespy's SNOW.

Two baselines the model is measured against (and a fallback when no model fits). Each is a
method object in :mod:`ps3d_toolkit.segmentation.methods`; their public functions are
gathered here, with :data:`BASELINES`.
"""

from __future__ import annotations

from ps3d_toolkit.segmentation.methods.otsu_watershed import otsu_watershed
from ps3d_toolkit.segmentation.methods.snow import import_porespy, snow, snow_available

__all__ = ["BASELINES", "import_porespy", "otsu_watershed", "snow", "snow_available"]

#: Name -> public segmenter.
BASELINES = {"otsu-watershed": otsu_watershed, "snow": snow}
