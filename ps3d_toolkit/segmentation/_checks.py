"""The checks at segmentation's door, shared by ``segment()`` and each public method.

Everything behind a public function trusts the values these return: a finite
3D array of real numbers, a spacing of 3 positive floats in mm, and a particle
size (when given) that spans a few voxels and fits in the scan. The door also
holds the cheap test that tells a scan with grains from an empty, constant or
noise-only one (:func:`shows_grains`), and the memory budget of
:func:`memory_budget_bytes`.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ps3d_toolkit.core.arrays import strided_sample
from ps3d_toolkit.core.checks import (NonFinite, check_non_finite, check_positive, check_spacing,
                                      check_volume, count_non_finite)
from ps3d_toolkit.core.errors import InputError, InputTypeError

logger = logging.getLogger(__name__)

#: Fewest voxels a particle must span along every axis. Below 3 a grain is all
#: surface (partial-volume voxels): the classic watershed's seed footprint
#: (0.6 x the radius) and threshold (a fifth of the radius) fall to their
#: one-voxel floors, so every noise bump seeds a particle (the bundled sample at
#: 1e-9 mm: 1,119 particles instead of 225); the model would have to blow the
#: scan up (20/d)^3-fold to its 20-voxel grid, and was never trained below ~14
#: voxels; the synthetic generator refuses grains under 3 voxels.
MIN_PARTICLE_VOXELS = 3.0


#: Grain-contrast ratio (see :func:`grain_contrast`) below which a scan counts as
#: holding no grains. Measured: white noise of any distribution gives ~1
#: (0.87-1.20 on 280 scans: Gaussian, uniform, Poisson and clipped uint8 noise,
#: 16^3-128^3, 10 seeds each); constant and all-zero scans give 0. Scans with
#: grains: the synthetic presets at 64^3 (easy, medium, hard; grains of 4, 6,
#: 14 and 30 voxels; low contrast, contrast 0.05 in strong noise, rings and
#: cupping, angular and flaky grains, a cylinder wider than the view; 3 seeds
#: each) 272-1902 with their air, 8.3-1357 for central crops of 24^3-48^3
#: without air (the lowest: 4-voxel grains in a 24^3 crop), the bundled sample
#: 3047 (162-485 for crops of 24^3-64^3). 3 lies a factor 2.5 above noise and
#: 2.8 below the weakest grains. Noise correlated over more than ~0.5 voxel
#: reads as contrast (blurred white noise, sigma 0.5: 3.3, sigma 0.7: 11,
#: sigma 1: 29): such a scan is segmented as before.
MIN_GRAIN_CONTRAST = 3.0
# Block edges (voxels) at which the contrast is measured: from about the
# smallest particle to about a large one. An edge counts only when the scan
# holds enough blocks of it for a stable variance of their means.
_CONTRAST_BLOCK_EDGES = (2, 4, 8, 16)
_CONTRAST_MIN_BLOCKS = 128
# Voxels read per block edge: a regular subset of the blocks, spread over the whole scan.
_CONTRAST_SAMPLE = 4_000_000

#: Percentile of the finite grey values that stands in for non-finite voxels
#: (non_finite="mask"): the model's own low intensity percentile, the darkest
#: material (air), which every method takes for background, and robust to the
#: few outlier voxels that the minimum would pick.
MASK_PERCENTILE = 0.5
_MASK_SAMPLE = 4_000_000

#: Gaussian smoothing (voxels) before every grain threshold (the methods' grain mask, the
#: polarity's two-class cut): enough to keep noise from making speckles, too little to merge
#: touching grains.
SMOOTH_SIGMA = 0.5

#: Share of the available memory that a run may plan to use by default.
DEFAULT_MEMORY_FRACTION = 0.8


class CheckedScan(NamedTuple):
    """A scan that passed the door.

    Attributes
    ----------
    image : np.ndarray
        3D array of finite real numbers (non-finite voxels replaced when masked).
    spacing : tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float or None
        The given particle size, checked against spacing and shape.
    masked : np.ndarray of bool or None
        The voxels that were not finite (``non_finite="mask"``), else None.
    """

    image: np.ndarray
    spacing: tuple
    particle_size_mm: float | None
    masked: np.ndarray | None

    def zero_masked(self, labels: np.ndarray) -> np.ndarray:
        """``labels`` with every masked voxel set to background (in place), numbered 1..n again."""
        return labels if self.masked is None else zero_where(labels, self.masked)


def zero_where(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``labels`` set to background where ``where`` is True (in place), numbered 1..n again when an id vanished."""
    hit = np.unique(labels[where])
    labels[where] = 0
    hit = hit[hit > 0]
    if hit.size and (np.bincount(labels.ravel(), minlength=int(hit.max()) + 1)[hit] == 0).any():
        from skimage.segmentation import relabel_sequential

        labels = relabel_sequential(labels)[0].astype(labels.dtype, copy=False)
    return labels


