"""The border-core U-Net as a method: normalise, predict over the whole scan's windows, instances.

The scan is normalised (robust percentiles of the whole scan's sample) and seen on the network's
grid (resampled so that a particle spans ``inference_diameter_vox`` voxels); the network's windows
lie on the whole scan's grid (:mod:`ps3d_toolkit.segmentation.model.windows`). Probabilities, not
labels, are resampled back to the scan's own grid, so that particle boundaries at native resolution
are as smooth as the network's output; the border-core classes then become particles, and the
particles that featureless regions (epoxy, air) make up are dropped.

In memory the one block is the whole scan and its windows are blended as they are computed; in
blocks each window is computed once by the first block over it, kept on disk and blended into
every block it covers (:class:`ModelBlocks`), so a block's probabilities are the in-memory ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ps3d_toolkit.segmentation._checks import NonFinite, check_fraction, memory_budget_bytes, shows_grains
from ps3d_toolkit.segmentation.methods.base import SegmentationMethod

__all__ = ["METHOD", "Model", "ModelBlocks", "ModelRun", "run_model", "segment_with_model"]

logger = logging.getLogger(__name__)

# The distance-map size estimate on the model's own particle mask: the ratio of
# mean equivalent to mean inscribed diameter that gives a geometric-mean
# estimate/truth of 1.00 on 24 development scans (benchmarks/model_accuracy.py's
# 12 kinds, seeds 7000+ and 7100+; range 0.88-1.12x). It is larger than the Otsu
# mask's 1.08 because the model's mask has no noise holes to shrink the depths.
_MODEL_MASK_EQ_PER_INSCRIBED = 1.197
# Re-run when the model-mask estimate exceeds the first one by more than this.
_REFINE_SIZE_ABOVE = 1.1


class Model(SegmentationMethod):
    """The border-core U-Net (see the module's description and :func:`segment_with_model` for the options)."""

    name = "model"
    defaults = {"weights": None, "overlap": 0.25, "batch_size": 2, "window_size": 96, "device": "auto",
                "tta": "auto", "min_particle_fraction": 0.02, "min_core_voxels": 8, "core_threshold": None,
                "refine_size": True, "inference_diameter_vox": None, "memory_limit_gb": None}
    #: In blocks: one window through the network at a time, not two, because the network's
    #: activations are the largest part of a block's peak (blocks of 128 on a 256^3 scan: 1116 MiB
    #: resident at one window, 1302 MiB at two).
    block_defaults = {"batch_size": 1}
    #: The probabilities are the whole scan's, so the halo serves only the instance step: half a
    #: diameter agreed with the in-memory run at F1 0.998 (generated 256^3, blocks of 96) in 0.46x
    #: the time of one diameter (docs/scale.md).
    halo_diameters = 0.5
    #: 161 with the size estimated, 134 given (the bundled sample, issue 14).
    bytes_per_voxel = 161
    controls = {
        "min_particle_fraction": ("log", 1e-4, 0.3, "drop particles below this fraction of the expected volume"),
        "min_core_voxels": ("int", 1, 200, "smallest core (network voxels) that seeds a particle"),
        "overlap": ("float", 0.0, 0.75, "overlap of the sliding windows"),
        "inference_diameter_vox": ("choice", (None, 16, 18, 20, 22, 24), None,
                                   "particle diameter on the network's grid (voxels): auto = the "
                                   "weights' own; larger is slower"),
        "core_threshold": ("choice", (None, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9), None,
                           "core probability that seeds a particle: auto = the weights' own; "
                           "higher splits touching grains, lower keeps small ones"),
        "tta": ("bool", None, None, "average over mirrored inputs (8x slower)"),
    }
    # The tuner starts without mirroring: tta="auto" turns it on with a GPU, 8x slower previews.
    tuner_defaults = {"tta": False}
    reports_stages = True

    def available(self) -> bool:
        from ps3d_toolkit.segmentation.model import weights_available

        return weights_available()

    def check_options(self, options: dict) -> dict:
        """The options checked, the device chosen and the weights loaded once (each process caches them)."""
        from ps3d_toolkit.segmentation.model.device import check_tta, open_model, select_device
        from ps3d_toolkit.segmentation.model.postprocess import core_threshold_of
        from ps3d_toolkit.segmentation.model.windows import check_window_settings
        from ps3d_toolkit.segmentation.normalize import check_percentiles

        options = super().check_options(options)
        device = select_device(options["device"])
        check_window_settings(options["window_size"], options["overlap"], options["batch_size"])
        _, config = open_model(options["weights"], device)
        return {**options, "device": str(device), "tta": check_tta(options["tta"], device),
                "batch_size": int(options["batch_size"]),
                "inference_diameter_vox": _inference_diameter_vox(config, options["inference_diameter_vox"]),
                "core_threshold": core_threshold_of(options["core_threshold"], config),
                "min_particle_fraction": check_fraction(options["min_particle_fraction"], "min_particle_fraction"),
                "intensity_percentiles": check_percentiles(config["intensity_percentiles"]),
                "budget": memory_budget_bytes(options["memory_limit_gb"])}

    def check_scale(self, block_shape, spacing, particle_size_mm, *, estimated: bool) -> None:
        """Refuse a size whose network grid (of a block this shape) would not fit in the memory budget."""
        self.grid_check(block_shape, spacing).check(particle_size_mm, estimated=estimated)

    def grid_check(self, shape, spacing):
        from ps3d_toolkit.segmentation.model.memory import GridCheck

        o = self.options
        return GridCheck(tuple(shape), spacing, o["inference_diameter_vox"], o["tta"], o["budget"])

    def plan_scan(self, samples, *, spacing, particle_size_vox) -> dict:
        """The intensity percentiles of the raw sample, and the grain threshold in normalised units."""
        from ps3d_toolkit.segmentation.foreground import sample_threshold

        lo, hi = np.percentile(samples.raw, self.options["intensity_percentiles"])
        percentiles = (float(lo), float(hi - lo) if hi > lo else 1.0)
        smooth = (samples.smoothed - np.float32(lo)) / np.float32(percentiles[1])
        return {"percentiles": percentiles, "grain_threshold": sample_threshold(smooth, None)}

    def network_grid(self, scan_shape, spacing, particle_size_vox):
        """The scan's network grid (windows included) and the scan-to-grid zoom at this size."""
        from ps3d_toolkit.segmentation.model.windows import NetworkGrid
        from ps3d_toolkit.segmentation.normalize import grid_shape, zoom_factors

        zoom = zoom_factors(spacing, particle_size_vox * min(spacing), self.options["inference_diameter_vox"])
        grid = NetworkGrid.for_scan(scan_shape, grid_shape(scan_shape, zoom), window_size=self.options["window_size"],
                                    overlap=self.options["overlap"], tta=self.options["tta"])
        return grid, zoom

    def segment_block(self, block, *, plan, spacing, particle_size_vox, stages=None) -> np.ndarray:
        """The block as a whole scan: its own windows, blended as they come, then the instances."""
        import torch

        from ps3d_toolkit.segmentation.model.device import open_model
        from ps3d_toolkit.segmentation.model.windows import Blender, resample_region, run_windows

        device = torch.device(self.options["device"])
        model, _ = open_model(self.options["weights"], device)
        grid, zoom = self.network_grid(block.shape, spacing, particle_size_vox)
        whole_grid = tuple(slice(0, n) for n in grid.grid_shape)
        whole_scan = tuple(slice(0, n) for n in block.shape)
        # The whole network input at once: the separable resampling gives each window's crop of it
        # bit for bit, in one pass instead of one per window (the windows overlap).
        _start(stages, "to network grid")
        grid_image = resample_region(scaled(block, plan), whole_scan, whole_grid, block.shape, grid.grid_shape)
        on_grid = dataclasses.replace(grid, scan_shape=grid.grid_shape)
        blender = Blender(grid, whole_grid, device=device)
        windows = grid.windows()
        _start(stages, "network", steps=len(windows))
        run_windows(grid_image, windows, on_grid, model=model, normalize=lambda crop: crop, device=device,
                    batch_size=self.options["batch_size"], sink=blender.add,
                    advance=None if stages is None else stages.advance)
        del grid_image
        # Trilinear resampling keeps the three probabilities summing to one, so only core and
        # border go back to the scan's grid.
        _start(stages, "back to scan grid")
        core_border = resample_region(blender.probabilities()[1:], whole_grid, tuple(slice(0, n) for n in block.shape),
                                      grid.grid_shape, block.shape, device).cpu().numpy()
        del blender
        _start(stages, "instances")
        return self.instances(core_border, block, plan, spacing, particle_size_vox, zoom)

    def instances(self, core_border, values, plan, spacing, particle_size_vox, zoom) -> np.ndarray:
        """Particles of a region from its core and border probabilities; phantoms of featureless regions dropped."""
        from ps3d_toolkit.segmentation.foreground import smoothed_above
        from ps3d_toolkit.segmentation.model.postprocess import drop_phantom_particles, instances_of

        o = self.options
        labels = instances_of(core_border, spacing=spacing, zoom=zoom,
                              particle_size_mm=particle_size_vox * min(spacing), core_threshold=o["core_threshold"],
                              min_core_voxels=o["min_core_voxels"], min_particle_fraction=o["min_particle_fraction"])
        normalized = scaled(values, plan)
        bright = smoothed_above(normalized, plan["grain_threshold"])
        return drop_phantom_particles(labels, normalized, bright).astype(np.uint32, copy=False)

    def second_look(self, values, labels, plan) -> float | None:
        """The size estimated again on the model's own particle mask: a new size when 1.1x larger, else None.

        Only upwards: noise and weak contrast fragment the Otsu mask and make the first estimate
        too small (0.7x), which the model's mask corrects; a too-large first estimate comes from
        touching grains, which both masks merge alike.
        """
        from ps3d_toolkit.segmentation.foreground import estimate_particle_size_of

        if not self.options["refine_size"]:
            return None
        estimate = estimate_particle_size_of(values, plan.spacing, labels > 0, _MODEL_MASK_EQ_PER_INSCRIBED)
        plan.second_estimate = estimate
        if estimate.particle_size_mm <= _REFINE_SIZE_ABOVE * plan.particle_size_mm:
            return None
        logger.info("the model's particle mask gives %.4g mm; re-running at that size", estimate.particle_size_mm)
        return self.grid_check(values.shape, plan.spacing).check(estimate.particle_size_mm, estimated=True)

    def shared_work(self, plan, grid, folder):
        """The windows of the whole scan, shared by the blocks of a chunked run."""
        return ModelBlocks(self, plan, grid, folder)


def _inference_diameter_vox(config: dict, override) -> float:
    """The particle diameter on the network's grid, at least 3 voxels like a particle in a scan."""
    from ps3d_toolkit.core.checks import check_positive
    from ps3d_toolkit.core.errors import InputError
    from ps3d_toolkit.segmentation._checks import MIN_PARTICLE_VOXELS
    from ps3d_toolkit.segmentation.model.network import resolve_inference_diameter_vox

    inference_diameter_vox = resolve_inference_diameter_vox(
        config, check_positive(override, "inference_diameter_vox", allow_none=True))
    if not inference_diameter_vox >= MIN_PARTICLE_VOXELS:
        raise InputError(f"inference_diameter_vox must be at least {MIN_PARTICLE_VOXELS:g} voxels, "
                         f"got {inference_diameter_vox!r}")
    return float(inference_diameter_vox)


def _start(stages, name: str, steps: int = 1) -> None:
    if stages is not None:
        stages.start(name, steps=steps)


def scaled(values: np.ndarray, plan: dict) -> np.ndarray:
    """Grey values normalised with the plan's percentiles: ~0 for the darkest material, ~1 for the brightest."""
    low, scale = plan["percentiles"]
    out = values.astype(np.float32, copy=True)
    out -= np.float32(low)
    out /= np.float32(scale)
    return out


@dataclass
class ModelBlocks:
    """The model's work shared across the blocks of a run: the whole scan's windows, each computed once.

    Parameters
    ----------
    method : Model
        The configured method.
    plan : Plan
        The run's plan.
    grid : Grid
        The run's blocks.
    folder : Path
        Where the windows' logits are kept until no unfinished block needs them.
    """

    method: Model
    plan: object
    grid: object
    folder: object

    def __post_init__(self):
        from ps3d_toolkit.segmentation.model.windows import WindowStore, importance_map

        self.network, self.zoom = self.method.network_grid(self.grid.shape, self.plan.spacing,
                                                           self.plan.particle_size_vox)
        self.store = WindowStore(self.folder, self.network)
        self.weight = importance_map(self.network.window)

    def extent(self, box) -> tuple:
        """The network-grid box a scan box is resampled from."""
        return self.network.grid_extent(box)

    def windows(self, index) -> list:
        return self.network.overlapping(self.extent(self.grid.region(index)))

    def owners(self) -> dict:
        """Block index -> the windows it computes: those it is the first block (raster order) to overlap."""
        owned, seen = {}, set()
        for index in self.grid.indices():
            mine = [w for w in self.windows(index) if w not in seen]
            seen.update(mine)
            owned[index] = mine
        return owned

    def consumers(self) -> dict:
        """Window -> the blocks that overlap it."""
        found = {}
        for index in self.grid.indices():
            for window in self.windows(index):
                found.setdefault(window, []).append(index)
        return found

    def prepare(self, image, index, values) -> None:
        """Compute the windows a block needs (ahead of its own work), when it has grains."""
        if shows_grains(values):
            self.compute(image, self.windows(index))

    def compute(self, image, windows) -> None:
        """Run the network on the given windows that are not on disk yet, a batch at a time."""
        import torch

        from ps3d_toolkit.segmentation.model.device import open_model
        from ps3d_toolkit.segmentation.model.windows import run_windows

        missing = self.store.missing(windows)
        if not missing:
            return
        device = torch.device(self.method.options["device"])
        model, _ = open_model(self.method.options["weights"], device)
        run_windows(image, missing, self.network, model=model, normalize=self._normalized, device=device,
                    batch_size=self.method.options["batch_size"], sink=self.store.save)

    def _normalized(self, crop: np.ndarray) -> np.ndarray:
        """A window's scan crop as the network sees it: NaN/inf read as the plan's fill, then normalised."""
        from ps3d_toolkit.segmentation.engine import read_region

        box = tuple(slice(0, n) for n in crop.shape)
        return scaled(read_region(crop, box, self.plan.fill), self.plan.method_plan)

    def segment(self, values: np.ndarray, box: tuple) -> np.ndarray:
        """uint32 labels of a block's region (grey ``values`` of the scan's ``box``) from the blended windows."""
        import torch

        from ps3d_toolkit.segmentation.model.windows import blend_probabilities, resample_region

        extent = self.extent(box)
        device = torch.device(self.method.options["device"])
        probs = blend_probabilities(self.store, extent, self.weight, device)
        core_border = resample_region(probs[1:], extent, box, self.network.grid_shape, self.grid.shape, device)
        del probs
        return self.method.instances(core_border, values, self.plan.method_plan, self.plan.spacing,
                                     self.plan.particle_size_vox, self.zoom)


#: The method object the registry holds.
METHOD = Model()


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
        The scan's shape on the network's grid (last pass; (0, 0, 0) when no pass ran).
    device : str
        Where the network ran.
    tta : bool
        Whether the mirrorings were averaged.
    seconds, network_seconds : float
        Time in all, and in the network (all passes).
    stage_seconds : dict
        Seconds per named stage, in the order they ran.
    """

    labels: np.ndarray
    particle_size_mm: float
    size_estimate: object
    model_mask_estimate: object
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


def segment_with_model(image, *, spacing, particle_size_mm=None, non_finite: NonFinite = "refuse",
                       progress=True, **options) -> np.ndarray:
    """Segment particles with the border-core U-Net (``segment(method="model")``).

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float, optional
        Mean particle diameter in mm. When omitted it is estimated from the scan
        (see :func:`ps3d_toolkit.segmentation.foreground.estimate_particle_size`) and, with
        ``refine_size``, checked against the model's own first result. Given or
        estimated, it must span at least 3 voxels along every axis and fit in the scan.
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan, or treat those voxels as
        background (label 0).
    progress : bool or Stages
        Show one bar over the named stages, or continue a caller's :class:`~ps3d_toolkit.core.progress.Stages`.
    **options
        The model's options, defaults in :attr:`Model.defaults`:

        weights : str, Path or tuple, optional
            Weight file, or an already loaded ``(model, config)`` pair; default: the shipped model.
        overlap, batch_size, window_size
            Sliding-window settings (see :func:`~ps3d_toolkit.segmentation.model.windows.predict_probabilities`).
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
            model's own particle mask and, if that is more than 1.1x larger, run
            once more at it. On 56 development scans (24 of the benchmark's kinds;
            2 x 16 low-contrast / ring / angular stress scans) it changed mean
            F1@0.5 by -0.0015, +0.020 (one scan +0.18) and +0.0025, re-running on
            4, 5 and 2 of them (core threshold 0.9).
        inference_diameter_vox : float, optional
            Mean particle diameter in voxels on the network's grid. Default: the
            weights' ``inference_diameter_vox`` (chosen on development scans), else
            the diameter the model was trained at (``train_diameter_vox``).
        memory_limit_gb : float, optional
            Memory budget in GB (10^9 bytes) for the network's grid; default: 80 %
            of the memory available when the run starts. A run whose grid would
            need more (a small particle size on a large scan) is refused before it starts.

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
    TypeError
        If an option is not one of the model's.

    See Also
    --------
    run_model : the same, also returning the size used and timings.
    """
    from ps3d_toolkit.segmentation.engine import run_method

    return run_method(image, METHOD, spacing=spacing, particle_size_mm=particle_size_mm, non_finite=non_finite,
                      progress=progress, options=options)


def run_model(image, *, spacing, particle_size_mm=None, non_finite: NonFinite = "refuse", progress=True,
              **options) -> ModelRun:
    """:func:`segment_with_model`, also returning the size it used and its timings.

    Parameters
    ----------
    image, spacing, particle_size_mm, non_finite, progress
        As for :func:`segment_with_model`.
    **options
        Any option of the model (:attr:`Model.defaults`).

    Returns
    -------
    ModelRun
    """
    from ps3d_toolkit.core.progress import Stages
    from ps3d_toolkit.segmentation.engine import run_method

    start = time.perf_counter()
    stages = progress if isinstance(progress, Stages) else Stages("model", enabled=bool(progress))
    try:
        stages.start("load model")
        configured = METHOD.configure(**options)
        labels, plan = run_method(image, METHOD, spacing=spacing, particle_size_mm=particle_size_mm,
                                  non_finite=non_finite, progress=stages, options=options, with_plan=True)
    finally:
        if stages is not progress:
            stages.close()
    network_shape = (0, 0, 0)
    if not math.isnan(plan.particle_size_mm):
        network_shape = configured.network_grid(labels.shape, plan.spacing,
                                                plan.particle_size_vox)[0].grid_shape
    return ModelRun(labels=labels, particle_size_mm=plan.particle_size_mm, size_estimate=plan.size_estimate,
                    model_mask_estimate=getattr(plan, "second_estimate", None), network_shape=network_shape,
                    device=configured.options["device"], tta=configured.options["tta"],
                    seconds=time.perf_counter() - start, network_seconds=stages.seconds.get("network", 0.0),
                    stage_seconds=dict(stages.seconds))
