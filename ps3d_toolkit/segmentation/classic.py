"""Classic particle segmenters, behind the same interface as the model.

Two baselines the model is measured against (and a fallback when no model fits):

- :func:`otsu_watershed`: multi-level Otsu threshold, Euclidean distance transform,
  markers at distance-map peaks, marker-based watershed;
- :func:`snow`: porespy's SNOW partitioning (Gostick 2017) of the same foreground.
  porespy (with vtk, pyvista and numba, ~800 MB) is the optional extra ``classic``:
  :func:`import_porespy` says so when it is missing.

Both take a grey-value scan of grains (bright) in epoxy (middle) in air (dark) and
return a uint32 label image, 0 = background, like the model's segmenter.
"""

from __future__ import annotations

import numpy as np
from skimage.feature import peak_local_max
from skimage.segmentation import watershed
from tqdm.auto import tqdm

from ps3d_toolkit.core.checks import check_positive
from ps3d_toolkit.core.errors import InputError, MissingDependencyError
from ps3d_toolkit.core.labels import drop_small_labels
from ps3d_toolkit.segmentation._checks import (
    NonFinite,
    check_fraction,
    check_n_classes,
    check_scan,
    lacks_grain_contrast,
)
from ps3d_toolkit.segmentation.grains import _distance_map, _grain_mask

__all__ = ["otsu_watershed", "snow", "BASELINES", "import_porespy", "snow_available"]

_PORESPY_MISSING = ("method 'snow' needs porespy, which is not installed: it is the optional extra "
                    "'classic' (pip install \"ps3d_toolkit[classic]\", or pip install porespy); "
                    "method 'otsu-watershed' and the model need nothing more")

# For a ball of radius R, the 95th percentile of its distance map is 0.63 R
# (the fraction of the ball deeper than d is (1 - d/R)^3).
_P95_DEPTH_FRACTION = 1 - 0.05 ** (1 / 3)


def _mask_and_distance(image: np.ndarray, spacing, n_classes: int | None, bar) -> tuple[np.ndarray, np.ndarray]:
    """Otsu grain mask and its distance map, the first steps of both segmenters.

    ``bar`` (a tqdm bar) names each step and is advanced after the threshold; the
    caller advances it after the distance step, which it completes with its own work.
    """
    bar.set_postfix_str("threshold")
    mask = _grain_mask(image, n_classes)
    bar.update()
    bar.set_postfix_str("distance transform")
    return mask, _distance_map(mask, spacing)


def _radius_vox(distance: np.ndarray, mask: np.ndarray, spacing, particle_size_mm) -> float:
    """Mean particle radius in finest-voxel units, given or estimated from the distance map."""
    if particle_size_mm is not None:
        return particle_size_mm / 2 / min(spacing)
    if not mask.any():
        return 1.0
    depth = float(np.percentile(distance[mask], 95))
    return max(1.0, depth / _P95_DEPTH_FRACTION)


