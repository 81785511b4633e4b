"""``segment_chunked``: a scan of any size, block by block, in one process or on a Dask cluster."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ps3d_toolkit.core.errors import InputError, ResourceError
from ps3d_toolkit.core.locks import output_lock
from ps3d_toolkit.segmentation._checks import DEFAULT_CHUNK_SIZE, check_chunk_size
from ps3d_toolkit.segmentation.chunked import stitch
from ps3d_toolkit.segmentation.chunked.cluster import (
    DEFAULT_DASK_TIMEOUT,
    check_scheduler,
    open_client,
    probe_scheduler,
    shippable,
)
from ps3d_toolkit.segmentation.chunked.grid import Grid, key, shared_box, within
from ps3d_toolkit.segmentation.chunked.work import WORK_SUFFIX, Work, check_output, input_fingerprint, save_block
from ps3d_toolkit.segmentation.engine import Plan, halo_voxels, make_plan, open_scan, read_region_masked, segment_region
from ps3d_toolkit.segmentation.methods import check_method, get_method

logger = logging.getLogger(__name__)

# Blocks prepared ahead of the one being segmented (1: the next one; memory grows with it).
_AHEAD = 1


def segment_chunked(image, *, spacing, output=None, chunk_size: int = DEFAULT_CHUNK_SIZE, particle_size_mm=None,
                    method=None, grains="brighter", roi=None, mask=None, halo_diameters: float | None = None,
                    resume: bool = False,
                    overwrite: bool = False, zarr_format: int = 2, scheduler=None,
                    dask_timeout: float = DEFAULT_DASK_TIMEOUT, progress: bool = True,
                    **options):
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
    method : str, optional
        Segmentation method, built-in or registered by another package (as for :func:`segment`);
        default: the shipped model.
    grains : {"brighter", "darker", "auto"}
        Grain polarity (as for :func:`segment`).
    roi, mask : optional
        The sample region (as for :func:`segment`): blocks outside it are not segmented, and its
        outside is labelled 0.
    halo_diameters : float, optional
        Context read around each block for the instance step, in particle
        diameters (at least 8 voxels); default: the method's ``halo_diameters``
        (0.5 for the model, 1 for the classic methods).
    resume : bool
        Continue an interrupted run into the same ``output`` from its finished blocks.
    overwrite : bool
        Replace an existing ``output`` (a store the toolkit wrote).
    zarr_format : {2, 3}
        Zarr format of the output store.
    scheduler : None, "local", str or distributed.Client
        Where the blocks run: None in this process; ``"local"`` on a new
        ``LocalCluster``; a scheduler address (``"tcp://host:8786"``) or a
        ``Client`` on that cluster (its workers must see the output's folder).
    dask_timeout : float
        Seconds to wait for the scheduler at an address to answer; an address where
        none answers, or something else does, is refused before any work.
    progress : bool
        Show a progress bar over the blocks, with an ETA.
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
        For an invalid image, spacing, size, chunk size, halo, method or
        scheduler, NaN or infinite values in a block (unless
        ``non_finite="mask"``), or a resume whose settings differ.
    OutputError
        If ``output`` exists and ``overwrite`` is not set (``resume`` never replaces a
        finished output), or another run is writing it (its lock, ``<output>.ps3d-lock``).
    CorruptDataError
        When resuming from a damaged ledger.
    """
    given = image  # as given, before any turning round or masking: what a resume must find again
    method = get_method(check_method(method))
    non_finite = options.pop("non_finite", "refuse")
    configured = method.configure(**{**method.block_defaults, **options})
    chunk_size = check_chunk_size(chunk_size)
    if zarr_format not in (2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    if output is not None:
        output = check_output(Path(output), resume, overwrite)
    dask_timeout = check_scheduler(scheduler, dask_timeout)
    probe_scheduler(scheduler, dask_timeout)
    image, spacing, particle_size_mm, grains, region = open_scan(image, spacing=spacing,
                                                                 particle_size_mm=particle_size_mm,
                                                                 grains=grains, roi=roi, mask=mask)
    block = tuple(min(chunk_size, n) for n in image.shape)
    tiles = Grid(tuple(image.shape), block, (0, 0, 0))
    plan = make_plan(image, configured, spacing=spacing, particle_size_mm=particle_size_mm, non_finite=non_finite,
                     cores=[tiles.core(index) for index in tiles.indices()], grains=grains, region=region)
    if scheduler is not None and isinstance(getattr(image, "image", None), np.ndarray):
        image = np.asarray(image)  # turned round or masked once, then scattered to the workers as numpy
    grid = Grid(tuple(image.shape), block, halo_voxels(plan, halo_diameters))
    _warn_small_blocks(grid, plan)
    if plan.runs:  # the method's scale check on one region (core + halo), e.g. the model's memory
        configured.check_scale(tuple(min(n, b + 2 * h) for n, b, h in zip(grid.shape, grid.block, grid.halo)),
                               spacing, plan.particle_size_mm, estimated=plan.size_estimate is not None)
    if output is not None:
        folder = output.with_name(output.name + WORK_SUFFIX)
    else:
        folder = Path(tempfile.mkdtemp(prefix="ps3d-chunked-")) / "work"
    finished, work, held = False, None, contextlib.ExitStack()
    if output is not None:
        held.enter_context(output_lock(output))  # one writer per output
    try:
        if output is not None:
            check_output(output, resume, overwrite)  # again, now that no other run can write it
        fingerprint = input_fingerprint(given) if output is not None else None
        work = Work(folder, plan.key(grid), grid, resume and output is not None, fingerprint)
        shared = _shared_work(plan, grid, work.folder)
        if scheduler is None:
            _run_here(image, plan, grid, work, shared, progress)
        else:
            _run_on_dask(image, plan, grid, work, shared, scheduler, progress, dask_timeout)
        final = stitch.final_ids(sum(work.counts.values()),
                                 stitch.matches(grid, work.counts, lambda box: work.labels[box], work.read_shells))
        if output is None:
            labels = _assemble(work, grid, final)
        else:
            _write_output(work, grid, final, output, plan, zarr_format)
        finished = True
    finally:
        # an interrupted run keeps its work folder for resume=True, unless it finished no block
        # there; a temporary one always goes
        if finished or output is None or (work is not None and work.disposable()):
            shutil.rmtree(folder if output is not None else folder.parent, ignore_errors=True)
        held.close()
    if output is None:
        return labels
    return open_labels(output)


def open_labels(output) -> object:
    """A chunked run's labels, read-only: level 0 of the OME-Zarr store; the run's attributes on ``.attrs``."""
    import zarr

    group = zarr.open_group(str(output), mode="r")
    labels = group["0"]
    return _LabelsWithAttributes(labels, dict(group.attrs))


class _LabelsWithAttributes:
    """A zarr array of labels whose ``attrs`` are its group's (spacing, method, n_particles...)."""

    def __init__(self, array, attrs: dict):
        self._array, self.attrs = array, attrs
        self.shape, self.dtype, self.chunks, self.ndim = array.shape, array.dtype, array.chunks, array.ndim

    def __getitem__(self, box):
        return self._array[box]

    def __array__(self, dtype=None, copy=None):
        values = self._array[...]
        return values if dtype is None else values.astype(dtype)


def _shared_work(plan: Plan, grid: Grid, folder: Path):
    """The method's work shared across blocks (the model's windows), when it has any and there is work."""
    shared_work = getattr(plan.method, "shared_work", None)
    if shared_work is None or not plan.runs:
        return None
    return shared_work(plan, grid, Path(folder) / "windows")


def prepare_block(image, index, plan: Plan, grid: Grid, shared):
    """What a block needs before its own work: its region's grey values (and where they were NaN or
    infinite), and the method's shared work over it (the model's windows).

    Runs ahead of the block (in another thread of the same process), so that
    reading and the network overlap the previous block's instance step.
    """
    if not plan.runs:
        return None
    if plan.region is not None and not plan.region.at(grid.core(index)).any():
        return None  # outside the sample region: nothing to segment
    values, masked = read_region_masked(image, grid.region(index), plan.fill)
    if shared is not None:
        shared.prepare(image, index, values)
    return values, masked


def segment_block(index, plan: Plan, grid: Grid, shared, prepared: tuple | None) -> np.ndarray:
    """uint32 labels of a block's region (core + halo), from :func:`prepare_block`."""
    region = grid.region(index)
    if prepared is None:
        return np.zeros(tuple(s.stop - s.start for s in region), np.uint32)
    values, masked = prepared
    return segment_region(values, masked, plan, region, shared)


def _warn_small_blocks(grid: Grid, plan: Plan) -> None:
    """Warn when blocks are under two particle diameters: most particles then cross a block face."""
    if math.isnan(plan.particle_size_mm):
        return
    # axes cut into blocks (a block as long as the scan cuts no particle)
    cut = [(b, plan.particle_size_mm / s) for s, b, n in zip(plan.spacing, grid.block, grid.shape) if b < n]
    if any(b < 2 * d for b, d in cut):
        needed = math.ceil(2 * max(d for _, d in cut))
        warnings.warn(f"chunk_size {max(grid.block)} is under two particle diameters ({needed} voxels at "
                      f"{plan.particle_size_mm:.3g} mm): most particles cross a block face and the labels can "
                      f"differ from those of larger blocks; pass chunk_size={max(needed, 16)} or more",
                      UserWarning, stacklevel=3)


# --------------------------------------------------------------------------- engines


def _segment_and_save(index, plan: Plan, grid: Grid, folder: Path, shared, values) -> int:
    """Segment one block (its prepared values) and write its local labels and shells; its particle count."""
    labels = segment_block(index, plan, grid, shared, values)
    core, shells, count = stitch.local_ids(labels, grid, index)
    save_block(folder, grid, index, core, shells)
    return count


class _Windows:
    """Which blocks still need each window; a window's file is removed when none does."""

    def __init__(self, shared, todo: list):
        self.shared = shared
        self.left = {}
        if shared is None:
            return
        pending = set(todo)
        for window, users in shared.consumers().items():
            self.left[window] = sum(1 for u in users if u in pending)
            if self.left[window] == 0:
                shared.store.remove(window)

    def done(self, index) -> None:
        if self.shared is None:
            return
        for window in self.shared.windows(index):
            self.left[window] -= 1
            if self.left[window] == 0:
                self.shared.store.remove(window)


def _run_here(image, plan: Plan, grid: Grid, work: Work, shared, progress: bool) -> None:
    """Every unfinished block in raster order, in this process, preparing the next block meanwhile.

    One thread reads the next block's region and runs the network on its
    windows while this thread does the current block's instance step and
    writes it (torch and most of numpy/scipy release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    todo = work.todo()
    windows = _Windows(shared, todo)
    offset = sum(work.counts.values())

    def prepare(index):
        return prepare_block(image, index, plan, grid, shared)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ps3d-prepare") as ahead, \
            tqdm(total=len(grid.indices()), initial=len(grid.indices()) - len(todo), desc="blocks",
                 unit="block", disable=not progress) as bar:
        prepared = [ahead.submit(prepare, index) for index in todo[:_AHEAD]]
        try:
            for k, index in enumerate(todo):
                values = prepared[k].result()
                prepared[k] = None  # let the values go with the block
                if k + _AHEAD < len(todo):
                    prepared.append(ahead.submit(prepare, todo[k + _AHEAD]))
                count = _segment_and_save(index, plan, grid, work.folder, shared, values)
                offset += count
                if offset >= np.iinfo(np.uint32).max:
                    raise ResourceError("the scan holds more particles than uint32 labels can number")
                work.finish(index, count)
                windows.done(index)
                _release_freed_memory()
                bar.update()
        finally:
            for future in prepared:
                if future is not None:
                    future.cancel()


def _release_freed_memory() -> None:
    """Hand memory freed by the last block back to the system (glibc keeps it otherwise).

    Blocks allocate and free arrays of many sizes from two threads; glibc's
    per-thread arenas then hold on to freed pages, and the resident memory
    crept up by ~200 MB over 64 blocks of 64^3 (the model, a 256^3 scan)
    without it. Elsewhere than glibc this does nothing.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _MALLOC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _windows_task(image, windows: list, plan: Plan, grid: Grid, folder: str) -> int:
    """On a worker: compute some of the network's windows (each worker loads the weights once)."""
    _limit_threads()
    _shared_work(plan, grid, Path(folder)).compute(image, windows)
    return len(windows)


def _block_task(image, index, plan: Plan, grid: Grid, folder: str, *windows_ready) -> tuple:
    """On a worker: one block, after the windows it needs (``windows_ready``) are on disk."""
    _limit_threads()
    shared = _shared_work(plan, grid, Path(folder))
    prepared = prepare_block(image, index, plan, grid, shared)
    return index, _segment_and_save(index, plan, grid, Path(folder), shared, prepared)


def _limit_threads() -> None:
    """One torch thread per Dask worker thread: workers already share the cores."""
    import torch

    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _run_on_dask(image, plan: Plan, grid: Grid, work: Work, shared, scheduler, progress: bool,
                 dask_timeout: float = DEFAULT_DASK_TIMEOUT) -> None:
    """Every unfinished block as a task on dask.distributed; the ledger is written here as tasks finish.

    The windows a block is the first to overlap are one task, and the block's
    task waits for the window tasks of every window it overlaps.
    """
    from distributed import as_completed

    client, close = open_client(scheduler, dask_timeout)
    try:
        source = shippable(image, client)
        todo = work.todo()
        windows = _Windows(shared, todo)
        window_tasks = {}
        if shared is not None:
            owners = shared.owners()
            needed = {w for index in todo for w in shared.windows(index)}
            owner_of = {w: index for index, ws in owners.items() for w in ws}
            for index, owned in owners.items():
                missing = shared.store.missing([w for w in owned if w in needed])
                if missing:
                    window_tasks[index] = client.submit(_windows_task, source, missing, plan, grid,
                                                        str(work.folder), pure=False)
        futures = []
        for index in todo:
            ready = []
            if shared is not None:
                owners_needed = {owner_of[w] for w in shared.windows(index)}
                ready = [window_tasks[o] for o in sorted(owners_needed) if o in window_tasks]
            futures.append(client.submit(_block_task, source, index, plan, grid, str(work.folder), *ready,
                                         pure=False))
        with tqdm(total=len(grid.indices()), initial=len(grid.indices()) - len(todo), desc="blocks",
                  unit="block", disable=not progress) as bar:
            for future in as_completed(futures):
                index, count = future.result()
                work.finish(index, count)
                windows.done(index)
                bar.update()
    finally:
        close()


# --------------------------------------------------------------------------- output


def _assemble(work: Work, grid: Grid, final: np.ndarray) -> np.ndarray:
    """The labels in memory: every block's local ids turned final."""
    labels = np.zeros(grid.shape, np.uint32)
    start = stitch.offsets(grid, work.counts)
    for index in grid.indices():
        core = grid.core(index)
        lut = stitch.block_lookup(final, start[key(index)], work.counts[key(index)])
        labels[core] = lut[np.asarray(work.labels[core])]
    return labels


class _FinalLabels:
    """The final labels as a lazy array: any box, read from the work folder's local ids and turned final."""

    def __init__(self, work: Work, grid: Grid, final: np.ndarray):
        self.work, self.grid = work, grid
        self.shape, self.dtype, self.ndim = grid.shape, np.dtype(np.uint32), 3
        start = stitch.offsets(grid, work.counts)
        self.lookups = {index: stitch.block_lookup(final, start[key(index)], work.counts[key(index)])
                        for index in grid.indices()}

    def __getitem__(self, box):
        box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, self.shape))
        out = np.zeros(tuple(s.stop - s.start for s in box), np.uint32)
        first = tuple(s.start // b for s, b in zip(box, self.grid.block))
        last = tuple((s.stop - 1) // b for s, b in zip(box, self.grid.block))
        for index in itertools.product(*(range(a, b + 1) for a, b in zip(first, last))):
            part = shared_box(self.grid.core(index), box)
            if part is not None:
                out[within(part, box)] = self.lookups[index][np.asarray(self.work.labels[part])]
        return out


def _write_output(work: Work, grid: Grid, final: np.ndarray, output: Path, plan: Plan, zarr_format: int) -> None:
    """The final store: OME-Zarr (labels at level 0, a pyramid for viewing), written atomically block by block."""
    from ps3d_toolkit.io.ome_zarr import save_ome_zarr

    attrs = {"particle_size_mm": plan.particle_size_mm, "method": plan.method.name, "grains": plan.grains,
             **({"sample_region": str(plan.region)} if plan.region is not None else {}),
             "chunked": {"block": list(grid.block), "halo": list(grid.halo)},
             "n_particles": int(final.max()) if final.size else 0}
    if math.isnan(plan.particle_size_mm):
        del attrs["particle_size_mm"]
    save_ome_zarr(_FinalLabels(work, grid, final), output, spacing=plan.spacing, labels=True,
                  zarr_format=zarr_format, chunks=grid.block, overwrite=True, attributes=attrs)
