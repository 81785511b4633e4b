"""Scan and label readers/writers, and the metadata that goes with them.

A scan is a 3D grey-value volume in (z, y, x) order with a voxel spacing in mm.
Supported formats (chosen by extension): a folder of TIFF slices, a 3D or
multi-page TIFF, zarr (v2 and v3, read lazily), NIfTI and ``.npy``.

Spacing is taken, in this order, from the ``spacing`` argument, from the file
itself (NIfTI header, zarr attributes or OME-NGFF scale, TIFF metadata), or from
a sidecar JSON (``<stem>.json`` or ``metadata.json``) beside the scan.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_labels, check_positive, check_spacing, check_volume

__all__ = [
    "SUPPORTED_FORMATS",
    "Scan",
    "convert",
    "load_labels",
    "load_scan",
    "read_metadata",
    "save_labels",
    "save_scan",
    "write_metadata",
]

#: File extensions understood by the readers and writers. A folder of TIFF
#: slices (``.tif``/``.tiff`` files) can also be read.
SUPPORTED_FORMATS = (".tif", ".tiff", ".zarr", ".nii", ".nii.gz", ".npy")

_FORMATS_TEXT = ", ".join(SUPPORTED_FORMATS) + ", or a folder of TIFF slices"
_TIFF_SUFFIXES = (".tif", ".tiff")
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")
_ZARR_CHUNK = 64
_UINT32_MAX = np.iinfo(np.uint32).max
# Length units found in ImageJ TIFFs, OME-NGFF axes and NIfTI headers, in mm.
_UNIT_TO_MM = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    # micro sign, Greek mu, and the escaped form ImageJ sometimes leaves
    "um": 1e-3, "\u00b5m": 1e-3, "\u03bcm": 1e-3, "\\u00b5m": 1e-3,
    "micron": 1e-3, "microns": 1e-3, "micrometer": 1e-3, "micrometre": 1e-3,
    "nm": 1e-6, "nanometer": 1e-6, "nanometre": 1e-6,
    "cm": 10.0, "centimeter": 10.0, "centimetre": 10.0,
    "m": 1000.0, "meter": 1000.0, "metre": 1000.0,
    "inch": 25.4, "in": 25.4,
}


@dataclass
class Scan:
    """A 3D scan: grey values in (z, y, x) order plus its voxel spacing in mm.

    Unpacks as ``image, spacing = load_scan(path)``.

    Attributes
    ----------
    image : numpy.ndarray or zarr/dask array
        Grey values, (z, y, x). Zarr input stays lazy (not read into memory).
    spacing : tuple of 3 float
        Voxel size in mm, (z, y, x).
    name : str
        Scan name, the file name without its extension.
    particle_size_mm : float or None
        Rough mean particle diameter in mm, when the metadata gives one.
    path : Path or None
        Where the scan was read from.
    """

    image: object
    spacing: tuple
    name: str = "scan"
    particle_size_mm: float | None = None
    path: Path | None = None

    def __post_init__(self):
        self.spacing = check_spacing(self.spacing)
        self.particle_size_mm = check_positive(self.particle_size_mm, "particle_size_mm", allow_none=True)

    @property
    def shape(self) -> tuple:
        """Shape of the image, (z, y, x)."""
        return tuple(self.image.shape)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the image."""
        return np.dtype(self.image.dtype)

    def __iter__(self):
        return iter((self.image, self.spacing))

    def __repr__(self) -> str:
        return (
            f"Scan(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, "
            f"spacing={self.spacing}, particle_size_mm={self.particle_size_mm})"
        )


