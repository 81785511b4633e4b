"""Model inference: size-normalise, sliding-window predict, map back, instances.

The heavy lifting is MONAI's ``sliding_window_inference`` (Gaussian-weighted
overlapping windows, batching, device handling). Probabilities, not labels,
are resampled back to the scan's own grid, so that particle boundaries at
native resolution are as smooth as the network's output.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import DeviceError, InputError, MissingInputError, ResourceError
from ps3d_toolkit.core.geometry import sphere_volume
from ps3d_toolkit.core.labels import keep_labels
from ps3d_toolkit.core.progress import Stages
from ps3d_toolkit.segmentation._checks import (
    MIN_PARTICLE_VOXELS,
    NonFinite,
    check_fraction,
    check_particle_size,
    check_scan,
    lacks_grain_contrast,
    memory_budget_bytes,
)
from ps3d_toolkit.segmentation.grains import SizeEstimate, _above_grain_threshold, _estimate_particle_size
from ps3d_toolkit.segmentation.instances import _border_core_to_instances
from ps3d_toolkit.segmentation.model.network import load_weights, resolve_inference_diameter_vox
from ps3d_toolkit.segmentation.normalize import (
    _check_percentiles,
    _normalize_intensity,
    _normalized_to_grid,
    _output_shape,
    _zoom_factors,
    resample_to_shape,
)

__all__ = ["ModelRun", "instances_from_core_border", "load_model", "predict_probabilities",
           "run_model", "segment_with_model", "select_device", "window_sizes"]

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda", "mps"]

_MODEL_CACHE: dict = {}

# The distance-map size estimate on the model's own particle mask: the ratio of
# mean equivalent to mean inscribed diameter that gives a geometric-mean
# estimate/truth of 1.00 on 24 development scans (benchmarks/model_accuracy.py's
# 12 kinds, seeds 7000+ and 7100+; range 0.88-1.12x). It is larger than the Otsu
# mask's 1.08 because the model's mask has no noise holes to shrink the depths.
_MODEL_MASK_EQ_PER_INSCRIBED = 1.197
# Re-run when the model-mask estimate exceeds the first one by more than this.
_REFINE_SIZE_ABOVE = 1.1
# Weights that were never exported have no chosen core threshold: a core is then
# simply more likely than not.
_UNCHOSEN_CORE_THRESHOLD = 0.5
# Peak memory of the network pass per voxel of the network's grid: the float32
# input (4 B), MONAI's sliding-window output and weight buffers, the softmax
# probabilities and their mean (3 classes x float32 each). Measured with
# ru_maxrss on the shipped network (CPU, 96^3 windows, batch 2): +751 MB for a
# 256^3 grid and +1351 MB for 320^3, i.e. 37.5 B a voxel on top of the input
# and ~0.1 GB for the windows themselves; test-time augmentation (a flipped
# copy of input and output, a running sum) added 34 B a voxel (256^3).
_GRID_BYTES_PER_VOXEL = 42
_GRID_BYTES_PER_VOXEL_TTA = 78
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


def select_device(device: Device | str | None = "auto") -> torch.device:
    """The torch device to run on, checked to exist; ``"auto"`` picks CUDA, then Apple MPS, then the CPU.

    Cheap (no scan, no network, no weights): call it first to refuse a missing
    device before any work.

    Raises
    ------
    DeviceError
        If ``device`` is not one of "auto", "cpu", "cuda" (or "cuda:N") and
        "mps", or names a device this machine does not have.
    """
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {device!r}")
    if chosen.type == "cuda" and not (torch.cuda.is_available()
                                      and (chosen.index or 0) < torch.cuda.device_count()):
        raise DeviceError(f"device {str(device)!r} is not available on this machine (it has "
                          f"{_available_devices()}); use device='cpu' or 'auto'")
    if chosen.type == "mps" and not _mps_available():
        raise DeviceError(f"device 'mps' is not available on this machine (it has {_available_devices()}); "
                          "use device='cpu' or 'auto'")
    return chosen


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _available_devices() -> str:
    devices = ["cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices.append(f"cuda (cuda:0-{count - 1})" if count > 1 else "cuda")
    if _mps_available():
        devices.append("mps")
    return ", ".join(devices)


def load_model(weights=None, device="cpu"):
    """Load (and cache) a weight file; ``None`` means the shipped default weights."""
    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights is None and not path.is_file():
        raise MissingInputError(
            f"no shipped model weights at {path}; train them with `ps3d train` "
            "or use method='otsu-watershed'")
    key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0, str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_weights(path, device=device)
    return _MODEL_CACHE[key]


def window_sizes(shape, *, overlap: float, smallest: int = 64, largest: int = 96) -> tuple:
    """Sliding-window edge per axis that covers the scan with the least work.

    Along each axis MONAI places ``ceil((n - w) / int(w * (1 - overlap))) + 1``
    windows of edge ``w``; the edge between ``smallest`` and ``largest`` (in
    steps of 8, the network's total stride) that minimises windows x edge is
    chosen, the larger one on ties. An axis no longer than ``largest`` gets a
    single window. With the instance-normalised network, windows near the
    64-voxel training patches keep their statistics close to training's.

    Examples
    --------
    >>> window_sizes((118, 142, 142), overlap=0.125)
    (64, 80, 80)
    """
    def edge(n: int) -> int:
        if n <= largest:
            return max(8, -(-n // 8) * 8)

        def work(w: int) -> tuple:
            windows = math.ceil((n - w) / max(1, int(w * (1 - overlap)))) + 1
            return windows * w, -w

        return min(range(smallest, largest + 1, 8), key=work)

    return tuple(edge(int(n)) for n in shape)


def predict_probabilities(normalized, model, *, roi_size: int | tuple | Literal["auto"],
                          overlap: float, batch_size: int, device="cpu", tta: bool = False,
                          progress: bool = True) -> np.ndarray:
    """Border-core class probabilities of a size-normalised scan.

    Parameters
    ----------
    normalized : np.ndarray
        Intensity- and size-normalised scan (z, y, x).
    model : torch.nn.Module
        The border-core network.
    roi_size : int, tuple of 3 int or "auto"
        Sliding-window size in voxels; "auto" picks per axis the window that
        covers the scan with the least work (see :func:`window_sizes`).
    overlap : float
        Fraction of overlap between neighbouring windows, in [0, 1).
    batch_size : int
        Windows per forward pass.
    device : torch.device or str
        Where to run the network.
    tta : bool
        Average over the 8 mirrorings of the input (test-time augmentation).
    progress : bool
        Show MONAI's progress bar.

    Returns
    -------
    np.ndarray
        float32 (3, z, y, x) probabilities of background, core, border.
    """
    _check_window(roi_size, overlap, batch_size)
    return _predict_probabilities(np.asarray(normalized), model, roi_size=roi_size, overlap=overlap,
                                  batch_size=int(batch_size), device=torch.device(device),
                                  tta=bool(tta), progress=progress)


def _check_window(roi_size, overlap, batch_size) -> None:
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(roi_size, str) and roi_size != "auto":
        raise InputError(f"roi_size must be a number, 3 numbers or 'auto', got {roi_size!r}")


def _predict_probabilities(normalized: np.ndarray, model, *, roi_size, overlap: float,
                           batch_size: int, device: torch.device, tta: bool,
                           progress: bool, stages=None) -> np.ndarray:
    """:func:`predict_probabilities` on checked settings.

    With ``stages`` (a :class:`~ps3d_toolkit.core.progress.Stages`), the
    network is its stage "network", one step a window, instead of MONAI's bar.
    """
    from monai.inferers import sliding_window_inference

    if isinstance(roi_size, str):
        roi_size = window_sizes(normalized.shape, overlap=overlap)
    roi = (roi_size,) * 3 if np.isscalar(roi_size) else tuple(roi_size)
    # Window edges must be multiples of the network's total stride (8); a scan
    # smaller than a window gets a smaller one (MONAI pads it up to that).
    roi = tuple(min(max(16, int(r) // 8 * 8), -(-int(s) // 8) * 8) for r, s in zip(roi, normalized.shape))
    x = torch.from_numpy(np.ascontiguousarray(normalized, dtype=np.float32))[None, None]
    flips = [()]
    if tta:
        flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    use_amp = device.type == "cuda"
    predictor = model
    if stages is not None:
        stages.start("network", steps=_window_count(normalized.shape, roi, overlap) * len(flips))
        predictor, progress = _counting(model, stages), False
    total = None
    with torch.inference_mode(), torch.autocast(device_type=device.type, enabled=use_amp,
                                                dtype=torch.float16):
        for dims in flips:
            xin = x.flip(dims) if dims else x
            logits = sliding_window_inference(
                xin, roi_size=roi, sw_batch_size=batch_size, predictor=predictor,
                overlap=overlap, mode="gaussian", sw_device=device, device="cpu",
                progress=progress)
            probs = torch.softmax(logits.float(), dim=1)
            probs = probs.flip(dims) if dims else probs
            total = probs if total is None else total + probs
    return (total / len(flips))[0].numpy()


def _counting(model, stages):
    """``model`` as a predictor that moves the stages' bar by one step a window."""
    def predictor(windows):
        out = model(windows)
        stages.advance(int(windows.shape[0]))
        return out
    return predictor


def _window_count(shape: tuple, roi: tuple, overlap: float) -> int:
    """How many windows MONAI's sliding window places on a grid of ``shape``."""
    from ps3d_toolkit.segmentation.model.windows import padded_axis_starts

    return math.prod(len(starts) for starts in padded_axis_starts(shape, roi, overlap))


@dataclass
class ModelRun:
    """The result of :func:`run_model`: the labels and what the run decided.

    Attributes
    ----------
    labels : np.ndarray
        uint32 labels of the scan's shape, 0 = background.
    particle_size_mm : float
        The particle size the final pass was normalised with (NaN when the
        scan had no grain contrast and no size was given: no pass ran).
    size_estimate : SizeEstimate or None
        The first estimate, when no size was given.
    model_mask_estimate : SizeEstimate or None
        The estimate on the model's own particle mask (see ``refine_size``).
    network_shape : tuple of 3 int
        The scan's shape on the network's grid (last pass; at the given size
        when the scan had no grain contrast, (0, 0, 0) without a size).
    device : str
        Where the network ran.
    tta : bool
        Whether the mirrorings were averaged.
    seconds, network_seconds : float
        Time in all, and in the network (all passes).
    stage_seconds : dict
        Seconds per named stage (normalise, estimate size, to network grid,
        network, back to scan grid, instances), in the order they ran.
    """

    labels: np.ndarray
    particle_size_mm: float
    size_estimate: SizeEstimate | None
    model_mask_estimate: SizeEstimate | None
    network_shape: tuple
    device: str
    tta: bool
    seconds: float
    network_seconds: float
    stage_seconds: dict = field(default_factory=dict)

    @property
    def n_particles(self) -> int:
        """Number of particles found."""
        return int(self.labels.max())


def segment_with_model(image, *, spacing, particle_size_mm=None, weights=None,
                       overlap: float = 0.25, batch_size: int = 2,
                       roi_size: int | tuple | Literal["auto"] = 96,
                       device: Device | str = "auto", tta: bool | Literal["auto"] = "auto",
                       min_particle_fraction: float = 0.02, min_core_voxels: int = 8,
                       core_threshold: float | None = None, refine_size: bool = True,
                       inference_diameter_vox: float | None = None,
                       memory_limit_gb: float | None = None, non_finite: NonFinite = "refuse",
                       progress: bool = True) -> np.ndarray:
    """Segment particles with the border-core U-Net.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float, optional
        Mean particle diameter in mm. When omitted it is estimated from the scan
        (see :func:`ps3d_toolkit.segmentation.grains.estimate_particle_size`) and, with
        ``refine_size``, checked against the model's own first result. Given or
        estimated, it must span at least 3 voxels along every axis and fit in the scan.
    weights : str, Path or tuple, optional
        Weight file, or an already loaded ``(model, config)`` pair; default:
        the shipped model.
    overlap, batch_size, roi_size
        Sliding-window settings (see :func:`predict_probabilities`).
    device : {"auto", "cpu", "cuda", "mps"}
        Where the network runs; ``"auto"`` prefers a GPU.
    tta : bool or "auto"
        Average over the 8 mirrorings of the scan. ``"auto"``: on a GPU, where
        it costs little (+0.2 s on a 5.9 Mvoxel scan, H100), not on a CPU
        (8x the network time). On 24 development scans it raised mean F1@0.5
        from 0.923 to 0.929 and F1@0.75 from 0.844 to 0.857 (core threshold 0.9).
    min_particle_fraction : float
        Drop particles below this fraction of the mean particle volume that
        the particle size (given or estimated) implies. 0.02 (a grain of 0.27x
        the mean diameter) removes the specks of foreground that ring
        artefacts and noise leave, which ParticleSeg3D's 0.005 of the
        measured mean let through (development scans: mean F1@0.5 0.869 ->
        0.889 on 12, 0.904 -> 0.911 on 12 others).
    min_core_voxels : int
        Smallest core (in network voxels) that seeds a particle.
    core_threshold : float, optional
        Core probability above which a voxel seeds a particle; default: the
        value stored with the weights (0.75 for the shipped model, chosen on
        56 development scans; see docs/core_threshold.md).
    refine_size : bool
        When the size was estimated, estimate it again the same way on the
        model's own particle mask (cleaner than the Otsu mask that the first
        estimate uses) and, if that is more than 1.1x larger, run once more at
        it. Only upwards: noise and weak contrast fragment the Otsu mask and
        make the first estimate too small (0.7x), which the model's mask
        corrects; a too-large first estimate comes from touching grains, which
        both masks merge alike. On 56 development scans (24 of the benchmark's
        kinds; 2 x 16 low-contrast / ring / angular stress scans) it changed
        mean F1@0.5 by -0.0015, +0.020 (one scan +0.18) and +0.0025, re-running
        on 4, 5 and 2 of them (core threshold 0.9). An earlier check that measured the
        particles' own sizes instead made scans worse: at a wrong scale the
        model can split grains and measure them smaller still.
    inference_diameter_vox : float, optional
        Mean particle diameter in voxels on the network's grid. Default: the
        weights' ``inference_diameter_vox`` (chosen on development scans), else
        the diameter the model was trained at (``train_diameter_vox``).
    memory_limit_gb : float, optional
        Memory budget in GB (10^9 bytes) for the network's grid; default: 80 %
        of the memory available when the run starts. A run whose grid would
        need more (a small particle size on a large scan) is refused before it starts.
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as
        background (label 0).
    progress : bool or Stages
        Show one bar over the named stages, or continue a caller's :class:`~ps3d_toolkit.core.progress.Stages`.

    Returns
    -------
    np.ndarray
        uint32 labels of the scan's shape; all 0 (and a logged warning) for a
        scan without grain contrast (empty, constant or noise only).

    Raises
    ------
    InputError
        If the image, spacing, size or an option is invalid, the image holds
        NaN/inf (unless masked), or the weights are not this network's.
    ResourceError
        If the network's grid would not fit in the memory budget.
    DeviceError
        If ``device`` is unknown or not on this machine.

    See Also
    --------
    run_model : the same, also returning the size used and timings.
    """
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    return scan.zero_masked(_run_model(
        scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, weights=weights,
        overlap=overlap, batch_size=batch_size, roi_size=roi_size, device=device, tta=tta,
        min_particle_fraction=min_particle_fraction, min_core_voxels=min_core_voxels,
        core_threshold=core_threshold, refine_size=refine_size,
        inference_diameter_vox=inference_diameter_vox, memory_limit_gb=memory_limit_gb,
        progress=progress).labels)


def run_model(image, *, spacing, particle_size_mm=None, non_finite: NonFinite = "refuse",
              **options) -> ModelRun:
    """:func:`segment_with_model`, also returning the size it used and its timings.

    Parameters
    ----------
    image, spacing, particle_size_mm, non_finite
        As for :func:`segment_with_model`.
    **options
        Any option of :func:`segment_with_model`, with its defaults.

    Returns
    -------
    ModelRun
    """
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    defaults = {k: v for k, v in segment_with_model.__kwdefaults__.items() if k != "non_finite"}
    run = _run_model(scan.image, **{**defaults, **options, "spacing": scan.spacing,
                                    "particle_size_mm": scan.particle_size_mm})
    run.labels = scan.zero_masked(run.labels)
    return run


def _run_model(image: np.ndarray, *, spacing, particle_size_mm, weights, overlap, batch_size,
               roi_size, device, tta, min_particle_fraction, min_core_voxels, core_threshold,
               refine_size, inference_diameter_vox, memory_limit_gb, progress) -> ModelRun:
    """:func:`run_model` on checked image, spacing and size; checks its own options once.

    Every setting, the memory the network's grid needs at a given size and the
    scan's grain contrast are checked before the first heavy step; an
    estimated size is checked as soon as it is known.
    """
    device = select_device(device)
    tta = _check_tta(tta, device)
    _check_window(roi_size, overlap, batch_size)
    budget = memory_budget_bytes(memory_limit_gb)
    stages = progress if isinstance(progress, Stages) else Stages("model", enabled=bool(progress))
    try:
        stages.start("load model")
        model, config = _open_model(weights, device)
        diameter_vox = _inference_diameter_vox(config, inference_diameter_vox)
        predict = dict(
            model=model, spacing=spacing, diameter_vox=diameter_vox,
            window=dict(roi_size=roi_size, overlap=overlap, batch_size=int(batch_size), device=device,
                        tta=tta, progress=False),
            instances=dict(core_threshold=_core_threshold(core_threshold, config),
                           min_core_voxels=min_core_voxels,
                           min_particle_fraction=check_fraction(min_particle_fraction, "min_particle_fraction")))
        grid = _GridCheck(image.shape, spacing, diameter_vox, tta, budget)
        return _run_stages(image, spacing, particle_size_mm, refine_size, config, predict, grid, device, tta,
                           stages, time.perf_counter())
    finally:
        if stages is not progress:
            stages.close()


def _run_stages(image, spacing, particle_size_mm, refine_size, config, predict, grid, device, tta, stages,
                t0) -> ModelRun:
    """:func:`_run_model`'s steps, each a named stage of ``stages``."""
    stages.start("check")
    if particle_size_mm is not None:
        grid.check(particle_size_mm)
    if lacks_grain_contrast(image):
        return ModelRun(labels=np.zeros(image.shape, np.uint32),
                        particle_size_mm=math.nan if particle_size_mm is None else particle_size_mm,
                        size_estimate=None, model_mask_estimate=None,
                        network_shape=(0, 0, 0) if particle_size_mm is None else grid.shape(particle_size_mm),
                        device=str(device), tta=tta, seconds=time.perf_counter() - t0, network_seconds=0.0)
    stages.start("normalise")
    normalized = _normalize_intensity(image, _check_percentiles(config["intensity_percentiles"]))
    predict["bright"] = _above_grain_threshold(normalized)
    first_estimate = mask_estimate = None
    if particle_size_mm is None:
        stages.start("estimate size")
        first_estimate = _estimate_particle_size(image, spacing, None, None)
        logger.info("%s", first_estimate)
        particle_size_mm = grid.check(first_estimate.particle_size_mm, estimated=True)
    labels, network_shape, network_seconds = _labels_at_size(normalized, particle_size_mm, **predict,
                                                             stages=stages)
    if first_estimate is not None and refine_size and labels.any():
        stages.start("estimate size")
        mask_estimate = _estimate_particle_size(image, spacing, labels > 0, _MODEL_MASK_EQ_PER_INSCRIBED)
        if mask_estimate.particle_size_mm > _REFINE_SIZE_ABOVE * particle_size_mm:
            logger.info("the model's particle mask gives %.4g mm; re-running at that size",
                        mask_estimate.particle_size_mm)
            particle_size_mm = grid.check(mask_estimate.particle_size_mm, estimated=True)
            labels, network_shape, seconds = _labels_at_size(normalized, particle_size_mm, **predict, stages=stages)
            network_seconds += seconds
    return ModelRun(labels=labels, particle_size_mm=particle_size_mm, size_estimate=first_estimate,
                    model_mask_estimate=mask_estimate, network_shape=network_shape,
                    device=str(device), tta=tta, seconds=time.perf_counter() - t0,
                    network_seconds=network_seconds, stage_seconds=dict(stages.seconds))


def _inference_diameter_vox(config: dict, override) -> float:
    """The particle diameter on the network's grid, at least 3 voxels like a particle in a scan."""
    diameter_vox = resolve_inference_diameter_vox(
        config, check_positive(override, "inference_diameter_vox", allow_none=True))
    if not diameter_vox >= MIN_PARTICLE_VOXELS:
        raise InputError(f"inference_diameter_vox must be at least {MIN_PARTICLE_VOXELS:g} voxels, "
                         f"got {diameter_vox!r}")
    return float(diameter_vox)


@dataclass
class _GridCheck:
    """The network grid's shape and memory at a particle size, checked against the budget.

    Attributes
    ----------
    scan_shape, spacing
        The scan's shape and voxel size (mm).
    diameter_vox : float
        Particle diameter on the network's grid.
    tta : bool
        Whether the mirrorings are averaged (more memory a voxel).
    budget : (float, str)
        Bytes allowed and how that was set (:func:`memory_budget_bytes`).
    """

    scan_shape: tuple
    spacing: tuple
    diameter_vox: float
    tta: bool
    budget: tuple

    def shape(self, particle_size_mm: float) -> tuple:
        """The network grid's shape at ``particle_size_mm``."""
        return _output_shape(self.scan_shape, _zoom_factors(self.spacing, particle_size_mm, self.diameter_vox))

    def check(self, particle_size_mm: float, *, estimated: bool = False) -> float:
        """Refuse a size whose grid would not fit in the budget (and an estimate out of scale)."""
        if estimated:
            check_particle_size(particle_size_mm, self.spacing, self.scan_shape, estimated=True)
        zoom = _zoom_factors(self.spacing, particle_size_mm, self.diameter_vox)
        # floats: an absurd size must give a refusal, not an overflow
        grid = [max(1.0, float(np.rint(n * z))) for n, z in zip(self.scan_shape, zoom)]
        per_voxel = _GRID_BYTES_PER_VOXEL_TTA if self.tta else _GRID_BYTES_PER_VOXEL
        needed = math.prod(grid) * per_voxel
        limit, how = self.budget
        if needed > limit or not math.isfinite(needed):
            what = "the estimated particle size" if estimated else "particle_size_mm"
            raise ResourceError(
                f"at {what} {particle_size_mm:.4g} mm the model's network grid would be "
                f"{' x '.join(f'{g:.0f}' for g in grid)} voxels ({self.diameter_vox:g} voxels a particle) and "
                f"need ~{needed / 1e9:.3g} GB ({per_voxel} bytes a voxel), above the memory budget of "
                f"{limit / 1e9:.3g} GB ({how}); segment it block by block with chunk_size=128 (a smaller "
                "chunk_size if it already is), or use a larger particle size, a smaller inference_diameter_vox, "
                "or crop the scan")
        return particle_size_mm


def _check_tta(tta, device: torch.device) -> bool:
    if tta == "auto":
        return device.type != "cpu"
    if not isinstance(tta, (bool, np.bool_)):
        raise InputError(f"tta must be True, False or 'auto', got {tta!r}")
    return bool(tta)


def _open_model(weights, device: torch.device) -> tuple:
    """The network on ``device`` and its config, from a file or a ``(model, config)`` pair."""
    if isinstance(weights, tuple):
        return weights[0].to(device).eval(), weights[1]
    model, config, _ = load_model(weights, device=device)
    return model, config


def _core_threshold(core_threshold, config: dict) -> float:
    if core_threshold is None:
        core_threshold = float(config.get("core_threshold", _UNCHOSEN_CORE_THRESHOLD))
    if not 0 < core_threshold < 1:
        raise InputError(f"core_threshold must be in (0, 1), got {core_threshold!r}")
    return core_threshold


def _labels_at_size(normalized: np.ndarray, particle_size_mm: float, *, model, spacing,
                    diameter_vox: float, window: dict, instances: dict, bright: np.ndarray,
                    stages=None) -> tuple:
    """One pass at one particle size: to the grid, through the network, back, instances.

    ``bright`` marks the voxels above the scan's grain threshold: particles
    of featureless regions are dropped with its help.

    Returns
    -------
    labels, network_shape, network_seconds
    """
    _start(stages, "to network grid")
    grid_image, zoom = _normalized_to_grid(normalized, spacing, particle_size_mm, diameter_vox)
    start = time.perf_counter()
    probs = _predict_probabilities(grid_image, model, **window, stages=stages)
    network_seconds = time.perf_counter() - start
    # Trilinear resampling keeps the three probabilities summing to one, so
    # only core and border need resampling to the scan's grid.
    _start(stages, "back to scan grid")
    core_border = resample_to_shape(probs[1:], normalized.shape)
    del probs
    _start(stages, "instances")
    labels = _instances_from_core_border(core_border, spacing=spacing, zoom=zoom,
                                         particle_size_mm=particle_size_mm, **instances)
    return _drop_phantom_particles(labels, normalized, bright), grid_image.shape, network_seconds


def _start(stages, name: str) -> None:
    if stages is not None:
        stages.start(name)


def _drop_phantom_particles(labels: np.ndarray, image: np.ndarray, bright: np.ndarray) -> np.ndarray:
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
    return _instances_from_core_border(
        core_border, spacing=check_spacing(spacing), zoom=tuple(float(z) for z in zoom),
        particle_size_mm=check_positive(particle_size_mm, "particle_size_mm"),
        core_threshold=_core_threshold(core_threshold, {}), min_core_voxels=min_core_voxels,
        min_particle_fraction=check_fraction(min_particle_fraction, "min_particle_fraction"))


def _instances_from_core_border(core_border: np.ndarray, *, spacing, zoom, particle_size_mm: float,
                                core_threshold: float, min_core_voxels: int,
                                min_particle_fraction: float) -> np.ndarray:
    return _border_core_to_instances(
        _classes_from_core_border(core_border, core_threshold), spacing,
        max(1, int(round(min_core_voxels / float(np.prod(zoom))))), min_particle_fraction,
        float(sphere_volume(particle_size_mm)) / float(np.prod(spacing)))


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
