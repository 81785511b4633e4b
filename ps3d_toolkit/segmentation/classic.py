"""Classic particle segmenters, behind the same interface as the model.

Two baselines the model is measured against (and a fallback when no model fits):

- :func:`otsu_watershed`: multi-level Otsu threshold, Euclidean distance transform,
  markers at distance-map peaks, marker-based watershed;
- :func:`snow`: porespy's SNOW partitioning (Gostick 2017) of the same foreground.

Both take a grey-value scan of grains (bright) in epoxy (middle) in air (dark) and
return a uint32 label image, 0 = background, like the model's segmenter.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_multiotsu
from skimage.segmentation import watershed
from tqdm.auto import tqdm

from ps3d_toolkit.core.checks import check_positive, check_spacing, check_volume

__all__ = ["otsu_watershed", "snow", "grain_threshold", "threshold_grains", "otsu_sample",
           "distance_map", "BASELINES"]

# Otsu on a strided subsample: the histogram of a few million voxels is as good as
# that of a billion, and the full-volume histogram dominates the run time otherwise.
_OTSU_SAMPLE = 2_000_000

# For a ball of radius R, the 95th percentile of its distance map is 0.63 R
# (the fraction of the ball deeper than d is (1 - d/R)^3).
_P95_DEPTH_FRACTION = 1 - 0.05 ** (1 / 3)


def _check_common(image, spacing, particle_size_mm, min_particle_fraction):
    image = check_volume(image, "image")
    spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if not isinstance(min_particle_fraction, (int, float)) or isinstance(min_particle_fraction, bool):
        raise TypeError(f"min_particle_fraction must be a number, got {min_particle_fraction!r}")
    if not 0 <= min_particle_fraction < 1:
        raise ValueError(f"min_particle_fraction must be in [0, 1), got {min_particle_fraction!r}")
    return image, spacing, particle_size_mm


def _check_n_classes(n_classes):
    if n_classes is None:
        return None
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be None (automatic) or an integer >= 2, got {n_classes!r}")
    return int(n_classes)


def otsu_sample(image: np.ndarray) -> np.ndarray:
    """A strided sub-sample of ~2 M voxels on which the Otsu thresholds are computed."""
    stride = max(1, int(np.ceil((image.size / _OTSU_SAMPLE) ** (1 / 3))))
    return image[::stride, ::stride, ::stride]


def grain_threshold(sample: np.ndarray, n_classes: int | None = None) -> float:
    """Grey value above which a voxel is grain (see :func:`_foreground_mask`).

    Parameters
    ----------
    sample : np.ndarray
        Grey values (e.g. :func:`otsu_sample` of a lightly smoothed scan).
    n_classes : int or None
        Otsu classes; ``None`` chooses 3 or 4 from the histogram.

    Returns
    -------
    float
    """
    n_classes = _check_n_classes(n_classes)
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


def threshold_grains(smooth: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of a (smoothed) scan above :func:`grain_threshold`, and the sub-sample it used.

    Returns
    -------
    mask, sample
        Boolean grain mask (all False for a scan of one grey value) and the
        :func:`otsu_sample` the threshold was computed on.
    """
    sample = otsu_sample(smooth)
    if np.ptp(sample) == 0:
        return np.zeros(smooth.shape, bool), sample
    return smooth > grain_threshold(sample, n_classes), sample


def _foreground_mask(image: np.ndarray, *, n_classes: int | None = None, smooth_sigma: float = 0.5) -> np.ndarray:
    """Grain voxels: brighter than the epoxy, found by multi-level Otsu.

    The scan holds air (darkest), epoxy and one or more grain phases (brightest). With
    ``n_classes >= 3`` the two darkest classes are taken as air and epoxy and every
    brighter class is grain, so that grains of several mineral phases all count; with
    ``n_classes == 2`` (a crop without air) only the darkest class is background;
    ``None`` chooses 3 or 4 classes from the histogram. A light Gaussian smoothing
    before the threshold and a binary opening after it keep noise from making
    speckles; enclosed holes (inclusions, closed cracks) are filled.
    """
    n_classes = _check_n_classes(n_classes)
    image = image.astype(np.float32, copy=False)
    if smooth_sigma > 0:
        image = ndimage.gaussian_filter(image, smooth_sigma)
    mask, sample = threshold_grains(image, n_classes)
    if np.ptp(sample) == 0:
        return mask
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    return ndimage.binary_fill_holes(mask)


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
    import edt

    anisotropy = tuple(float(s) / min(spacing) for s in spacing)
    return edt.edt(np.ascontiguousarray(mask, dtype=bool), anisotropy=anisotropy,
                   black_border=False, parallel=1).astype(np.float32, copy=False)


