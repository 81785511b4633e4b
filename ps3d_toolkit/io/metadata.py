"""Scan metadata: length units, and the sidecar JSON beside a scan (spacing, particle size).

For a scan ``<dir>/<stem>.<ext>`` the sidecar is ``<dir>/<stem>.json``, else
``<dir>/metadata.json``; for a folder of slices, ``metadata.json`` inside it
comes first.
"""

from __future__ import annotations

import json
from pathlib import Path

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.io._formats import read_format, stem, suffix

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


def spacing_in_mm(values, unit, where: str):
    """Spacing ``values`` in ``unit`` converted to mm, or None for an unknown unit."""
    factor = _UNIT_TO_MM.get(str(unit).strip().lower()) if unit is not None else None
    if factor is None:
        return None
    return check_spacing(tuple(float(v) * factor for v in values), f"spacing in {where}")


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


def _sidecar_candidates(path: Path) -> list:
    candidates = []
    if path.is_dir() and suffix(path) != ".zarr":
        candidates.append(path / "metadata.json")
    candidates += [path.with_name(stem(path) + ".json"), path.with_name("metadata.json")]
    return candidates


def _sidecar_target(path: Path) -> Path:
    if path.is_dir() and read_format(path) == "tiff_folder":
        return path / "metadata.json"
    return path.with_name(stem(path) + ".json")


def _parse_sidecar(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read metadata {path}: {error}") from error
    if not isinstance(content, dict):
        raise InputError(f"metadata {path} must hold a JSON object, got {type(content).__name__}")
    if content.get("spacing") is not None:
        content["spacing"] = check_spacing(content["spacing"], f"'spacing' in {path}")
    if content.get("particle_size_mm") is not None:
        content["particle_size_mm"] = check_positive(content["particle_size_mm"], f"'particle_size_mm' in {path}")
    content["_path"] = str(path)
    return content
