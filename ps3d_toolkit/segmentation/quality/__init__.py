"""A label-free estimate of how right a segmentation is: per-particle confidence, per-scan F1.

Modules
-------
estimate
    ``estimate_quality()`` -> :class:`QualityReport`; ``measure_signals()`` for calibration.
variants
    The rescan stand-ins (turns, flips, a sub-voxel shift, noise, another particle size).
signals
    Stability (best IoU under a variant), shape cues of merged grains, size and volume cues.
calibration
    The fitted map (``calibration.json``, written by ``benchmarks/quality.py``).
"""

from __future__ import annotations

from ps3d_toolkit.segmentation.quality.calibration import CALIBRATION_PATH, load_calibration
from ps3d_toolkit.segmentation.quality.estimate import (
    LOW_CONFIDENCE,
    QualityReport,
    QualitySignals,
    estimate_quality,
    measure_signals,
    quality_features,
)
from ps3d_toolkit.segmentation.quality.variants import VARIANTS, Variant

__all__ = ["CALIBRATION_PATH", "LOW_CONFIDENCE", "VARIANTS", "QualityReport", "QualitySignals", "Variant",
           "estimate_quality", "load_calibration", "measure_signals", "quality_features"]
