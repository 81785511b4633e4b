"""Writers: :func:`save_labels`, :func:`save_scan` and :func:`convert`, one private writer per format.

Every write is atomic (a temporary name beside the target, then a rename; the
temporary file is removed on any error and on SIGTERM); lazy (zarr, dask) input
is copied slab by slab (block by block into ``.ome.zarr``). TIFFs are ImageJ
hyperstacks where ImageJ holds the type, so that Fiji opens them with their
voxel size; ``.ome.zarr`` stores are OME-NGFF multiscale images (:mod:`.ome_zarr`).
Nothing is lost: an existing directory is only replaced
when it is a zarr store the toolkit wrote (marked ``written_by`` in its
attributes), the free space is checked first where the size is known
(uncompressed ``.npy`` and ``.nii``; the compressed ``.tif``, ``.nii.gz`` and
``.zarr`` have no useful bound), and a full or read-only disk is an
:class:`~ps3d_toolkit.core.errors.OutputError` rather than a crash.
"""

from __future__ import annotations

import logging
import warnings
from functools import partial
from io import BytesIO
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_lazy_volume, check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError, Ps3dError
from ps3d_toolkit.io._formats import ZARR_CHUNK, as_uint32_labels, suffix, write_format
from ps3d_toolkit.io._zarr import WRITTEN_BY, toolkit_mark
from ps3d_toolkit.io.metadata import write_metadata
from ps3d_toolkit.io.ome_zarr import check_zarr_format, save_ome_zarr
from ps3d_toolkit.io.outputs import check_free_space, output_error_from, replaceable_directory
from ps3d_toolkit.io.readers import MissingChunks, load_scan

logger = logging.getLogger(__name__)

# pixels per cm that a TIFF resolution tag (a ratio of uint32) holds with some precision
_RESOLUTION_RANGE = (1e-6, 2.0**31)
# the types an ImageJ hyperstack holds (tifffile refuses the others)
_IMAGEJ_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32))
# bytes of a NIfTI-1 header plus its extension flag, written before the voxels of a .nii
_NIFTI_HEADER_BYTES = 352


def save_labels(labels, path, spacing=None, *, zarr_format: int | None = None) -> Path:
    """Write a label image as uint32, atomically; the format follows the extension.

    Parameters
    ----------
    labels : array_like
        3D non-negative integer labels, (z, y, x), 0 = background.
    path : str or Path
        Target: ``.tif``/``.tiff``, ``.zarr``, ``.ome.zarr``, ``.npy``,
        ``.nii``/``.nii.gz``. A TIFF is an ImageJ hyperstack (uint16, with the
        voxel size Fiji reads) when the labels fit in 16 bits, else a uint32
        TIFF (with a warning: Fiji then lacks the z spacing); ``.ome.tif`` is a
        uint32 OME-TIFF with ``PhysicalSize`` in mm. ``.ome.zarr`` is
        an OME-NGFF multiscale image whose levels keep exact label values
        (:func:`~ps3d_toolkit.io.ome_zarr.save_ome_zarr`), copied block by
        block from lazy labels; it needs ``spacing``.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, stored in the file (a sidecar JSON for ``.npy``).
    zarr_format : {2, 3}, optional
        Zarr version of a ``.zarr``/``.ome.zarr`` store. Default: 2 (NGFF 0.4)
        for ``.ome.zarr``, the zarr library's default for ``.zarr``.

    Returns
    -------
    Path
        The label file (or zarr store).

    Raises
    ------
    InputError
        For an unknown extension (before anything is written), labels that are
        not 3D, negative, or above the uint32 range (a ``ValueError``).
    InputTypeError
        For non-integer labels (a ``TypeError``).
    OutputError
        Before anything is written, when ``path`` is an existing directory that
        is not a zarr store ps3d_toolkit wrote, or the disk has too little free
        space for an uncompressed ``.npy``/``.nii``; while writing, when the disk
        is full or read-only (an ``OSError``; no temporary file is left).
    CorruptDataError
        When lazy labels (a zarr store) hold a chunk that cannot be decoded.
    """
    fmt = write_format(path)
    zarr_format = None if zarr_format is None else check_zarr_format(zarr_format)
    spacing = None if spacing is None else check_spacing(spacing)
    if fmt == "ome_zarr":
        return _write_ome_zarr(labels, Path(path).expanduser(), spacing, zarr_format, labels=True)
    labels = as_uint32_labels(labels, "labels")
    if fmt == "tiff" and not _is_ome_tiff(path):
        labels = _tiff_labels(labels, path)
    return _write(labels, Path(path).expanduser(), fmt, spacing=spacing, zarr_format=zarr_format)


