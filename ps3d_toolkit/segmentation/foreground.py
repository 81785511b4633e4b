"""The foreground of a scan: the Otsu grain mask, its distance map and the particle-size estimate.

Every segmenter starts here. The classic methods cut their seeds from the grain
mask's distance map; the model is sized by :func:`estimate_particle_size`, which
reads the mean particle diameter off the same kind of distance map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu

from ps3d_toolkit.core.arrays import strided_sample
from ps3d_toolkit.core.checks import check_same_shape, check_spacing, check_volume
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.geometry import equivalent_diameter
from ps3d_toolkit.segmentation._checks import SMOOTH_SIGMA, NonFinite, check_n_classes, check_scan, finite_image

__all__ = [
    "OTSU_SAMPLE",
    "SMOOTH_SIGMA",
    "SizeEstimate",
    "distance_map",
    "edt_distance",
    "estimate_particle_size",
    "estimate_particle_size_of",
    "flatten_radial_trend",
    "grain_mask",
    "grain_mask_above",
    "grain_threshold",
    "mean_particle_diameter_mm",
    "sample_threshold",
    "smoothed_above",
]

# Otsu on a strided subsample: the histogram of a few million voxels is as good as
# that of a billion, and the full-volume histogram dominates the run time otherwise.
#: Values in the smoothed sample the grain threshold is cut on.
OTSU_SAMPLE = 2_000_000

# Ratio of a grain's mean equivalent diameter to the mean of twice the depths of
# the distance-map maxima of the (majority-filtered) Otsu mask. Calibrated on 23
# development scans (benchmarks/model_accuracy.py's 12 kinds, seeds 7000+ and
# 7100+, not the benchmark's own seeds; one scan where the Otsu cut failed
# left out): 1.08 gives a geometric-mean ratio estimate/truth of 1.00 there,
# spread ~10 %, up to 1.3x on dense, fine, angular scans.
_EQ_DIAMETER_PER_INSCRIBED = 1.08



def grain_threshold(sample: np.ndarray, n_classes: int | None) -> float:
    """Grey value above which a voxel is grain; ``None`` classes: 3 or 4 from the histogram."""
    # the values only: a (z, y, 3) sample would look like an RGB image to scikit-image (and warn)
    sample = np.ravel(sample)
    if n_classes is not None:
        thresholds = threshold_multiotsu(sample, classes=n_classes)
        return float(thresholds[1] if n_classes >= 3 else thresholds[0])
    # Three classes (air, epoxy, grain) put the cut between two grain phases when
    # the grains hold two abundant phases (foreground Dice 0.61 on one synthetic
    # scan); four classes fix that but, with a single grain phase, either split the
    # epoxy in two (noisy scans) or make a thin class of partial-volume voxels
    # between epoxy and grain (clean scans), and the cut lands inside the epoxy.
    # So take four classes only when the third class looks like a mineral phase:
    # its mean lies >= 1.5 summed standard deviations above the second class (a
    # Gaussian cut in half gives 1.33, split epoxy ~1.2, distinct phases >= 1.7
    # on our synthetic tuning scans) and it holds >= 0.4 times the volume of the
    # brightest class (partial-volume shells: 0.2-0.25; phases: >= 0.7). The
    # second class must also be the epoxy, >= 10 % of the sample: on scans whose
    # grains barely stand out of the epoxy (contrast ~0.08 of the grey range),
    # four classes split off a thin shell of air/epoxy partial-volume voxels as
    # the "second" class and put the cut below the epoxy, so that the whole
    # sample counts as grain (a 4.5x particle-size estimate on one such scan).
    thresholds = threshold_multiotsu(sample, classes=4)
    edges = np.concatenate([[-np.inf], thresholds, [np.inf]])
    classes = [sample[(sample > edges[i]) & (sample <= edges[i + 1])] for i in range(4)]
    if min(c.size for c in classes) > 1:
        second, third, brightest = classes[1:]
        separation = (third.mean() - second.mean()) / (second.std() + third.std() + 1e-12)
        epoxy_share = second.size / (second.size + third.size + brightest.size)
        if separation >= 1.5 and third.size >= 0.4 * brightest.size and epoxy_share >= 0.1:
            return float(thresholds[1])
    return float(threshold_multiotsu(sample, classes=3)[1])


def sample_threshold(sample: np.ndarray, n_classes: int | None) -> float:
    """The grain threshold of a (smoothed) sample; infinite for a sample of one grey value (no grain)."""
    return float(grain_threshold(sample.ravel(), n_classes)) if np.ptp(sample) > 0 else math.inf


def _threshold_grains(smooth: np.ndarray, n_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of a smoothed scan above the grain threshold, and the sub-sample it used.

    The mask is all False for a scan of one grey value.
    """
    sample = strided_sample(smooth, OTSU_SAMPLE)
    if np.ptp(sample) == 0:
        return np.zeros(smooth.shape, bool), sample
    return smooth > grain_threshold(sample, n_classes), sample


