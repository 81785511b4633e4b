"""Chunked segmentation: a scan of any size, block by block, with bounded memory.

How it works
------------
1. **Plan, once per scan.** The values that the in-memory methods compute from
   the whole scan are computed once, from a sample, and then shared by every
   block, so that a block of pure epoxy is cut with the same threshold as a
   block full of grains:

   - the grain threshold (multi-level Otsu of the lightly smoothed scan) from
     the smoothed scan's strided sample. Whole z-planes (with the 2 planes on
     each side that the smoothing needs) are read and smoothed, so the sample
     is the very one ``strided_sample(gaussian_filter(scan))`` of the
     in-memory run: the same threshold, for any scan size;
   - for the model, the intensity percentiles, from the raw scan's strided
     sample (as in memory) and the threshold in normalised units;
   - the grain contrast (:func:`~ps3d_toolkit.segmentation._checks.grain_contrast`)
     of the raw scan's strided sample (smoothing would make noise look like
     grains): a scan without contrast gives no particles;
   - the particle size, given, or estimated by ``_estimate_particle_size``
     on the (up to) 4 blocks that hold most grain voxels, with the plan's
     grain mask; the estimates are averaged weighted by the particle centres
     each found (each is a mean over centres, so this is the mean over all).
     The in-memory model's second look at its own mask (``refine_size``) is
     not done.

2. **Blocks.** The scan is cut into blocks of ``chunk_size`` voxels a side
   (smaller at the far edges); each is read with a halo of
   ``halo_diameters`` particle diameters on each side (at least 8 voxels,
   clipped at the scan's edge) and segmented by the method's in-memory steps on that region:
   the model's ``_labels_at_size`` (network, instances, phantom filter) on the
   region normalised with the plan's percentiles; for otsu-watershed the steps
   of ``_otsu_watershed`` with the plan's threshold (written out here because
   that function computes its threshold from whatever it is given). A region
   without grain contrast of its own is not segmented: it holds no particles.
   SNOW is not offered chunked yet.

3. **Stitching (union-find over block faces, as dask-image's
   ``ndmeasure.label``).** Only a block's core is kept; its particles get
   provisional ids ``offset + 1..m`` (consecutive over the core). Then the
   block's halo, where it lies in the cores of blocks already done (faces,
   edges and corners), is compared with the provisional labels written
   there: a block's particle and an earlier block's particle are the same
   one when each holds the majority of the other's voxels in that shared
   region (mutual majority: a one-to-one match, so that a particle merged
   by one block's view never chains two particles of the other). Owner by
   centroid was not chosen: it needs a halo as wide as the largest particle
   and writes into the neighbours' cores. Finally the union-find's sets are
   numbered 1..n in the order of their first provisional id, and the
   provisional labels are rewritten block by block.

   **Halo.** Measured (instance F1@0.5 between chunked and in-memory labels,
   same particle size given; 2 CPU threads shared with other work, so the
   times are rough), halo 0.5 / 1.0 / 1.5 diameters:

   - otsu-watershed, bundled sample 128^3 (~17-voxel grains), blocks of 64:
     F1 0.980 / 0.998 / 1.000; 1.9 / 2.8 / 3.1 s (in memory 1.3 s);
   - otsu-watershed, generated 256^3 (24-voxel grains), blocks of 96:
     F1 0.989 / 0.997 / 1.000; 13.5 / 21.0 / 33.3 s (in memory 8.3 s);
   - otsu-watershed, generated 128^3 (24-voxel grains), blocks of 64:
     F1 0.966 / 0.995 (halo 0.5 / 1.0);
   - model, bundled sample, blocks of 64, halo 1.0 / 1.5 / 2.0:
     F1 0.989 / 0.996 / 0.987 (24 s at halo 1.0, in memory 29 s).

   The model's agreement does not rise steadily with the halo: its windows
   (and their instance normalisation) differ between a region and the whole
   scan, and small grains come and go with them; the in-memory run itself
   agrees at 0.985 with its own run with 80-voxel instead of 96-voxel windows
   (generated 96^3 scan, 16-voxel grains; chunked there, blocks of 48: F1
   0.941 at halo 1.0, 0.985 at halo 2.0; generated 128^3, 24-voxel grains,
   blocks of 64: 0.908 / 0.944 / 0.908 at halo 0.5 / 1.0 / 1.5; 1.0 when
   every region is the whole scan, so the stitching is not at fault). The
   model needs context: on that scan (at 20 network voxels a particle) an
   in-memory run on a 84^3 corner crop agrees with the whole scan's run in
   the crop's inner 64^3 at F1 0.978 (1 % of the voxels' foreground
   differs), on a 104^3 crop at 1.000 (0.08 %): ~40 network voxels (two
   diameters) of context. Not yet settled: the default stays one diameter
   for both methods until larger scans are measured.
   One diameter is the default: the thinnest halo at which otsu-watershed
   agrees at >= 0.99 everywhere measured.

4. **Output and resume.** With an ``output`` path, the provisional labels
   live in a work store beside it (``<name>.ps3d-work.zarr``) with a sidecar
   ``.ps3d_blocks.json``: the plan, and for each finished block its offset,
   particle count and matches, written after the block's labels. The final
   store (uint32, chunks = the block shape, zarr v2 by default, root
   attributes ``written_by`` and ``spacing``) is written atomically from the
   work store at the end, and the work store removed. ``resume=True`` keeps
   the finished blocks of an interrupted run with the same plan (and, when
   the run had finished, segments the scan again into the output). Without
   ``output`` the labels are assembled in a numpy array (tests,
   ``segment(..., chunk_size=N)``).

Within a region the steps are those of the in-memory run, but a grain's
enclosed holes are filled only when they lie wholly inside the region, and
otsu-watershed drops small particles relative to the region's mean particle.

Peak memory is a few times the region (block + halo) in float32 (the model's
network grid, as in memory, per region), plus 4 bytes per particle for the
final numbering, plus the plan's sample (2 M values and 5 z-planes).
Measured (ru_maxrss, otsu-watershed, a generated 256^3 uint16 zarr scan):
759 MB in memory, 343 MB in blocks of 96, 325 MB in blocks of 64; the
interpreter with the libraries imported holds 131 MB.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_lazy_volume, check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError, InputTypeError, OutputError, ResourceError
from ps3d_toolkit.core.labels import drop_small_labels
from ps3d_toolkit.segmentation._checks import (
    MIN_GRAIN_CONTRAST,
    check_fraction,
    check_n_classes,
    check_particle_size,
    grain_contrast,
)
from ps3d_toolkit.segmentation.grains import (
    _OTSU_SAMPLE,
    _SMOOTH_SIGMA,
    _distance_map,
    _estimate_particle_size,
    _grain_threshold,
)

__all__ = ["DEFAULT_HALO_DIAMETERS", "segment_chunked"]

logger = logging.getLogger(__name__)

#: Halo on each side of a block, in particle diameters (measured: see the module docstring).
DEFAULT_HALO_DIAMETERS = 1.0
# The network sees at least this many scan voxels of context beyond a block's face.
_MIN_HALO_VOXELS = 8
# Blocks on which the particle size is estimated (those with most grain voxels).
_SIZE_BLOCKS = 4
# The work store beside the output, and its record of finished blocks.
_WORK_SUFFIX = ".ps3d-work.zarr"
_BLOCKS_FILE = ".ps3d_blocks.json"
# The in-memory model's percentile sample (normalize._PERCENTILE_SAMPLE).
_PERCENTILE_SAMPLE = 4_000_000


@dataclass
class _Grid:
    """Blocks of a scan: cores that tile it, and regions (core + halo) clipped to it."""

    shape: tuple
    block: tuple
    halo: tuple

    def counts(self) -> tuple:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    def indices(self) -> list:
        """Block indices in raster order (z slowest)."""
        return list(itertools.product(*(range(c) for c in self.counts())))

    def core(self, index) -> tuple:
        return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block, self.shape))

    def region(self, index) -> tuple:
        return tuple(slice(max(0, c.start - h), min(n, c.stop + h))
                     for c, h, n in zip(self.core(index), self.halo, self.shape))

    def earlier_neighbours(self, index) -> list:
        """The (up to 13) face, edge and corner neighbours that come before ``index`` in raster order."""
        counts = self.counts()
        found = []
        for step in itertools.product((-1, 0, 1), repeat=3):
            other = tuple(i + s for i, s in zip(index, step))
            if other < index and all(0 <= o < c for o, c in zip(other, counts)):
                found.append(other)
        return found


@dataclass
class _Plan:
    """What every block shares: sizes, thresholds, and the method's settings."""

    method: str
    spacing: tuple
    particle_size_mm: float
    grain_threshold: float
    has_contrast: bool
    percentiles: tuple = (0.0, 1.0)
    settings: dict = field(default_factory=dict)

    def key(self, grid: _Grid) -> dict:
        """What a resumed run must share with the interrupted one (JSON-ready)."""
        return {"method": self.method, "shape": list(grid.shape), "block": list(grid.block),
                "halo": list(grid.halo), "spacing": list(self.spacing),
                "particle_size_mm": self.particle_size_mm, "grain_threshold": self.grain_threshold,
                "percentiles": list(self.percentiles)}