def check_scan(image, spacing, particle_size_mm, *, non_finite: NonFinite = "refuse") -> CheckedScan:
    """Check a scan, its spacing and particle size at the door of a segmenter.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    spacing : float or 3 floats
        Voxel size in mm.
    particle_size_mm : float or None
        Mean particle diameter in mm, or None (estimated later).
    non_finite : {"refuse", "mask"}
        What to do with NaN or infinite grey values: refuse the scan, or treat
        those voxels as background (see :func:`finite_image`).

    Returns
    -------
    CheckedScan

    Raises
    ------
    InputError
        If the image is not 3D, the spacing is not positive or not within
        :data:`~ps3d_toolkit.core.checks.PLAUSIBLE_SPACING_MM`, the size is not positive, the size
        spans under 3 voxels or is larger than the scan, or a value is not
        finite (with ``non_finite="refuse"``).
    InputTypeError
        If the image does not hold real numbers.
    """
    non_finite = check_non_finite(non_finite)
    image = check_volume(image, "image")
    spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if particle_size_mm is not None:
        check_particle_size(particle_size_mm, spacing, image.shape)
    image, masked = finite_image(image, non_finite)
    return CheckedScan(image, spacing, particle_size_mm, masked)


def finite_image(image: np.ndarray, non_finite: NonFinite) -> tuple[np.ndarray, np.ndarray | None]:
    """The image with finite values only, and the voxels that were not (None when all were).

    Integer and bool scans are returned as they are, without a look at their
    values. With ``non_finite="mask"``, a copy is returned in which every NaN or
    infinite voxel holds the 0.5th percentile of the finite grey values, the
    darkest material, which every method takes for background; the
    segmenters then set those voxels' labels to 0.

    Raises
    ------
    InputError
        With ``non_finite="refuse"``, if any value is not finite; with "mask",
        if none is finite.
    """
    count = check_finite_values(image, non_finite)
    if count == 0:
        return image, None
    masked = ~np.isfinite(image)
    sample = strided_sample(image, _MASK_SAMPLE)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:  # the sample fell on masked voxels only: use them all
        sample = image[~masked]
    fill = np.percentile(sample, MASK_PERCENTILE)
    filled = image.copy()
    filled[masked] = fill
    return filled, masked


def check_finite_values(image: np.ndarray, non_finite: NonFinite) -> int:
    """How many voxels of an in-memory scan are NaN or infinite; refused with their count, or logged.

    Raises
    ------
    InputError
        With ``non_finite="refuse"``, if any value is not finite (the message counts them); with
        "mask", if none is finite.
    """
    count = count_non_finite(image)
    if count == 0:
        return 0
    plural = "s" if count > 1 else ""
    if non_finite == "refuse":
        raise InputError(
            f"image holds {count:,} NaN or infinite grey value{plural} (of {image.size:,} voxels); fix the "
            "scan, or pass non_finite='mask' to treat those voxels as background")
    if count == image.size:
        raise InputError(f"image holds no finite grey value (all {image.size:,} voxels are NaN or infinite)")
    logger.info("treating %s NaN or infinite voxel%s of %s as background: the darkest material's grey value "
                "(the 0.5th percentile) for the computation, label 0 in the result", f"{count:,}", plural,
                f"{image.size:,}")
    return count


