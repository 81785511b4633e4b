"""Pseudo-labels from a first pass: the confident particles as targets, the uncertain voxels left out.

A particle is confident when the label-free estimate gives it a high confidence
(by default :func:`~ps3d_toolkit.segmentation.quality.estimate_quality`; without
it, :func:`flip_stability`: its best IoU with the particles of a run on the
scan mirrored along every axis). Its voxels become border-core targets on the
training grid; the voxels of the other particles, a band around them, and the
voxels where the two runs disagree about grain or matrix get
:data:`~ps3d_toolkit.training.targets.IGNORE`, so that the loss leaves them out.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.errors import Ps3dError
from ps3d_toolkit.segmentation.normalize import resample_labels, to_network_grid
from ps3d_toolkit.segmentation.quality import signals
from ps3d_toolkit.training.targets import IGNORE, border_core_targets

__all__ = ["Score", "best_iou", "flip_stability", "pseudo_label_volume", "quality_score"]

logger = logging.getLogger(__name__)


@dataclass
class Score:
    """A label-free score of one segmentation.

    Attributes
    ----------
    estimated_f1 : float
        The estimated instance F1@0.5 (higher is better).
    confidence : np.ndarray
        Per label id (index 0 unused), a confidence in [0, 1].
    source : str
        What made the score (``"estimate_quality"`` or ``"flip stability"``).
    other : np.ndarray or None
        The labels of the variant run, when the score made one (the flip).
    details : dict
        Plain values for the record.
    """

    estimated_f1: float
    confidence: np.ndarray
    source: str
    other: np.ndarray | None = None
    details: dict = field(default_factory=dict)


def best_iou(labels: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Each particle's best IoU with a particle of ``other`` (index = label id, index 0 unused).

    Examples
    --------
    >>> a = np.zeros((4, 4, 4), np.uint32); a[:2] = 1
    >>> b = np.zeros((4, 4, 4), np.uint32); b[:1] = 5
    >>> best_iou(a, b).round(2).tolist()
    [0.0, 0.5]
    """
    labels = np.asarray(labels)
    return signals.best_iou(labels, np.asarray(other), np.arange(int(labels.max(initial=0)) + 1))


def flip_stability(image, labels, *, spacing, particle_size_mm, weights=None) -> Score:
    """The stand-in estimate: agreement with a run on the scan mirrored along every axis.

    A particle's confidence is its best IoU with the mirrored run's particles; the
    scan's ``estimated_f1`` is the two runs' instance F1@0.5 against each other.
    It needs one more model run.
    """
    from ps3d_toolkit.segmentation import segment

    flipped = segment(np.ascontiguousarray(np.flip(np.asarray(image))), spacing=spacing,
                      particle_size_mm=particle_size_mm, method="model", weights=weights, progress=False)
    other = np.ascontiguousarray(np.flip(flipped))
    confidence = best_iou(labels, other)
    n_a, n_b = int(np.count_nonzero(np.bincount(np.asarray(labels).ravel())[1:])), int(
        np.count_nonzero(np.bincount(other.ravel())[1:]))
    matched = int(np.count_nonzero(confidence > 0.5))
    agreement = 2.0 * matched / (n_a + n_b) if n_a + n_b else 0.0
    return Score(estimated_f1=agreement, confidence=confidence, source="flip stability", other=other,
                 details={"particles": n_a, "particles_mirrored": n_b, "matched": matched})