# --------------------------------------------------------------------------- public API


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
    path = _existing(path)
    fmt = _read_format(path)
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
    return Scan(image=image, spacing=spacing, name=_stem(path), particle_size_mm=size, path=path)


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
    path = _existing(path)
    image, _ = _READERS[_read_format(path)](path)
    return _as_uint32_labels(image, f"labels in {path}")


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
        The path written.

    Raises
    ------
    ValueError
        For an unknown extension (before anything is written), labels that are
        not 3D, negative, or above the uint32 range.
    TypeError
        For non-integer labels.
    """
    fmt = _write_format(path)
    labels = _as_uint32_labels(labels, "labels")
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
        The path written.

    Raises
    ------
    ValueError
        For an unknown extension (before anything is written) or an image that
        is not a non-empty 3D array.
    TypeError
        For non-numeric data.
    """
    fmt = _write_format(path)
    if isinstance(image, np.ndarray) or not hasattr(image, "dtype"):
        image = check_volume(image)
    else:
        _check_lazy_volume(image)
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
    _write_format(dst)
    scan = load_scan(src, spacing=spacing)
    return save_scan(scan.image, dst, spacing=scan.spacing,
                     particle_size_mm=scan.particle_size_mm, progress=progress)


def read_metadata(path) -> dict:
    """Read the sidecar JSON of a scan (or a ``.json`` file given directly).

    For a scan ``<dir>/<stem>.<ext>`` the sidecar is ``<dir>/<stem>.json``, else
    ``<dir>/metadata.json``; for a folder of slices, ``metadata.json`` inside it
    comes first.

    Parameters
    ----------
    path : str or Path
        The scan, or the JSON file itself.

    Returns
    -------
    dict
        The fields found (empty when there is no sidecar). ``spacing`` is a
        tuple of 3 floats in mm; ``_path`` says which file was read.

    Raises
    ------
    ValueError
        If the JSON cannot be parsed or holds an invalid spacing/particle size.
    """
    path = Path(path).expanduser()
    candidates = [path] if path.suffix.lower() == ".json" else _sidecar_candidates(path)
    for candidate in candidates:
        if candidate.is_file():
            return _parse_sidecar(candidate)
    return {}


def write_metadata(path, **fields) -> Path:
    """Write (merge) fields into the sidecar JSON of a scan, atomically.

    Parameters
    ----------
    path : str or Path
        The scan (the sidecar is ``<stem>.json`` beside it, or ``metadata.json``
        inside a folder of slices) or the ``.json`` file itself.
    **fields
        JSON-serialisable values; ``spacing`` (mm) and ``particle_size_mm`` are
        validated. Existing fields not given are kept.

    Returns
    -------
    Path
        The JSON file written.
    """
    path = Path(path).expanduser()
    target = path if path.suffix.lower() == ".json" else _sidecar_target(path)
    if "spacing" in fields and fields["spacing"] is not None:
        fields["spacing"] = list(check_spacing(fields["spacing"]))
    if "particle_size_mm" in fields:
        fields["particle_size_mm"] = check_positive(fields["particle_size_mm"], "particle_size_mm", allow_none=True)
    content = {}
    if target.is_file():
        content = {k: v for k, v in read_metadata(target).items() if k != "_path"}
        if "spacing" in content:
            content["spacing"] = list(content["spacing"])
    content.update(fields)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")
    return target


# --------------------------------------------------------------------------- formats


def _existing(path) -> Path:
    if path is None:
        raise TypeError("path must be a file or folder path, got None")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"scan not found: {path}")
    return path


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _stem(path: Path) -> str:
    suffix = _suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.name


def _read_format(path: Path) -> str:
    suffix = _suffix(path)
    if path.is_dir():
        if suffix == ".zarr" or any((path / marker).exists() for marker in _ZARR_MARKERS):
            return "zarr"
        return "tiff_folder"
    if suffix in (".tif", ".tiff"):
        return "tiff"
    if suffix in (".nii", ".nii.gz"):
        return "nifti"
    if suffix == ".npy":
        return "npy"
    if suffix == ".zarr":
        return "zarr"  # e.g. a zipped store
    raise ValueError(f"unknown scan format for {path}: supported are {_FORMATS_TEXT}")


