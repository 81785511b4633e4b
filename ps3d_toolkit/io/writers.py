"""Writers: :func:`save_labels`, :func:`save_scan` and :func:`convert`, one private writer per format.

Every write is atomic (a temporary name beside the target, then a rename);
lazy (zarr, dask) input is copied slab by slab.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_lazy_volume, check_positive, check_spacing
from ps3d_toolkit.io._formats import ZARR_CHUNK, as_uint32_labels, write_format
from ps3d_toolkit.io.metadata import write_metadata
from ps3d_toolkit.io.readers import load_scan


def save_labels(labels, path, spacing=None) -> Path:
    """Write a label image as uint32, atomically; the format follows the extension.

    Parameters
    ----------
    labels : array_like
        3D non-negative integer labels, (z, y, x), 0 = background.
    path : str or Path
        Target: ``.tif``/``.tiff``, ``.zarr``, ``.npy``, ``.nii``/``.nii.gz``.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, stored in the file (a sidecar JSON for ``.npy``).

    Returns
    -------
    Path
        The label file (or zarr store).

    Raises
    ------
    ValueError
        For an unknown extension (before anything is written), labels that are
        not 3D, negative, or above the uint32 range.
    TypeError
        For non-integer labels.
    """
    fmt = write_format(path)
    labels = as_uint32_labels(labels, "labels")
    spacing = None if spacing is None else check_spacing(spacing)
    return _write(labels, Path(path).expanduser(), fmt, spacing=spacing)


def save_scan(image, path, spacing=None, particle_size_mm=None, progress=False) -> Path:
    """Write a grey-value scan (dtype kept; bool becomes uint8), atomically.

    Zarr/dask input is copied slab by slab to ``.zarr``, ``.tif`` and ``.npy``
    targets without being read into memory at once.

    Parameters
    ----------
    image : array_like
        3D grey values, (z, y, x).
    path : str or Path
        Target: ``.tif``/``.tiff``, ``.zarr``, ``.npy``, ``.nii``/``.nii.gz``.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, stored in the file (a sidecar JSON for ``.npy``).
    particle_size_mm : float, optional
        Rough mean particle diameter in mm, stored in zarr attributes, TIFF
        metadata, or the sidecar JSON (NIfTI, ``.npy``).
    progress : bool
        Show a progress bar while copying slabs.

    Returns
    -------
    Path
        The scan file (or zarr store).

    Raises
    ------
    ValueError
        For an unknown extension (before anything is written) or an image that
        is not a non-empty 3D array.
    TypeError
        For non-numeric data.
    """
    fmt = write_format(path)
    image = check_lazy_volume(image)
    spacing = None if spacing is None else check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    return _write(image, Path(path).expanduser(), fmt, spacing=spacing,
                  particle_size_mm=particle_size_mm, progress=progress)


def convert(src, dst, spacing=None, progress=True) -> Path:
    """Convert a scan between formats, keeping dtype, spacing and particle size.

    Zarr input is copied chunk by chunk when the target is ``.zarr``, ``.tif``
    or ``.npy``, so scans larger than memory can be converted.

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

    Returns
    -------
    Path
        The path written.
    """
    write_format(dst)
    scan = load_scan(src, spacing=spacing)
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


def _write(image, path: Path, fmt: str, spacing=None, particle_size_mm=None, progress=False) -> Path:
    """Write checked values: ``spacing`` a 3-tuple in mm or None, ``particle_size_mm`` a float or None."""
    dtype = np.dtype(np.uint8) if np.dtype(image.dtype) == bool else np.dtype(image.dtype)
    with atomic_path(path) as tmp:
        _WRITERS[fmt](image, tmp, dtype, spacing, particle_size_mm, progress)
    # .npy has no place for metadata and NIfTI none for a particle size
    sidecar = {}
    if fmt == "npy" and spacing is not None:
        sidecar["spacing"] = spacing
    if fmt in ("npy", "nifti") and particle_size_mm is not None:
        sidecar["particle_size_mm"] = particle_size_mm
    if sidecar:
        write_metadata(path, **sidecar)
    return path


def _write_npy(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(image.shape))
    for z0, z1, slab in _slabs(image, ZARR_CHUNK, progress):
        out[z0:z1] = slab
    out.flush()
    del out


def _write_tiff(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    import tifffile

    metadata = {}
    kwargs = {}
    if spacing is not None:
        metadata.update(spacing=list(spacing), unit="mm")
        # standard resolution tags (pixels per cm) let other viewers see x/y
        kwargs.update(resolution=(10.0 / spacing[2], 10.0 / spacing[1]), resolutionunit="CENTIMETER")
    if particle_size_mm is not None:
        metadata["particle_size_mm"] = particle_size_mm
    slices = (page for _, _, slab in _slabs(image, 1, progress) for page in slab)
    tifffile.imwrite(tmp, data=slices, shape=tuple(image.shape), dtype=dtype,
                     metadata=metadata, photometric="minisblack", compression="zlib", bigtiff=image.size * dtype.itemsize > 2**31, **kwargs)


def _write_zarr(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    import zarr

    shape = tuple(int(s) for s in image.shape)
    chunks = tuple(min(ZARR_CHUNK, s) for s in shape)
    attrs = {}
    if spacing is not None:
        attrs["spacing"] = list(spacing)
    if particle_size_mm is not None:
        attrs["particle_size_mm"] = particle_size_mm
    if int(zarr.__version__.split(".")[0]) >= 3:
        out = zarr.create_array(store=str(tmp), shape=shape, chunks=chunks, dtype=dtype, attributes=attrs)
    else:
        out = zarr.open_array(str(tmp), mode="w", shape=shape, chunks=chunks, dtype=dtype)
        out.attrs.update(attrs)
    for z0, z1, slab in _slabs(image, chunks[0], progress):
        out[z0:z1] = slab


def _write_nifti(image, tmp: Path, dtype, spacing, particle_size_mm, progress):
    import nibabel as nib

    data = np.asarray(image).astype(dtype, copy=False).transpose(2, 1, 0)
    zooms = (1.0, 1.0, 1.0) if spacing is None else spacing[::-1]
    img = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    img.header.set_xyzt_units("mm" if spacing is not None else "unknown")
    nib.save(img, str(tmp))


_WRITERS = {"npy": _write_npy, "tiff": _write_tiff, "zarr": _write_zarr, "nifti": _write_nifti}