def check_particle_size(particle_size_mm: float, spacing: tuple, shape: tuple, *,
                        estimated: bool = False) -> float:
    """Refuse a particle size that spans under 3 voxels along an axis or is larger than the scan.

    A scan thinner than a particle along some axes (a few slices) is accepted
    as long as the particle fits within its largest extent.

    Parameters
    ----------
    particle_size_mm : float
        Mean particle diameter in mm (positive).
    spacing : tuple of 3 float
        Voxel size in mm.
    shape : tuple of 3 int
        The scan's shape.
    estimated : bool
        Whether the size was estimated from the scan (the message says so).

    Returns
    -------
    float
        ``particle_size_mm``.
    """
    what = "the estimated particle size" if estimated else "particle_size_mm"
    fix = "pass particle_size_mm" if estimated else "check particle_size_mm and the spacing"
    voxel = "spacing " + ", ".join(f"{s:.4g}" for s in spacing) + " mm"
    fewest_voxels = particle_size_mm / max(spacing)  # across the coarsest axis
    if not fewest_voxels >= MIN_PARTICLE_VOXELS:
        raise InputError(
            f"{what} {particle_size_mm:.4g} mm is only {fewest_voxels:.3g} voxels across at {voxel} (z, y, x); "
            f"a particle must span at least {MIN_PARTICLE_VOXELS:g} voxels along every axis to be "
            f"segmented: {fix}")
    extent_mm = max(n * s for n, s in zip(shape, spacing))
    if particle_size_mm > extent_mm:
        raise InputError(
            f"{what} {particle_size_mm:.4g} mm is larger than the scan ({' x '.join(map(str, shape))} "
            f"voxels at {voxel}: {extent_mm:.4g} mm at most): {fix}")
    return particle_size_mm


def grain_contrast(image: np.ndarray) -> float:
    """How much more the grey values vary between blocks than noise alone would make them.

    The scan is cut into cubic blocks (edges 2, 4, 8 and 16 voxels; a regular
    subset of at most ~4 M voxels each). For white noise the variance of the
    block means is the within-block variance divided by the voxels in a block,
    whatever the noise's level or distribution, so their ratio (an ANOVA F
    statistic) is ~1; grains brighter than their surroundings make whole blocks
    brighter and the ratio large: it grows with the grains' volume fraction
    times their contrast-to-noise ratio squared (two grains filling 3 % of a
    scan, 1.5 noise sigmas brighter: 3.7; 3 sigmas: ~12), so a few faint
    grains in a large empty scan score low. The largest ratio over the edges is returned:
    0 for a constant scan, ``inf`` for a scan too small to judge (fewer than
    128 blocks of 2 voxels, as in 8 x 8 x 8) or without any within-block variation.

    Parameters
    ----------
    image : np.ndarray
        3D scan of finite values.

    Returns
    -------
    float
    """
    if image.min() == image.max():
        return 0.0
    ratios = [_block_variance_ratio(image, edge) for edge in _CONTRAST_BLOCK_EDGES]
    ratios = [r for r in ratios if r is not None]
    return max(ratios) if ratios else math.inf


