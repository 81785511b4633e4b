"""Zarr stores read without silent gaps: missing chunks found up front, corrupt chunks named.

A zarr array returns its fill value for a chunk that is not stored, and a bare
codec error (``Zstd decompression error``) for one that cannot be decoded. Here
the stored keys are compared with the chunk grid when the store is opened, and
the lazy array handed out (:class:`CheckedZarrArray`) names the failing chunk.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.errors import CorruptDataError, InputError

logger = logging.getLogger(__name__)

MISSING_CHUNK_CHOICES = ("error", "fill")
# chunk indices quoted in a message
_SHOWN = 3
# the attribute that marks a store as written by the toolkit (and so safe to replace)
WRITTEN_BY = "written_by"


def toolkit_mark() -> dict:
    """The root attribute that marks a store as written by ps3d_toolkit (so a later write may replace it)."""
    from ps3d_toolkit import __version__

    return {WRITTEN_BY: f"ps3d_toolkit {__version__}"}


def written_by_toolkit(path: Path) -> bool:
    """Whether ``path`` is a zarr store whose root attributes say ps3d_toolkit wrote it."""
    for name, attrs_of in (("zarr.json", lambda meta: meta.get("attributes", {})), (".zattrs", lambda a: a)):
        try:
            meta = json.loads((Path(path) / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and str(attrs_of(meta).get(WRITTEN_BY, "")).startswith("ps3d_toolkit"):
            return True
    return False


def check_missing_chunks(array, store, missing_chunks: str) -> None:
    """Raise CorruptDataError (``"error"``) or warn (``"fill"``) when chunks of ``array`` are not stored.

    ``store`` names the store in messages. The stored keys are listed once and
    compared with the chunk (or shard) grid that the shape implies.
    """
    missing, total = _missing_chunks(array)
    if not missing:
        return
    shown = ", ".join(str(index) for index in missing[:_SHOWN]) + (", ..." if len(missing) > _SHOWN else "")
    fill = getattr(array, "fill_value", 0)
    if missing_chunks == "fill":
        warnings.warn(f"{len(missing)} of {total} chunks of {store} are not stored ({shown}); "
                      f"they were read as the fill value {fill}", UserWarning, stacklevel=5)
        return
    raise CorruptDataError(
        f"{store} is missing {len(missing)} of {total} chunks (chunk indices {shown}), which would read "
        f"as the fill value {fill}; restore the store, or pass missing_chunks=\"fill\" to accept them "
        "(writers that skip empty chunks leave them out too)"
    )


def _missing_chunks(array) -> tuple[list, int]:
    """Indices of the storage units (shards, else chunks) with no stored key, and their number."""
    storage_shape = getattr(array, "shards", None) or array.chunks
    grid = [math.ceil(size / step) for size, step in zip(array.shape, storage_shape)]
    total = math.prod(grid)
    stored = _stored_keys(array)
    if stored is None:
        return [], total
    encode = _chunk_key_encoder(array)
    missing = [index for index in itertools.product(*map(range, grid)) if encode(index) not in stored]
    return missing, total


def _stored_keys(array):
    """The keys stored under the array, relative to it, or None where the store cannot be listed."""
    prefix = f"{array.path}/" if array.path else ""
    try:
        try:
            from zarr.core.sync import collect_aiterator
        except ImportError:  # zarr 2: a mapping store
            keys = [key for key in array.store if key.startswith(prefix)]
        else:
            keys = collect_aiterator(array.store.list_prefix(prefix))
    except Exception as error:  # noqa: BLE001 - a store without listing: read it as before
        logger.debug("cannot list the chunks of %s (%s): missing chunks are not looked for", array, error)
        return None
    return {key[len(prefix):] for key in keys}


def _chunk_key_encoder(array):
    """Index -> stored key, relative to the array (``c/0/1/2`` in v3, ``0.1.2`` in v2)."""
    metadata = getattr(array, "metadata", None)
    if hasattr(metadata, "encode_chunk_key"):
        return metadata.encode_chunk_key
    separator = getattr(array, "_dimension_separator", None) or "."  # zarr 2
    return lambda index: separator.join(map(str, index))


def _storage_index(index, chunks, storage) -> tuple:
    return tuple(i * chunk // unit for i, chunk, unit in zip(index, chunks, storage))


def check_missing_chunks_choice(missing_chunks) -> str:
    """``missing_chunks`` if it is one of :data:`MISSING_CHUNK_CHOICES`."""
    if missing_chunks not in MISSING_CHUNK_CHOICES:
        raise InputError(f"missing_chunks must be one of {MISSING_CHUNK_CHOICES}, got {missing_chunks!r}")
    return missing_chunks


class CheckedZarrArray:
    """A lazy zarr array that names the chunk and the store when a chunk cannot be decoded.

    Reading stays lazy: only the selected chunks are read, as with the zarr
    array itself. ``shape``, ``dtype``, ``ndim``, ``chunks``, indexing and
    ``numpy.asarray`` behave as on the zarr array; any other attribute
    (``attrs``, ``store``, ...) is the zarr array's.

    Parameters
    ----------
    array : zarr.Array
        The array to read.
    source : str
        Where it is stored, for messages.

    Raises
    ------
    CorruptDataError
        When a chunk of the selection cannot be read or decoded.
    """

    def __init__(self, array, source: str):
        self.zarr_array = array
        self.source = source

    shape = property(lambda self: tuple(self.zarr_array.shape))
    dtype = property(lambda self: np.dtype(self.zarr_array.dtype))
    ndim = property(lambda self: len(self.zarr_array.shape))
    chunks = property(lambda self: tuple(self.zarr_array.chunks))
    size = property(lambda self: math.prod(self.zarr_array.shape))

    def __getattr__(self, name):
        if name.startswith("__") or name == "zarr_array":
            raise AttributeError(name)
        return getattr(self.zarr_array, name)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"CheckedZarrArray(shape={self.shape}, dtype={self.dtype}, chunks={self.chunks}, "
                f"source={self.source!r})")

    def __dask_tokenize__(self):
        path = str(getattr(self.zarr_array, "path", ""))
        return type(self).__name__, self.source, path, self.shape, str(self.dtype)

    def __array__(self, dtype=None, copy=None):
        values = np.asarray(self[...])
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, selection):
        try:
            return self.zarr_array[selection]
        except (IndexError, TypeError):
            raise  # a bad selection, not a bad chunk
        except Exception as error:  # noqa: BLE001 - any codec or store failure; located below
            failure = self._locate_failure(selection)
            if failure is None:
                raise
            raise failure from error

    def _locate_failure(self, selection) -> CorruptDataError | None:
        """The error naming the first chunk of ``selection`` that cannot be read, if one is found."""
        encode = _chunk_key_encoder(self.zarr_array)
        # with sharding a key names the shard that holds the chunk
        storage = getattr(self.zarr_array, "shards", None) or self.chunks
        for index in itertools.product(*_chunk_ranges(selection, self.shape, self.chunks)):
            region = tuple(slice(i * step, min((i + 1) * step, size))
                           for i, step, size in zip(index, self.chunks, self.shape))
            try:
                self.zarr_array[region]
            except Exception as error:  # noqa: BLE001
                key = encode(_storage_index(index, self.chunks, storage))
                reason = " ".join(str(error).split())  # one line
                return CorruptDataError(f"cannot read chunk {index} (key '{key}') of {self.source}: "
                                        f"{type(error).__name__}: {reason}; the store is damaged, "
                                        "restore it from a copy")
        return None


def _chunk_ranges(selection, shape, chunks) -> list[range]:
    """Per axis, the chunk indices a basic selection touches (every chunk for other selections)."""
    everything = [range(math.ceil(size / step)) for size, step in zip(shape, chunks)]
    items = selection if isinstance(selection, tuple) else (selection,)
    if any(item is Ellipsis for item in items):
        at = next(i for i, item in enumerate(items) if item is Ellipsis)
        items = items[:at] + (slice(None),) * (len(shape) - len(items) + 1) + items[at + 1:]
    if len(items) > len(shape) or not all(isinstance(i, (slice, int, np.integer)) for i in items):
        return everything
    ranges = list(everything)
    for axis, item in enumerate(items):
        if isinstance(item, slice):
            start, stop, step = item.indices(shape[axis])
            if step < 0 or start >= stop:
                continue
            ranges[axis] = range(start // chunks[axis], (stop - 1) // chunks[axis] + 1)
        else:
            position = int(item) % shape[axis]
            ranges[axis] = range(position // chunks[axis], position // chunks[axis] + 1)
    return ranges
