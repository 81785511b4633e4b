"""Readers: :func:`load_scan` and :func:`load_labels`, one private reader per format.

Supported formats (chosen by extension): a folder of TIFF slices, a 3D or
multi-page TIFF, zarr (v2 and v3, read lazily), NIfTI and ``.npy``.

Spacing is taken, in this order, from the ``spacing`` argument, from the file
itself (NIfTI header, zarr attributes or OME-NGFF scale, TIFF metadata), or from
a sidecar JSON (``<stem>.json`` or ``metadata.json``) beside the scan.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.checks import check_spacing
from ps3d_toolkit.io._formats import FORMATS_TEXT, TIFF_SUFFIXES, as_uint32_labels, existing, read_format, stem
from ps3d_toolkit.io.metadata import read_metadata, spacing_in_mm
from ps3d_toolkit.io.scan import Scan


def load_scan(path, spacing=None) -> Scan:
    """Read a 3D scan and its voxel spacing.

    Parameters
    ----------
    path : str or Path
        A ``.tif``/``.tiff`` (3D or multi-page), a folder of TIFF slices (sorted
        naturally: ``slice2`` before ``slice10``), a ``.zarr`` store (v2 or v3;
        a root array, or a group holding one array or an array named ``image``
        or ``0``), a ``.nii``/``.nii.gz`` or a ``.npy`` file.
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, (z, y, x). Overrides any spacing stored with the scan
        (with a warning when they differ).

    Returns
    -------
    Scan
        ``image`` is a numpy array, except for zarr input where it is the lazy
        zarr array (or a dask array when singleton axes had to be dropped).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the format is unknown, the file cannot be read, the data is not 3D,
        or no spacing is given nor stored.
    """
    path = existing(path)
    fmt = read_format(path)
    image, stored = _READERS[fmt](path)
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
    else:
        raise ValueError(f"spacing is not stored in {path}; pass spacing=... in mm")

    size = stored.get("particle_size_mm", sidecar.get("particle_size_mm"))
    return Scan(image=image, spacing=spacing, name=stem(path), particle_size_mm=size, path=path)


def load_labels(path) -> np.ndarray:
    """Read a label image (any format :func:`load_scan` reads) as uint32 in memory.

    Parameters
    ----------
    path : str or Path
        Label image file or store.

    Returns
    -------
    numpy.ndarray
        uint32 labels, (z, y, x), 0 = background.

    Raises
    ------
    FileNotFoundError, ValueError, TypeError
        As :func:`load_scan`; ``TypeError`` when the data is not integer labels.
    """
    path = existing(path)
    image, _ = _READERS[read_format(path)](path)
    return as_uint32_labels(image, f"labels in {path}")


# Each reader returns (image, stored) where stored may hold "spacing" (mm) and
# "particle_size_mm" found inside the file.


def _unreadable(path: Path, error: Exception) -> ValueError:
    return ValueError(f"cannot read {path}: {type(error).__name__}: {error}")


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
        raise ValueError(f"{path} holds {what} of shape {shape}; a scan must be 3D (z, y, x)")
    if len(keep) == len(shape):
        return image
    index = tuple(slice(None) if axis in keep else 0 for axis in range(len(shape)))
    if not isinstance(image, np.ndarray) and not hasattr(image, "compute"):
        import dask.array as da  # a zarr array has no lazy indexing of its own

        image = da.from_array(image, chunks=getattr(image, "chunks", "auto"))
    return image[index]



def _read_npy(path: Path):
    try:
        image = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - any failure means an unreadable file
        raise _unreadable(path, error) from error
    return _to_3d(image, path), {}


def _read_nifti(path: Path):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        header = img.header
        zooms = [float(z) for z in header.get_zooms()[:3]]
        unit = header.get_xyzt_units()[0]
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from error
    # NIfTI stores (x, y, z[, t, c]): drop trailing singletons, then reverse.
    data = _to_3d(data, path, trailing_first=True)
    image = np.ascontiguousarray(data.transpose(2, 1, 0))
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


def _tiff_stored(tif, path: Path) -> dict:
    """Spacing and particle size from our JSON description or ImageJ tags."""
    stored = {}
    meta = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else None
    if meta and "spacing" in meta:
        values = meta["spacing"]
        values = [values] * 3 if np.ndim(values) == 0 else np.ravel(values)
        spacing = spacing_in_mm(values, meta.get("unit", "mm"), str(path))
        if spacing is not None:
            stored["spacing"] = spacing
        if meta.get("particle_size_mm") is not None:
            stored["particle_size_mm"] = meta["particle_size_mm"]
    elif tif.is_imagej and tif.imagej_metadata and "spacing" in tif.imagej_metadata:
        meta = tif.imagej_metadata
        try:
            x_res, y_res = tif.pages[0].resolution
            if x_res > 0 and y_res > 0:
                zyx = (float(meta["spacing"]), 1.0 / y_res, 1.0 / x_res)
                spacing = spacing_in_mm(zyx, meta.get("unit"), str(path))
                if spacing is not None:
                    stored["spacing"] = spacing
        except (TypeError, ValueError, ZeroDivisionError):
            pass  # unusable tags: fall back to the sidecar or the argument
    return stored


def _read_tiff(path: Path):
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series
            if not series:
                raise ValueError("no image data")
            if len(series) > 1 and all(s.ndim == 2 and s.shape == series[0].shape for s in series):
                # pages written one by one, each with its own description
                image = np.stack([s.asarray() for s in series])
                axes = "Z" + series[0].axes
            else:
                image = series[0].asarray()
                axes = series[0].axes
            stored = _tiff_stored(tif, path)
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from error
    if axes.endswith("S") and image.shape[-1] in (3, 4):
        raise ValueError(f"{path} is a colour (RGB) image of shape {image.shape}; a scan must be grey values")
    return _to_3d(image, path), stored


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _read_tiff_folder(path: Path):
    import tifffile

    files = sorted(
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise ValueError(f"folder {path} holds no .tif/.tiff slices (supported are {FORMATS_TEXT})")
    image = None
    for z, file in enumerate(files):
        try:
            page = tifffile.imread(file)
        except Exception as error:  # noqa: BLE001
            raise _unreadable(file, error) from error
        if page.ndim != 2:
            raise ValueError(f"slice {file} has shape {page.shape}; each slice in a folder must be 2D")
        if image is None:
            image = np.empty((len(files),) + page.shape, dtype=page.dtype)
        elif page.shape != image.shape[1:]:
            raise ValueError(f"slice {file} has shape {page.shape}, but {files[0].name} has {image.shape[1:]}")
        image[z] = page
    return image, {}


def _ome_spacing(attrs: dict, where: str):
    """Spacing of the first OME-NGFF multiscale level, if the attributes hold one."""
    try:
        multiscale = attrs.get("multiscales", attrs.get("ome", {}).get("multiscales"))[0]
        scale = next(t["scale"] for t in multiscale["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
        axes = multiscale.get("axes", [])
        units = {a.get("unit", "micrometer") for a in axes[-3:] if isinstance(a, dict)} or {"micrometer"}
    except (AttributeError, KeyError, IndexError, StopIteration, TypeError):
        return None
    if len(units) != 1:
        return None
    return spacing_in_mm(scale[-3:], units.pop(), where)


def _zarr_stored(attrs: dict, where: str) -> dict:
    stored = {}
    if attrs.get("spacing") is not None:
        stored["spacing"] = check_spacing(attrs["spacing"], f"'spacing' attribute of {where}")
    else:
        spacing = _ome_spacing(attrs, where)
        if spacing is not None:
            stored["spacing"] = spacing
    if attrs.get("particle_size_mm") is not None:
        stored["particle_size_mm"] = attrs["particle_size_mm"]
    return stored


def _read_zarr(path: Path):
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
        attrs = dict(node.attrs)
        if hasattr(node, "array_keys"):
            names = sorted(node.array_keys())
            if "image" in names:
                name = "image"
            elif "0" in names:
                name = "0"
            elif len(names) == 1:
                name = names[0]
            else:
                raise ValueError(
                    f"the group holds arrays {names}; expected one array, or one named 'image' or '0'"
                )
            array = node[name]
            attrs = {**attrs, **dict(array.attrs)}
        else:
            array = node
    except Exception as error:  # noqa: BLE001
        raise _unreadable(path, error) from error
    return _to_3d(array, path), _zarr_stored(attrs, str(path))


_READERS = {
    "tiff": _read_tiff,
    "tiff_folder": _read_tiff_folder,
    "zarr": _read_zarr,
    "nifti": _read_nifti,
    "npy": _read_npy,
}
