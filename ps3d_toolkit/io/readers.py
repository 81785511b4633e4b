"""Readers: :func:`load_scan` and :func:`load_labels`, one private reader per format.

Supported formats (chosen by extension): a folder of TIFF slices, a 3D or
multi-page TIFF, zarr (v2 and v3), NIfTI and ``.npy``. Every format is read
lazily: a block is read from the file when it is sliced (see :mod:`._lazy`).

Spacing is taken, in this order, from the ``spacing`` argument, from the file
itself (NIfTI header, zarr attributes or OME-NGFF scale and axis units, the
toolkit's TIFF description, OME-TIFF ``PhysicalSize``, ImageJ ``spacing``/``unit``
and resolution), or from
a sidecar JSON (``<stem>.json`` or ``metadata.json``) beside the scan, or, for a
scan ``<dataset>/images/<stem>.zarr`` of a ParticleSeg3D dataset, the scan's
entry in ``<dataset>/metadata.json`` (see :mod:`ps3d_toolkit.io.metadata`).

No reader truncates silently: TIFF slices of different types are promoted to a
common type (or refused when none holds them exactly), a zarr store with chunks
that are not stored is refused unless ``missing_chunks="fill"``, and a truncated
file or an undecodable chunk raises :class:`~ps3d_toolkit.core.errors.CorruptDataError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import warnings
import weakref
from pathlib import Path
from typing import Literal

import numpy as np

from ps3d_toolkit.core.checks import check_spacing
from ps3d_toolkit.core.errors import CorruptDataError, InputError
from ps3d_toolkit.io._formats import FORMATS_TEXT, TIFF_SUFFIXES, as_uint32_labels, existing, read_format, stem
from ps3d_toolkit.io._lazy import ArrayVolume, LazyVolume, RawFileVolume, Reversed, SliceStack, Squeezed
from ps3d_toolkit.io._zarr import CheckedZarrArray, check_missing_chunks, check_missing_chunks_choice
from ps3d_toolkit.io.metadata import imagej_stored, ome_xml_spacing, read_metadata, shaped_stored, spacing_in_mm
from ps3d_toolkit.io.ome_zarr import ngff_level0_path, ngff_problem, ngff_spacing
from ps3d_toolkit.io.scan import Scan

logger = logging.getLogger(__name__)

MissingChunks = Literal["error", "fill"]


def load_scan(path, spacing=None, *, missing_chunks: MissingChunks = "error") -> Scan:
    """Read a 3D scan and its voxel spacing.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff`` (3D or multi-page), a folder of TIFF slices (sorted
        naturally: ``slice2`` before ``slice10``; slices of different types are
        promoted to a common type, with a warning), a ``.zarr`` store (v2 or v3;
        a root array, or a group holding one array or an array named ``image``
        or ``0``; of an OME-Zarr multiscale image, NGFF 0.4 or 0.5, its full
        resolution), a ``.nii``/``.nii.gz`` or a ``.npy`` file.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, (z, y, x). Overrides any spacing stored with the scan
        (with a warning when they differ). Stored spacings are converted to mm
        from their unit (NGFF axis units, OME-TIFF ``PhysicalSize*Unit``,
        ImageJ ``unit``; an NGFF axis without unit is taken as micrometres,
        and logged); a unit that is not a known length is ignored with a warning.
    missing_chunks : {"error", "fill"}
        What to do when a zarr store lacks chunks that its shape implies:
        ``"error"`` refuses the store; ``"fill"`` reads them as the array's
        fill value, with a warning saying how many.

    Returns
    -------
    Scan
        ``image`` stays lazy for every format: nothing but the header is read
        until a block is sliced (``scan.image[z0:z1]`` reads those slices only),
        and ``numpy.asarray(scan.image)`` reads everything. Zarr gives a
        :class:`~ps3d_toolkit.io._zarr.CheckedZarrArray` (or a dask array over
        one when singleton axes had to be dropped) that names the chunk when
        one cannot be decoded; the other formats give a
        :class:`~ps3d_toolkit.io._lazy.LazyVolume` (``shape``, ``dtype``,
        ``chunks``, basic slicing; ``dask.array.from_array`` wraps it). An
        uncompressed TIFF and a ``.npy`` are read in place, a compressed TIFF a
        page (or tile) at a time, a folder of TIFF slices a file at a time, and
        NIfTI through nibabel's array proxy; a ``.nii.gz`` is one gzip stream,
        so a block is decompressed from the file's start (bounded memory, but
        time grows with the block's depth in the file). A TIFF file stays open
        while its image is in use.

    Raises
    ------
    MissingInputError
        If ``path`` does not exist (a ``FileNotFoundError``).
    CorruptDataError
        If the file is truncated or damaged, a zarr store lacks chunks (with
        ``missing_chunks="error"``), or, when the lazy image is read later, a
        chunk, page, slice file or gzip stream cannot be decoded. A file cut
        short is found when loading (its size is checked against its header),
        except a ``.nii.gz``.
    InputError
        If the format is unknown, the data is not 3D, TIFF slices have no
        common type that holds them exactly, or no spacing is given nor stored
        (a ``ValueError``).
    """
    path = existing(path)
    image, stored = _read(path, check_missing_chunks_choice(missing_chunks))
    sidecar = read_metadata(path)

    stored_spacing = stored.get("spacing")
    source = str(path)
    if stored_spacing is None and sidecar.get("spacing") is not None:
        stored_spacing, source = sidecar["spacing"], sidecar["_path"]
    if spacing is not None:
        spacing = check_spacing(spacing)
        if stored_spacing is not None and not np.allclose(spacing, stored_spacing, rtol=1e-5, atol=0):
            warnings.warn(
                f"spacing={spacing} overrides the spacing {tuple(stored_spacing)} stored in {source}",
                UserWarning,
                stacklevel=2,
            )
    elif stored_spacing is not None:
        spacing = stored_spacing
    elif stored.get("spacing_problem"):
        raise CorruptDataError(f"cannot read the spacing of {path}: {stored['spacing_problem']}; fix the store's "
                               "metadata, or pass spacing=... in mm")
    else:
        raise InputError(f"spacing is not stored in {path}{_sidecar_lacks(sidecar)}; pass spacing=... in mm")

    size = stored.get("particle_size_mm", sidecar.get("particle_size_mm"))
    return Scan(image=image, spacing=spacing, name=stem(path), particle_size_mm=size, path=path)


def _sidecar_lacks(sidecar: dict) -> str:
    """What the metadata file found beside a scan lacks, for a message ('' when there is none)."""
    if "_path" not in sidecar:
        return ""
    if sidecar.get("_no_entry_for"):
        return f" nor in {sidecar['_path']}, which has no entry for scan {sidecar['_no_entry_for']!r}"
    return f" nor in {sidecar['_path']}"


def load_labels(path, *, missing_chunks: MissingChunks = "error") -> np.ndarray:
    """Read a label image (any format :func:`load_scan` reads) as uint32 in memory.

    Parameters
    ----------
    path : str or Path
        Label image file or store.
    missing_chunks : {"error", "fill"}
        As :func:`load_scan`: refuse a zarr store with chunks that are not
        stored, or read them as the fill value (with a warning).

    Returns
    -------
    numpy.ndarray
        uint32 labels, (z, y, x), 0 = background.

    Raises
    ------
    MissingInputError, CorruptDataError, InputError
        As :func:`load_scan`.
    InputTypeError
        When the data is not integer labels (a ``TypeError``).
    """
    path = existing(path)
    image, _ = _read(path, check_missing_chunks_choice(missing_chunks))
    return as_uint32_labels(image, f"labels in {path}")


def _read(path: Path, missing_chunks: str):
    fmt = read_format(path)
    if fmt == "zarr":
        return _read_zarr(path, missing_chunks)
    return _READERS[fmt](path)


# Each reader returns (image, stored) where stored may hold "spacing" (mm) and
# "particle_size_mm" found inside the file.


def _unreadable(path: Path, error: Exception) -> CorruptDataError:
    return CorruptDataError(f"cannot read {path}: {type(error).__name__}: {error}")


def _to_3d(image, path: Path, trailing_first: bool = False):
    """Drop singleton channel/time axes until the data is 3D; raise otherwise."""
    shape = tuple(image.shape)
    keep = list(range(len(shape)))
    while len(keep) > 3:
        ends = (keep[-1], keep[0]) if trailing_first else (keep[0], keep[-1])
        drop = next((axis for axis in ends if shape[axis] == 1), None)
        if drop is None:
            break
        keep.remove(drop)
    if len(keep) != 3:
        what = "a single 2D image" if len(shape) == 2 else f"{len(shape)}D data"
        raise InputError(f"{path} holds {what} of shape {shape}; a scan must be 3D (z, y, x)")
    if len(keep) == len(shape):
        return image
    if isinstance(image, LazyVolume):
        return Squeezed(image, keep)
    index = tuple(slice(None) if axis in keep else 0 for axis in range(len(shape)))
    if not isinstance(image, np.ndarray) and not hasattr(image, "compute"):
        import dask.array as da  # a zarr array has no lazy indexing of its own

        image = da.from_array(image, chunks=getattr(image, "chunks", "auto"))
    return image[index]



def _read_npy(path: Path):
    """The file read block by block, checked against its header so that a cut file is refused now.

    Blocks are read with positional reads rather than through a memory map: the
    pages a map touches count as the process's resident memory until the
    kernel reclaims them, so a scan read block by block would seem to fill memory.
    """
    try:
        shape, fortran_order, dtype, offset = _npy_header(path)
        if dtype.hasobject:
            raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
        expected = offset + math.prod(shape) * dtype.itemsize
        if path.stat().st_size < expected:
            raise ValueError(f"the file is truncated: its header needs {expected} bytes, "
                             f"it holds {path.stat().st_size}")
        if fortran_order or len(shape) < 2 or math.prod(shape) == 0:
            # rare layouts: a read-only memory map (an empty file cannot be mapped at all)
            array = np.load(path, mmap_mode="r" if math.prod(shape) else None, allow_pickle=False)
            volume = ArrayVolume(array, str(path))
        else:
            volume = RawFileVolume(path, shape, dtype, offset)
    except Exception as error:  # noqa: BLE001 - any failure means an unreadable file
        raise _unreadable(path, error) from error
    return _to_3d(volume, path), {}


def _npy_header(path: Path) -> tuple:
    """(shape, fortran_order, dtype, offset of the data) from a .npy header, without reading the data."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(file)
        return tuple(shape), fortran_order, np.dtype(dtype), file.tell()


