"""The network's sliding windows over a whole scan, one window at a time.

In memory, MONAI's ``sliding_window_inference`` places windows over the
scan's whole network grid and blends their logits with a Gaussian weight.
The network normalises each window (instance norm), so its answer depends on
where the windows lie: a block segmented on its own, with its own windows,
differs from the whole scan's run near the block's faces (F1 0.976 against
the in-memory labels on a generated 256^3 scan in blocks of 96, one diameter
of halo; 0.994 at two diameters, but 9x slower).

Here the windows are the in-memory run's own windows (MONAI's
``dense_patch_slices`` on the whole grid, with the same padding and flips),
each computed once, from the scan region it covers, and kept on disk until
every block that overlaps it is done. A block then blends all the windows
over its region exactly as MONAI blends them over the scan, so its
probabilities equal the in-memory ones up to floating-point order; only the
instance step is local to the block.

The scan-to-grid and grid-to-scan resampling is torch's trilinear
interpolation (``align_corners=False``) written separably with the whole
scan's coordinate mapping, so that a region resamples to exactly the crop
of the resampled whole.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

__all__ = ["NetworkGrid", "WindowStore", "blend_probabilities", "resample_region"]

# MONAI's Gaussian window weight (``sliding_window_inference``'s default).
_SIGMA_SCALE = 0.125
# The in-memory test-time augmentation's mirrorings, as spatial axes, in its order.
_TTA_FLIPS = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))


@dataclass(frozen=True)
class NetworkGrid:
    """The whole scan's network grid and the in-memory run's windows on it.

    Attributes
    ----------
    scan_shape, grid_shape : tuple of 3 int
        The scan's shape and its shape on the network's grid.
    roi : tuple of 3 int
        The window shape (as the in-memory run chooses it).
    overlap : float
        Overlap between neighbouring windows.
    flips : tuple of tuples
        The mirrorings averaged (``((),)`` without test-time augmentation).
    """

    scan_shape: tuple
    grid_shape: tuple
    roi: tuple
    overlap: float
    flips: tuple

    @classmethod
    def for_scan(cls, scan_shape, grid_shape, *, roi_size, overlap: float, tta: bool) -> NetworkGrid:
        """The grid of a scan, with the window shape the in-memory run would use."""
        from ps3d_toolkit.segmentation.model.inference import window_sizes

        if isinstance(roi_size, str):
            roi_size = window_sizes(grid_shape, overlap=overlap)
        roi = (roi_size,) * 3 if np.isscalar(roi_size) else tuple(roi_size)
        # as inference._predict_probabilities: multiples of 8, no larger than the grid rounded up to 8
        roi = tuple(min(max(16, int(r) // 8 * 8), -(-int(s) // 8) * 8) for r, s in zip(roi, grid_shape))
        return cls(tuple(scan_shape), tuple(grid_shape), roi, float(overlap), _TTA_FLIPS if tta else ((),))

    @property
    def pad(self) -> tuple:
        """MONAI's low-side padding of a grid smaller than a window, per axis."""
        return tuple(max(r - g, 0) // 2 for r, g in zip(self.roi, self.grid_shape))

    @cached_property
    def _axis_corners(self) -> tuple:
        """Per mirroring, the windows' low corners along each axis, in grid coordinates.

        Every window is one corner from each axis (MONAI places them as a
        product), so a box's windows are found axis by axis, not by testing
        every window of the scan against it.
        """
        found = []
        for flip in self.flips:
            axes = []
            for axis, lows in enumerate(padded_axis_starts(self.grid_shape, self.roi, self.overlap)):
                lows = [low - self.pad[axis] for low in lows]  # in the (mirrored) grid
                if axis in flip:
                    lows = [self.grid_shape[axis] - low - self.roi[axis] for low in lows]
                axes.append(lows)
            found.append(tuple(axes))
        return tuple(found)

    def windows(self) -> list:
        """Every window as (mirroring index, low corner), in MONAI's order for each mirroring."""
        return [(f, corner) for f, axes in enumerate(self._axis_corners) for corner in itertools.product(*axes)]

    def overlapping(self, extent: tuple) -> list:
        """The windows that overlap a grid box (tuple of slices)."""
        found = []
        for f, axes in enumerate(self._axis_corners):
            near = [[c for c in lows if c < e.stop and c + r > e.start] for lows, r, e in zip(axes, self.roi, extent)]
            found += [(f, corner) for corner in itertools.product(*near)]
        return found

    def grid_extent(self, region: tuple) -> tuple:
        """The grid box that trilinear resampling of a scan region back from the grid reads."""
        return tuple(slice(*_source_span(r.start, r.stop, g, n))
                     for r, g, n in zip(region, self.grid_shape, self.scan_shape))

    def scan_extent(self, extent: tuple) -> tuple:
        """The scan box that resampling a grid box (clipped to the grid) reads."""
        return tuple(slice(*_source_span(max(e.start, 0), min(e.stop, g), n, g))
                     for e, g, n in zip(extent, self.grid_shape, self.scan_shape))


def padded_axis_starts(grid_shape: tuple, roi: tuple, overlap: float) -> tuple:
    """MONAI's window starts along each axis of a grid (padded up to the window where smaller).

    ``dense_patch_slices`` places one window at every combination of these.
    """
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(g, r) for g, r in zip(grid_shape, roi))
    windows = dense_patch_slices(padded, roi, _get_scan_interval(padded, roi, 3, (overlap,) * 3))
    return tuple(sorted({int(w[axis].start) for w in windows}) for axis in range(3))


