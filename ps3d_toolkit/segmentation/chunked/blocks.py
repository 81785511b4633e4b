"""One block of a chunked run, segmented on its region (core + halo) by the plan's method.

- **otsu-watershed**: the grain mask cut with the plan's threshold, then the
  in-memory method's seeded watershed (``classic._seeded_watershed``).
- **model**: the network's windows are the whole scan's
  (:mod:`ps3d_toolkit.segmentation.model.windows`): each is computed once, by
  the first block that overlaps it, and blended over every block it covers,
  so a block's probabilities are the in-memory ones. The instance step and
  the phantom filter then run on the region.

A region without grain contrast of its own is not segmented: it holds no
particles. Within a region a grain's enclosed holes are filled only when they
lie wholly inside it, and small particles are dropped relative to the
region's mean particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ps3d_toolkit.segmentation._checks import MIN_GRAIN_CONTRAST, grain_contrast
from ps3d_toolkit.segmentation.chunked.grid import Grid
from ps3d_toolkit.segmentation.chunked.plan import Plan, grain_mask, read_region, read_region_masked, scaled
from ps3d_toolkit.segmentation.grains import _SMOOTH_SIGMA, _distance_map


def has_contrast(region: np.ndarray) -> bool:
    return np.ptp(region) > 0 and grain_contrast(region) >= MIN_GRAIN_CONTRAST


def otsu_watershed_region(values: np.ndarray, plan: Plan) -> np.ndarray:
    """``classic._otsu_watershed`` on a region, with the plan's threshold and size."""
    from ps3d_toolkit.segmentation.classic import _seeded_watershed

    if not has_contrast(values):
        return np.zeros(values.shape, np.uint32)
    mask = grain_mask(scaled(values, plan), plan)
    radius = plan.particle_size_mm / 2 / min(plan.spacing)
    return _seeded_watershed(mask, _distance_map(mask, plan.spacing), radius,
                             min_distance_fraction=plan.settings["min_distance_fraction"],
                             min_particle_fraction=plan.settings["min_particle_fraction"])


@dataclass
class ModelBlocks:
    """The model's side of a chunked run: the scan's network grid and the windows computed so far.

    Parameters
    ----------
    plan : Plan
        The run's plan (method "model").
    grid : Grid
        The run's blocks.
    folder : Path
        Where the windows' logits are kept until no unfinished block needs them.
    """

    plan: Plan
    grid: Grid
    folder: object

    def __post_init__(self):
        from ps3d_toolkit.segmentation.model.windows import NetworkGrid, WindowStore, importance_map
        from ps3d_toolkit.segmentation.normalize import _output_shape, _zoom_factors

        settings = self.plan.settings
        self.zoom = _zoom_factors(self.plan.spacing, self.plan.particle_size_mm, settings["diameter_vox"])
        self.network = NetworkGrid.for_scan(self.grid.shape, _output_shape(self.grid.shape, self.zoom),
                                            roi_size=settings["window"]["roi_size"],
                                            overlap=settings["window"]["overlap"], tta=settings["tta"])
        self.store = WindowStore(self.folder, self.network)
        self.weight = importance_map(self.network.roi)

    def extent(self, index) -> tuple:
        """The network-grid box a block's region is resampled from."""
        return self.network.grid_extent(self.grid.region(index))

    def windows(self, index) -> list:
        return self.network.overlapping(self.extent(index))

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

    def compute(self, image, windows) -> None:
        """Run the network on the given windows that are not on disk yet, a batch at a time."""
        from ps3d_toolkit.segmentation.model import inference as m
        from ps3d_toolkit.segmentation.model.windows import predict_windows, window_inputs

        missing = self.store.missing(windows)
        if not missing:
            return
        import torch

        device = torch.device(self.plan.settings["device"])
        model, _ = m._open_model(self.plan.settings["weights"], device)
        batch_size = self.plan.settings["window"]["batch_size"]
        for start in range(0, len(missing), batch_size):
            batch = missing[start:start + batch_size]
            inputs = window_inputs(image, batch, self.network, self._normalized, device)
            logits = predict_windows(model, inputs, device)
            for window, values in zip(batch, logits):
                flip = self.network.flips[window[0]]
                if flip:
                    values = np.flip(values, axis=tuple(a + 1 for a in flip))
                self.store.save(window, values)

    def _normalized(self, crop: np.ndarray) -> np.ndarray:
        """A window's scan crop as the network sees it: NaN/inf read as the plan's fill, then normalised."""
        box = tuple(slice(0, n) for n in crop.shape)
        return scaled(read_region(crop, box, self.plan.fill), self.plan)

    def segment(self, image, index, values: np.ndarray) -> np.ndarray:
        """uint32 labels of a block's region (grey ``values``): the blended probabilities, instances, phantoms dropped."""
        from ps3d_toolkit.segmentation.model.inference import _drop_phantom_particles, _instances_from_core_border
        import torch

        from ps3d_toolkit.segmentation.model.windows import blend_probabilities, resample_region

        region = self.grid.region(index)
        if not has_contrast(values):
            return np.zeros(values.shape, np.uint32)
        extent = self.extent(index)
        self.compute(image, self.network.overlapping(extent))
        device = torch.device(self.plan.settings["device"])
        probs = blend_probabilities(self.store, extent, self.weight, device)
        core_border = resample_region(probs[1:], extent, region, self.network.grid_shape, self.grid.shape,
                                      device)
        del probs
        normalized = scaled(values, self.plan)
        bright = ndimage.gaussian_filter(normalized, _SMOOTH_SIGMA) > self.plan.grain_threshold
        labels = _instances_from_core_border(core_border, spacing=self.plan.spacing, zoom=self.zoom,
                                             particle_size_mm=self.plan.particle_size_mm,
                                             **self.plan.settings["instances"])
        return _drop_phantom_particles(labels, normalized, bright).astype(np.uint32, copy=False)


