"""The network's sliding windows: placed, fed, run and blended, one implementation for every scan size.

The windows lie on the whole scan's network grid (the scan resampled so that a particle spans
the network's diameter), every ``int(window * (1 - overlap))`` voxels along each axis and the last
one flush with the far edge; a grid smaller than a window is padded with zeros on both sides. The
network normalises each window (instance norm), so its answer depends on where the windows lie:
a block segmented with windows of its own differs near its faces from the whole scan's run
(F1 0.976 on a generated 256^3 scan in blocks of 96). So every block uses the whole scan's windows.

A window's input is resampled from the scan crop it covers (torch's trilinear interpolation,
``align_corners=False``, written separably with the whole scan's coordinate mapping, so that a
crop resamples to exactly the crop of the resampled whole), and mirrored for test-time
augmentation. Its logits are blended with a Gaussian weight (MONAI's ``compute_importance_map``)
into the probabilities of any box of the grid (:class:`Blender`): the whole grid for a scan in
memory, a block's box in a chunked run, where each window is computed once and kept on disk
(:class:`WindowStore`) until every block over it is done. The result equals MONAI's
``sliding_window_inference`` on the whole grid up to floating-point order (tests/test_windows.py).
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ps3d_toolkit.core.errors import InputError

__all__ = ["Blender", "NetworkGrid", "WindowStore", "blend_probabilities", "check_window_settings",
           "importance_map", "predict_probabilities", "predict_windows", "resample_region", "run_windows",
           "window_inputs", "window_sizes"]

# The Gaussian window weight's sigma, as a fraction of the window (MONAI's default).
_SIGMA_SCALE = 0.125
# The test-time augmentation's mirrorings, as spatial axes.
_TTA_FLIPS = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))
# Window edges are multiples of the network's total stride, and at least two strides.
_STRIDE = 8
_SMALLEST_WINDOW = 16


def window_sizes(shape, *, overlap: float, smallest: int = 64, largest: int = 96) -> tuple:
    """Sliding-window edge per axis that covers the scan with the least work.

    Along each axis ``ceil((n - w) / int(w * (1 - overlap))) + 1`` windows of edge ``w`` are
    placed; the edge between ``smallest`` and ``largest`` (in steps of 8, the network's total
    stride) that minimises windows x edge is chosen, the larger one on ties. An axis no longer
    than ``largest`` gets a single window. With the instance-normalised network, windows near the
    64-voxel training patches keep their statistics close to training's.

    Examples
    --------
    >>> window_sizes((118, 142, 142), overlap=0.125)
    (64, 80, 80)
    """
    def edge(n: int) -> int:
        if n <= largest:
            return max(_STRIDE, -(-n // _STRIDE) * _STRIDE)

        def work(w: int) -> tuple:
            windows = math.ceil((n - w) / max(1, int(w * (1 - overlap)))) + 1
            return windows * w, -w

        return min(range(smallest, largest + 1, _STRIDE), key=work)

    return tuple(edge(int(n)) for n in shape)


def check_window_settings(window_size, overlap, batch_size) -> None:
    """Refuse an overlap outside [0, 1), a batch under 1 and a window size that is neither numbers nor "auto"."""
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(window_size, str) and window_size != "auto":
        raise InputError(f"window_size must be a number, 3 numbers or 'auto', got {window_size!r}")


def axis_starts(size: int, window: int, overlap: float) -> list:
    """Window starts along one axis of ``size`` voxels (at least one window long): a step apart, the last flush."""
    step = window if window == size else max(1, int(window * (1 - overlap)))
    count = next(d for d in range(size + 1) if d * step + window >= size) + 1
    return sorted({min(i * step, size - window) for i in range(count)})


@dataclass(frozen=True)
class NetworkGrid:
    """A scan's network grid and the windows on it.

    Attributes
    ----------
    scan_shape, grid_shape : tuple of 3 int
        The scan's shape and its shape on the network's grid.
    window : tuple of 3 int
        The window shape.
    overlap : float
        Overlap between neighbouring windows.
    flips : tuple of tuples
        The mirrorings averaged (``((),)`` without test-time augmentation).
    """

    scan_shape: tuple
    grid_shape: tuple
    window: tuple
    overlap: float
    flips: tuple

    @classmethod
    def for_scan(cls, scan_shape, grid_shape, *, window_size, overlap: float, tta: bool) -> NetworkGrid:
        """The grid of a scan, with ``window_size`` (an edge, 3 edges or "auto") rounded for the network.

        Edges are multiples of the network's stride (8), at least 16, and no larger than the grid
        rounded up to 8 (a smaller grid is padded up to the window).
        """
        if isinstance(window_size, str):
            window_size = window_sizes(grid_shape, overlap=overlap)
        window = (window_size,) * 3 if np.isscalar(window_size) else tuple(window_size)
        window = tuple(min(max(_SMALLEST_WINDOW, int(w) // _STRIDE * _STRIDE), -(-int(g) // _STRIDE) * _STRIDE)
                       for w, g in zip(window, grid_shape))
        return cls(tuple(scan_shape), tuple(grid_shape), window, float(overlap), _TTA_FLIPS if tta else ((),))

    @property
    def pad(self) -> tuple:
        """The low-side zero padding of a grid smaller than a window, per axis."""
        return tuple(max(w - g, 0) // 2 for w, g in zip(self.window, self.grid_shape))

    @cached_property
    def _axis_corners(self) -> tuple:
        """Per mirroring, the windows' low corners along each axis, in grid coordinates.

        Every window is one corner from each axis, so a box's windows are found axis by axis,
        not by testing every window of the scan against it.
        """
        found = []
        for flip in self.flips:
            axes = []
            for axis, (g, w) in enumerate(zip(self.grid_shape, self.window)):
                lows = [low - self.pad[axis] for low in axis_starts(max(g, w), w, self.overlap)]
                if axis in flip:  # the windows of the mirrored grid, in the grid's own coordinates
                    lows = [g - low - w for low in lows]
                axes.append(lows)
            found.append(tuple(axes))
        return tuple(found)

    def windows(self) -> list:
        """Every window as (mirroring index, low corner), mirroring by mirroring."""
        return [(f, corner) for f, axes in enumerate(self._axis_corners) for corner in itertools.product(*axes)]

    def overlapping(self, extent: tuple) -> list:
        """The windows that overlap a grid box (tuple of slices), mirroring by mirroring."""
        found = []
        for f, axes in enumerate(self._axis_corners):
            near = [[c for c in lows if c < e.stop and c + w > e.start]
                    for lows, w, e in zip(axes, self.window, extent)]
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
    if _is_whole(source_box, source_shape) and _is_whole(target_box, target_shape):
        out = _interpolate_whole(out, tuple(target_shape))  # the same mapping, torch's own kernel
        return out.cpu().numpy() if as_numpy else out
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


def _is_whole(box: tuple, shape: tuple) -> bool:
    return all(b.start == 0 and b.stop == n for b, n in zip(box, shape))


def _interpolate_whole(values: torch.Tensor, shape: tuple) -> torch.Tensor:
    """A whole (..., z, y, x) volume resampled to ``shape`` by torch's trilinear interpolation."""
    import torch.nn.functional as F

    if tuple(values.shape[-3:]) == shape:
        return values
    lead = values.shape[:-3]
    batch = values.reshape(1, -1, *values.shape[-3:])
    with torch.inference_mode():
        out = F.interpolate(batch, size=shape, mode="trilinear", align_corners=False)
    return out.reshape(*lead, *shape)


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

    def save(self, window, logits) -> None:
        """Write one window's logits atomically (a torn file would be taken as done)."""
        path = self.path(window)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(torch.as_tensor(logits).cpu().numpy(), dtype=np.float32))
        os.replace(tmp, path)

    def load(self, window) -> np.ndarray:
        return np.load(self.path(window))

    def remove(self, window) -> None:
        self.path(window).unlink(missing_ok=True)