def _read_nifti(path: Path):
    """NIfTI through nibabel's array proxy: each block is read from the file when sliced.

    A ``.nii.gz`` is one gzip stream: a block is still read without holding the
    volume, but by decompressing the file from its start up to the block.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path), mmap=False)  # blocks are read, not mapped
        proxy = img.dataobj
        header = img.header
        zooms = [float(z) for z in header.get_zooms()[:3]]
        unit = header.get_xyzt_units()[0]
        # the type after nibabel's scaling (slope/intercept), from one voxel
        dtype = np.asanyarray(proxy[(slice(0, 1),) * len(proxy.shape)]).dtype if all(proxy.shape) else proxy.dtype
        _check_nifti_length(path, proxy)
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from error
    # NIfTI stores (x, y, z[, t, c]): drop trailing singletons, then reverse.
    data = _to_3d(ArrayVolume(_CheckedReads(proxy, path), str(path), dtype=dtype), path, trailing_first=True)
    image = Reversed(data)
    stored = {}
    # A header with no unit and unit zooms is what writers leave when they know
    # no spacing; an unknown unit with real zooms is taken as mm (NIfTI custom).
    if not (unit == "unknown" and zooms == [1.0, 1.0, 1.0]):
        unit = "mm" if unit == "unknown" else unit
        # zooms are float32: round to 7 digits so that 0.1 reads back as 0.1
        zyx = [float(f"{z:.7g}") for z in reversed(zooms)]
        stored["spacing"] = spacing_in_mm(zyx, unit, str(path))
        if stored["spacing"] is None:
            del stored["spacing"]
    return image, stored


def _check_nifti_length(path: Path, proxy) -> None:
    """Refuse an uncompressed NIfTI shorter than its header says (a gzip file cannot be sized unread)."""
    if str(path).lower().endswith(".gz"):
        return
    expected = int(proxy.offset) + math.prod(proxy.shape) * np.dtype(proxy.dtype).itemsize
    if path.stat().st_size < expected:
        raise ValueError(f"the file is truncated: its header needs {expected} bytes, it holds {path.stat().st_size}")


def _tiff_stored(tif, path: Path) -> dict:
    """Spacing and particle size from the toolkit's JSON description, OME-XML or ImageJ metadata, in that order."""
    where = str(path)
    shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else None
    if shaped and ("spacing" in shaped or "particle_size_mm" in shaped):
        return shaped_stored(shaped, where)  # what the toolkit wrote before its TIFFs were ImageJ hyperstacks
    if tif.is_ome and tif.ome_metadata:
        spacing = ome_xml_spacing(tif.ome_metadata, where)
        return {} if spacing is None else {"spacing": spacing}
    if tif.is_imagej and tif.imagej_metadata:
        try:
            resolution = tuple(float(r) for r in tif.pages[0].resolution)
        except (TypeError, ValueError):
            resolution = None  # unusable tags: fall back to the sidecar or the argument
        return imagej_stored(tif.imagej_metadata, resolution, where)
    return {}


