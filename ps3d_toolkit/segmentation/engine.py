"""The block engine's core: a scan's plan, shared by every block, and one region segmented by a method.

A run over any scan is the same three steps, whatever its size and wherever it runs:

1. :func:`open_scan`: the scan checked, its sample region and grain polarity resolved once
   (grey values turned round for ``grains="darker"``, the outside of a mask set to its matrix);
2. :func:`make_plan`: what every block shares, from samples of the whole scan: the fill of
   non-finite voxels, the grain contrast, the particle size (given, or estimated once), and the
   method's own plan (:meth:`~ps3d_toolkit.segmentation.methods.base.SegmentationMethod.plan`);
3. :func:`segment_region`: one region (a block and its halo) by the method.

In memory, the region is the whole scan (:func:`segment_whole`); in blocks,
:mod:`ps3d_toolkit.segmentation.chunked` tiles the scan, runs step 3 on each block (in this process
or on Dask) and stitches the labels across block faces.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.arrays import sample_stride, strided_sample
from ps3d_toolkit.core.checks import check_lazy_volume, check_non_finite, check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation._checks import (
    MASK_PERCENTILE,
    check_finite_values,
    MIN_GRAIN_CONTRAST,
    check_particle_size,
    grain_contrast,
    shows_grains,
    size_in_voxels,
    zero_where,
)
from ps3d_toolkit.segmentation.foreground import (
    OTSU_SAMPLE,
    SMOOTH_SIGMA,
    SizeEstimate,
    estimate_particle_size_of,
    grain_threshold,
)
from ps3d_toolkit.segmentation.region import prepare_scan, resolve_region

__all__ = ["Plan", "RAW_SAMPLE", "ScanSamples", "halo_voxels", "make_plan", "open_scan", "read_region", "read_region_masked",
           "run_method", "segment_region", "segment_whole"]

logger = logging.getLogger(__name__)

#: Values in the raw sample a plan sees (percentiles, contrast, the fill of non-finite voxels).
RAW_SAMPLE = 4_000_000
# The network and the classic methods see at least this many voxels of context beyond a block's face.
_MIN_HALO_VOXELS = 8
# Blocks on which the particle size is estimated (those with most grain voxels in the sample).
_SIZE_BLOCKS = 4


class ScanSamples(NamedTuple):
    """What a method's plan sees of the whole scan.

    Attributes
    ----------
    raw : np.ndarray
        A strided sample of the grey values (float32, grains bright, non-finite values filled).
    smoothed : np.ndarray
        The strided sample of the lightly smoothed scan (Gaussian, sigma 0.5 voxel), whose
        multi-level Otsu threshold the built-in methods share.
    """

    raw: np.ndarray
    smoothed: np.ndarray


@dataclass
class Plan:
    """What every block of a run shares.

    Attributes
    ----------
    method : SegmentationMethod
        The configured method.
    spacing : tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float
        Given or estimated; NaN when the scan has no grain contrast and no size was given.
    has_contrast : bool
        Whether the scan shows grains at all (else no block is segmented).
    method_plan : dict
        The method's own plan (thresholds, percentiles).
    fill : float or None
        The grey value NaN/inf voxels are read as (``non_finite="mask"``); None: they are refused.
    grains : str
        The grain polarity used.
    region : SampleRegion or None
        The sample region; None: the whole scan.
    size_estimate : SizeEstimate or None
        The estimate, when the size was not given.
    """

    method: object
    spacing: tuple
    particle_size_mm: float
    has_contrast: bool
    method_plan: dict = dataclasses.field(default_factory=dict)
    fill: float | None = None
    grains: str = "brighter"
    region: object = None
    size_estimate: SizeEstimate | None = None
    #: A method's second estimate of the size, on its own labels (the model's ``second_look``).
    second_estimate: SizeEstimate | None = None

    @property
    def particle_size_vox(self) -> float:
        return size_in_voxels(self.particle_size_mm, self.spacing)

    @property
    def runs(self) -> bool:
        """Whether there is anything to segment (grains, and a size)."""
        return self.has_contrast and not math.isnan(self.particle_size_mm)

    def key(self, grid) -> dict:
        """What a resumed run must share with the interrupted one (JSON-ready)."""
        return {"method": self.method.name, "shape": list(grid.shape), "block": list(grid.block),
                "halo": list(grid.halo), "spacing": list(self.spacing), "particle_size_mm": self.particle_size_mm,
                "plan": json.loads(json.dumps(self.method_plan, default=str)),
                "options": json.loads(json.dumps(self.method.options, sort_keys=True, default=str)),
                "fill": self.fill, "grains": self.grains, "region": None if self.region is None else str(self.region)}


def open_scan(image, *, spacing, particle_size_mm=None, grains="brighter", roi=None, mask=None):
    """The scan as every method sees it, checked once: (prepared image, spacing, size, grains, region).

    Only the shape and the samples are read (a lazy scan stays lazy).

    Raises
    ------
    InputError
        For an invalid image, spacing, particle size, region or polarity.
    """
    image = check_lazy_volume(image, "image")
    spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if particle_size_mm is not None:
        check_particle_size(particle_size_mm, spacing, image.shape)
    region = resolve_region(image, roi=roi, mask=mask, spacing=spacing)
    image, grains, _ = prepare_scan(image, grains=grains, region=region,
                                    particle_size_vox=size_in_voxels(particle_size_mm, spacing))
    return image, spacing, particle_size_mm, grains, region


def smoothed_sample(image, max_values: int, fill: float | None) -> np.ndarray:
    """``strided_sample(gaussian_filter(image, 0.5), max_values)``, reading 5 z-planes per sampled plane."""
    shape = image.shape
    stride = sample_stride(shape, max_values)
    if stride == 1:  # the whole scan is the sample: smoothed in one piece (the same values)
        whole = np.asarray(image, dtype=np.float32)
        if fill is not None:
            whole = np.where(np.isfinite(whole), whole, np.float32(fill))
        return ndimage.gaussian_filter(whole, SMOOTH_SIGMA)
    reach = int(4.0 * SMOOTH_SIGMA + 0.5)  # gaussian_filter's reach: truncate 4.0 x sigma
    planes = []
    for z in range(0, shape[0], stride):
        z0, z1 = max(0, z - reach), min(shape[0], z + reach + 1)
        slab = np.asarray(image[z0:z1], dtype=np.float32)
        if fill is not None:
            slab[~np.isfinite(slab)] = fill
        smooth = ndimage.gaussian_filter(slab, SMOOTH_SIGMA)
        planes.append(smooth[z - z0, ::stride, ::stride].copy())  # a view would keep the whole slab
    return np.stack(planes)


def make_plan(image, method, *, spacing, particle_size_mm, non_finite="refuse", cores=None,
              grains="brighter", region=None, stages=None) -> Plan:
    """The run's plan: fill, contrast and size from samples of the whole scan, then the method's plan.

    ``cores`` are the boxes (tuples of slices) of the blocks that tile the scan (the whole scan
    when None); the size, when not given, is estimated once on the (up to) 4 blocks with most
    grain voxels, weighted by the particle centres each found. ``stages`` (optional) names the
    steps on a progress display ("sample", "estimate size").
    """
    check_non_finite(non_finite)
    _start(stages, "sample")
    raw = strided_sample(image, RAW_SAMPLE).astype(np.float32, copy=False)
    fill = fill_value(raw) if non_finite == "mask" else None
    if fill is not None:
        raw = np.where(np.isfinite(raw), raw, np.float32(fill))
    smooth = smoothed_sample(image, OTSU_SAMPLE, fill)
    if not np.isfinite(smooth).all():
        raise InputError("image holds NaN or infinite grey values; fix the scan, or pass non_finite='mask' "
                         "to treat those voxels as background")
    # the contrast of the raw values: smoothing makes noise look like grains
    contrast = grain_contrast(raw) if np.ptp(raw) > 0 else 0.0
    plan = Plan(method, spacing, particle_size_mm or math.nan, contrast >= MIN_GRAIN_CONTRAST, fill=fill,
                grains=grains, region=region)
    if not plan.has_contrast:
        logger.warning("the scan shows no grain contrast (block contrast %.3g, below %g: empty, constant or "
                       "noise only): no particles", contrast, MIN_GRAIN_CONTRAST)
        return plan
    if particle_size_mm is None:
        _start(stages, "estimate size")
        cores = cores or [tuple(slice(0, n) for n in image.shape)]
        plan.size_estimate = _estimate_size(image, spacing, smooth, cores, fill)
        plan.particle_size_mm = check_particle_size(plan.size_estimate.particle_size_mm, spacing, image.shape,
                                                    estimated=True)
    block = tuple(image.shape) if cores is None else tuple(s.stop - s.start for s in cores[0])
    method.check_scale(block, spacing, plan.particle_size_mm,
                       estimated=particle_size_mm is None)
    plan.method_plan = method.plan_scan(ScanSamples(raw, smooth), spacing=spacing,
                                        particle_size_vox=plan.particle_size_vox)
    return plan


def fill_value(raw: np.ndarray) -> float:
    """The grey value of non-finite voxels: the 0.5th percentile of the finite sample (the darkest material)."""
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        raise InputError("image holds no finite grey value in its sample (NaN or infinite everywhere looked at)")
    return float(np.percentile(finite, MASK_PERCENTILE))


def _estimate_size(image, spacing, smooth: np.ndarray, cores: list, fill) -> SizeEstimate:
    """The particle size from the blocks with most grain voxels in the sample, weighted by centres found."""
    stride = sample_stride(image.shape, OTSU_SAMPLE)
    bright = smooth > grain_threshold(smooth.ravel(), None) if np.ptp(smooth) > 0 else np.zeros(smooth.shape, bool)
    share = []
    for core in cores:
        cut = tuple(slice(s.start // stride, -(-s.stop // stride)) for s in core)
        share.append(float(bright[cut].mean()) if bright[cut].size else 0.0)
    estimates = []
    for i in sorted(range(len(cores)), key=share.__getitem__, reverse=True)[:_SIZE_BLOCKS]:
        try:
            estimates.append(estimate_particle_size_of(read_region(image, cores[i], fill), spacing))
        except InputError:  # no grain in this block
            continue
    if not estimates:
        raise InputError("found no particles to estimate the particle size on; pass particle_size_mm")
    if len(estimates) == 1:
        estimate = estimates[0]
    else:
        weights = [e.n_particles for e in estimates]
        estimate = SizeEstimate(float(np.average([e.particle_size_mm for e in estimates], weights=weights)),
                                float(np.average([e.relative_spread for e in estimates], weights=weights)),
                                int(sum(weights)))
    logger.info("%s", estimate)
    return estimate


def halo_voxels(plan: Plan, halo_diameters) -> tuple:
    """Halo per axis in voxels: ``halo_diameters`` particle diameters (the method's own by default), at least 8."""
    halo_diameters = plan.method.halo_diameters if halo_diameters is None else halo_diameters
    halo_diameters = check_positive(halo_diameters, "halo_diameters")
    if math.isnan(plan.particle_size_mm):  # no grain contrast, no size: nothing to segment
        return (_MIN_HALO_VOXELS,) * 3
    return tuple(max(_MIN_HALO_VOXELS, math.ceil(halo_diameters * plan.particle_size_mm / s))
                 for s in plan.spacing)


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


def segment_region(values: np.ndarray, masked, plan: Plan, box: tuple, shared=None, stages=None,
                   whole: bool = False) -> np.ndarray:
    """uint32 labels of one region (grey ``values`` of the scan's ``box``) by the plan's method.

    ``shared`` is the method's work shared across blocks (the model's windows over the whole
    scan), when it has any; ``stages`` a progress display the method may name its steps on (a
    method with ``reports_stages``). A block without grain contrast of its own holds no
    particles and is not segmented (the whole scan's contrast is the plan's). Non-finite voxels
    and the outside of the sample region are background.
    """
    if not plan.runs or not (whole or shows_grains(values)):
        return np.zeros(values.shape, np.uint32)
    method = plan.method
    if shared is not None:
        labels = shared.segment(values, box)
    elif getattr(method, "reports_stages", False):
        labels = method.segment_block(values, plan=plan.method_plan, spacing=plan.spacing,
                                      particle_size_vox=plan.particle_size_vox, stages=stages)
    else:
        labels = method.segment_block(values, plan=plan.method_plan, spacing=plan.spacing,
                                      particle_size_vox=plan.particle_size_vox)
    labels = np.asarray(labels).astype(np.uint32, copy=False)
    if masked is not None:
        labels[masked] = 0
    if plan.region is not None:
        labels[~plan.region.at(box)] = 0
    return labels


def segment_whole(image, method, *, spacing, particle_size_mm=None, non_finite="refuse", grains="brighter",
                  region=None, stages=None) -> tuple:
    """The block engine on one block, the whole (prepared) scan: (labels numbered 1..n, plan).

    A method with a ``second_look`` (the model) may run once more at the size it finds on its own
    labels when the size was estimated.
    """
    plan = make_plan(image, method, spacing=spacing, particle_size_mm=particle_size_mm, non_finite=non_finite,
                     grains=grains, region=region, stages=stages)
    if not plan.runs:
        return np.zeros(image.shape, np.uint32), plan
    _start(stages, "read")
    box = tuple(slice(0, n) for n in image.shape)
    values, masked = read_region_masked(image, box, plan.fill)
    if not getattr(method, "reports_stages", False):
        _start(stages, "segment")
    labels = segment_region(values, None, plan, box, stages=stages, whole=True)
    second_look = getattr(method, "second_look", None)
    if plan.size_estimate is not None and second_look is not None and labels.any():
        _start(stages, "estimate size")
        size = second_look(values, labels, plan)
        if size is not None:
            plan.particle_size_mm = size
            labels = segment_region(values, None, plan, box, stages=stages, whole=True)
    if masked is not None:
        labels = zero_where(labels, masked)
    if region is not None:
        labels = zero_where(labels, ~region.full())
    return labels, plan


def _start(stages, name: str) -> None:
    if stages is not None:
        stages.start(name)


def run_method(image, method, *, spacing, particle_size_mm=None, non_finite="refuse", grains="brighter", roi=None,
               mask=None, progress=True, options=None, with_plan: bool = False):
    """Segment a whole scan in memory by ``method`` (an unconfigured method object) with ``options``.

    The road every in-memory run takes: the scan and its region checked once (:func:`open_scan`),
    the plan, then :func:`segment_whole`. ``progress`` is a bool or a caller's
    :class:`~ps3d_toolkit.core.progress.Stages`. Returns the labels, or (labels, plan) with
    ``with_plan``.
    """
    from ps3d_toolkit.core.progress import Stages

    configured = method.configure(**(options or {}))
    if isinstance(image, np.ndarray):  # in memory: refused (or masked) with the count of its non-finite voxels
        check_finite_values(check_lazy_volume(image, "image"), check_non_finite(non_finite))
    image, spacing, particle_size_mm, grains, region = open_scan(image, spacing=spacing,
                                                                 particle_size_mm=particle_size_mm,
                                                                 grains=grains, roi=roi, mask=mask)
    stages = progress if isinstance(progress, Stages) else Stages(method.name, enabled=bool(progress))
    try:
        labels, plan = segment_whole(image, configured, spacing=spacing, particle_size_mm=particle_size_mm,
                                     non_finite=non_finite, grains=grains, region=region, stages=stages)
    finally:
        if stages is not progress:
            stages.close()
    return (labels, plan) if with_plan else labels