def grain_mask(image, *, n_classes: int | None = None) -> np.ndarray:
    """Grain voxels: brighter than the epoxy, found by multi-level Otsu.

    The scan holds air (darkest), epoxy and one or more grain phases (brightest). With
    ``n_classes >= 3`` the two darkest classes are taken as air and epoxy and every
    brighter class is grain, so that grains of several mineral phases all count; with
    ``n_classes == 2`` (a crop without air) only the darkest class is background;
    ``None`` chooses 3 or 4 classes from the histogram. A light Gaussian smoothing
    before the threshold and a binary opening after it keep noise from making
    speckles; enclosed holes (inclusions, closed cracks) are filled.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    n_classes : int, optional
        Otsu classes.

    Returns
    -------
    np.ndarray of bool

    Raises
    ------
    InputError
        If the image holds NaN or infinite values.
    """
    image, _ = finite_image(check_volume(image, "image"), "refuse")
    return _grain_mask(image, check_n_classes(n_classes))


def _grain_mask(image: np.ndarray, n_classes: int | None) -> np.ndarray:
    image = ndimage.gaussian_filter(image.astype(np.float32, copy=False), SMOOTH_SIGMA)
    mask, sample = _threshold_grains(image, n_classes)
    if np.ptp(sample) == 0:
        return mask
    return _cleaned(mask)


def _cleaned(mask: np.ndarray) -> np.ndarray:
    """A cut grain mask opened (speckle off) and with its enclosed holes filled."""
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    return ndimage.binary_fill_holes(mask)


def smoothed_above(values: np.ndarray, threshold: float) -> np.ndarray:
    """Voxels of the lightly smoothed ``values`` above ``threshold`` (a threshold of the smoothed scan)."""
    return ndimage.gaussian_filter(values.astype(np.float32, copy=False), SMOOTH_SIGMA) > threshold


def grain_mask_above(values: np.ndarray, threshold: float) -> np.ndarray:
    """:func:`grain_mask` with a given threshold (a whole scan's, for one of its blocks)."""
    return _cleaned(smoothed_above(values, threshold))


def distance_map(mask: np.ndarray, spacing) -> np.ndarray:
    """Euclidean distance to the background in units of the finest voxel side.

    Computed with the ``edt`` package (the same values as
    ``scipy.ndimage.distance_transform_edt``, ~3x faster, float32); the volume's
    edge does not count as background.

    Parameters
    ----------
    mask : np.ndarray of bool
        Foreground.
    spacing : tuple of 3 float
        Voxel size.

    Returns
    -------
    np.ndarray
        float32 distances, 0 on the background.
    """
    return edt_distance(np.asarray(mask, dtype=bool), check_spacing(spacing))


def edt_distance(mask: np.ndarray, spacing: tuple) -> np.ndarray:
    """:func:`distance_map` of a checked boolean mask and spacing (no checks)."""
    import edt

    anisotropy = tuple(float(s) / min(spacing) for s in spacing)
    return edt.edt(np.ascontiguousarray(mask, dtype=bool), anisotropy=anisotropy,
                   black_border=False, parallel=1).astype(np.float32, copy=False)


