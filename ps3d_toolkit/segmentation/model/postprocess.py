"""From the network's probabilities to particles: classes, instances, and no phantoms of featureless regions."""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.geometry import sphere_volume
from ps3d_toolkit.core.labels import keep_labels
from ps3d_toolkit.segmentation._checks import check_fraction
from ps3d_toolkit.segmentation.instances import border_core_to_instances

__all__ = ["core_threshold_of", "drop_phantom_particles", "instances_from_core_border", "instances_of"]

logger = logging.getLogger(__name__)

# Weights that were never exported have no chosen core threshold: a core is then
# simply more likely than not.
_UNCHOSEN_CORE_THRESHOLD = 0.5
# Phantom particles: in featureless regions (epoxy or air with noise only) the
# network draws particles that are not there. A particle is dropped when both
# (1) under 5 % of its voxels lie above the scan's grain threshold (Otsu, as
# for the classic methods) and (2) its mean grey value exceeds that of the
# background shell around it (2 voxels wide) by under 1 standard deviation of
# the shell. Measured on the bundled sample beside an equal block of its own
# epoxy-level (air-level) noise: 649 (554) phantoms in the empty half, at most
# 1.6 % (0.2 %) of their voxels above the threshold, shell contrast 98 % of
# them under 0.6 (max 0.74). True particles (matched at IoU 0.5) of 12
# development scans (benchmarks/model_accuracy.py's kinds, seeds 7000+): >= 12 %
# above the threshold (>= 47 % but on the low-contrast scan), shell contrast
# >= 1.06 (>= 1.6 but on the low-contrast scan). Test (1) alone would drop the
# dull grains of a crop without air, where the threshold falls between two grain
# phases (the sample's central 64^3: 18 of 55 particles); test (2) keeps them
# (shell contrast >= 1.43 on four such crops).
_MIN_BRIGHT_FRACTION = 0.05
_MIN_SHELL_CONTRAST = 1.0
_SHELL_VOXELS = 2


def core_threshold_of(core_threshold, config: dict) -> float:
    """The core threshold: ``core_threshold``, else the weights' own, else 0.5; checked to lie in (0, 1)."""
    if core_threshold is None:
        core_threshold = float(config.get("core_threshold", _UNCHOSEN_CORE_THRESHOLD))
    if not 0 < core_threshold < 1:
        raise InputError(f"core_threshold must be in (0, 1), got {core_threshold!r}")
    return core_threshold


def drop_phantom_particles(labels: np.ndarray, image: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """Drop particles that are neither bright nor brighter than their surroundings; renumber 1..n.

    ``bright`` marks the voxels above the scan's grain threshold. Only the
    particles with under 5 % of their voxels in it are examined further (none,
    on most scans), by their contrast with the background shell around them.
    """
    n = int(labels.max())
    if n == 0:
        return labels
    voxels = np.bincount(labels.ravel(), minlength=n + 1)
    dull = np.bincount(labels[bright], minlength=n + 1) < _MIN_BRIGHT_FRACTION * voxels
    dull[0] = False
    if not dull.any():
        return labels
    phantom = dull & (_shell_contrast(image, labels, dull) < _MIN_SHELL_CONTRAST)
    if not phantom.any():
        return labels
    logger.debug("dropped %d particles of featureless regions (no grain contrast)", int(np.count_nonzero(phantom)))
    return keep_labels(labels, ~phantom)


def _shell_contrast(image: np.ndarray, labels: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per label: (its mean grey value - that of the background shell around it) / the shell's std.

    Computed for the ``chosen`` labels (one flag per id); ``inf`` for the
    others and for a particle without background around it.
    """
    n = chosen.size - 1
    grown = np.where(chosen[labels], labels, 0).astype(np.uint32, copy=False)
    for _ in range(_SHELL_VOXELS):
        grown = ndimage.grey_dilation(grown, size=(3, 3, 3))
    shell = (labels == 0) & (grown > 0)
    owner, values = grown[shell], image[shell].astype(np.float64)
    inside = np.bincount(labels.ravel(), weights=image.ravel(), minlength=n + 1)
    inside /= np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1)
    count = np.bincount(owner, minlength=n + 1).astype(np.float64)
    mean = np.bincount(owner, weights=values, minlength=n + 1) / np.maximum(count, 1)
    spread = np.sqrt(np.maximum(np.bincount(owner, weights=values ** 2, minlength=n + 1)
                                / np.maximum(count, 1) - mean ** 2, 0))
    contrast = np.full(n + 1, np.inf)
    measured = chosen & (count > 1) & (spread > 0)
    contrast[measured] = (inside[measured] - mean[measured]) / spread[measured]
    return contrast


def instances_from_core_border(core_border, *, spacing, zoom, particle_size_mm: float,
                               core_threshold: float, min_core_voxels: int,
                               min_particle_fraction: float) -> np.ndarray:
    """The instance step of :func:`segment_with_model` on the scan's own grid.

    Parameters
    ----------
    core_border : np.ndarray
        (2, z, y, x) core and border probabilities, resampled to the scan's grid.
    spacing : float or tuple of 3 float
        Voxel size in mm.
    zoom : tuple of 3 float
        Scan-to-network zoom factors (``min_core_voxels`` is in network voxels).
    particle_size_mm : float
        Mean particle diameter the scan was normalised with; the reference
        volume of ``min_particle_fraction``.
    core_threshold, min_core_voxels, min_particle_fraction
        See :func:`segment_with_model`.

    Returns
    -------
    np.ndarray
        uint32 labels.
    """
    core_border = np.asarray(core_border)
    if core_border.ndim != 4 or core_border.shape[0] != 2:
        raise InputError(f"core_border must be a (2, z, y, x) array, got shape {core_border.shape}")
    return instances_of(
        core_border, spacing=check_spacing(spacing), zoom=tuple(float(z) for z in zoom),
        particle_size_mm=check_positive(particle_size_mm, "particle_size_mm"),
        core_threshold=core_threshold_of(core_threshold, {}), min_core_voxels=min_core_voxels,
        min_particle_fraction=check_fraction(min_particle_fraction, "min_particle_fraction"))


def instances_of(core_border: np.ndarray, *, spacing, zoom, particle_size_mm: float, core_threshold: float,
                 min_core_voxels: int, min_particle_fraction: float) -> np.ndarray:
    """:func:`instances_from_core_border` on checked settings."""
    return border_core_to_instances(
        _classes_from_core_border(core_border, core_threshold), spacing=spacing,
        min_core_voxels=max(1, int(round(min_core_voxels / float(np.prod(zoom))))),
        min_particle_fraction=min_particle_fraction,
        expected_particle_voxels=float(sphere_volume(particle_size_mm)) / float(np.prod(spacing)))


def _classes_from_core_border(core_border: np.ndarray, core_threshold: float) -> np.ndarray:
    """Classes (0 background, 1 core, 2 border) from core and border probabilities.

    A voxel is foreground when core + border > 0.5 (background is less likely
    than not); it is core when its core probability
    exceeds ``core_threshold``. A threshold above 0.5 keeps only confident cores,
    which splits touching grains that an arg-max would merge.
    """
    core, border = core_border
    classes = np.zeros(core.shape, np.uint8)
    foreground = (core + border) > 0.5
    classes[foreground] = 2
    classes[foreground & (core > core_threshold)] = 1
    return classes