def _mask_and_distance(image: np.ndarray, spacing, n_classes: int | None, bar) -> tuple[np.ndarray, np.ndarray]:
    """Otsu grain mask and its distance map, the first steps of both segmenters.

    ``bar`` (a tqdm bar) names each step and is advanced after the threshold; the
    caller advances it after the distance step, which it completes with its own work.
    """
    bar.set_postfix_str("threshold")
    mask = _foreground_mask(image, n_classes=n_classes)
    bar.update()
    bar.set_postfix_str("distance transform")
    return mask, distance_map(mask, spacing)


def _radius_vox(distance: np.ndarray, mask: np.ndarray, spacing, particle_size_mm) -> float:
    """Mean particle radius in finest-voxel units, given or estimated from the distance map."""
    if particle_size_mm is not None:
        return particle_size_mm / 2 / min(spacing)
    if not mask.any():
        return 1.0
    depth = float(np.percentile(distance[mask], 95))
    return max(1.0, depth / _P95_DEPTH_FRACTION)


def _drop_small(labels: np.ndarray, min_particle_fraction: float) -> np.ndarray:
    """Remove particles below a fraction of the mean volume; relabel 1..n as uint32."""
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    present = sizes > 0
    if present.any() and min_particle_fraction > 0:
        present &= sizes >= min_particle_fraction * sizes[present].mean()
    lut = np.zeros(sizes.size, np.uint32)
    lut[present] = np.arange(1, np.count_nonzero(present) + 1, dtype=np.uint32)
    return lut[labels]


