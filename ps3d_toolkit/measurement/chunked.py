"""The particle table of a label image of any size, block by block.

:func:`measure_chunked` (reached through :func:`ps3d_toolkit.measure` for lazy
inputs or ``chunk_size=``) reads the scan twice:

1. **Find.** Blocks of ``chunk_size`` voxels per edge are read one at a time;
   each gives the ids it holds and their bounding boxes, merged over blocks
   into every particle's bounding box in the scan.
2. **Measure.** Particles are grouped by the block their bounding box starts
   in; a particle wider than a block along some axis is a group of its own.
   For each group the union of its bounding boxes (plus one voxel when a sample
   region is given, for its neighbour test) is read from every input, the
   other particles' voxels are cleared, and the in-memory table code
   (:func:`ps3d_toolkit.measurement.columns.particle_columns`) measures the crop
   with its corner as origin and the scan's shape for ``touches_border``.

Every value therefore comes from the same code on the same voxels, visited in
the same order, as for the whole scan in memory: the tables are equal, floats
included. Memory is bounded by a group's crop: at most (2 x chunk_size)^3
voxels for particles up to a block wide, the bounding box of a larger particle.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from ps3d_toolkit.core.checks import check_labels, check_lazy_volume, check_non_finite, check_same_shape, check_spacing
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.measurement import intensity as _intensity
from ps3d_toolkit.measurement.columns import particle_columns, table_attrs
from ps3d_toolkit.measurement import inputs

#: Block edge (voxels) when the chunked path is taken for a lazy input without ``chunk_size``.
DEFAULT_CHUNK_VOX = 128
# key prefix of the extra grey-value images among the volumes read per crop
_EXTRA = "extra_image:"


def is_lazy(array) -> bool:
    """Whether ``array`` is read from storage on demand: a memory map, or an array with ``chunks`` (zarr, dask, h5py)."""
    if array is None:
        return False
    if isinstance(array, np.ndarray):
        return isinstance(array, np.memmap)
    return hasattr(array, "chunks") and hasattr(array, "shape") and hasattr(array, "dtype")


#: Lazy inputs up to this many voxels (256^3: 64 MiB of uint32 labels) are read
#: into memory by :func:`ps3d_toolkit.measure`: the in-memory path is 2-4x faster
#: there, and the table is the same.
IN_MEMORY_VOXELS = 256**3


def is_large_and_lazy(array) -> bool:
    """Whether ``array`` is lazy (see :func:`is_lazy`) and larger than :data:`IN_MEMORY_VOXELS`."""
    return is_lazy(array) and int(np.prod(array.shape)) > IN_MEMORY_VOXELS


def measure_chunked(labels, image=None, *, spacing=1.0, phases=None, phase_map=None, roi=None, mask=None,
                    phase_names=None, liberation_phase=None,
                    liberation_thresholds=_intensity.LIBERATION_THRESHOLDS,
                    min_phase_fraction: float = _intensity.MIN_PHASE_FRACTION, confidence=None,
                    shape: bool = True, workers=None, non_finite="refuse", force: bool = False,
                    progress: bool = True, chunk_size: int | None = None, extra_images=None,
                    feret_min: bool = True, fov_mask=None) -> pd.DataFrame:
    """:func:`ps3d_toolkit.measure` block by block: the same table, with memory bounded by the block.

    Parameters are those of :func:`ps3d_toolkit.measure`, with the same
    defaults; every volume may be lazy (zarr,
    :class:`ps3d_toolkit.io.CheckedZarrArray`, dask, memory map) and is read a
    block or a crop at a time. ``chunk_size`` is the block edge in voxels
    (default :data:`DEFAULT_CHUNK_VOX`). ``phases="auto"`` takes its intervals
    from :func:`propose_phase_thresholds_chunked` (the in-memory ones when the
    particles hold at most 2 million voxels).

    Returns
    -------
    pandas.DataFrame
        The table :func:`ps3d_toolkit.measure` gives for the same arrays in memory.
    """
    confidence, per_particle = inputs.split_confidence(confidence)
    block = _checked_chunk_size(chunk_size)
    thresholds = _intensity.check_liberation_thresholds(liberation_thresholds, min_phase_fraction)
    volumes, spacing, region, phases = _checked_lazy_inputs(
        labels, image, spacing, (roi, inputs.region_mask(mask, fov_mask)), (phases, phase_map, phase_names), confidence,
        non_finite, force, block, inputs.check_extra_images(extra_images))
    if phases is not None:
        liberation_phase = inputs.checked_liberation(phases, liberation_phase)
    options = {"spacing": spacing, "phases": phases, "liberation_phase": liberation_phase,
               "thresholds": thresholds, "shape": shape, "workers": inputs.resolve_workers(workers),
               "progress": False, "feret_min": bool(feret_min)}
    ids, boxes = find_particles(volumes["labels"], block, progress=progress)
    groups = _groups(ids, boxes, block)
    parts = []
    with tqdm(total=len(groups), desc="measure", unit="crop", disable=not progress) as bar:
        for rows in groups:
            parts.append(_measure_group(volumes, ids[rows], boxes[rows], options))
            bar.update(1)
    if not parts:
        # no particle: the in-memory code on one background voxel gives the empty columns and dtypes
        corner = (slice(0, 1),) * 3
        crops = {name: _read(array, corner, name) for name, array in volumes.items() if array is not None}
        parts.append(particle_columns(np.zeros((1, 1, 1), np.uint32), *_others(crops),
                                      extra_images=_extras(crops), **options))
    frame = pd.concat([pd.DataFrame(part) for part in parts], ignore_index=True)
    frame = frame.sort_values("label", kind="stable").reset_index(drop=True)
    frame.attrs.update(table_attrs(spacing, phases, liberation_phase, thresholds, region))
    return inputs.add_particle_confidence(frame, per_particle)


class _LabelsInRegion:
    """The label image read lazily with the voxels outside the sample region set to 0 (background).

    ``segment()`` leaves those voxels background; the in-memory measurement
    zeroes them in the whole array, this the blocks and crops it reads.
    """

    def __init__(self, labels, region):
        self.labels = labels
        self.region = region
        self.shape = tuple(int(n) for n in labels.shape)
        self.dtype = np.dtype(labels.dtype)
        self.ndim = 3
        self.chunks = getattr(labels, "chunks", None)

    def __getitem__(self, key) -> np.ndarray:
        values = np.asarray(self.labels[key])
        return np.where(self.region[key], values, 0).astype(values.dtype, copy=False)


def find_particles(labels, chunk_size: int = DEFAULT_CHUNK_VOX, *, progress: bool = False):
    """Every particle's id and bounding box, reading ``labels`` a block at a time.

    Parameters
    ----------
    labels : array_like of int, 3D
        Label image, numpy or lazy.
    chunk_size : int
        Block edge in voxels.
    progress : bool
        Show a progress bar over the blocks.

    Returns
    -------
    ids : ndarray of int64, sorted
    boxes : ndarray of int64, shape (n, 6)
        ``z0, y0, x0, z1, y1, x1`` of each particle (the ``*1`` bounds exclusive).
    """
    found_ids, found_boxes = [], []
    windows = _block_windows(labels.shape, chunk_size)
    for window in tqdm(windows, desc="measure: find particles", unit="block", disable=not progress):
        origin = np.array([s.start for s in window], dtype=np.int64)
        block = _read(labels, window, "labels")
        flat = np.flatnonzero(block)
        if not flat.size:
            continue
        ids, inverse = np.unique(block.reshape(-1)[flat], return_inverse=True)
        # boxes of the ids in this block from find_objects on the block's own 1..k numbering
        numbered = np.zeros(block.shape, dtype=np.int32)
        numbered.reshape(-1)[flat] = inverse + 1
        slices = ndi.find_objects(numbered)
        local = np.array([[s.start for s in sl] + [s.stop for s in sl] for sl in slices], dtype=np.int64)
        found_ids.append(ids.astype(np.int64))
        found_boxes.append(local + np.concatenate([origin, origin]))
    if not found_ids:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 6), dtype=np.int64)
    ids, boxes = np.concatenate(found_ids), np.concatenate(found_boxes)
    order = np.argsort(ids, kind="stable")
    ids, boxes = ids[order], boxes[order]
    unique, starts = np.unique(ids, return_index=True)
    merged = np.concatenate([np.minimum.reduceat(boxes[:, :3], starts), np.maximum.reduceat(boxes[:, 3:], starts)],
                            axis=1)
    return unique, merged


def propose_phase_thresholds_chunked(image, labels, chunk_size: int = DEFAULT_CHUNK_VOX, *, n_phases: int = 2,
                                     names=None, max_samples: int = 2_000_000, seed: int = 0) -> dict:
    """:func:`~ps3d_toolkit.measurement.propose_phase_thresholds` of lazy arrays, a block at a time.

    When the particles hold at most ``max_samples`` finite grey values, all of
    them are used and the intervals equal the in-memory ones. Beyond, the
    random sample (same size and seed) is drawn in block order rather than in
    the scan's raster order: the same histogram up to sampling noise, not the
    same voxels.

    Parameters
    ----------
    image, labels : array_like, 3D
        Grey-value scan and label image of the same shape, numpy or lazy.
    chunk_size : int
        Block edge in voxels.
    n_phases, names, max_samples, seed
        As for :func:`~ps3d_toolkit.measurement.propose_phase_thresholds`.

    Returns
    -------
    dict
        ``{name: (low, high)}``, darkest first.
    """
    names = _intensity.phase_names(n_phases, names)
    windows = _block_windows(labels.shape, chunk_size)
    counts = [np.count_nonzero(_foreground_values(image, labels, w, None)) for w in windows]
    total = int(sum(counts))
    chosen = None
    if total > max_samples:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_samples, replace=False))
    values, first = [], 0
    for window, count in zip(windows, counts):
        if count:
            # ranks of this block's values among all, in block order
            pick = None if chosen is None else chosen[np.searchsorted(chosen, first):
                                                      np.searchsorted(chosen, first + count)] - first
            values.append(_foreground_values(image, labels, window, pick))
        first += count
    empty = np.zeros(0, dtype=np.dtype(image.dtype))
    return _intensity.phases_from_values(np.concatenate(values) if values else empty, names)


def _foreground_values(image, labels, window, pick):
    """The finite grey values of the particle voxels in ``window``; only those at ranks ``pick`` if given."""
    values = np.asarray(image[window])[_read(labels, window, "labels") != 0]
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    return values if pick is None else values[pick]


def _block_windows(shape, chunk_size: int) -> list[tuple]:
    """The blocks of a volume of ``shape``, as slices, in raster order."""
    corners = np.ndindex(*(-(-size // chunk_size) for size in shape))
    return [tuple(slice(c * chunk_size, c * chunk_size + chunk_size) for c in corner) for corner in corners]


def _groups(ids, boxes, chunk_size: int) -> list[np.ndarray]:
    """Rows measured together: those whose box starts in the same block, a particle wider than a block alone."""
    if not len(ids):
        return []
    wide = ((boxes[:, 3:] - boxes[:, :3]) > chunk_size).any(axis=1)
    start_block = boxes[:, :3] // chunk_size
    narrow = np.flatnonzero(~wide)
    groups = [np.array([row]) for row in np.flatnonzero(wide)]
    if narrow.size:
        keys, inverse = np.unique(start_block[narrow], axis=0, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        bounds = np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(keys)))[:-1]
        groups.extend(np.split(narrow[order], bounds))
    return groups


def _measure_group(volumes: dict, ids: np.ndarray, boxes: np.ndarray, options: dict) -> dict:
    """The table columns of the particles ``ids``, from the crop around their boxes."""
    scan_shape = volumes["labels"].shape
    # one voxel more around the particles when the sample region's neighbour test needs it
    pad = 1 if volumes.get("region") is not None else 0
    low = np.maximum(boxes[:, :3].min(axis=0) - pad, 0)
    high = np.minimum(boxes[:, 3:].max(axis=0) + pad, scan_shape)
    window = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    crops = {name: _read(array, window, name) for name, array in volumes.items() if array is not None}
    crop = crops["labels"]
    position = np.minimum(np.searchsorted(ids, crop), len(ids) - 1)
    # other particles' voxels cleared; the group's renumbered 1..n (in label order, as their rows)
    kept = np.where(ids[position] == crop, position + 1, 0).astype(np.uint32)
    columns = particle_columns(kept, *_others(crops), origin=tuple(low), scan_shape=scan_shape,
                               extra_images=_extras(crops), **options)
    columns["label"] = ids
    return columns


def _others(crops: dict) -> tuple:
    """The crops of image, phase_map, region and confidence, in the order particle_columns takes them."""
    return tuple(crops.get(name) for name in ("image", "phase_map", "region", "confidence"))


def _extras(crops: dict) -> dict:
    """The crops of the extra grey-value images, by their names."""
    return {name.removeprefix(_EXTRA): crop for name, crop in crops.items() if name.startswith(_EXTRA)}


def _read(array, window, name: str) -> np.ndarray:
    """``array[window]`` in memory, checked as the in-memory path checks the whole volume."""
    values = np.asarray(array[window])
    if name in ("labels", "phase_map"):
        return check_labels(values, name)
    if name == "region":
        return values.astype(bool, copy=False)
    return values


def _checked_chunk_size(chunk_size) -> int:
    """The block edge: ``chunk_size`` if a positive integer, the default when None."""
    if chunk_size is None:
        return DEFAULT_CHUNK_VOX
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive number of voxels per block edge, got {chunk_size!r}")
    return int(chunk_size)


def _checked_lazy_inputs(labels, image, spacing, region, phase_options, confidence, non_finite, force, chunk_size,
                         extra_images=None):
    """The door of :func:`measure_chunked`: shapes and dtypes checked without reading the volumes.

    As the door of :func:`ps3d_toolkit.measure` (``region`` is ``(roi, mask)``,
    ``phase_options`` ``(phases, phase_map, phase_names)``), with the volumes
    kept lazy: ``labels`` read through the sample region, ``region`` the
    :class:`~ps3d_toolkit.segmentation.region.SampleRegion` itself.
    """
    phases, phase_map, phase_names = phase_options
    names = inputs.auto_phase_names(phases, phase_names)
    volumes = {"labels": check_lazy_volume(labels, "labels")}
    kind = np.dtype(volumes["labels"].dtype).kind
    # float labels holding whole numbers are accepted, as in memory: each block is checked when read
    if kind not in "biuf":
        raise InputTypeError(f"labels must be an integer label image, got dtype {volumes['labels'].dtype}")
    inputs.refuse_grey_values(volumes["labels"], "labels", force=force)
    spacing = check_spacing(spacing)
    check_non_finite(non_finite)
    for name, array in (("image", image), ("phase_map", phase_map), ("confidence", confidence)):
        volumes[name] = None if array is None else check_lazy_volume(array, name)
        if array is not None:
            check_same_shape(volumes["labels"], volumes[name], "labels", name)
    if volumes["image"] is not None:
        inputs.check_grey_values(volumes["image"], non_finite)
    region = inputs.sample_region(volumes["labels"], volumes["image"], roi=region[0], mask=region[1], spacing=spacing)
    volumes["region"] = region
    if region is not None:
        volumes["labels"] = _LabelsInRegion(volumes["labels"], region)
    for name, array in (extra_images or {}).items():
        volumes[_EXTRA + name] = inputs.checked_extra_image(volumes["labels"], array, name, non_finite,
                                                     check=check_lazy_volume)
    phases = inputs.checked_phases(phases, names, volumes["image"], volumes["phase_map"],
                            partial(propose_phase_thresholds_chunked, volumes["image"], volumes["labels"], chunk_size))
    return volumes, spacing, region, phases


__all__ = ["DEFAULT_CHUNK_VOX", "IN_MEMORY_VOXELS", "find_particles", "is_large_and_lazy", "is_lazy", "measure_chunked",
           "propose_phase_thresholds_chunked"]