def _block_variance_ratio(image: np.ndarray, edge: int) -> float | None:
    """Variance of block means over (mean within-block variance / voxels per block); None: too few blocks."""
    block = tuple(min(edge, n) for n in image.shape)
    counts = tuple(n // b for n, b in zip(image.shape, block))
    if math.prod(counts) < _CONTRAST_MIN_BLOCKS:
        return None
    per_block = math.prod(block)
    stride = max(1, math.ceil((math.prod(counts) * per_block / _CONTRAST_SAMPLE) ** (1 / 3)))
    starts = [np.arange(0, c, stride) for c in counts]
    index = [(s[:, None] * b + np.arange(b)).ravel() for s, b in zip(starts, block)]
    values = image[np.ix_(*index)].astype(np.float64)
    values /= max(np.abs(values).max(), np.finfo(np.float64).tiny)  # no overflow in the variances
    k = [len(s) for s in starts]
    values = values.reshape(k[0], block[0], k[1], block[1], k[2], block[2])
    values = values.transpose(0, 2, 4, 1, 3, 5).reshape(-1, per_block)
    between = values.mean(axis=1).var(ddof=1)
    within = values.var(axis=1, ddof=1).mean()
    if within == 0:
        return math.inf if between > 0 else 0.0
    return float(between * per_block / within)


def shows_grains(values: np.ndarray) -> bool:
    """Whether a scan or block holds grains: not constant, and its grain contrast at least :data:`MIN_GRAIN_CONTRAST`."""
    return bool(np.ptp(values) > 0 and grain_contrast(values) >= MIN_GRAIN_CONTRAST)


def available_memory_bytes() -> int | None:
    """Memory available to new allocations now, in bytes; None when it cannot be told.

    Linux: ``MemAvailable`` of /proc/meminfo (free memory plus the page cache
    that can be dropped); elsewhere psutil when installed, else ``os.sysconf``
    free pages. A container's own memory limit (cgroup) is not looked up.
    """
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget_bytes(memory_limit_gb) -> tuple[float, str]:
    """The bytes a run may plan to use, and how that budget was set (for messages).

    ``None``: 80 % of the memory available now (unlimited when that cannot be
    told); otherwise ``memory_limit_gb`` gigabytes (10^9 bytes).
    """
    if memory_limit_gb is not None:
        limit = check_positive(memory_limit_gb, "memory_limit_gb")
        return limit * 1e9, f"memory_limit_gb={limit:g}"
    available = available_memory_bytes()
    if available is None:
        return math.inf, "the available memory is unknown"
    return (DEFAULT_MEMORY_FRACTION * available,
            f"{DEFAULT_MEMORY_FRACTION:.0%} of the {available / 1e9:.3g} GB available; set memory_limit_gb to change it")


def check_fraction(value, name: str) -> float:
    """Return ``value`` as a float in [0, 1), or raise naming ``name``."""
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool):
        raise InputTypeError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < 1:
        raise InputError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_n_classes(n_classes) -> int | None:
    """Return ``n_classes`` as None (automatic) or an int >= 2."""
    if n_classes is None:
        return None
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 2:
        raise InputError(f"n_classes must be None (automatic) or an integer >= 2, got {n_classes!r}")
    return int(n_classes)


def size_in_voxels(particle_size_mm, spacing) -> float | None:
    """A particle size in mm as voxels of the finest axis (None when the size is not known).

    The one mm -> voxel conversion of a particle size: a particle of ``particle_size_vox`` voxels
    spans that many voxels along the finest axis (and fewer along coarser ones).
    """
    return None if particle_size_mm is None else float(particle_size_mm) / min(spacing)


#: Block edge of a run in blocks when none is asked for (a scan too big for memory, a region of interest).
DEFAULT_CHUNK_SIZE = 128
#: The smallest block edge: a block must hold a few particles' worth of context.
MIN_CHUNK_SIZE = 16


def check_chunk_size(chunk_size) -> int:
    """``chunk_size`` as an int of at least :data:`MIN_CHUNK_SIZE` voxels, else an InputError."""
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < MIN_CHUNK_SIZE:
        raise InputError(f"chunk_size must be an integer of at least {MIN_CHUNK_SIZE} voxels, got {chunk_size!r}")
    return int(chunk_size)
