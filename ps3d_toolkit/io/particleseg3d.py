"""ParticleSeg3D datasets: its input folder read, its output layout written.

ParticleSeg3D (Gotkowski et al., arXiv 2301.13319) reads a dataset folder::

    <dataset>/metadata.json              {"<name>": {"spacing": 0.01, "particle_size": 0.29}, ...}
    <dataset>/images/<name>.zarr         one zarr (v2) array per scan, (z, y, x)

with the voxel size and a rough mean particle diameter of every scan in mm
(one number each: isotropic), and writes one zarr v2 array per scan::

    <output>/<name>/<name>.zarr          instance labels, attribute "spacing": [s, s, s]

Here a top-level ``spacing``/``particle_size`` also holds for every scan
without its own value (``{"particle_size": 0.3, "<name>": {"spacing": 0.01}}``),
and ``particle_size_mm``, the toolkit's own key, is read too.
:func:`~ps3d_toolkit.io.load_scan` finds a dataset's ``metadata.json`` for a
scan ``<dataset>/images/<name>.zarr`` by itself; the functions here list a
dataset's scans, read one scan's entry strictly, and write labels where
ParticleSeg3D writes them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError, MissingInputError
from ps3d_toolkit.io._formats import stem
from ps3d_toolkit.io.metadata import is_scan_entry, load_json_object, scan_entry

__all__ = [
    "IMAGES_FOLDER",
    "METADATA_FILE",
    "dataset_of",
    "is_particleseg3d_dataset",
    "list_scans",
    "particleseg3d_labels_path",
    "save_particleseg3d_labels",
    "scan_metadata",
    "scan_path",
]

#: The folder of a dataset that holds its scans, and the file that holds their metadata.
IMAGES_FOLDER = "images"
METADATA_FILE = "metadata.json"


def is_particleseg3d_dataset(path) -> bool:
    """Whether ``path`` is a ParticleSeg3D dataset folder: ``images/`` with ``.zarr`` scans and ``metadata.json``.

    Parameters
    ----------
    path : str or Path
        A folder.

    Returns
    -------
    bool
    """
    path = Path(path).expanduser()
    images = path / IMAGES_FOLDER
    return (path / METADATA_FILE).is_file() and images.is_dir() and bool(_zarr_entries(images))


def dataset_of(path) -> Path | None:
    """The ParticleSeg3D dataset that scan ``path`` (``<dataset>/images/<name>.zarr``) belongs to, or None."""
    path = Path(path).expanduser()
    if path.parent.name == IMAGES_FOLDER and (path.parent.parent / METADATA_FILE).is_file():
        return path.parent.parent
    return None


def list_scans(dataset) -> list[str]:
    """The names of a dataset's scans: its ``images/<name>.zarr`` stores, in natural order.

    Parameters
    ----------
    dataset : str or Path
        The dataset folder.

    Returns
    -------
    list of str
        Scan names (``Ore2`` before ``Ore10``); hidden entries are skipped.

    Raises
    ------
    InputError
        If ``dataset`` is not a ParticleSeg3D dataset folder.
    """
    dataset = _checked_dataset(dataset)
    return [stem(entry) for entry in _zarr_entries(dataset / IMAGES_FOLDER)]


def scan_path(dataset, name: str) -> Path:
    """Where scan ``name`` of a dataset is stored: ``<dataset>/images/<name>.zarr``."""
    return Path(dataset).expanduser() / IMAGES_FOLDER / f"{name}.zarr"


def scan_metadata(dataset, name: str) -> dict:
    """Spacing and particle size of one scan of a ParticleSeg3D dataset, read strictly.

    Parameters
    ----------
    dataset : str or Path
        The dataset folder, or its ``metadata.json``.
    name : str
        The scan's name (``images/<name>.zarr``).

    Returns
    -------
    dict
        ``spacing``: 3 floats in mm (z, y, x); ``particle_size_mm``: float or
        None; ``path``: the metadata file read.

    Raises
    ------
    InputError
        If the file cannot be read, holds no entry for ``name`` and no
        top-level ``spacing`` (the message names the file, the scan and the
        scans it has entries for), or holds an invalid spacing or particle size.
    MissingInputError
        If there is no ``metadata.json``.
    """
    path = Path(dataset).expanduser()
    if path.is_dir():
        path = path / METADATA_FILE
    if not path.is_file():
        raise MissingInputError(f"metadata not found: {path}")
    content = load_json_object(path)
    fields = scan_entry(content, name, path)
    if fields.get("spacing") is None:
        known = sorted(key for key, value in content.items() if is_scan_entry(value))
        if fields.get("_no_entry_for") or not known:
            listed = f" (it has entries for {', '.join(known)})" if known else ""
            raise InputError(f"{path} has no entry for scan {name!r}{listed} and no top-level 'spacing': add "
                             f'"{name}": {{"spacing": MM, "particle_size": MM}}')
        raise InputError(f"the entry for scan {name!r} in {path} gives no 'spacing' (mm)")
    spacing = check_spacing(fields["spacing"], f"'spacing' of scan {name!r} in {path}")
    size = fields.get("particle_size_mm")
    size = None if size is None else check_positive(size, f"'particle_size' of scan {name!r} in {path}")
    return {"spacing": spacing, "particle_size_mm": size, "path": path}


def particleseg3d_labels_path(output, name: str) -> Path:
    """Where ParticleSeg3D writes the labels of scan ``name``: ``<output>/<name>/<name>.zarr``."""
    return Path(output).expanduser() / name / f"{name}.zarr"


def save_particleseg3d_labels(labels, output, name: str, *, spacing) -> Path:
    """Write labels where and as ParticleSeg3D writes them: ``<output>/<name>/<name>.zarr``, zarr v2.

    Parameters
    ----------
    labels : array_like
        3D non-negative integer labels, (z, y, x), 0 = background.
    output : str or Path
        The output folder of the whole dataset.
    name : str
        The scan's name.
    spacing : float or sequence of 3 float
        Voxel size in mm, stored as the array's ``spacing`` attribute (a list
        of 3, as ParticleSeg3D stores it).

    Returns
    -------
    Path
        The store written: a zarr v2 root array of uint32 (ParticleSeg3D's own
        are float64, zarr 2's default type) with every chunk stored, replaced
        atomically when the toolkit wrote it before.

    Raises
    ------
    InputError
        If ``name`` is empty or holds a path separator, or the labels or
        spacing are invalid.
    OutputError
        If the store exists and the toolkit did not write it.
    """
    from ps3d_toolkit.io.writers import save_labels

    if not isinstance(name, str) or not name or re.search(r"[\\/]", name) or name in (".", ".."):
        raise InputError(f"name must be a scan name without a path separator, got {name!r}")
    return save_labels(labels, particleseg3d_labels_path(output, name), spacing=check_spacing(spacing),
                       zarr_format=2)


def _checked_dataset(dataset) -> Path:
    path = Path(dataset).expanduser()
    if not is_particleseg3d_dataset(path):
        raise InputError(f"dataset must be a ParticleSeg3D dataset folder ({IMAGES_FOLDER}/<name>.zarr and "
                         f"{METADATA_FILE}), got {path}")
    return path


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _zarr_entries(images: Path) -> list[Path]:
    entries = [p for p in images.iterdir() if p.name.lower().endswith(".zarr") and not p.name.startswith(".")]
    return sorted(entries, key=_natural_key)