def _read_tiff(path: Path):
    """A lazy TIFF: read in place, through tifffile's zarr view, or page by page when written so.

    A page's data is read when a block needs it. Where tifffile decodes the
    pages, the file stays open until the volume is garbage-collected.
    """
    def read(tif):
        series = tif.series
        if not series:
            raise CorruptDataError(f"cannot read {path}: it holds no image data")
        _check_tiff_extent(tif, path)
        if len(series) > 1 and all(s.ndim == 2 and s.shape == series[0].shape for s in series):
            # pages written one by one, each with its own description
            dtype = np.result_type(*(s.dtype for s in series))
            volume = SliceStack(_locked_reader(series), len(series), series[0].shape, dtype, str(path))
            axes = "Z" + series[0].axes
        else:
            volume, axes = _tiff_series_volume(series[0], path), series[0].axes
        stored = _tiff_stored(tif, path)
        if isinstance(volume, (np.ndarray, RawFileVolume)):
            tif.close()  # read in place or already in memory: tifffile's handle is not needed
        else:
            weakref.finalize(volume, tif.close)
        return volume, axes, stored

    image, axes, stored = _read_tiff_checked(path, read, keep_open=True)
    if axes.endswith("S") and image.shape[-1] in (3, 4):
        raise InputError(f"{path} is a colour (RGB) image of shape {image.shape}; a scan must be grey values")
    return _to_3d(image, path), stored


