"""SNOW: porespy's sub-network of an over-segmented watershed (Gostick 2017) of the Otsu grain mask.

SNOW finds distance-map peaks with a maximum filter, then removes peaks on saddles and peaks too
close to a deeper one before the watershed, which makes it less prone to over-segmentation than a
plain peak search. porespy (with vtk, pyvista and numba, ~800 MB) is the optional extra
``classic``: :func:`import_porespy` says so when it is missing.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.core.errors import InputError, MissingDependencyError
from ps3d_toolkit.segmentation._checks import NonFinite, check_fraction, check_n_classes
from ps3d_toolkit.segmentation.methods.base import SegmentationMethod
from ps3d_toolkit.segmentation.methods.otsu_watershed import N_CLASSES_CONTROL
from ps3d_toolkit.segmentation.methods.otsu_watershed import METHOD as OTSU_WATERSHED

__all__ = ["METHOD", "Snow", "import_porespy", "snow", "snow_available"]

_PORESPY_MISSING = ("method 'snow' needs porespy, which is not installed: it is the optional extra "
                    "'classic' (pip install \"ps3d_toolkit[classic]\", or pip install porespy); "
                    "method 'otsu-watershed' and the model need nothing more")


class Snow(SegmentationMethod):
    """porespy's SNOW partitioning of the Otsu grain mask (see the module's description).

    Options
    -------
    n_classes : int, optional
        Number of Otsu classes (as for otsu-watershed).
    r_max : int, optional
        Radius in voxels of the maximum filter that finds peaks (porespy's default is 4); by
        default half the mean particle radius, at least 2.
    sigma : float
        Gaussian blur of the distance map before the peak search, in voxels.
    min_particle_fraction : float
        Particles smaller than this fraction of the mean particle volume are removed.
    """

    name = "snow"
    defaults = {"n_classes": None, "r_max": None, "sigma": 0.4, "min_particle_fraction": 0.005}
    halo_diameters = 1.0
    #: docs/performance.md: 839 MB for 5.9 Mvoxel.
    bytes_per_voxel = 120
    controls = {
        "min_particle_fraction": ("log", 1e-4, 0.3, "drop particles below this fraction of the mean volume"),
        "n_classes": N_CLASSES_CONTROL,
        "sigma": ("float", 0.0, 2.0, "blur of the distance map (voxels) before the peak search"),
    }

    def available(self) -> bool:
        return snow_available()

    def require(self) -> None:
        import_porespy()

    def check_options(self, options: dict) -> dict:
        options = super().check_options(options)
        r_max, sigma = options["r_max"], float(options["sigma"])
        if r_max is not None and (not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1):
            raise InputError(f"r_max must be a positive integer (voxels), got {r_max!r}")
        if not sigma >= 0:
            raise InputError(f"sigma must be a non-negative number of voxels, got {sigma!r}")
        return {"n_classes": check_n_classes(options["n_classes"]), "r_max": r_max, "sigma": sigma,
                "min_particle_fraction": check_fraction(options["min_particle_fraction"], "min_particle_fraction")}

    def plan_scan(self, samples, *, spacing, particle_size_vox) -> dict:
        """The grain threshold of the whole scan's smoothed sample (as for otsu-watershed)."""
        return OTSU_WATERSHED.configure(n_classes=self.options.get("n_classes")).plan_scan(
            samples, spacing=spacing, particle_size_vox=particle_size_vox)

    def segment_block(self, block, *, plan, spacing, particle_size_vox) -> np.ndarray:
        from ps3d_toolkit.core.labels import drop_small_labels
        from ps3d_toolkit.segmentation.foreground import edt_distance, grain_mask_above

        porespy = import_porespy()
        mask = grain_mask_above(block, plan["grain_threshold"])
        if not mask.any():
            return np.zeros(block.shape, np.uint32)
        r_max = self.options["r_max"] or max(2, int(round(0.5 * particle_size_vox / 2)))
        regions = porespy.filters.snow_partitioning(mask, dt=edt_distance(mask, spacing), r_max=int(r_max),
                                                    sigma=self.options["sigma"]).regions
        labels = drop_small_labels(regions.astype(np.int64, copy=False),
                                   min_fraction=self.options["min_particle_fraction"])
        return labels.astype(np.uint32, copy=False)


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


#: The method object the registry holds.
METHOD = Snow()


def snow(image, spacing=1.0, particle_size_mm=None, *, non_finite: NonFinite = "refuse", progress: bool = True,
         **options) -> np.ndarray:
    """Segment particles with porespy's SNOW partitioning of the Otsu foreground (``segment(method="snow")``).

    Parameters
    ----------
    image : ndarray, shape (z, y, x)
        Grey-value scan; grains brighter than the epoxy, epoxy brighter than air.
    spacing : float or 3 floats
        Voxel size in mm (z, y, x). The distance map is computed with it.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; sets ``r_max`` when that is not given. Estimated
        from the scan when not given. It must span at least 3 voxels along every axis and fit in
        the scan.
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as background.
    progress : bool
        Show a progress bar.
    **options
        ``n_classes``, ``r_max``, ``sigma``, ``min_particle_fraction`` (:class:`Snow`; defaults
        in :attr:`Snow.defaults`).

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
    MissingDependencyError
        If porespy is not installed.
    """
    from ps3d_toolkit.segmentation.engine import run_method

    import_porespy()
    return run_method(image, METHOD, spacing=spacing, particle_size_mm=particle_size_mm, non_finite=non_finite,
                      progress=progress, options=options)
