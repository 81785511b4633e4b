"""File formats by extension: what a path holds, its name without extension, labels as uint32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ps3d_toolkit.core.checks import check_labels
from ps3d_toolkit.core.errors import InputError, InputTypeError, MissingInputError

#: File extensions understood by the readers and writers (``.ome.zarr``: an OME-NGFF
#: multiscale image, see :mod:`ps3d_toolkit.io.ome_zarr`). A folder of TIFF
#: slices (``.tif``/``.tiff`` files) can also be read.
SUPPORTED_FORMATS = (".tif", ".tiff", ".zarr", ".ome.zarr", ".nii", ".nii.gz", ".npy")

FORMATS_TEXT = ", ".join(SUPPORTED_FORMATS) + ", or a folder of TIFF slices"
TIFF_SUFFIXES = (".tif", ".tiff")
# a zarr store written as an OME-NGFF multiscale image (pyramid and axes metadata)
OME_ZARR_SUFFIX = ".ome.zarr"
ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
# z-slices per chunk of the zarr stores written, and per slab of lazy copies
ZARR_CHUNK = 64
_UINT32_MAX = np.iinfo(np.uint32).max
_WRITE_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".zarr": "zarr", ".npy": "npy", ".nii": "nifti",
                  ".nii.gz": "nifti"}


def existing(path) -> Path:
    """``path`` as a Path that exists, or FileNotFoundError/TypeError naming it."""
    if path is None:
        raise InputTypeError("path must be a file or folder path, got None")
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingInputError(f"scan not found: {path}")
    return path


def suffix(path: Path) -> str:
    """The lower-case extension, ``.nii.gz`` counted as one."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def stem(path: Path) -> str:
    """The file name without its extension (``scan.nii.gz`` -> ``scan``, ``scan.ome.zarr`` -> ``scan``)."""
    ext = suffix(path)
    if ext in (".zarr", *TIFF_SUFFIXES) and path.name.lower().endswith(".ome" + ext):
        ext = ".ome" + ext
    return path.name[: len(path.name) - len(ext)] if ext and path.name.lower().endswith(ext) else path.name


def read_format(path: Path) -> str:
    """Reader key of an existing path: tiff, tiff_folder, zarr, nifti or npy."""
    ext = suffix(path)
    if path.is_dir():
        if ext == ".zarr" or any((path / marker).exists() for marker in ZARR_MARKERS):
            return "zarr"
        return "tiff_folder"
    if ext in TIFF_SUFFIXES:
        return "tiff"
    if ext in (".nii", ".nii.gz"):
        return "nifti"
    if ext == ".npy":
        return "npy"
    if ext == ".zarr":
        return "zarr"  # e.g. a zipped store
    raise InputError(f"unknown scan format for {path}: supported are {FORMATS_TEXT}")


def write_format(path) -> str:
    """Writer key of a target path (``ome_zarr`` for ``.ome.zarr``), checked before anything is written."""
    if path is None:
        raise InputTypeError("path must be a file path, got None")
    if Path(path).name.lower().endswith(OME_ZARR_SUFFIX):
        return "ome_zarr"
    ext = suffix(Path(path))
    if ext not in _WRITE_FORMATS:
        raise InputError(
            f"unknown output format for {path}: supported extensions are {', '.join(SUPPORTED_FORMATS)}"
        )
    return _WRITE_FORMATS[ext]


def as_uint32_labels(labels, name: str) -> np.ndarray:
    """Labels checked (3D, integer, non-negative) and cast to uint32 when they fit."""
    labels = check_labels(labels, name)
    if labels.dtype == np.uint32:
        return labels
    if labels.size and labels.max() > _UINT32_MAX:
        raise InputError(f"{name} must fit in uint32 (at most {_UINT32_MAX}), got maximum {labels.max()}")
    return labels.astype(np.uint32)
