"""Scan metadata: length units, spacing in TIFF metadata, and the sidecar JSON beside a scan.

For a scan ``<dir>/<stem>.<ext>`` the sidecar is ``<dir>/<stem>.json``, else
``<dir>/metadata.json``; for a folder of slices, ``metadata.json`` inside it
comes first. A scan ``<dataset>/images/<stem>.zarr`` of a ParticleSeg3D dataset
also finds ``<dataset>/metadata.json``. A ``metadata.json`` shared by several
scans may hold one entry per scan, keyed by the scan's name, as ParticleSeg3D's
does (``{"<stem>": {"spacing": 0.01, "particle_size": 0.3}}``); top-level
``spacing``/``particle_size`` then hold for every scan without its own value.
ParticleSeg3D's ``particle_size`` (mm) is read as ``particle_size_mm``.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.io._formats import read_format, stem, suffix

logger = logging.getLogger(__name__)

# the units ImageJ gives an uncalibrated image
_UNCALIBRATED = ("", "pixel", "pixels")
# Length units found in ImageJ TIFFs, OME-TIFF, OME-NGFF axes and NIfTI headers, in mm.
_UNIT_TO_MM = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0,
    # micro sign, Greek mu, and the escaped form ImageJ sometimes leaves
    "um": 1e-3, "\u00b5m": 1e-3, "\u03bcm": 1e-3, "\\u00b5m": 1e-3,
    "micron": 1e-3, "microns": 1e-3, "micrometer": 1e-3, "micrometre": 1e-3,
    "nm": 1e-6, "nanometer": 1e-6, "nanometre": 1e-6,
    "pm": 1e-9, "picometer": 1e-9, "picometre": 1e-9,
    "\u00e5": 1e-7, "\u212b": 1e-7, "angstrom": 1e-7, "\u00e5ngstr\u00f6m": 1e-7,
    "cm": 10.0, "centimeter": 10.0, "centimetre": 10.0,
    "dm": 100.0, "decimeter": 100.0, "decimetre": 100.0,
    "m": 1000.0, "meter": 1000.0, "metre": 1000.0,
    "inch": 25.4, "in": 25.4, "foot": 304.8, "ft": 304.8,
}


def unit_in_mm(unit) -> float | None:
    """Millimetres in one ``unit`` (``"micrometer"`` -> 0.001), or None for a unit not known."""
    return None if unit is None else _UNIT_TO_MM.get(str(unit).strip().lower())


def spacing_in_mm(values, unit, where: str):
    """Spacing ``values`` in ``unit`` converted to mm, or None for an unknown unit."""
    factor = unit_in_mm(unit)
    if factor is None:
        return None
    return check_spacing(tuple(float(v) * factor for v in values), f"spacing in {where}")


def warn_unknown_unit(unit, where: str) -> None:
    """Warn that the spacing stored in ``where`` is ignored because its unit is not a known length."""
    warnings.warn(f"{where} gives its voxel size in {unit!r}, which is not a length unit ps3d_toolkit knows "
                  f"(it knows mm, micrometer, nm, angstrom, cm, m, inch, ...); that voxel size is ignored: "
                  "pass spacing=... in mm", UserWarning, stacklevel=4)


def shaped_stored(meta: dict, where: str) -> dict:
    """Spacing and particle size from the JSON description tifffile writes (``shaped`` TIFFs)."""
    stored = {}
    if meta.get("spacing") is not None:
        values = meta["spacing"]
        values = [values] * 3 if np.ndim(values) == 0 else np.ravel(values)
        unit = meta.get("unit", "mm")
        spacing = spacing_in_mm(values, unit, where)
        if spacing is None:
            warn_unknown_unit(unit, where)
        else:
            stored["spacing"] = spacing
    if meta.get("particle_size_mm") is not None:
        stored["particle_size_mm"] = check_positive(meta["particle_size_mm"], f"particle_size_mm in {where}")
    return stored


def imagej_stored(meta: dict, resolution, where: str) -> dict:
    """Spacing and particle size from ImageJ metadata and the x/y resolution (pixels per ``unit``)."""
    stored = {}
    if meta.get("particle_size_mm") is not None:
        stored["particle_size_mm"] = check_positive(float(meta["particle_size_mm"]), f"particle_size_mm in {where}")
    unit = meta.get("unit")
    if unit is None or str(unit).strip().lower() in _UNCALIBRATED:
        return stored
    if unit_in_mm(unit) is None:
        warn_unknown_unit(unit, where)
        return stored
    if not resolution or not all(r > 0 for r in resolution):
        return stored
    try:  # ImageJ writes 'spacing' only where the z step differs from its default of one unit
        z_step = float(meta.get("spacing", 1.0))
    except (TypeError, ValueError):
        return stored
    stored["spacing"] = spacing_in_mm((z_step, 1.0 / resolution[1], 1.0 / resolution[0]), unit, where)
    return stored


def ome_xml_spacing(xml: str, where: str):
    """Spacing in mm from the first ``Pixels`` of OME-XML (``PhysicalSizeZ/Y/X`` and their units), or None."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as error:
        logger.info("cannot parse the OME-XML of %s (%s): its voxel size is not read", where, error)
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None
    sizes = [pixels.get(f"PhysicalSize{axis}") for axis in "ZYX"]
    if None in sizes:
        logger.info("the OME-XML of %s gives no PhysicalSize for %s: its voxel size is not read", where,
                    ", ".join(a for a, v in zip("ZYX", sizes) if v is None))
        return None
    # the OME schema's default unit is the micrometre
    units = [pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m") for axis in "ZYX"]
    unknown = [unit for unit in units if unit_in_mm(unit) is None]
    if unknown:
        warn_unknown_unit(unknown[0], where)
        return None
    return check_spacing(tuple(float(v) * unit_in_mm(u) for v, u in zip(sizes, units)), f"spacing in {where}")


def read_metadata(path) -> dict:
    """Read the sidecar JSON of a scan (or a ``.json`` file given directly).

    Parameters
    ----------
    path : str or Path
        The scan, or the JSON file itself.

    Returns
    -------
    dict
        The fields found (empty when there is no sidecar). ``spacing`` is a
        tuple of 3 floats in mm; ``_path`` says which file was read. Read for
        a scan, a shared ``metadata.json`` gives the scan's own entry merged
        over its top-level values, and ParticleSeg3D's ``particle_size`` as
        ``particle_size_mm``; ``_no_entry_for`` names the scan when the file
        holds entries for other scans only.

    Raises
    ------
    ValueError
        If the JSON cannot be parsed or holds an invalid spacing/particle size.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".json":
        return _parse_sidecar(path) if path.is_file() else {}
    for candidate in _sidecar_candidates(path):
        if candidate.is_file():
            return _parse_sidecar(candidate, scan_name=stem(path))
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


def _sidecar_candidates(path: Path) -> list:
    candidates = []
    if path.is_dir() and suffix(path) != ".zarr":
        candidates.append(path / "metadata.json")
    candidates += [path.with_name(stem(path) + ".json"), path.with_name("metadata.json")]
    if path.parent.name == "images":  # <dataset>/images/<name>.zarr: ParticleSeg3D's layout
        candidates.append(path.parent.parent / "metadata.json")
    return candidates


def _sidecar_target(path: Path) -> Path:
    if path.is_dir() and read_format(path) == "tiff_folder":
        return path / "metadata.json"
    return path.with_name(stem(path) + ".json")


def load_json_object(path: Path) -> dict:
    """The JSON object in ``path``, or InputError naming the file."""
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read metadata {path}: {error}") from error
    if not isinstance(content, dict):
        raise InputError(f"metadata {path} must hold a JSON object, got {type(content).__name__}")
    return content


def scan_entry(content: dict, name: str, path) -> dict:
    """The fields of scan ``name`` in a metadata object: its own entry merged over the top-level values.

    An entry is a JSON object keyed by the scan's name holding a ``spacing``
    or particle size (ParticleSeg3D's ``metadata.json``); other scans' entries
    are left out. ParticleSeg3D's ``particle_size`` (mm) becomes ``particle_size_mm``;
    ``_no_entry_for`` is set to ``name`` when entries exist for other scans only.

    Raises
    ------
    InputError
        When ``particle_size`` and ``particle_size_mm`` both appear and differ.
    """
    entries = {key for key, value in content.items() if is_scan_entry(value)}
    fields = {key: value for key, value in content.items() if key not in entries}
    if name in entries:
        fields.update(content[name])
    elif entries:
        fields["_no_entry_for"] = name
    size, size_mm = fields.get("particle_size"), fields.get("particle_size_mm")
    if size is not None:
        size = check_positive(size, f"'particle_size' of scan {name!r} in {path}")
        if size_mm is None:
            fields["particle_size_mm"] = size
        elif not np.isclose(size, check_positive(size_mm, f"'particle_size_mm' of scan {name!r} in {path}")):
            raise InputError(f"metadata {path} gives scan {name!r} particle_size={size!r} and "
                             f"particle_size_mm={size_mm!r}; keep one (both are mm)")
    return fields


def is_scan_entry(value) -> bool:
    """Whether a metadata value is one scan's entry: an object with a spacing or particle size."""
    return isinstance(value, dict) and any(k in value for k in ("spacing", "particle_size", "particle_size_mm"))


def _parse_sidecar(path: Path, scan_name: str | None = None) -> dict:
    content = load_json_object(path)
    if scan_name is not None:
        content = scan_entry(content, scan_name, path)
    if content.get("spacing") is not None:
        content["spacing"] = check_spacing(content["spacing"], f"'spacing' in {path}")
    if content.get("particle_size_mm") is not None:
        content["particle_size_mm"] = check_positive(content["particle_size_mm"], f"'particle_size_mm' in {path}")
    content["_path"] = str(path)
    return content
