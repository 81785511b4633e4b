"""The plan of a chunked run: what every block shares, computed once from the whole scan.

The values that the in-memory methods compute from the whole scan are
computed once, from a sample, and shared by every block, so that a block of
pure epoxy is cut with the same threshold as a block full of grains:

- the grain threshold (multi-level Otsu of the lightly smoothed scan) from the
  smoothed scan's strided sample. Whole z-planes (with the 2 planes on each
  side that the smoothing needs) are read and smoothed, so the sample is the
  very one ``strided_sample(gaussian_filter(scan))`` of the in-memory run: the
  same threshold, for any scan size;
- for the model, the intensity percentiles, from the raw scan's strided sample
  (as in memory) and the threshold in normalised units;
- the grain contrast (:func:`~ps3d_toolkit.segmentation._checks.grain_contrast`)
  of the raw scan's strided sample (smoothing would make noise look like
  grains): a scan without contrast gives no particles;
- the particle size, given, or estimated by ``_estimate_particle_size`` on the
  (up to) 4 blocks that hold most grain voxels, with the plan's grain mask; the
  estimates are averaged weighted by the particle centres each found (each is
  a mean over centres, so this is the mean over all). The in-memory model's
  second look at its own mask (``refine_size``) is not done.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.arrays import sample_stride
from ps3d_toolkit.core.checks import check_positive
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.segmentation._checks import (
    MIN_GRAIN_CONTRAST,
    check_fraction,
    check_n_classes,
    check_particle_size,
    grain_contrast,
)
from ps3d_toolkit.segmentation.chunked.grid import Grid
from ps3d_toolkit.segmentation.grains import _OTSU_SAMPLE, _SMOOTH_SIGMA, _estimate_particle_size, _grain_threshold

logger = logging.getLogger(__name__)

#: Halo on each side of a block, in particle diameters, by method (measured: see docs/scale.md).
#: The model's probabilities come from the whole scan's windows, so its halo serves only the
#: instance step: half a diameter agreed with the in-memory run at F1 0.998 (generated 256^3,
#: blocks of 96) in 0.46x the time of one diameter. The classic methods cut their mask and
#: distance map per region: half a diameter gave 0.980-0.989, one diameter 0.997-0.998.
DEFAULT_HALO_DIAMETERS = {"model": 0.5, "otsu-watershed": 1.0, "snow": 1.0}
# The network sees at least this many scan voxels of context beyond a block's face.
_MIN_HALO_VOXELS = 8
# Blocks on which the particle size is estimated (those with most grain voxels).
_SIZE_BLOCKS = 4
# Windows run through the network at a time, unless asked otherwise: one, not the in-memory
# run's two, because the network's activations are the largest part of a block's peak (the model
# in blocks of 128 on a 256^3 scan: 1116 MiB resident at one window, 1302 MiB at two).
_CHUNKED_BATCH_SIZE = 1
# The in-memory model's percentile sample (normalize._PERCENTILE_SAMPLE).
_PERCENTILE_SAMPLE = 4_000_000


@dataclass
class Plan:
    """What every block shares: sizes, thresholds, and the method's settings."""

    method: str
    spacing: tuple
    particle_size_mm: float
    grain_threshold: float
    has_contrast: bool
    percentiles: tuple = (0.0, 1.0)
    settings: dict = field(default_factory=dict)
    #: With non_finite="mask": the grey value NaN/inf voxels are read as (the in-memory
    #: run's 0.5th percentile of the finite values); None: they are refused.
    fill: float | None = None
    #: The grain polarity used (the grey values are turned round for "darker").
    grains: str = "brighter"
    #: The sample region (:class:`~ps3d_toolkit.segmentation.region.SampleRegion`); None: the whole scan.
    region: object = None

    def key(self, grid: Grid) -> dict:
        """What a resumed run must share with the interrupted one (JSON-ready)."""
        return {"method": self.method, "shape": list(grid.shape), "block": list(grid.block),
                "halo": list(grid.halo), "spacing": list(self.spacing),
                "particle_size_mm": self.particle_size_mm, "grain_threshold": self.grain_threshold,
                "percentiles": list(self.percentiles), "fill": self.fill, "grains": self.grains,
                "region": None if self.region is None else str(self.region)}



def halo_voxels(plan: Plan, halo_diameters) -> tuple:
    """Halo per axis in voxels: ``halo_diameters`` particle diameters, at least 8 voxels."""
    halo_diameters = DEFAULT_HALO_DIAMETERS[plan.method] if halo_diameters is None else halo_diameters
    halo_diameters = check_positive(halo_diameters, "halo_diameters")
    if math.isnan(plan.particle_size_mm):  # no grain contrast, no size: nothing to segment
        return (_MIN_HALO_VOXELS,) * 3
    return tuple(max(_MIN_HALO_VOXELS, math.ceil(halo_diameters * plan.particle_size_mm / s))
                 for s in plan.spacing)