def _write_format(path) -> str:
    if path is None:
        raise TypeError("path must be a file path, got None")
    suffix = _suffix(Path(path))
    formats = {".tif": "tiff", ".tiff": "tiff", ".zarr": "zarr", ".npy": "npy", ".nii": "nifti", ".nii.gz": "nifti"}
    if suffix not in formats:
        raise ValueError(
            f"unknown output format for {path}: supported extensions are {', '.join(SUPPORTED_FORMATS)}"
        )
    return formats[suffix]


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


def _check_lazy_volume(image) -> None:
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise ValueError(f"image must be a 3D array (z, y, x), got shape {shape}")
    if 0 in shape:
        raise ValueError(f"image must not be empty, got shape {shape}")
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise TypeError(f"image must hold numbers, got dtype {dtype}")


def _as_uint32_labels(labels, name: str) -> np.ndarray:
    labels = check_labels(labels, name)
    if labels.dtype == np.uint32:
        return labels
    if labels.size and labels.max() > _UINT32_MAX:
        raise ValueError(f"{name} must fit in uint32 (at most {_UINT32_MAX}), got maximum {labels.max()}")
    return labels.astype(np.uint32)


def _spacing_in_mm(values, unit, where: str):
    factor = _UNIT_TO_MM.get(str(unit).strip().lower()) if unit is not None else None
    if factor is None:
        return None
    return check_spacing(tuple(float(v) * factor for v in values), f"spacing in {where}")


# --------------------------------------------------------------------------- readers
# Each reader returns (image, stored) where stored may hold "spacing" (mm) and
# "particle_size_mm" found inside the file.


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
        stored["spacing"] = _spacing_in_mm(zyx, unit, str(path))
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
        spacing = _spacing_in_mm(values, meta.get("unit", "mm"), str(path))
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
                spacing = _spacing_in_mm(zyx, meta.get("unit"), str(path))
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
        (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _TIFF_SUFFIXES and not p.name.startswith(".")),
        key=_natural_key,
    )
    if not files:
        raise ValueError(f"folder {path} holds no .tif/.tiff slices (supported are {_FORMATS_TEXT})")
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
    return _spacing_in_mm(scale[-3:], units.pop(), where)


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


# --------------------------------------------------------------------------- sidecar


def _sidecar_candidates(path: Path) -> list:
    candidates = []
    if path.is_dir() and _suffix(path) != ".zarr":
        candidates.append(path / "metadata.json")
    candidates += [path.with_name(_stem(path) + ".json"), path.with_name("metadata.json")]
    return candidates


def _sidecar_target(path: Path) -> Path:
    if path.is_dir() and _read_format(path) == "tiff_folder":
        return path / "metadata.json"
    return path.with_name(_stem(path) + ".json")


def _parse_sidecar(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read metadata {path}: {error}") from error
    if not isinstance(content, dict):
        raise ValueError(f"metadata {path} must hold a JSON object, got {type(content).__name__}")
    if content.get("spacing") is not None:
        content["spacing"] = check_spacing(content["spacing"], f"'spacing' in {path}")
    if content.get("particle_size_mm") is not None:
        content["particle_size_mm"] = check_positive(content["particle_size_mm"], f"'particle_size_mm' in {path}")
    content["_path"] = str(path)
    return content


# --------------------------------------------------------------------------- writers


def _slabs(image, step: int, progress: bool = False):
    """Yield (z0, z1, numpy slab) so that lazy inputs are never read whole."""
    from tqdm.auto import tqdm

    depth = image.shape[0]
    for z0 in tqdm(range(0, depth, step), disable=not progress, desc="writing", unit="slab"):
        z1 = min(z0 + step, depth)
        slab = np.asarray(image[z0:z1])
        yield z0, z1, slab.astype(np.uint8) if slab.dtype == bool else slab


def _write(image, path: Path, fmt: str, spacing=None, particle_size_mm=None, progress=False) -> Path:
    if spacing is not None:
        spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
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
    for z0, z1, slab in _slabs(image, _ZARR_CHUNK, progress):
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
    chunks = tuple(min(_ZARR_CHUNK, s) for s in shape)
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