def snow_region(values: np.ndarray, plan: Plan) -> np.ndarray:
    """``classic._snow`` on a region, with the plan's threshold and size."""
    from ps3d_toolkit.core.labels import drop_small_labels
    from ps3d_toolkit.segmentation.classic import import_porespy

    porespy = import_porespy()

    if not has_contrast(values):
        return np.zeros(values.shape, np.uint32)
    settings = plan.settings
    mask = grain_mask(scaled(values, plan), plan)
    if not mask.any():
        return np.zeros(values.shape, np.uint32)
    r_max = settings["r_max"] or max(2, int(round(0.5 * plan.particle_size_mm / 2 / min(plan.spacing))))
    regions = porespy.filters.snow_partitioning(mask, dt=_distance_map(mask, plan.spacing), r_max=int(r_max),
                                                sigma=settings["sigma"]).regions
    return drop_small_labels(regions.astype(np.int64, copy=False), min_fraction=settings["min_particle_fraction"])


def prepare_block(image, index, plan: Plan, grid: Grid, model_blocks: ModelBlocks | None):
    """What a block needs before its own work: its region's grey values (and where they were NaN or
    infinite), and the model's windows over it.

    Runs ahead of the block (in another thread of the same process), so that
    reading and the network overlap the previous block's instance step.
    """
    if not plan.has_contrast or math.isnan(plan.particle_size_mm):
        return None
    if plan.region is not None and not plan.region.at(grid.core(index)).any():
        return None  # outside the sample region: nothing to segment
    values, masked = read_region_masked(image, grid.region(index), plan.fill)
    if plan.method == "model" and has_contrast(values):
        model_blocks.compute(image, model_blocks.windows(index))
    return values, masked


def segment_block(image, index, plan: Plan, grid: Grid, model_blocks: ModelBlocks | None,
                  prepared: tuple | None) -> np.ndarray:
    """uint32 labels of a block's region (core + halo), by the plan's method, from :func:`prepare_block`."""
    if prepared is None:
        region = grid.region(index)
        return np.zeros(tuple(s.stop - s.start for s in region), np.uint32)
    values, masked = prepared
    if plan.method == "model":
        labels = model_blocks.segment(image, index, values)
    elif plan.method == "snow":
        labels = snow_region(values, plan)
    else:
        labels = otsu_watershed_region(values, plan)
    if masked is not None:  # as in memory: NaN or infinite voxels are background
        labels[masked] = 0
    if plan.region is not None:  # and so is everything outside the sample region
        labels[~plan.region.at(grid.region(index))] = 0
    return labels