def window_inputs(image, windows, grid: NetworkGrid, normalize, device=None) -> torch.Tensor:
    """The network's inputs for some windows: (n, 1, *window) float32 on ``device``, mirrored as each window asks.

    ``normalize`` turns a scan crop into normalised float32 values. The resampling runs on
    ``device`` (a GPU when the network runs on one).
    """
    batch = torch.zeros((len(windows), 1, *grid.window), dtype=torch.float32, device=device)
    for i, (f, corner) in enumerate(windows):
        extent = tuple(slice(c, c + w) for c, w in zip(corner, grid.window))
        inside = tuple(slice(max(e.start, 0), min(e.stop, g)) for e, g in zip(extent, grid.grid_shape))
        source = grid.scan_extent(inside)
        crop = torch.from_numpy(np.ascontiguousarray(normalize(np.asarray(image[source])))).to(device)
        values = resample_region(crop, source, inside, grid.scan_shape, grid.grid_shape)
        where = tuple(slice(s.start - e.start, s.stop - e.start) for s, e in zip(inside, extent))
        batch[(i, 0, *where)] = values
        if grid.flips[f]:
            batch[i, 0] = batch[i, 0].flip(grid.flips[f])
    return batch


def predict_windows(model, batch, device: torch.device) -> torch.Tensor:
    """float32 logits of a batch of windows (numpy or a tensor) on ``device``: mixed precision on CUDA."""
    x = torch.as_tensor(batch)
    with torch.inference_mode(), torch.autocast(device_type=device.type, enabled=device.type == "cuda",
                                                dtype=torch.float16):
        logits = model(x.to(device))
    return logits.float()