def _smoothed_sample(image, max_values: int, fill: float | None) -> np.ndarray:
    """``strided_sample(gaussian_filter(image, 0.5), max_values)``, reading 5 z-planes per sampled plane."""
    shape = image.shape
    stride = sample_stride(shape, max_values)
    # gaussian_filter's reach: truncate 4.0 x sigma 0.5 = 2 voxels
    reach = int(4.0 * _SMOOTH_SIGMA + 0.5)
    planes = []
    for z in range(0, shape[0], stride):
        z0, z1 = max(0, z - reach), min(shape[0], z + reach + 1)
        slab = np.asarray(image[z0:z1], dtype=np.float32)
        if fill is not None:
            slab[~np.isfinite(slab)] = fill
        smooth = ndimage.gaussian_filter(slab, _SMOOTH_SIGMA)
        planes.append(smooth[z - z0, ::stride, ::stride].copy())  # a view would keep the whole slab
    return np.stack(planes)


def make_plan(image, spacing, particle_size_mm, method, block, options) -> Plan:
    """The shared plan: thresholds and contrast from the sample, the size given or estimated."""
    from ps3d_toolkit.core.arrays import strided_sample

    non_finite = options.get("non_finite", "refuse")
    settings = _method_settings(method, options)
    raw = strided_sample(image, _PERCENTILE_SAMPLE).astype(np.float32, copy=False)
    fill = _fill_value(raw) if non_finite == "mask" else None
    if fill is not None:
        raw = np.where(np.isfinite(raw), raw, np.float32(fill))
    smooth = _smoothed_sample(image, _OTSU_SAMPLE, fill)
    if not np.isfinite(smooth).all():
        raise InputError("image holds NaN or infinite grey values; fix the scan, or pass non_finite='mask' "
                         "to treat those voxels as background")
    # the contrast of the raw values, as in memory: smoothing makes noise look like grains
    contrast = grain_contrast(raw) if np.ptp(raw) > 0 else 0.0
    percentiles = (0.0, 1.0)
    if method == "model":
        lo, hi = np.percentile(raw, settings["intensity_percentiles"])
        percentiles = (float(lo), float(hi - lo) if hi > lo else 1.0)
        smooth = (smooth - np.float32(lo)) / np.float32(percentiles[1])
    n_classes = settings.get("n_classes")
    threshold = float(_grain_threshold(smooth.ravel(), n_classes)) if np.ptp(smooth) > 0 else math.inf
    plan = Plan(method, spacing, particle_size_mm or math.nan, threshold,
                contrast >= MIN_GRAIN_CONTRAST, percentiles, settings, fill)
    if not plan.has_contrast:
        logger.warning("the scan shows no grain contrast (block contrast %.3g, below %g: empty, constant or "
                       "noise only): no particles", contrast, MIN_GRAIN_CONTRAST)
    if particle_size_mm is None:
        plan.particle_size_mm = _estimate_size(image, plan, smooth, block) if plan.has_contrast else math.nan
    return plan


def _fill_value(raw: np.ndarray) -> float:
    """The grey value of masked voxels: as ``_checks.finite_image``, the 0.5th percentile of the finite sample."""
    from ps3d_toolkit.segmentation._checks import _MASK_PERCENTILE

    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        raise InputError("image holds no finite grey value in its sample (NaN or infinite everywhere looked at)")
    return float(np.percentile(finite, _MASK_PERCENTILE))


def _method_settings(method: str, options: dict) -> dict:
    """The method's options with its defaults, checked; the model's network loaded once."""
    from ps3d_toolkit.segmentation.registry import method_function

    defaults = {k: v for k, v in method_function(method).__kwdefaults__.items()
                if k not in ("non_finite", "progress")}
    from ps3d_toolkit.core.checks import check_non_finite

    check_non_finite(options.get("non_finite", "refuse"))
    options = {k: v for k, v in options.items() if k != "non_finite"}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InputTypeError(f"{method} got unexpected option(s) {unknown}; its options are {sorted(defaults)}")
    settings = {**defaults, **options}
    if method == "model" and "batch_size" not in options:
        settings["batch_size"] = _CHUNKED_BATCH_SIZE
    if method == "otsu-watershed":
        return dict(n_classes=check_n_classes(settings["n_classes"]),
                    min_distance_fraction=check_positive(settings["min_distance_fraction"],
                                                         "min_distance_fraction"),
                    min_particle_fraction=check_fraction(settings["min_particle_fraction"],
                                                         "min_particle_fraction"))
    if method == "snow":
        return _snow_settings(settings)
    return _model_settings(settings)


