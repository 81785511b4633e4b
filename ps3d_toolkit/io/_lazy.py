"""Lazy volumes: scans that stay in their files until a block of them is read.

A :class:`LazyVolume` has the array attributes the toolkit reads (``shape``,
``dtype``, ``ndim``, ``size``, ``nbytes``, ``chunks``), answers basic indexing
(slices, integers, ``Ellipsis``) with a numpy array holding only the selected
voxels, and reads everything only through ``numpy.asarray``. ``dask.array.from_array``
wraps it as it wraps a zarr array. Each format supplies one method, ``_read(box)``,
that reads a box of slices with positive steps; the base class turns any basic
selection into such a box and applies integer indices and reversed steps to the
small result.
"""

from __future__ import annotations

import itertools
import math
import os
import threading

import numpy as np

from ps3d_toolkit.core.errors import InputTypeError

# bytes of one chunk (a slab of whole z-slices) that dask and the slab copies read at once
_CHUNK_BYTES = 64 * 2**20


class LazyVolume:
    """An N-D array read block by block from a file; the base of the lazy readers.

    Parameters
    ----------
    shape : tuple of int
        Shape of the volume.
    dtype : numpy.dtype
        Type of the values a read returns.
    source : str
        Where the values are stored, for messages and dask tokens.
    """

    def __init__(self, shape, dtype, source: str):
        self._shape = tuple(int(n) for n in shape)
        self._dtype = np.dtype(dtype)
        self.source = str(source)
        try:  # a file rewritten in place gets a new dask token
            self._modified = os.stat(self.source).st_mtime_ns
        except OSError:
            self._modified = None

    shape = property(lambda self: self._shape)
    dtype = property(lambda self: self._dtype)
    ndim = property(lambda self: len(self._shape))
    size = property(lambda self: math.prod(self._shape))
    nbytes = property(lambda self: self.size * self._dtype.itemsize)

    @property
    def chunks(self) -> tuple:
        """A block shape that is cheap to read: whole slabs along the first axis, ~64 MiB each."""
        if not self._shape:
            return ()
        slab = math.prod(self._shape[1:]) * self._dtype.itemsize
        depth = max(1, min(self._shape[0], _CHUNK_BYTES // max(slab, 1)))
        return (depth,) + self._shape[1:]

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d volume")
        return self._shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, source={self.source!r})"

    def __dask_tokenize__(self):
        return type(self).__name__, self.source, self._modified, self.shape, str(self.dtype)

    def __array__(self, dtype=None, copy=None):
        values = self[...]
        return values if dtype is None else values.astype(dtype, copy=False)

    def min(self):
        """The smallest value, read one chunk at a time (memory bounded by a chunk)."""
        return min(self[z0:z0 + self.chunks[0]].min() for z0 in range(0, self.shape[0], self.chunks[0]))

    def max(self):
        """The largest value, read one chunk at a time (memory bounded by a chunk)."""
        return max(self[z0:z0 + self.chunks[0]].max() for z0 in range(0, self.shape[0], self.chunks[0]))

    def __getitem__(self, selection) -> np.ndarray:
        box, after = _as_box(selection, self._shape)
        if any(part.start >= part.stop for part in box):
            block = np.empty(tuple(len(range(p.start, p.stop, p.step)) for p in box), self._dtype)
        else:
            block = np.asarray(self._read(box), dtype=self._dtype)
        return block[after] if any(item != slice(None) for item in after) else block

    def _read(self, box: tuple) -> np.ndarray:
        """The values in ``box``: one slice per axis, 0 <= start < stop <= size, step >= 1."""
        raise NotImplementedError


class ArrayVolume(LazyVolume):
    """A lazy volume over an array-like that already reads only what is sliced (a memory map, a zarr array).

    Each read is copied into memory, so that a block holds no reference to the
    file. ``lock`` serialises reads from a file handle that threads must not share.
    """

    def __init__(self, array, source: str, *, dtype=None, lock: bool = False):
        super().__init__(array.shape, array.dtype if dtype is None else dtype, source)
        self.array = array
        self._lock = threading.Lock() if lock else None

    def _read(self, box):
        if self._lock is None:
            return np.array(self.array[box], dtype=self.dtype)
        with self._lock:
            return np.array(self.array[box], dtype=self.dtype)


class RawFileVolume(LazyVolume):
    """A C-order array stored raw in a file at ``offset`` (a ``.npy``, an uncompressed TIFF), read with positional reads.

    Each read fetches, for every index of the leading axes, the rows the box
    spans along the second-to-last axis, and crops them. Reads do not map the
    file, so the process's resident memory holds the blocks and nothing more,
    however much of the file has been read; threads may read at once.
    """

    def __init__(self, path, shape, dtype, offset: int, *, file_dtype=None):
        super().__init__(shape, dtype, path)
        self.path, self.offset = path, int(offset)
        # the stored type, when it differs from the one returned (a big-endian TIFF read as native)
        self.file_dtype = self.dtype if file_dtype is None else np.dtype(file_dtype)
        if self.ndim < 2:
            raise ValueError(f"a raw file volume needs 2 or more axes, got shape {self.shape}")

    def _read(self, box):
        *leading, rows, columns = box
        row_values = self.shape[-1]
        itemsize = self.file_dtype.itemsize
        nbytes = (rows.stop - rows.start) * row_values * itemsize
        block = np.empty(tuple(len(range(p.start, p.stop, p.step)) for p in box), self.dtype)
        leading_indices = itertools.product(*(range(p.start, p.stop, p.step) for p in leading))
        with open(self.path, "rb", buffering=0) as file:
            for out_index, index in zip(np.ndindex(block.shape[:-2]), leading_indices):
                start = int(np.ravel_multi_index(index + (rows.start, 0), self.shape)) * itemsize
                data = os.pread(file.fileno(), nbytes, self.offset + start)
                if len(data) < nbytes:
                    raise OSError(f"{self.path} ends before the data its header describes")
                rows_read = np.frombuffer(data, self.file_dtype).reshape(-1, row_values)
                block[out_index] = rows_read[::rows.step, columns]
        return block


class SliceStack(LazyVolume):
    """A 3D volume whose z-slices are 2D images read one by one (a folder of TIFF files, TIFF pages).

    Parameters
    ----------
    read_slice : callable
        ``read_slice(z)`` returns the 2D slice ``z``; it is cast to ``dtype``.
    depth : int
        Number of slices.
    slice_shape : tuple of 2 int
        Shape of every slice.
    dtype, source
        As :class:`LazyVolume`.
    """

    def __init__(self, read_slice, depth: int, slice_shape, dtype, source: str):
        super().__init__((depth,) + tuple(slice_shape), dtype, source)
        self._read_slice = read_slice

    def _read(self, box):
        z, rest = box[0], box[1:]
        block = np.empty((len(range(z.start, z.stop, z.step)),) + tuple(
            len(range(p.start, p.stop, p.step)) for p in rest), self.dtype)
        for i, index in enumerate(range(z.start, z.stop, z.step)):
            block[i] = np.asarray(self._read_slice(index))[rest]
        return block


class Squeezed(LazyVolume):
    """``base`` with some of its length-1 axes dropped (the channel and time axes of a file)."""

    def __init__(self, base: LazyVolume, keep):
        self.base, self.keep = base, tuple(keep)
        if any(base.shape[axis] != 1 for axis in range(base.ndim) if axis not in self.keep):
            raise ValueError(f"only length-1 axes can be dropped from shape {base.shape}, keeping {self.keep}")
        super().__init__(tuple(base.shape[axis] for axis in self.keep), base.dtype, base.source)

    def _read(self, box):
        full = [slice(0, 1, 1)] * self.base.ndim
        for axis, part in zip(self.keep, box):
            full[axis] = part
        block = self.base._read(tuple(full))
        return block.reshape(tuple(len(range(p.start, p.stop, p.step)) for p in box))


class Reversed(LazyVolume):
    """``base`` with its axes in reverse order (NIfTI's (x, y, z) read as (z, y, x))."""

    def __init__(self, base: LazyVolume):
        self.base = base
        super().__init__(base.shape[::-1], base.dtype, base.source)

    def _read(self, box):
        return np.ascontiguousarray(self.base._read(box[::-1]).transpose())


def _as_box(selection, shape) -> tuple[tuple, tuple]:
    """A basic selection as (box to read with positive steps, indexing of the read block).

    Raises IndexError for an integer out of range and TypeError for anything
    but slices, integers and one Ellipsis (fancy indexing reads the whole
    volume: do it on ``numpy.asarray(volume)``).
    """
    items = selection if isinstance(selection, tuple) else (selection,)
    ellipses = sum(item is Ellipsis for item in items)
    if ellipses > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        items = items[:at] + (slice(None),) * (len(shape) - len(items) + 1) + items[at + 1:]
    if len(items) > len(shape):
        raise IndexError(f"too many indices for a volume of shape {shape}: {len(items)}")
    items = items + (slice(None),) * (len(shape) - len(items))
    box, after = [], []
    for axis, (item, size) in enumerate(zip(items, shape)):
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            index = int(item) + size if int(item) < 0 else int(item)
            if not 0 <= index < size:
                raise IndexError(f"index {int(item)} is out of bounds for axis {axis} with size {size}")
            box.append(slice(index, index + 1, 1))
            after.append(0)
        elif isinstance(item, slice):
            part, flip = _positive_slice(item, size)
            box.append(part)
            after.append(slice(None, None, -1) if flip else slice(None))
        else:
            raise InputTypeError(f"a lazy volume takes slices, integers and '...' only, got {type(item).__name__}; "
                                 "use numpy.asarray(volume) first for other indexing")
    return tuple(box), tuple(after)


def _positive_slice(item: slice, size: int) -> tuple[slice, bool]:
    """(the same elements as a slice with a positive step, whether they must be reversed after)."""
    selected = range(*item.indices(size))
    if not selected:
        return slice(0, 0, 1), False
    if selected.step > 0:
        return slice(selected.start, selected[-1] + 1, selected.step), False
    return slice(selected[-1], selected.start + 1, -selected.step), True