def _tiff_series_volume(series, path: Path):
    """The series as a lazy volume: read in place, over tifffile's zarr store, or whole where neither works.

    An uncompressed contiguous series (one tifffile could memory-map) is read
    with positional reads; any other (compressed, tiled) through ``aszarr``, a
    page or tile at a time.
    """
    import zarr

    if series.dataoffset is not None:
        stored = np.dtype(series.parent.byteorder + series.dtype.char)
        return RawFileVolume(path, series.shape, series.dtype.newbyteorder("="), series.dataoffset,
                             file_dtype=stored)
    try:
        array = zarr.open(series.aszarr(), mode="r")
    except Exception as error:  # noqa: BLE001 - an unusual layout: read it whole as before
        logger.debug("cannot read %s lazily (%s: %s); reading it whole", path, type(error).__name__, error)
        return series.asarray()
    # one tifffile handle serves every read: threads (dask) take turns
    return ArrayVolume(_CheckedReads(array, path), str(path), lock=True)


def _locked_reader(series):
    """``read(z)``: the 2D series ``z`` of a TIFF file, one thread at a time."""
    lock = threading.Lock()

    def read(z):
        with lock:
            return series[z].asarray()

    return read


def _check_tiff_extent(tif, path: Path) -> None:
    """Refuse a file whose pages' data reach past its end (a cut file), before any pixel is read."""
    size = path.stat().st_size
    end = 0
    for series in tif.series:
        if series.dataoffset is not None:
            end = max(end, series.dataoffset + series.nbytes)
            continue
        for page in series.pages:
            if page is None:
                raise CorruptDataError(f"cannot read {path}: the file is truncated or damaged (a page is missing)")
            end = max([end] + [o + c for o, c in zip(page.dataoffsets, page.databytecounts)])
    if end > size:
        raise CorruptDataError(f"cannot read {path}: the file is truncated or damaged (its data needs "
                               f"{end} bytes, the file holds {size})")