def mean_particle_diameter_mm(labels, *, spacing) -> float | None:
    """Mean equivalent-sphere diameter of the labelled particles in mm (None if none)."""
    counts = np.bincount(np.asarray(labels).ravel())[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return None
    volumes = counts * float(np.prod(check_spacing(spacing)))
    return float(np.mean(equivalent_diameter(volumes)))


@dataclass
class SizeEstimate:
    """A particle-size estimate and how sure it is.

    Attributes
    ----------
    particle_size_mm : float
        Estimated mean equivalent diameter in mm.
    relative_spread : float
        Interquartile range of the per-particle estimates divided by their
        median: ~0.2 for well-sorted grains, above ~0.6 means "check it".
    n_particles : int
        Number of particle centres the estimate is based on.
    method : str
        How it was obtained.
    """

    particle_size_mm: float
    relative_spread: float
    n_particles: int
    method: str = "distance-transform"

    def __str__(self) -> str:
        return (f"estimated particle size {self.particle_size_mm:.4g} mm "
                f"(from {self.n_particles} particles, relative spread {self.relative_spread:.2f})")


def flatten_radial_trend(image: np.ndarray, *, percentile: float = 30.0,
                         smooth_bins: float = 3.0) -> np.ndarray:
    """Divide out the radial grey-value trend of a cylindrical sample (cupping).

    Beam hardening darkens the middle of a dense sample and rings are
    concentric about the rotation axis: both are functions of the distance from
    the axis, assumed to be the scan's z axis through the middle of the (y, x)
    plane, as in a standard reconstruction. Per 1-voxel radius bin a low
    percentile of the sample's grey values (mostly the matrix between the
    grains) traces that trend; it is smoothed over ``smooth_bins`` bins and
    divided out, after the air level (the 1st percentile) is subtracted.

    Parameters
    ----------
    image : np.ndarray
        Grey values (z, y, x).
    percentile : float
        Percentile of each radius bin that stands for the matrix.
    smooth_bins : float
        Gaussian smoothing of the profile, in radius bins.

    Returns
    -------
    np.ndarray
        float32 image in which the matrix is ~1 at every radius.
    """
    image = np.asarray(image, dtype=np.float32)
    _, ny, nx = image.shape
    yy, xx = np.indices((ny, nx))
    bins = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2).astype(np.int64)
    n_bins = int(bins.max()) + 1
    # whole (y, x) planes, so that every radius bin is sampled
    step = max(1, int(np.ceil(image.size / 2e6)))
    sub = image[::step]
    sample = sub > threshold_otsu(sub.ravel())  # the sample (or, without air, its brighter part)
    air = float(np.percentile(sub, 1))  # the air around the sample: zero attenuation
    bin_of = np.broadcast_to(bins, sub.shape)[sample]
    values = sub[sample]
    order = np.lexsort((values, bin_of))
    bin_of, values = bin_of[order], values[order]
    starts = np.searchsorted(bin_of, np.arange(n_bins))
    counts = np.bincount(bin_of, minlength=n_bins)
    profile = np.full(n_bins, np.nan)
    full = counts >= 20
    profile[full] = values[starts[full] + ((counts[full] - 1) * percentile / 100).astype(np.int64)]
    if not full.any():
        return image
    profile = np.interp(np.arange(n_bins), np.flatnonzero(full), profile[full])
    profile = ndimage.gaussian_filter1d(profile, smooth_bins, mode="nearest")
    scale = np.maximum(profile - air, 1e-6 * max(1.0, abs(profile).max()))
    return ((image - air) / scale[bins][None]).astype(np.float32)