def save_scan(image, path, spacing=None, particle_size_mm=None, progress=False, *,
              zarr_format: int | None = None) -> Path:
    """Write a grey-value scan (dtype kept; bool becomes uint8), atomically.

    Zarr/dask input is copied slab by slab to ``.zarr``, ``.tif`` and ``.npy``
    targets without being read into memory at once.

    Parameters
    ----------
    image : array_like
        3D grey values, (z, y, x).
    path : str or Path
        Target: ``.tif``/``.tiff``, ``.zarr``, ``.ome.zarr``, ``.npy``,
        ``.nii``/``.nii.gz``. A TIFF is an ImageJ hyperstack with the voxel
        size Fiji reads for uint8, uint16, int16 and float32 data; other types
        get a TIFF with the spacing in a JSON description. ``.ome.tif`` is an
        OME-TIFF (any type; ``PhysicalSize`` in mm, the particle size in a
        sidecar JSON). ``.ome.zarr`` is an OME-NGFF multiscale image (a mean
        pyramid), and needs ``spacing``.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, stored in the file (a sidecar JSON for ``.npy``).
    particle_size_mm : float, optional
        Rough mean particle diameter in mm, stored in zarr attributes, TIFF
        metadata, or the sidecar JSON (NIfTI, ``.npy``).
    progress : bool
        Show a progress bar while copying slabs.
    zarr_format : {2, 3}, optional
        As :func:`save_labels`.

    Returns
    -------
    Path
        The scan file (or zarr store).

    Raises
    ------
    InputError
        For an unknown extension (before anything is written) or an image that
        is not a non-empty 3D array (a ``ValueError``).
    InputTypeError
        For non-numeric data (a ``TypeError``).
    OutputError
        As :func:`save_labels`: an existing directory ps3d_toolkit did not
        write, too little free space, or a full or read-only disk.
    CorruptDataError
        When a chunk of a lazy (zarr) image cannot be decoded while it is copied.
    """
    fmt = write_format(path)
    image = check_lazy_volume(image)
    zarr_format = None if zarr_format is None else check_zarr_format(zarr_format)
    spacing = None if spacing is None else check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if fmt == "ome_zarr":
        return _write_ome_zarr(image, Path(path).expanduser(), spacing, zarr_format, labels=False,
                               particle_size_mm=particle_size_mm, progress=progress)
    return _write(image, Path(path).expanduser(), fmt, spacing=spacing,
                  particle_size_mm=particle_size_mm, progress=progress, zarr_format=zarr_format)


def convert(src, dst, spacing=None, progress=True, *, missing_chunks: MissingChunks = "error") -> Path:
    """Convert a scan between formats, keeping dtype, spacing and particle size.

    Zarr input is copied chunk by chunk when the target is ``.zarr``,
    ``.ome.zarr``, ``.tif`` or ``.npy``, so scans larger than memory can be converted.

    Parameters
    ----------
    src : str or Path
        Any input :func:`load_scan` reads.
    dst : str or Path
        Target with a supported extension (see :data:`SUPPORTED_FORMATS`).
    spacing : float or sequence of 3 float, optional
        Voxel size in mm; required when ``src`` does not store one.
    progress : bool
        Show a progress bar.
    missing_chunks : {"error", "fill"}
        For a zarr ``src`` with chunks that are not stored: refuse it, or read
        them as the fill value (see :func:`load_scan`).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    MissingInputError, CorruptDataError, InputError
        As :func:`load_scan` for ``src``.
    OutputError
        As :func:`save_scan` for ``dst``.
    """
    write_format(dst)
    scan = load_scan(src, spacing=spacing, missing_chunks=missing_chunks)
    return save_scan(scan.image, dst, spacing=scan.spacing,
                     particle_size_mm=scan.particle_size_mm, progress=progress)


def _slabs(image, step: int, progress: bool = False):
    """Yield (z0, z1, numpy slab) so that lazy inputs are never read whole."""
    from tqdm.auto import tqdm

    depth = image.shape[0]
    for z0 in tqdm(range(0, depth, step), disable=not progress, desc="writing", unit="slab"):
        z1 = min(z0 + step, depth)
        slab = np.asarray(image[z0:z1])
        yield z0, z1, slab.astype(np.uint8) if slab.dtype == bool else slab


def _write_ome_zarr(image, path: Path, spacing, zarr_format, *, labels: bool, particle_size_mm=None,
                    progress=False) -> Path:
    """An OME-Zarr store, replacing one the toolkit wrote, as the other formats replace their files."""
    if spacing is None:
        raise InputError(f"an OME-Zarr store holds the voxel size, and none was given for {path}: "
                         "pass spacing=... in mm")
    attributes = None if particle_size_mm is None else {"particle_size_mm": particle_size_mm}
    return save_ome_zarr(image, path, spacing=spacing, labels=labels, zarr_format=zarr_format or 2,
                         overwrite=True, attributes=attributes, progress=progress)