def _source_coordinates(start: int, stop: int, source_size: int, target_size: int) -> tuple:
    """torch's ``align_corners=False`` linear source indices and weights for targets start..stop-1."""
    scale = source_size / target_size
    x = np.maximum((np.arange(start, stop, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    low = x.astype(np.int64)
    high = np.where(low < source_size - 1, low + 1, low)
    weight = (x - low).astype(np.float32)
    return low, high, weight


def _source_span(start: int, stop: int, source_size: int, target_size: int) -> tuple:
    """The source index range [lo, hi) that targets start..stop-1 read."""
    if stop <= start:
        return 0, 0
    low, high, _ = _source_coordinates(start, stop, source_size, target_size)
    return int(low.min()), int(high.max()) + 1


def resample_region(values, source_box: tuple, target_box: tuple, source_shape: tuple, target_shape: tuple,
                    device=None):
    """Trilinear resampling of a crop, with the whole volume's coordinate mapping.

    Parameters
    ----------
    values : np.ndarray or torch.Tensor
        (..., z, y, x) float32 values of the source volume in ``source_box``.
    source_box, target_box : tuple of 3 slices
        Where ``values`` lie in the source volume, and the target box wanted.
        The source box must hold every voxel the target box reads
        (:meth:`NetworkGrid.grid_extent`, :meth:`NetworkGrid.scan_extent`).
    source_shape, target_shape : tuple of 3 int
        The whole volumes' shapes.
    device : torch.device, optional
        Where to compute (a GPU when the network runs on one); default: where
        ``values`` are (the CPU for numpy).

    Returns
    -------
    np.ndarray or torch.Tensor
        float32 values on ``target_box`` (numpy for numpy ``values``, else a
        tensor on ``device``): the crop of torch's ``interpolate(...,
        mode="trilinear", align_corners=False)`` of the whole volume, up to
        floating-point order.
    """
    as_numpy = isinstance(values, np.ndarray)
    out = torch.as_tensor(np.ascontiguousarray(values, dtype=np.float32) if as_numpy else values,
                          dtype=torch.float32, device=device)
    lead = out.ndim - 3
    for axis in range(3):
        box, target = source_box[axis], target_box[axis]
        dim = lead + axis
        if source_shape[axis] == target_shape[axis]:
            out = out.narrow(dim, target.start - box.start, target.stop - target.start)
            continue
        low, high, weight = _source_coordinates(target.start, target.stop, source_shape[axis], target_shape[axis])
        shape = [1] * out.ndim
        shape[dim] = weight.size
        weight = torch.from_numpy(weight).to(out.device).reshape(shape)
        a = out.index_select(dim, torch.from_numpy(low - box.start).to(out.device))
        b = out.index_select(dim, torch.from_numpy(high - box.start).to(out.device))
        out = torch.lerp(a, b, weight)
    return out.cpu().numpy() if as_numpy else out


class WindowStore:
    """Window logits on disk, each computed once and removed when no block needs it any more.

    Parameters
    ----------
    folder : Path
        Where the windows' ``.npy`` files live (kept across an interrupted run).
    grid : NetworkGrid
        The windows' grid.
    """

    def __init__(self, folder: Path, grid: NetworkGrid):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.grid = grid

    def path(self, window) -> Path:
        f, corner = window
        return self.folder / ("w{}_{}.npy".format(f, "_".join(str(c) for c in corner)))

    def missing(self, windows) -> list:
        return [w for w in windows if not self.path(w).is_file()]

    def save(self, window, logits: np.ndarray) -> None:
        """Write one window's logits atomically (a torn file would be taken as done)."""
        path = self.path(window)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(logits, dtype=np.float32))
        os.replace(tmp, path)

    def load(self, window) -> np.ndarray:
        return np.load(self.path(window))

    def remove(self, window) -> None:
        self.path(window).unlink(missing_ok=True)


def window_inputs(image, windows, grid: NetworkGrid, normalize, device=None) -> torch.Tensor:
    """The network's inputs for some windows: (n, 1, *roi) float32 on ``device``, mirrored as each window's flip asks.

    ``normalize`` turns a scan crop into normalised float32 values (the plan's
    intensity scaling). The resampling runs on ``device`` (a GPU when the
    network runs on one).
    """
    batch = torch.zeros((len(windows), 1, *grid.roi), dtype=torch.float32, device=device)
    for i, (f, corner) in enumerate(windows):
        extent = tuple(slice(c, c + r) for c, r in zip(corner, grid.roi))
        inside = tuple(slice(max(e.start, 0), min(e.stop, g)) for e, g in zip(extent, grid.grid_shape))
        source = grid.scan_extent(inside)
        crop = torch.from_numpy(np.ascontiguousarray(normalize(np.asarray(image[source])))).to(device)
        values = resample_region(crop, source, inside, grid.scan_shape, grid.grid_shape)
        where = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(inside, extent))
        batch[(i, 0, *where)] = values
        if grid.flips[f]:
            batch[i, 0] = batch[i, 0].flip(grid.flips[f])
    return batch


def predict_windows(model, batch, device: torch.device) -> np.ndarray:
    """Logits of a batch of windows (numpy or a tensor), as MONAI's predictor call (mixed precision on CUDA)."""
    x = torch.as_tensor(batch)
    with torch.inference_mode(), torch.autocast(device_type=device.type, enabled=device.type == "cuda",
                                                dtype=torch.float16):
        logits = model(x.to(device))
    return logits.float().cpu().numpy()


def importance_map(roi: tuple) -> np.ndarray:
    """MONAI's Gaussian window weight for a window shape."""
    from monai.data.utils import compute_importance_map

    return compute_importance_map(roi, mode="gaussian", sigma_scale=_SIGMA_SCALE, device="cpu",
                                  dtype=torch.float32).numpy()


def blend_probabilities(store: WindowStore, extent: tuple, weight: np.ndarray, device=None) -> np.ndarray:
    """Class probabilities (3, *extent) on a grid box, from every window over it.

    Per mirroring, the windows' logits are averaged with the Gaussian
    ``weight`` and turned into probabilities (softmax), as in memory; the
    mirrorings' probabilities are then averaged. The sums and the softmax
    run on ``device`` (a GPU when the network runs on one).
    """
    grid = store.grid
    shape = tuple(e.stop - e.start for e in extent)
    weight = torch.as_tensor(weight, device=device)
    total = None
    for f in range(len(grid.flips)):
        summed = torch.zeros((3, *shape), dtype=torch.float32, device=device)
        count = torch.zeros(shape, dtype=torch.float32, device=device)
        for window in grid.overlapping(extent):
            if window[0] != f:
                continue
            corner = window[1]
            both = tuple(slice(max(c, e.start), min(c + r, e.stop)) for c, r, e in zip(corner, grid.roi, extent))
            mine = tuple(slice(b.start - c, b.stop - c) for b, c in zip(both, corner))
            there = tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(both, extent))
            w = weight[mine]
            logits = torch.from_numpy(store.load(window)[(slice(None), *mine)]).to(weight.device)
            summed[(slice(None), *there)] += logits * w
            count[there] += w
        probs = torch.softmax(summed / count, dim=0)
        total = probs if total is None else total + probs
    return (total / len(grid.flips)).cpu().numpy()