def otsu_watershed(
    image,
    spacing=1.0,
    particle_size_mm=None,
    *,
    n_classes: int | None = None,
    min_distance_fraction: float = 0.6,
    min_particle_fraction: float = 0.005,
    non_finite: NonFinite = "refuse",
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
        seeds; estimated from the distance map when not given. It must span at
        least 3 voxels along every axis and fit in the scan.
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
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as
        background (label 0).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray of uint32, shape (z, y, x)
        Particle labels 1..n, 0 = background; all 0 (and a logged warning)
        for a scan without grain contrast (empty, constant or noise only).

    Raises
    ------
    InputError
        If the image is not 3D or empty or holds NaN/inf (unless masked), the
        spacing or particle size is not positive, the size spans under 3 voxels
        or exceeds the scan, or a fraction is outside its range.
    InputTypeError
        If the image does not hold real numbers.
    """
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    return scan.zero_masked(_otsu_watershed(
        scan.image, scan.spacing, scan.particle_size_mm, n_classes=n_classes,
        min_distance_fraction=min_distance_fraction, min_particle_fraction=min_particle_fraction,
        progress=progress))


def _otsu_watershed(image, spacing, particle_size_mm, *, n_classes, min_distance_fraction,
                    min_particle_fraction, progress) -> np.ndarray:
    """:func:`otsu_watershed` on checked image, spacing and size; checks its own options."""
    n_classes = check_n_classes(n_classes)
    min_particle_fraction = check_fraction(min_particle_fraction, "min_particle_fraction")
    min_distance_fraction = check_positive(min_distance_fraction, "min_distance_fraction")
    if lacks_grain_contrast(image):
        return np.zeros(image.shape, np.uint32)
    with tqdm(total=5, desc="otsu-watershed", disable=not progress) as bar:
        mask, distance = _mask_and_distance(image, spacing, n_classes, bar)
        radius = _radius_vox(distance, mask, spacing, particle_size_mm)
        bar.update()
        bar.set_postfix_str("seeds + watershed")
        labels = _seeded_watershed(mask, distance, radius, min_distance_fraction=min_distance_fraction,
                                   min_particle_fraction=min_particle_fraction)
        bar.update(3)
    return labels


def _seeded_watershed(mask: np.ndarray, distance: np.ndarray, radius: float, *, min_distance_fraction: float,
                      min_particle_fraction: float) -> np.ndarray:
    """Watershed of the distance map from its peaks, small particles dropped (the core of otsu-watershed).

    ``radius`` is the mean particle radius in voxels of the finest axis.
    Shared with the chunked run, which cuts each block's mask with the whole scan's threshold.
    """
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
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = watershed(-distance, markers, mask=mask)
    return drop_small_labels(labels, min_fraction=min_particle_fraction)


def snow(
    image,
    spacing=1.0,
    particle_size_mm=None,
    *,
    n_classes: int | None = None,
    r_max: int | None = None,
    sigma: float = 0.4,
    min_particle_fraction: float = 0.005,
    non_finite: NonFinite = "refuse",
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
        Estimated from the distance map when neither is given. It must span at
        least 3 voxels along every axis and fit in the scan.
    n_classes : int, optional
        Number of Otsu classes (see :func:`otsu_watershed`).
    r_max : int, optional
        Radius in voxels of the maximum filter that finds peaks (porespy's
        default is 4); by default half the mean particle radius, at least 2.
    sigma : float
        Gaussian blur of the distance map before the peak search, in voxels.
    min_particle_fraction : float
        Particles smaller than this fraction of the mean particle volume are removed.
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as
        background (label 0).
    progress : bool
        Show a progress bar.

    Returns
    -------
    ndarray of uint32, shape (z, y, x)
        Particle labels 1..n, 0 = background; all 0 (and a logged warning)
        for a scan without grain contrast (empty, constant or noise only).

    Raises
    ------
    InputError
        If the image is not 3D or empty or holds NaN/inf (unless masked), the
        spacing or particle size is not positive, the size spans under 3 voxels
        or exceeds the scan, ``r_max`` is not a positive integer, or a fraction
        is outside its range.
    InputTypeError
        If the image does not hold real numbers.
    """
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    return scan.zero_masked(_snow(
        scan.image, scan.spacing, scan.particle_size_mm, n_classes=n_classes, r_max=r_max, sigma=sigma,
        min_particle_fraction=min_particle_fraction, progress=progress))


def _snow(image, spacing, particle_size_mm, *, n_classes, r_max, sigma, min_particle_fraction,
          progress) -> np.ndarray:
    """:func:`snow` on checked image, spacing and size; checks its own options."""
    porespy = import_porespy()
    n_classes = check_n_classes(n_classes)
    min_particle_fraction = check_fraction(min_particle_fraction, "min_particle_fraction")
    if r_max is not None and (not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1):
        raise InputError(f"r_max must be a positive integer (voxels), got {r_max!r}")
    sigma = float(sigma)
    if not sigma >= 0:
        raise InputError(f"sigma must be a non-negative number of voxels, got {sigma!r}")
    if lacks_grain_contrast(image):
        return np.zeros(image.shape, np.uint32)
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
        labels = drop_small_labels(regions.astype(np.int64, copy=False), min_fraction=min_particle_fraction)
        bar.update()
    return labels


def snow_available() -> bool:
    """Whether porespy (the ``classic`` extra, needed by :func:`snow`) is installed; imports nothing."""
    import importlib.util

    return importlib.util.find_spec("porespy") is not None


def import_porespy():
    """porespy, or a :class:`~ps3d_toolkit.core.errors.MissingDependencyError` that names the extra.

    Raises
    ------
    MissingDependencyError
        If porespy is not installed.
    """
    try:
        import porespy
    except ImportError as error:
        raise MissingDependencyError(_PORESPY_MISSING) from error
    return porespy


#: Name -> public segmenter.
BASELINES = {"otsu-watershed": otsu_watershed, "snow": snow}