def _write(image, path: Path, fmt: str, spacing=None, particle_size_mm=None, progress=False,
           zarr_format=None) -> Path:
    """Write checked values: ``spacing`` a 3-tuple in mm or None, ``particle_size_mm`` a float or None."""
    dtype = np.dtype(np.uint8) if np.dtype(image.dtype) == bool else np.dtype(image.dtype)
    if fmt == "nifti":
        _check_nifti_can_store(dtype, spacing, path)
    expected = _uncompressed_bytes(image.shape, dtype, path, fmt)
    if expected is not None:
        check_free_space(path, expected)
    replace_directory = fmt == "zarr" and path.is_dir() and replaceable_directory(path)
    try:
        with atomic_path(path, replace_directory=replace_directory) as tmp:
            writer = partial(_write_zarr, zarr_format=zarr_format) if fmt == "zarr" else _WRITERS[fmt]
            writer(image, tmp, dtype, spacing, particle_size_mm, progress)
    except Ps3dError:
        raise
    except OSError as error:  # a full or read-only disk, a removed folder...
        raise output_error_from(path, error) from error
    # .npy has no place for metadata, and NIfTI and OME-XML none for a particle size
    sidecar = {}
    if fmt == "npy" and spacing is not None:
        sidecar["spacing"] = spacing
    if (fmt in ("npy", "nifti") or _is_ome_tiff(path)) and particle_size_mm is not None:
        sidecar["particle_size_mm"] = particle_size_mm
    if sidecar:
        write_metadata(path, **sidecar)
    return path


def _uncompressed_bytes(shape, dtype: np.dtype, path: Path, fmt: str) -> int | None:
    """Bytes an uncompressed output will take, or None where compression makes it unknown."""
    voxels = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if fmt == "npy":
        return len(_npy_header(shape, dtype)) + voxels
    if fmt == "nifti" and suffix(path) == ".nii":
        return _NIFTI_HEADER_BYTES + voxels
    return None


def _npy_header(shape, dtype: np.dtype) -> bytes:
    header = BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
    return header.getvalue()