class _CheckedReads:
    """An array-like (nibabel proxy, zarr array) whose read failures become CorruptDataError naming the file."""

    def __init__(self, array, path: Path):
        self.array, self.path = array, path
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def __getitem__(self, box):
        try:
            return np.asanyarray(self.array[box])
        except (IndexError, TypeError):
            raise  # a bad selection, not a bad file
        except Exception as error:  # noqa: BLE001 - any decoder or file failure
            raise _unreadable(self.path, error) from error


# tifffile logs (rather than raises) when pages are missing or the file is cut
# short, and then returns what it could read: such a message means damage.
_TIFF_DAMAGE = re.compile(r"corrupt|truncat|zeroed|missing|invalid (page )?offset|failed to (read|reshape)"
                          r"|does not match", re.IGNORECASE)


def _read_tiff_checked(path: Path, read, keep_open: bool = False):
    """``read(tiff_file)`` with tifffile's log kept off the terminal; damage becomes CorruptDataError.

    With ``keep_open`` the file stays open after a successful read, for a lazy
    volume that reads from it later.
    """
    import tifffile

    tif = None
    with _tifffile_log_collected() as records:
        try:
            tif = tifffile.TiffFile(path)
            result = read(tif)
        except (InputError, MemoryError):
            _close(tif)
            raise
        except Exception as error:  # noqa: BLE001 - any failure of the parser means a damaged file
            _close(tif)
            raise _tiff_damaged(path, str(error)) from error
    if not keep_open:
        tif.close()
    for record in records:
        if record.levelno >= logging.ERROR or _TIFF_DAMAGE.search(record.getMessage()):
            _close(tif)
            raise _tiff_damaged(path, record.getMessage())
        logger.debug("tifffile on %s: %s", path, record.getMessage())
    return result


def _close(tif) -> None:
    if tif is not None:
        tif.close()


def _tiff_damaged(path: Path, message: str) -> CorruptDataError:
    # drop tifffile's "<tifffile.TiffPages @8> " prefix: the path is named already
    essence = re.sub(r"^(<[^>]*>\s*)+", "", message.strip()).splitlines()[0] if message.strip() else "no detail"
    if "not a tiff file" in essence.lower():
        return CorruptDataError(f"cannot read {path}: {essence}")
    return CorruptDataError(f"cannot read {path}: the file is truncated or damaged ({essence})")