def _snow_settings(settings: dict) -> dict:
    """SNOW's options, checked as ``classic._snow`` does."""
    r_max, sigma = settings["r_max"], float(settings["sigma"])
    if r_max is not None and (not isinstance(r_max, (int, np.integer)) or isinstance(r_max, bool) or r_max < 1):
        raise InputError(f"r_max must be a positive integer (voxels), got {r_max!r}")
    if not sigma >= 0:
        raise InputError(f"sigma must be a non-negative number of voxels, got {sigma!r}")
    return dict(n_classes=check_n_classes(settings["n_classes"]), r_max=r_max, sigma=sigma,
                min_particle_fraction=check_fraction(settings["min_particle_fraction"], "min_particle_fraction"))


def _model_settings(settings: dict) -> dict:
    """The model's network, window and instance settings, checked as ``_run_model`` does.

    The plan keeps the weights (a file, or a ``(model, config)`` pair) rather
    than the loaded network, so that it travels to Dask workers; each process
    loads the network once (``inference.load_model`` caches it).
    """
    from ps3d_toolkit.segmentation.model import inference as m
    from ps3d_toolkit.segmentation.normalize import _check_percentiles

    device = m.select_device(settings["device"])
    tta = m._check_tta(settings["tta"], device)
    m._check_window(settings["roi_size"], settings["overlap"], settings["batch_size"])
    _, config = m._open_model(settings["weights"], device)
    return dict(
        intensity_percentiles=_check_percentiles(config["intensity_percentiles"]), tta=tta,
        budget=m.memory_budget_bytes(settings["memory_limit_gb"]),
        weights=settings["weights"], device=str(device),
        diameter_vox=m._inference_diameter_vox(config, settings["inference_diameter_vox"]),
        window=dict(roi_size=settings["roi_size"], overlap=settings["overlap"], batch_size=int(settings["batch_size"])),
        instances=dict(core_threshold=m._core_threshold(settings["core_threshold"], config),
                       min_core_voxels=settings["min_core_voxels"],
                       min_particle_fraction=check_fraction(settings["min_particle_fraction"],
                                                            "min_particle_fraction")))


def _estimate_size(image, plan: Plan, smooth: np.ndarray, block: tuple) -> float:
    """The particle size from the blocks with most grain voxels in the sample, weighted by centres found."""
    grid = Grid(tuple(image.shape), block, (0, 0, 0))
    stride = sample_stride(image.shape, _OTSU_SAMPLE)
    bright = smooth > plan.grain_threshold
    share = {}
    for index in grid.indices():
        cut = tuple(slice(s.start // stride, -(-s.stop // stride)) for s in grid.core(index))
        share[index] = float(bright[cut].mean()) if bright[cut].size else 0.0
    sizes, weights = [], []
    for index in sorted(share, key=share.get, reverse=True)[:_SIZE_BLOCKS]:
        region = read_region(image, grid.core(index), plan.fill)
        try:
            estimate = _estimate_particle_size(region, plan.spacing, grain_mask(scaled(region, plan), plan),
                                               None)
        except InputError:  # no grain in this block
            continue
        sizes.append(estimate.particle_size_mm)
        weights.append(estimate.n_particles)
    if not sizes:
        raise InputError("segment_chunked found no particles in the blocks it estimates the size on; "
                         "pass particle_size_mm")
    size = float(np.average(sizes, weights=weights))
    logger.info("estimated particle size %.4g mm (from %d particles in %d blocks)", size, sum(weights), len(sizes))
    return check_particle_size(size, plan.spacing, image.shape, estimated=True)




def read_region(image, region: tuple, fill: float | None = None) -> np.ndarray:
    """A region of the scan as numpy; NaN or infinite grey values read as ``fill``, or refused naming the region."""
    return read_region_masked(image, region, fill)[0]


def read_region_masked(image, region: tuple, fill: float | None) -> tuple:
    """A region's grey values (NaN/inf read as ``fill``) and where they were not finite (None: nowhere).

    Raises
    ------
    InputError
        For NaN or infinite values when ``fill`` is None (non_finite="refuse").
    """
    values = np.asarray(image[region])
    if values.dtype.kind != "f":
        return values, None
    finite = np.isfinite(values)
    if finite.all():
        return values, None
    if fill is None:
        raise InputError(f"image holds NaN or infinite grey values in {region_text(region)}; fix the scan, "
                         "or pass non_finite='mask' to treat those voxels as background")
    return np.where(finite, values, values.dtype.type(fill)), ~finite


def region_text(region: tuple) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def scaled(region: np.ndarray, plan: Plan) -> np.ndarray:
    """The region's grey values in the units of the plan's threshold (normalised for the model)."""
    out = region.astype(np.float32, copy=True)
    if plan.method == "model":
        out -= np.float32(plan.percentiles[0])
        out /= np.float32(plan.percentiles[1])
    return out


def grain_mask(values: np.ndarray, plan: Plan) -> np.ndarray:
    """``grains._grain_mask`` with the plan's threshold: smoothed, cut, opened, holes filled."""
    mask = ndimage.gaussian_filter(values, _SMOOTH_SIGMA) > plan.grain_threshold
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    return ndimage.binary_fill_holes(mask)