def otsu_watershed(
    image,
    spacing=1.0,
    particle_size_mm=None,
    *,
    n_classes: int | None = None,
    min_distance_fraction: float = 0.6,
    min_particle_fraction: float = 0.005,
    progress: bool = True,
) -> np.ndarray:
    """Segment particles by Otsu threshold, distance transform and watershed.

    The classic pipeline: multi-level Otsu separates grains from epoxy and air, the
    Euclidean distance map of the grains (in physical units) peaks at grain centres,
    each peak seeds a watershed of the inverted distance map inside the grains, and
    particles far smaller than the mean are dropped.

    Parameters
    ----------
    image : ndarray, shape (z, y, x)
        Grey-value scan; grains brighter than the epoxy, epoxy brighter than air.
    spacing : float or 3 floats
        Voxel size in mm (z, y, x). Only its anisotropy matters unless
        ``particle_size_mm`` is given.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm. Sets the minimum distance between two
        seeds; estimated from the distance map when not given.
    n_classes : int, optional
        Number of Otsu classes. The two darkest are background (air, epoxy) when
        ``n_classes >= 3``, every brighter class is grain (grains may hold several
        mineral phases); use 2 for a crop without air. By default 3 or 4, chosen
        from the histogram (4 when the grains show two distinct grey levels).
    min_distance_fraction : float
        Minimum distance between seeds as a fraction of the mean particle radius.
        Smaller values split more (elongated grains break up), larger values merge
        more (touching grains stay together).
    min_particle_fraction : float
        Particles smaller than this fraction of the mean particle volume are
        removed (ParticleSeg3D uses 0.005).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray of uint32, shape (z, y, x)
        Particle labels 1..n, 0 = background.

    Raises
    ------
    ValueError
        If the image is not 3D or empty, spacing or particle size is not positive,
        or a fraction is outside its range.
    TypeError
        If the image does not hold numbers.
    """
    image, spacing, particle_size_mm = _check_common(image, spacing, particle_size_mm, min_particle_fraction)
    min_distance_fraction = check_positive(min_distance_fraction, "min_distance_fraction")
    with tqdm(total=5, desc="otsu-watershed", disable=not progress) as bar:
        mask, distance = _mask_and_distance(image, spacing, n_classes, bar)
        radius = _radius_vox(distance, mask, spacing, particle_size_mm)
        bar.update()
        bar.set_postfix_str("seeds")
        # min_distance_fraction = 0.6 and SNOW's r_max = R / 2 were the best of a small
        # sweep on synthetic scans (seed 1; medium and hard presets) that the
        # benchmark does not use.
        # Peaks shallower than a fifth of a radius are debris or rough surface, not grains.
        peaks = peak_local_max(
            distance,
            min_distance=max(1, int(round(min_distance_fraction * radius))),
            threshold_abs=max(1.0, 0.2 * radius),
            exclude_border=False,
        )
        markers = np.zeros(image.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
        bar.update()
        bar.set_postfix_str("watershed")
        labels = watershed(-distance, markers, mask=mask)
        bar.update()
        bar.set_postfix_str("filter")
        labels = _drop_small(labels, min_particle_fraction)
        bar.update()
    return labels


def snow(
    image,
    spacing=1.0,
    particle_size_mm=None,
    *,
    n_classes: int | None = None,
    r_max: int | None = None,
    sigma: float = 0.4,
    min_particle_fraction: float = 0.005,
    progress: bool = True,
) -> np.ndarray:
    """Segment particles with porespy's SNOW partitioning of the Otsu foreground.

    SNOW (Sub-Network of an Over-segmented Watershed) finds distance-map peaks with
    a maximum filter, then removes peaks on saddles and peaks too close to a deeper
    one before the watershed, which makes it less prone to over-segmentation than a
    plain peak search.

    Parameters
    ----------
    image : ndarray, shape (z, y, x)
        Grey-value scan; grains brighter than the epoxy, epoxy brighter than air.
    spacing : float or 3 floats
        Voxel size in mm (z, y, x). The distance map is computed with it.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; sets ``r_max`` when that is not given.
        Estimated from the distance map when neither is given.
    n_classes : int, optional
        Number of Otsu classes (see :func:`otsu_watershed`).
    r_max : int, optional
        Radius in voxels of the maximum filter that finds peaks (porespy's
        default is 4); by default half the mean particle radius, at least 2.
    sigma : float
        Gaussian blur of the distance map before the peak search, in voxels.
    min_particle_fraction : float
        Particles smaller than this fraction of the mean particle volume are removed.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray of uint32, shape (z, y, x)
        Particle labels 1..n, 0 = background.

    Raises
    ------
    ValueError
        If the image is not 3D or empty, spacing or particle size is not positive,
        ``r_max`` is not a positive integer, or a fraction is outside its range.
    TypeError
        If the image does not hold numbers.
    """
    import porespy

    image, spacing, particle_size_mm = _check_common(image, spacing, particle_size_mm, min_particle_fraction)
    if r_max is not None and (not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1):
        raise ValueError(f"r_max must be a positive integer (voxels), got {r_max!r}")
    sigma = float(sigma)
    if not sigma >= 0:
        raise ValueError(f"sigma must be a non-negative number of voxels, got {sigma!r}")
    with tqdm(total=3, desc="snow", disable=not progress) as bar:
        mask, distance = _mask_and_distance(image, spacing, n_classes, bar)
        if r_max is None:
            radius = _radius_vox(distance, mask, spacing, particle_size_mm)
            r_max = max(2, int(round(0.5 * radius)))
        bar.update()
        bar.set_postfix_str("SNOW")
        if mask.any():
            regions = porespy.filters.snow_partitioning(mask, dt=distance, r_max=int(r_max), sigma=sigma).regions
        else:
            regions = np.zeros(image.shape, np.uint32)
        labels = _drop_small(regions.astype(np.int64, copy=False), min_particle_fraction)
        bar.update()
    return labels


#: Name -> segmenter, for the command line's ``--method``.
BASELINES = {"otsu-watershed": otsu_watershed, "snow": snow}
