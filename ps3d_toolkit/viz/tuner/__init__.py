"""Tune segmentation parameters with sliders and a live preview on a sub-volume.

Modules
-------
parameters
    Which options of each method the tuner offers and on which control
    (:data:`PARAMETERS`); defaults read from the segmenters themselves.
runner
    The preview region (:func:`preview_region`), one preview run
    (:func:`run_preview`) and the settings as code (:func:`settings_code`).
widget
    :class:`SegmentationTuner`: the controls, the preview figure and the
    settings to copy out (:meth:`SegmentationTuner.settings`,
    :meth:`SegmentationTuner.settings_code`).
"""

from __future__ import annotations

from ps3d_toolkit.viz.tuner.parameters import PARAMETERS, Parameter, available_methods
from ps3d_toolkit.viz.tuner.runner import preview_region, run_preview, settings_code
from ps3d_toolkit.viz.tuner.widget import SegmentationTuner

__all__ = ["PARAMETERS", "Parameter", "SegmentationTuner", "available_methods", "preview_region", "run_preview",
           "settings_code"]