def _grain_mask_for_size(image: np.ndarray) -> np.ndarray:
    """Grain mask for the size estimate: Otsu, majority-filtered, holes filled.

    The grey values are first freed of cupping (:func:`flatten_radial_trend`),
    which otherwise puts the centre's grains below the rim's epoxy on
    low-contrast scans. The threshold is :func:`grain_mask`'s; the mask is
    cleaned here with a 5-voxel majority filter rather than an opening: noisy,
    low-contrast scans leave holes in the grains that shrink the distance map
    (0.58x estimates). When filling the holes would make the mask swallow more
    than 90 % of the sample (the cut lies in the epoxy, whose speckle forms a
    closed network on cupped, low-contrast scans), the holes are left open.
    """
    smooth = ndimage.gaussian_filter(flatten_radial_trend(image), SMOOTH_SIGMA)
    mask, sample_values = _threshold_grains(smooth, None)
    if np.ptp(sample_values) == 0:
        return mask
    # A binary median (majority) filter is a box mean above one half.
    mask = ndimage.uniform_filter(mask.astype(np.float32), 5) > 0.5
    filled = ndimage.binary_fill_holes(mask)
    sample = smooth > threshold_otsu(np.ravel(sample_values))  # everything but the air
    if filled.sum() > 0.9 * max(1, int(sample.sum())):
        return mask
    return filled


def estimate_particle_size(image, *, spacing, foreground=None,
                           eq_per_inscribed: float | None = None,
                           non_finite: NonFinite = "refuse") -> SizeEstimate:
    """Estimate the mean particle diameter of a scan from its distance map.

    The grains are found by multi-level Otsu; every local maximum of their
    Euclidean distance map is a particle centre whose depth is the radius of the
    largest inscribed ball. The mean inscribed diameter, scaled by a factor
    calibrated on synthetic grains, estimates the mean equivalent diameter.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    foreground : array_like of bool, optional
        Grain mask to use instead of the Otsu threshold.
    eq_per_inscribed : float, optional
        Ratio of the mean equivalent diameter to the mean inscribed diameter;
        default: the one calibrated for the Otsu mask (1.08). A mask that
        follows the grains more closely needs a larger one (the model's own
        mask, see :func:`ps3d_toolkit.segmentation.methods.model.segment_with_model`).
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as
        background.

    Returns
    -------
    SizeEstimate

    Raises
    ------
    InputError
        If the image holds NaN or infinite values (unless masked), or no grain
        or no particle centre is found (then pass the size).
    """
    scan = check_scan(image, spacing, None, non_finite=non_finite)
    if foreground is not None:
        foreground = np.asarray(foreground, dtype=bool)
        check_same_shape(scan.image, foreground, "image", "foreground")
        if scan.masked is not None:
            foreground = foreground & ~scan.masked
    return estimate_particle_size_of(scan.image, scan.spacing, foreground, eq_per_inscribed)


def estimate_particle_size_of(image: np.ndarray, spacing: tuple, foreground: np.ndarray | None = None,
                              eq_per_inscribed: float | None = None) -> SizeEstimate:
    """:func:`estimate_particle_size` of a checked, finite scan and spacing (no checks)."""
    from skimage.feature import peak_local_max

    if foreground is None:
        foreground = _grain_mask_for_size(image)
    if not foreground.any():
        raise InputError("estimate_particle_size found no particles in the scan "
                         "(no voxel brighter than the epoxy); pass particle_size_mm")
    distance = edt_distance(foreground, spacing)
    depth = float(np.percentile(distance[foreground], 95))
    peaks = peak_local_max(distance, min_distance=max(2, int(0.8 * depth)),
                           labels=foreground.astype(np.uint8), exclude_border=False)
    radii = distance[tuple(peaks.T)]
    # Shallow maxima are noise bumps or necks between touching grains.
    radii = radii[radii >= 0.3 * depth]
    if radii.size == 0:
        raise InputError("estimate_particle_size found no particle centres; pass particle_size_mm")
    q1, median, q3 = np.percentile(radii, [25, 50, 75])
    ratio = _EQ_DIAMETER_PER_INSCRIBED if eq_per_inscribed is None else float(eq_per_inscribed)
    diameter_mm = 2.0 * float(np.mean(radii)) * ratio * min(spacing)
    return SizeEstimate(particle_size_mm=diameter_mm, relative_spread=float((q3 - q1) / median),
                        n_particles=int(radii.size))