def quality_score(image, labels, *, spacing, particle_size_mm, weights=None) -> Score:
    """The label-free estimate of :mod:`ps3d_toolkit.segmentation.quality`, or :func:`flip_stability` without it.

    The toolkit's estimate is used when its module and calibration are there and
    it runs; otherwise (an older install, no calibration file, a calibration this
    version cannot apply) the stand-in, with a warning, and the score's
    ``source`` says which. :func:`~ps3d_toolkit.training.adapt.adapt` keeps the
    first pass's source for every later score, so that before and after compare.
    """
    try:
        from ps3d_toolkit.segmentation.quality import estimate_quality

        report = estimate_quality(image, labels, spacing=spacing, particle_size_mm=particle_size_mm,
                                  method="model", weights=weights, progress=False)
    except (ImportError, Ps3dError) as error:
        warnings.warn(f"the label-free estimate cannot run here ({error}); adapt uses flip stability instead",
                      RuntimeWarning, stacklevel=2)
        return flip_stability(image, labels, spacing=spacing, particle_size_mm=particle_size_mm, weights=weights)
    confidence = np.zeros(int(np.asarray(labels).max()) + 1)
    confidence[report.confidence.index.to_numpy(np.int64)] = report.confidence.to_numpy()
    return Score(estimated_f1=float(report.estimated_f1), confidence=confidence, source="estimate_quality",
                 details={"variants": list(report.variants), "warnings": list(report.warnings)})


def _grain_like_background(grid: np.ndarray, grid_labels: np.ndarray, percentile: float = 10.0) -> np.ndarray:
    """Background voxels as bright as grains: grains the first pass missed, not matrix to learn from.

    Taught as background, a missed grain would teach the model to miss it again
    (12 steps on a blurred scan's own first pass took F1@0.5 from 0.66 to 0.52).
    """
    smooth = ndimage.gaussian_filter(grid, 1.0)
    interior = ndimage.binary_erosion(grid_labels > 0, iterations=2)
    if not interior.any():
        return np.zeros(grid.shape, bool)
    return (grid_labels == 0) & (smooth >= np.percentile(smooth[interior], percentile))


def pseudo_label_volume(image, labels, score: Score, *, spacing, particle_size_mm, network: dict,
                        min_confidence: float = 0.8, band_vox: float = 2.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """The scan and its pseudo-label targets on the training grid, uncertain voxels as ``IGNORE``.

    Parameters
    ----------
    image, labels : np.ndarray
        The scan and the first pass's particles.
    score : Score
        The first pass's label-free score (its per-particle confidence, and the
        variant run when it made one).
    spacing, particle_size_mm
        As for :func:`~ps3d_toolkit.segmentation.segment`.
    network : dict
        The weights' config (``train_diameter_vox``, ``intensity_percentiles``, ``border_vox``).
    min_confidence : float
        Particles at or above this confidence are targets.
    band_vox : float
        Width, in training-grid voxels, of the band around an unconfident
        particle (and around voxels the runs disagree on) left out of the loss.

    Returns
    -------
    image, targets, counts
        float32 grid image, uint8 targets (0, 1, 2 or ``IGNORE``), and how many
        particles were kept and left out.
    """
    grid, _ = to_network_grid(image, spacing=spacing, particle_size_mm=particle_size_mm,
                              network_diameter_vox=network["train_diameter_vox"],
                              intensity_percentiles=network["intensity_percentiles"])
    grid_labels = resample_labels(labels, shape=grid.shape)
    targets = border_core_targets(grid_labels, border_vox=network["border_vox"])
    present = np.flatnonzero(np.bincount(np.asarray(labels).ravel())[1:]) + 1
    unsure_ids = present[score.confidence[present] < min_confidence]
    uncertain = np.isin(grid_labels, unsure_ids)
    if score.other is not None:
        other = resample_labels(score.other, shape=grid.shape)
        uncertain |= (grid_labels > 0) != (other > 0)
    uncertain |= _grain_like_background(grid, grid_labels)
    if band_vox > 0 and uncertain.any():
        uncertain = ndimage.distance_transform_edt(~uncertain) <= band_vox
    targets[uncertain] = IGNORE
    counts = {"particles": int(present.size), "confident": int(present.size - unsure_ids.size),
              "ignored_share": round(float(uncertain.mean()), 4)}
    return grid.astype(np.float32), targets, counts