def _write_npy(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    # through a file object, not a memory map: a full disk is then an OSError, not a SIGBUS
    with open(tmp, "wb") as handle:
        handle.write(_npy_header(tuple(int(s) for s in image.shape), dtype))
        for _, _, slab in _slabs(image, ZARR_CHUNK, progress):
            handle.write(np.ascontiguousarray(slab, dtype=dtype).data)


def _write_tiff(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    """An ImageJ hyperstack where ImageJ holds the type and the spacing, else a TIFF with a JSON description."""
    import tifffile

    kwargs = _ome_tiff_kwargs(spacing) if _is_ome_tiff(tmp) else _imagej_tiff_kwargs(dtype, spacing, particle_size_mm)
    if kwargs is None:
        kwargs = _described_tiff_kwargs(spacing, particle_size_mm)
    slices = (page for _, _, slab in _slabs(image, 1, progress) for page in slab.astype(dtype, copy=False))
    nbytes = int(np.prod(image.shape, dtype=np.int64)) * dtype.itemsize
    with warnings.catch_warnings():
        # ImageJ itself cannot open a BigTIFF; Fiji opens it through Bio-Formats
        warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
        tifffile.imwrite(tmp, data=slices, shape=tuple(image.shape), dtype=dtype, photometric="minisblack",
                         compression="zlib", bigtiff=nbytes > 2**31, **kwargs)


def _is_ome_tiff(path) -> bool:
    return Path(path).name.lower().endswith((".ome.tif", ".ome.tiff"))


def _ome_tiff_kwargs(spacing) -> dict:
    """tifffile's arguments for an OME-TIFF (any type) whose OME-XML gives the voxel size in mm."""
    metadata = {"axes": "ZYX"}
    if spacing is not None:
        for axis, size in zip("ZYX", spacing):
            metadata.update({f"PhysicalSize{axis}": size, f"PhysicalSize{axis}Unit": "mm"})
    return {"ome": True, "metadata": metadata}


def _imagej_tiff_kwargs(dtype: np.dtype, spacing, particle_size_mm) -> dict | None:
    """tifffile's arguments for an ImageJ hyperstack that Fiji opens with its voxel size, or None where it cannot."""
    if dtype not in _IMAGEJ_DTYPES:
        logger.info("ImageJ TIFFs hold %s, not %s: writing a TIFF with the spacing in a JSON description",
                    "/".join(str(np.dtype(d)) for d in _IMAGEJ_DTYPES), dtype)
        return None
    metadata, kwargs = {"axes": "ZYX"}, {"imagej": True}
    if spacing is not None:
        # ImageJ's calibration: x/y resolution in pixels per unit, the z step as 'spacing'
        resolution = (1.0 / spacing[2], 1.0 / spacing[1])
        if not all(_RESOLUTION_RANGE[0] <= r <= _RESOLUTION_RANGE[1] for r in resolution):
            return None
        metadata.update(spacing=spacing[0], unit="mm")
        kwargs["resolution"] = resolution
    if particle_size_mm is not None:
        metadata["particle_size_mm"] = particle_size_mm
    return {**kwargs, "metadata": metadata}


def _described_tiff_kwargs(spacing, particle_size_mm) -> dict:
    """tifffile's arguments for a TIFF whose JSON description holds the spacing (the toolkit's older format)."""
    metadata, kwargs = {}, {}
    if spacing is not None:
        metadata.update(spacing=list(spacing), unit="mm")
        # standard resolution tags (pixels per cm) let other viewers see x/y
        resolution = (10.0 / spacing[2], 10.0 / spacing[1])
        if all(_RESOLUTION_RANGE[0] <= r <= _RESOLUTION_RANGE[1] for r in resolution):
            kwargs.update(resolution=resolution, resolutionunit="CENTIMETER")
    if particle_size_mm is not None:
        metadata["particle_size_mm"] = particle_size_mm
    return {**kwargs, "metadata": metadata}


def _tiff_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """Labels for a TIFF: uint16 (an ImageJ hyperstack) when they fit, else uint32 with a warning."""
    if not labels.size or labels.max() <= np.iinfo(np.uint16).max:
        return labels.astype(np.uint16)
    warnings.warn(f"{path}: labels above 65535 do not fit an ImageJ TIFF (8/16-bit integers or float32), so it "
                  "is written as a uint32 TIFF, which Fiji opens as 32-bit float (exact up to 16,777,216) without "
                  "the z spacing; write .ome.zarr to give viewers both", UserWarning, stacklevel=3)
    return labels


def _write_zarr(image, tmp: Path, dtype, spacing, particle_size_mm, progress, zarr_format=None):
    import zarr

    shape = tuple(int(s) for s in image.shape)
    chunks = tuple(min(ZARR_CHUNK, s) for s in shape)
    # the mark that lets a later write replace this store (and no directory of the user's)
    attrs = toolkit_mark()
    if spacing is not None:
        attrs["spacing"] = list(spacing)
    if particle_size_mm is not None:
        attrs["particle_size_mm"] = particle_size_mm
    # every chunk is stored, even an empty one, so that a missing chunk always means damage
    if int(zarr.__version__.split(".")[0]) >= 3:
        out = zarr.create_array(store=str(tmp), shape=shape, chunks=chunks, dtype=dtype, attributes=attrs,
                                zarr_format=zarr_format, config={"write_empty_chunks": True})
    else:
        out = zarr.open_array(str(tmp), mode="w", shape=shape, chunks=chunks, dtype=dtype,
                              write_empty_chunks=True)
        out.attrs.update(attrs)
    for z0, z1, slab in _slabs(image, chunks[0], progress):
        out[z0:z1] = slab


def _version() -> str:
    return toolkit_mark()[WRITTEN_BY].split(" ", 1)[1]


def _check_nifti_can_store(dtype: np.dtype, spacing, path: Path) -> None:
    """Refuse, before writing, what a NIfTI-1 file cannot hold: some types, spacings beyond float32."""
    from nibabel import Nifti1Header
    from nibabel.spatialimages import HeaderDataError

    try:
        Nifti1Header().set_data_dtype(dtype)
    except HeaderDataError:
        raise InputError(f"NIfTI cannot store {dtype} values ({path}); write .tif, .npy or .zarr, "
                         "or convert the image to float32") from None
    limits = np.finfo(np.float32)
    if spacing is not None and not all(limits.tiny <= s <= limits.max for s in spacing):
        raise InputError(f"the spacing {spacing} mm cannot be stored in a NIfTI header (float32) of {path}; "
                         "write .tif, .npy or .zarr")


def _write_nifti(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    import nibabel as nib

    data = np.asarray(image).astype(dtype, copy=False).transpose(2, 1, 0)
    zooms = (1.0, 1.0, 1.0) if spacing is None else spacing[::-1]
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]), dtype=data.dtype)  # int64 too, as checked
    img.header.set_xyzt_units("mm" if spacing is not None else "unknown")
    nib.save(img, str(tmp))


_WRITERS = {"npy": _write_npy, "tiff": _write_tiff, "zarr": _write_zarr, "nifti": _write_nifti}