class _RecordList(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


# The logger is global: threads reading slices of a lazy folder (dask) take turns.
_TIFFFILE_LOG_LOCK = threading.RLock()


@contextlib.contextmanager
def _tifffile_log_collected():
    """Collect tifffile's log records instead of letting them reach stderr; restore the logger after."""
    log = logging.getLogger("tifffile")
    with _TIFFFILE_LOG_LOCK:
        saved = log.handlers[:], log.propagate, log.level
        collector = _RecordList()
        log.handlers, log.propagate = [collector], False
        log.setLevel(logging.WARNING)
        try:
            yield collector.records
        finally:
            log.handlers, log.propagate = saved[0], saved[1]
            log.setLevel(saved[2])


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_tiff_folder(path: Path):
    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise InputError(f"folder {path} holds no .tif/.tiff slices (supported are {FORMATS_TEXT})")
    # headers first: the shape and a type that holds every slice, before any pixel is read
    headers = [_read_tiff_checked(file, lambda tif, file=file: _slice_header(tif, file)) for file in files]
    for file, (shape, _) in zip(files, headers):
        if len(shape) != 2:
            raise InputError(f"slice {file} has shape {shape}; each slice in a folder must be 2D")
        if shape != headers[0][0]:
            raise InputError(f"slice {file} has shape {shape}, but {files[0].name} has {headers[0][0]}")
    dtype = _common_slice_dtype(path, files, [np.dtype(d) for _, d in headers])
    # each slice file is read when a block needs it, and cast to the common type then
    return SliceStack(lambda z: _read_tiff_checked(files[z], lambda tif: tif.asarray()),
                      len(files), headers[0][0], dtype, str(path)), {}


def _slice_header(tif, file: Path) -> tuple:
    """(shape, dtype) of a slice, read from its header only; a slice cut short is refused here."""
    if not tif.series:
        raise CorruptDataError(f"cannot read {file}: it holds no image data")
    _check_tiff_extent(tif, file)
    return tuple(tif.series[0].shape), tif.series[0].dtype


def _common_slice_dtype(folder: Path, files: list, dtypes: list) -> np.dtype:
    """The type that holds every slice exactly (with a warning when they differ), or InputError."""
    if all(d == dtypes[0] for d in dtypes):
        return dtypes[0]
    common, seen = dtypes[0], {dtypes[0]}
    for file, dtype in zip(files, dtypes):
        promoted = np.result_type(common, dtype)
        seen.add(dtype)
        lossy = [d for d in seen if not _holds_exactly(promoted, d)]
        if lossy:
            raise InputError(
                f"slice {file} is {dtype} but earlier slices of {folder} are {common}; no common type holds "
                f"both exactly ({promoted} would change {lossy[0]} values): convert the slices to one type"
            )
        common = promoted
    counts = {}
    for file, dtype in zip(files, dtypes):
        counts.setdefault(dtype, []).append(file.name)
    parts = "; ".join(f"{d}: {len(names)} slice(s), first {names[0]}" for d, names in counts.items())
    warnings.warn(f"the slices of {folder} have different types ({parts}); read them all as {common}",
                  UserWarning, stacklevel=5)
    return common


def _holds_exactly(target: np.dtype, source: np.dtype) -> bool:
    """Whether every value of ``source`` is exactly a value of ``target`` (numpy calls int64 -> float64 safe)."""
    if source.kind == "b":
        return True
    if target.kind == "c" and source.kind != "c":
        return False  # a grey-value scan is real: refuse rather than invent an imaginary part
    if source.kind in "iu" and target.kind in "fc":
        value_bits = np.iinfo(source).bits - (source.kind == "i")
        return value_bits <= np.finfo(target).nmant + 1
    return bool(np.can_cast(source, target, casting="safe"))


def _zarr_stored(attrs: dict, where: str) -> dict:
    stored = {}
    if attrs.get("spacing") is not None:
        stored["spacing"] = check_spacing(attrs["spacing"], f"'spacing' attribute of {where}")
    else:
        spacing = ngff_spacing(attrs, where)
        if spacing is not None:
            stored["spacing"] = spacing
        elif ngff_problem(attrs) is not None:
            stored["spacing_problem"] = ngff_problem(attrs)
    if attrs.get("particle_size_mm") is not None:
        stored["particle_size_mm"] = attrs["particle_size_mm"]
    return stored


def _read_zarr(path: Path, missing_chunks: str = "error"):
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
        attrs = dict(node.attrs)
        source = str(path)
        if hasattr(node, "array_keys"):
            names = sorted(node.array_keys())
            level0 = ngff_level0_path(attrs)
            if level0 is not None and level0 in node:
                name = level0  # an OME-Zarr multiscale image: its full resolution
            elif "image" in names:
                name = "image"
            elif "0" in names:
                name = "0"
            elif len(names) == 1:
                name = names[0]
            else:
                raise InputError(
                    f"the group holds arrays {names}; expected one array, or one named 'image' or '0'"
                )
            array = node[name]
            attrs = {**attrs, **dict(array.attrs)}
            source = str(path / name)
        else:
            array = node
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from error
    check_missing_chunks(array, source, missing_chunks)
    return _to_3d(CheckedZarrArray(array, source), path), _zarr_stored(attrs, str(path))


_READERS = {
    "tiff": _read_tiff,
    "tiff_folder": _read_tiff_folder,
    "nifti": _read_nifti,
    "npy": _read_npy,
}