def run_windows(image, windows: list, grid: NetworkGrid, *, model, normalize, device: torch.device,
                batch_size: int, sink, advance=None) -> None:
    """Run the network on ``windows``, a batch at a time; hand each window's logits, mirrored back, to ``sink``.

    ``sink(window, logits)`` gets a (3, *window) tensor on ``device``; ``advance(n)`` (optional)
    is told how many windows were done.
    """
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        logits = predict_windows(model, window_inputs(image, batch, grid, normalize, device), device)
        for window, values in zip(batch, logits):
            flip = grid.flips[window[0]]
            sink(window, values.flip([a + 1 for a in flip]) if flip else values)
        if advance is not None:
            advance(len(batch))


def importance_map(window: tuple) -> np.ndarray:
    """The Gaussian weight of a window's voxels in the blend (MONAI's ``compute_importance_map``)."""
    from monai.data.utils import compute_importance_map

    return compute_importance_map(window, mode="gaussian", sigma_scale=_SIGMA_SCALE, device="cpu",
                                  dtype=torch.float32).numpy()


class Blender:
    """Class probabilities on a box of the grid, from the windows over it, handed in mirroring by mirroring.

    Per mirroring the windows' logits are averaged with the Gaussian weight and turned into
    probabilities (softmax); the mirrorings' probabilities are then averaged.
    """

    def __init__(self, grid: NetworkGrid, extent: tuple, weight=None, device=None):
        self.grid, self.extent = grid, extent
        self.shape = tuple(e.stop - e.start for e in extent)
        self.weight = torch.as_tensor(importance_map(grid.window) if weight is None else weight, device=device)
        self.total = self.summed = self.count = None
        self.flip = None

    def add(self, window, logits) -> None:
        """Blend one window's logits ((3, *window), mirrored back); windows come mirroring by mirroring."""
        f, corner = window
        if f != self.flip:
            self._close_flip()
            self.flip = f
            self.summed = torch.zeros((3, *self.shape), dtype=torch.float32, device=self.weight.device)
            self.count = torch.zeros(self.shape, dtype=torch.float32, device=self.weight.device)
        both = tuple(slice(max(c, e.start), min(c + w, e.stop))
                     for c, w, e in zip(corner, self.grid.window, self.extent))
        if any(b.stop <= b.start for b in both):
            return
        mine = tuple(slice(b.start - c, b.stop - c) for b, c in zip(both, corner))
        there = tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(both, self.extent))
        w = self.weight[mine]
        self.summed[(slice(None), *there)] += torch.as_tensor(logits)[(slice(None), *mine)].to(w.device) * w
        self.count[there] += w

    def _close_flip(self) -> None:
        if self.summed is None:
            return
        probs = torch.softmax(self.summed / self.count, dim=0)
        self.total = probs if self.total is None else self.total + probs
        self.summed = self.count = None

    def probabilities(self) -> torch.Tensor:
        """(3, *box) float32 probabilities of background, core and border."""
        self._close_flip()
        return self.total / len(self.grid.flips)


def blend_probabilities(store: WindowStore, extent: tuple, weight: np.ndarray, device=None) -> np.ndarray:
    """Class probabilities (3, *extent) on a grid box, from every stored window over it."""
    blender = Blender(store.grid, extent, weight, device)
    for window in store.grid.overlapping(extent):
        blender.add(window, torch.from_numpy(store.load(window)))
    return blender.probabilities().cpu().numpy()


def predict_probabilities(normalized, model, *, window_size: int | tuple | Literal["auto"], overlap: float,
                          batch_size: int, device="cpu", tta: bool = False, advance=None) -> np.ndarray:
    """Border-core class probabilities of a scan already on the network's grid (normalised and resampled).

    Parameters
    ----------
    normalized : np.ndarray
        Intensity- and size-normalised scan (z, y, x).
    model : torch.nn.Module
        The border-core network.
    window_size : int, tuple of 3 int or "auto"
        Sliding-window edge in voxels; "auto" picks per axis the window that covers the scan
        with the least work (see :func:`window_sizes`).
    overlap : float
        Fraction of overlap between neighbouring windows, in [0, 1).
    batch_size : int
        Windows per forward pass.
    device : torch.device or str
        Where to run the network.
    tta : bool
        Average over the 8 mirrorings of the input (test-time augmentation).
    advance : callable, optional
        Told how many windows were done after each batch (a progress bar's ``update``).

    Returns
    -------
    np.ndarray
        float32 (3, z, y, x) probabilities of background, core, border.
    """
    check_window_settings(window_size, overlap, batch_size)
    normalized = np.asarray(normalized, dtype=np.float32)
    device = torch.device(device)
    grid = NetworkGrid.for_scan(normalized.shape, normalized.shape, window_size=window_size, overlap=overlap,
                                tta=bool(tta))
    whole = tuple(slice(0, n) for n in normalized.shape)
    blender = Blender(grid, whole, device=device)
    run_windows(normalized, grid.windows(), grid, model=model, normalize=lambda crop: crop, device=device,
                batch_size=int(batch_size), sink=blender.add, advance=advance)
    return blender.probabilities().cpu().numpy()