def segment_chunked(image, *, spacing, output=None, chunk_size: int = 128, particle_size_mm=None,
                    method=None, halo_diameters: float | None = None, resume: bool = False,
                    overwrite: bool = False, zarr_format: int = 2, progress: bool = True, **options):
    """Segment a scan of any size block by block; the same particles as :func:`segment`, up to renumbering.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x): numpy, memory map, zarr or any lazy array
        with ``shape``, ``dtype`` and slicing. Only blocks are read.
    spacing : float or tuple of 3 float
        Voxel size in mm.
    output : str or Path, optional
        A ``.zarr`` store to write the labels to; None: return a numpy array.
    chunk_size : int
        Block edge in voxels (at least 16): memory grows with (chunk_size + 2 halo)^3.
    particle_size_mm : float, optional
        Mean particle diameter in mm; estimated once from a few blocks when omitted.
    method : {"model", "otsu-watershed"}, optional
        Segmentation method; default: the shipped model.
    halo_diameters : float, optional
        Context read around each block, in particle diameters (at least 8
        voxels); default :data:`DEFAULT_HALO_DIAMETERS`.
    resume : bool
        Continue an interrupted run into the same ``output`` from its finished blocks.
    overwrite : bool
        Replace an existing ``output`` (a store the toolkit wrote).
    zarr_format : {2, 3}
        Zarr format of the output store.
    progress : bool
        Show a progress bar over the blocks.
    **options
        Options of the method (as for :func:`segment`).

    Returns
    -------
    np.ndarray or zarr.Array
        uint32 labels 1..n, 0 = background: in memory without ``output``,
        else the written store opened read-only.

    Raises
    ------
    InputError
        For an invalid image, spacing, size, chunk size, halo or method
        (SNOW and ``non_finite="mask"`` are not offered chunked), NaN or
        infinite values in a block, or a resume whose settings differ.
    OutputError
        If ``output`` exists and neither ``resume`` nor ``overwrite`` is set.
    """
    image = check_lazy_volume(image, "image")
    spacing = check_spacing(spacing)
    method = _check_method(method)
    chunk_size = _check_chunk_size(chunk_size)
    if zarr_format not in (2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if output is not None:
        output = _check_output(Path(output), resume, overwrite)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if particle_size_mm is not None:
        check_particle_size(particle_size_mm, spacing, image.shape)
    block = tuple(min(chunk_size, n) for n in image.shape)
    plan = _make_plan(image, spacing, particle_size_mm, method, block, options)
    grid = _Grid(tuple(image.shape), block, _halo_voxels(plan, halo_diameters))
    segment_block = _block_segmenter(plan, grid)
    if output is None:
        provisional = np.zeros(image.shape, np.uint32)
        record = _run_blocks(image, grid, segment_block, provisional, {"blocks": {}}, None, progress)
        return _final_labels(provisional, grid, record)
    work = output.with_name(output.name + _WORK_SUFFIX)
    provisional, record = _open_work(work, plan.key(grid), grid, resume)
    record = _run_blocks(image, grid, segment_block, provisional, record, work, progress)
    _write_output(provisional, grid, record, output, plan, zarr_format, overwrite or resume)
    shutil.rmtree(work)
    import zarr

    return zarr.open_array(str(output), mode="r")


def _check_method(method) -> str:
    from ps3d_toolkit.segmentation.registry import METHODS, default_method

    method = method or default_method()
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if method == "snow":
        raise InputError("method 'snow' is not available with chunk_size yet; use 'model' or "
                         "'otsu-watershed', or segment without chunk_size")
    return method


def _check_chunk_size(chunk_size) -> int:
    if not isinstance(chunk_size, (int, np.integer)) or isinstance(chunk_size, bool) or chunk_size < 16:
        raise InputError(f"chunk_size must be an integer of at least 16 voxels, got {chunk_size!r}")
    return int(chunk_size)


def _check_output(output: Path, resume: bool, overwrite: bool) -> Path:
    """Refuse an existing output unless resumed or overwritten; refuse a non-zarr target."""
    from ps3d_toolkit.io.outputs import replaceable_directory

    if "".join(output.suffixes[-1:]).lower() != ".zarr":
        raise InputError(f"output must be a .zarr store for chunked segmentation, got {output}")
    if output.exists():
        if not (resume or overwrite):
            raise OutputError(f"{output} exists; pass overwrite=True to replace it or resume=True to "
                              "continue an interrupted run")
        if not replaceable_directory(output):
            raise OutputError(f"{output} exists and is not a zarr store written by ps3d_toolkit; "
                              "choose another output")
    return output


def _halo_voxels(plan: _Plan, halo_diameters) -> tuple:
    """Halo per axis in voxels: ``halo_diameters`` particle diameters, at least 8 voxels."""
    halo_diameters = DEFAULT_HALO_DIAMETERS if halo_diameters is None else halo_diameters
    halo_diameters = check_positive(halo_diameters, "halo_diameters")
    if math.isnan(plan.particle_size_mm):  # no grain contrast, no size: nothing to segment
        return (_MIN_HALO_VOXELS,) * 3
    return tuple(max(_MIN_HALO_VOXELS, math.ceil(halo_diameters * plan.particle_size_mm / s))
                 for s in plan.spacing)


def _sample_stride(shape: tuple, max_values: int) -> int:
    """The stride of :func:`~ps3d_toolkit.core.arrays.strided_sample`."""
    return max(1, int(np.ceil((math.prod(shape) / max_values) ** (1 / 3))))


def _smoothed_sample(image, max_values: int) -> np.ndarray:
    """``strided_sample(gaussian_filter(image, 0.5), max_values)``, reading 5 z-planes per sampled plane."""
    shape = image.shape
    stride = _sample_stride(shape, max_values)
    # gaussian_filter's reach: truncate 4.0 x sigma 0.5 = 2 voxels
    reach = int(4.0 * _SMOOTH_SIGMA + 0.5)
    planes = []
    for z in range(0, shape[0], stride):
        z0, z1 = max(0, z - reach), min(shape[0], z + reach + 1)
        slab = np.asarray(image[z0:z1], dtype=np.float32)
        smooth = ndimage.gaussian_filter(slab, _SMOOTH_SIGMA)
        planes.append(smooth[z - z0, ::stride, ::stride])
    return np.stack(planes)


def _make_plan(image, spacing, particle_size_mm, method, block, options) -> _Plan:
    """The shared plan: thresholds and contrast from the sample, the size given or estimated."""
    from ps3d_toolkit.core.arrays import strided_sample

    settings = _method_settings(method, options)
    smooth = _smoothed_sample(image, _OTSU_SAMPLE)
    if not np.isfinite(smooth).all():
        raise InputError("image holds NaN or infinite grey values; fix the scan, or segment it in memory "
                         "with non_finite='mask'")
    # the contrast of the raw values, as in memory: smoothing makes noise look like grains
    raw = strided_sample(image, _PERCENTILE_SAMPLE).astype(np.float32, copy=False)
    contrast = grain_contrast(raw) if np.ptp(raw) > 0 else 0.0
    percentiles = (0.0, 1.0)
    if method == "model":
        lo, hi = np.percentile(raw, settings["intensity_percentiles"])
        percentiles = (float(lo), float(hi - lo) if hi > lo else 1.0)
        smooth = (smooth - np.float32(lo)) / np.float32(percentiles[1])
    n_classes = settings.get("n_classes")
    threshold = float(_grain_threshold(smooth.ravel(), n_classes)) if np.ptp(smooth) > 0 else math.inf
    plan = _Plan(method, spacing, particle_size_mm or math.nan, threshold,
                 contrast >= MIN_GRAIN_CONTRAST, percentiles, settings)
    if not plan.has_contrast:
        logger.warning("the scan shows no grain contrast (block contrast %.3g, below %g: empty, constant or "
                       "noise only): no particles", contrast, MIN_GRAIN_CONTRAST)
    if particle_size_mm is None:
        plan.particle_size_mm = _estimate_size(image, plan, smooth, block) if plan.has_contrast else math.nan
    return plan


def _method_settings(method: str, options: dict) -> dict:
    """The method's options with its defaults, checked; the model's network loaded once."""
    from ps3d_toolkit.segmentation.registry import method_function

    defaults = {k: v for k, v in method_function(method).__kwdefaults__.items()
                if k not in ("non_finite", "progress")}
    if options.get("non_finite", "refuse") != "refuse":
        raise InputError("non_finite='mask' is not available with chunk_size yet; fix the scan's NaN or "
                         "infinite values, or segment without chunk_size")
    options = {k: v for k, v in options.items() if k != "non_finite"}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InputTypeError(f"{method} got unexpected option(s) {unknown}; its options are {sorted(defaults)}")
    settings = {**defaults, **options}
    if method == "otsu-watershed":
        return dict(n_classes=check_n_classes(settings["n_classes"]),
                    min_distance_fraction=check_positive(settings["min_distance_fraction"],
                                                         "min_distance_fraction"),
                    min_particle_fraction=check_fraction(settings["min_particle_fraction"],
                                                         "min_particle_fraction"))
    return _model_settings(settings)


def _model_settings(settings: dict) -> dict:
    """The model's network, window and instance settings, checked as ``_run_model`` does."""
    from ps3d_toolkit.segmentation.model import inference as m
    from ps3d_toolkit.segmentation.normalize import _check_percentiles

    device = m.select_device(settings["device"])
    tta = m._check_tta(settings["tta"], device)
    m._check_window(settings["roi_size"], settings["overlap"], settings["batch_size"])
    model, config = m._open_model(settings["weights"], device)
    return dict(
        intensity_percentiles=_check_percentiles(config["intensity_percentiles"]), tta=tta,
        budget=m.memory_budget_bytes(settings["memory_limit_gb"]),
        predict=dict(
            model=model, diameter_vox=m._inference_diameter_vox(config, settings["inference_diameter_vox"]),
            window=dict(roi_size=settings["roi_size"], overlap=settings["overlap"],
                        batch_size=int(settings["batch_size"]), device=device, tta=tta, progress=False),
            instances=dict(core_threshold=m._core_threshold(settings["core_threshold"], config),
                           min_core_voxels=settings["min_core_voxels"],
                           min_particle_fraction=check_fraction(settings["min_particle_fraction"],
                                                                "min_particle_fraction"))))


def _estimate_size(image, plan: _Plan, smooth: np.ndarray, block: tuple) -> float:
    """The particle size from the blocks with most grain voxels in the sample, weighted by centres found."""
    grid = _Grid(tuple(image.shape), block, (0, 0, 0))
    stride = _sample_stride(image.shape, _OTSU_SAMPLE)
    bright = smooth > plan.grain_threshold
    share = {}
    for index in grid.indices():
        cut = tuple(slice(s.start // stride, -(-s.stop // stride)) for s in grid.core(index))
        share[index] = float(bright[cut].mean()) if bright[cut].size else 0.0
    sizes, weights = [], []
    for index in sorted(share, key=share.get, reverse=True)[:_SIZE_BLOCKS]:
        region = _read_region(image, grid.core(index))
        try:
            estimate = _estimate_particle_size(region, plan.spacing, _grain_mask(_scaled(region, plan), plan),
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


def _read_region(image, region: tuple) -> np.ndarray:
    values = np.asarray(image[region])
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError(f"image holds NaN or infinite grey values in {_region_text(region)}; fix the scan, "
                         "or segment it in memory with non_finite='mask'")
    return values


def _region_text(region: tuple) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def _scaled(region: np.ndarray, plan: _Plan) -> np.ndarray:
    """The region's grey values in the units of the plan's threshold (normalised for the model)."""
    out = region.astype(np.float32, copy=True)
    if plan.method == "model":
        out -= np.float32(plan.percentiles[0])
        out /= np.float32(plan.percentiles[1])
    return out


def _grain_mask(scaled: np.ndarray, plan: _Plan) -> np.ndarray:
    """``grains._grain_mask`` with the plan's threshold: smoothed, cut, opened, holes filled."""
    mask = ndimage.gaussian_filter(scaled, _SMOOTH_SIGMA) > plan.grain_threshold
    mask = ndimage.binary_opening(mask, structure=ndimage.generate_binary_structure(3, 1))
    return ndimage.binary_fill_holes(mask)


def _block_segmenter(plan: _Plan, grid: _Grid):
    """A function region -> uint32 labels of the region, by the plan's method."""
    if not plan.has_contrast:
        return lambda region: np.zeros(region.shape, np.uint32)
    if plan.method == "model":
        from ps3d_toolkit.segmentation.model.inference import _GridCheck

        region_shape = tuple(min(n, b + 2 * h) for n, b, h in zip(grid.shape, grid.block, grid.halo))
        _GridCheck(region_shape, plan.spacing, plan.settings["predict"]["diameter_vox"],
                   plan.settings["tta"], plan.settings["budget"]).check(plan.particle_size_mm)
        return lambda region: _model_region(region, plan)
    return lambda region: _otsu_watershed_region(region, plan)


def _has_contrast(region: np.ndarray) -> bool:
    return np.ptp(region) > 0 and grain_contrast(region) >= MIN_GRAIN_CONTRAST


def _model_region(region: np.ndarray, plan: _Plan) -> np.ndarray:
    """The model's one pass (``_labels_at_size``) on a region normalised with the plan's percentiles."""
    from ps3d_toolkit.segmentation.model.inference import _labels_at_size

    if not _has_contrast(region):
        return np.zeros(region.shape, np.uint32)
    normalized = _scaled(region, plan)
    bright = ndimage.gaussian_filter(normalized, _SMOOTH_SIGMA) > plan.grain_threshold
    labels, _, _ = _labels_at_size(normalized, plan.particle_size_mm, spacing=plan.spacing, bright=bright,
                                   **plan.settings["predict"])
    return labels.astype(np.uint32, copy=False)


def _otsu_watershed_region(region: np.ndarray, plan: _Plan) -> np.ndarray:
    """``classic._otsu_watershed``'s steps on a region, with the plan's threshold and size."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    if not _has_contrast(region):
        return np.zeros(region.shape, np.uint32)
    mask = _grain_mask(_scaled(region, plan), plan)
    distance = _distance_map(mask, plan.spacing)
    radius = plan.particle_size_mm / 2 / min(plan.spacing)
    peaks = peak_local_max(distance, min_distance=max(1, int(round(plan.settings["min_distance_fraction"] * radius))),
                           threshold_abs=max(1.0, 0.2 * radius), exclude_border=False)
    markers = np.zeros(region.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = watershed(-distance, markers, mask=mask)
    return drop_small_labels(labels, min_fraction=plan.settings["min_particle_fraction"])


def _run_blocks(image, grid: _Grid, segment_block, provisional, record: dict, work: Path | None,
                progress: bool) -> dict:
    """Segment every unfinished block into ``provisional``; record offsets and matches as blocks finish."""
    done = record["blocks"]
    offset = sum(entry["count"] for entry in done.values())
    todo = [index for index in grid.indices() if _key(index) not in done]
    with tqdm(total=len(grid.indices()), initial=len(done), desc="blocks", unit="block",
              disable=not progress) as bar:
        for index in todo:
            region = grid.region(index)
            local = segment_block(_read_region(image, region))
            core, matches, count = _stitch(local, grid, index, region, provisional, done, offset)
            if offset + count >= np.iinfo(np.uint32).max:
                raise ResourceError("the scan holds more particles than uint32 labels can number")
            provisional[grid.core(index)] = core
            done[_key(index)] = {"offset": offset, "count": count, "matches": matches}
            offset += count
            if work is not None:
                _save_record(work, record)
            bar.update()
    return record


def _key(index) -> str:
    return ",".join(map(str, index))


def _stitch(local: np.ndarray, grid: _Grid, index, region: tuple, provisional, done: dict,
            offset: int) -> tuple:
    """The block's core with provisional ids, its matches [own id, earlier id], and its particle count.

    Over the block's halo where it lies in the cores of finished blocks, a
    local particle and an earlier particle match when each holds the
    majority of the other's voxels there.
    """
    inner = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(grid.core(index), region))
    present = np.unique(local[inner])
    present = present[present > 0]
    lut = np.zeros(int(local.max()) + 1, np.int64)
    lut[present] = np.arange(offset + 1, offset + 1 + present.size)
    matches = []
    # one neighbour at a time: a particle holds a different provisional id in each earlier block
    for other in grid.earlier_neighbours(index):
        if _key(other) not in done:
            continue
        shared = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(grid.core(other), region))
        if any(s.stop <= s.start for s in shared):
            continue
        mine = lut[local[tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(shared, region))]]
        theirs = np.asarray(provisional[shared]).astype(np.int64)
        matches += _mutual_majority(mine.ravel(), theirs.ravel())
    return lut[local[inner]].astype(np.uint32), matches, int(present.size)


def _mutual_majority(mine: np.ndarray, theirs: np.ndarray) -> list:
    """Pairs (a, b) of ids, a from ``mine`` and b from ``theirs``, where each holds over half of the other's voxels."""
    both = (mine > 0) & (theirs > 0)
    if not both.any():
        return []
    pairs, overlap = np.unique(np.stack([mine[both], theirs[both]]), axis=1, return_counts=True)
    ids_a, size_a = np.unique(mine[mine > 0], return_counts=True)
    ids_b, size_b = np.unique(theirs[theirs > 0], return_counts=True)
    total_a = size_a[np.searchsorted(ids_a, pairs[0])]
    total_b = size_b[np.searchsorted(ids_b, pairs[1])]
    keep = (2 * overlap > total_a) & (2 * overlap > total_b)
    return [[int(a), int(b)] for a, b in pairs[:, keep].T]


def _final_ids(record: dict) -> np.ndarray:
    """Provisional id -> final id 1..n: union-find over the matches, sets numbered by their smallest id."""
    n = sum(entry["count"] for entry in record["blocks"].values())
    parent = np.arange(n + 1, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for entry in record["blocks"].values():
        for a, b in entry["matches"]:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n + 1)], dtype=np.int64)
    is_root = roots == np.arange(n + 1)
    is_root[0] = False
    number = np.zeros(n + 1, np.uint32)
    number[is_root] = np.arange(1, int(is_root.sum()) + 1, dtype=np.uint32)
    return number[roots]


def _final_labels(provisional: np.ndarray, grid: _Grid, record: dict) -> np.ndarray:
    """The in-memory result: provisional ids renumbered in place, block by block."""
    final = _final_ids(record)
    for index in grid.indices():
        core = grid.core(index)
        provisional[core] = final[provisional[core]]
    return provisional


def _save_record(work: Path, record: dict) -> None:
    """Write the record of finished blocks atomically (a torn record would lose the run)."""
    tmp = work / (_BLOCKS_FILE + ".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(work / _BLOCKS_FILE)


def _open_work(work: Path, plan_key: dict, grid: _Grid, resume: bool) -> tuple:
    """The work store of provisional labels and its record; resumed when asked and the plan is the same."""
    import zarr

    record_path = work / _BLOCKS_FILE
    if resume and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("plan") != plan_key:
            raise InputError(f"cannot resume into {work}: the interrupted run used other settings "
                             f"({record.get('plan')}); run again without resume=True (with overwrite=True)")
        logger.info("resuming: %d of %d blocks already done", len(record["blocks"]), len(grid.indices()))
        return zarr.open_array(str(work), mode="r+"), record
    if work.exists():
        if not record_path.is_file():
            raise OutputError(f"{work} exists and is not a ps3d_toolkit work store; remove it or choose "
                              "another output")
        shutil.rmtree(work)
    provisional = zarr.create_array(store=str(work), shape=grid.shape, chunks=grid.block, dtype=np.uint32,
                                    fill_value=0, zarr_format=2)
    record = {"plan": plan_key, "blocks": {}}
    _save_record(work, record)
    return provisional, record


def _write_output(provisional, grid: _Grid, record: dict, output: Path, plan: _Plan, zarr_format: int,
                  replace: bool) -> None:
    """The final store, written atomically block by block from the work store."""
    import zarr

    from ps3d_toolkit.io._zarr import WRITTEN_BY
    from ps3d_toolkit.io.writers import _version

    final = _final_ids(record)
    attrs = {WRITTEN_BY: f"ps3d_toolkit {_version()}", "spacing": list(plan.spacing),
             "particle_size_mm": plan.particle_size_mm, "method": plan.method,
             "chunked": {"block": list(grid.block), "halo": list(grid.halo)},
             "n_particles": int(final.max()) if final.size else 0}
    if math.isnan(plan.particle_size_mm):
        del attrs["particle_size_mm"]
    with atomic_path(output, replace_directory=replace and output.is_dir()) as tmp:
        out = zarr.create_array(store=str(tmp), shape=grid.shape, chunks=grid.block, dtype=np.uint32,
                                fill_value=0, zarr_format=zarr_format, attributes=attrs,
                                config={"write_empty_chunks": True})
        for index in grid.indices():
            core = grid.core(index)
            out[core] = final[np.asarray(provisional[core])]
