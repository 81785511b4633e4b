"""The bundled sample scan: a small synthetic phantom with exact ground-truth labels.

The sample lives in the repository's ``data/sample/`` folder (``scan.tif``,
``labels.tif``, ``metadata.json``), written by ``data/make_sample.py``. When the
package is installed without that folder (from a wheel), :func:`load_sample`
regenerates the identical sample in memory from the recorded seed, so that
``ps3d demo`` and the notebooks work everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PARAMS", "load_sample", "make_sample", "sample_path"]

#: Arguments of :func:`ps3d_toolkit.data.synthetic.generate_scan` that make the sample.
SAMPLE_PARAMS: dict = {
    "shape": (128, 128, 128),
    "mean_diameter_vox": 20,
    "seed": 2026,
    "preset": "medium",
    "spacing": 0.01,
}

_SCAN_FILE = "scan.tif"
_LABELS_FILE = "labels.tif"
_METADATA_FILE = "metadata.json"
_UINT16_MAX = np.iinfo(np.uint16).max


def sample_path() -> Path | None:
    """Folder of the bundled sample, or None when it is not installed.

    The folder is ``data/sample`` at the repository root, found relative to the
    package (an editable install or a source checkout). A wheel does not carry
    it; :func:`load_sample` then regenerates the sample.

    Returns
    -------
    Path or None
        The folder holding ``scan.tif``, ``labels.tif`` and ``metadata.json``.
    """
    folder = Path(__file__).resolve().parents[2] / "data" / "sample"
    if all((folder / name).is_file() for name in (_SCAN_FILE, _LABELS_FILE, _METADATA_FILE)):
        return folder
    return None


def make_sample() -> tuple[np.ndarray, np.ndarray, dict]:
    """Generate the sample: uint16 grey values, uint32 labels and its metadata.

    The phantom's float grey values are mapped linearly onto the full uint16
    range (its minimum to 0, its maximum to 65535), as a CT scanner's
    reconstruction would store them.

    Returns
    -------
    image : np.ndarray
        uint16 grey values, (z, y, x).
    labels : np.ndarray
        uint32 exact instance labels, 0 = background.
    metadata : dict
        ``spacing`` (mm), ``particle_size_mm``, the generator's arguments and
        every drawn parameter, the grey-value mapping and the command that
        writes the files. JSON-serialisable.
    """
    from ps3d_toolkit.data.synthetic import generate_scan

    params = dict(SAMPLE_PARAMS)
    phantom = generate_scan(**params)
    low = float(phantom.image.min())
    high = float(phantom.image.max())
    scale = _UINT16_MAX / (high - low) if high > low else 1.0
    image = np.round((phantom.image.astype(np.float64) - low) * scale).astype(np.uint16)
    metadata = {
        "description": "Synthetic micro-CT phantom of mineral grains in epoxy, with exact labels",
        "spacing": list(phantom.spacing),
        "particle_size_mm": float(phantom.particle_size_mm),
        "n_particles": int(phantom.params["n_particles"]),
        "shape": list(image.shape),
        "generator": "ps3d_toolkit.data.synthetic.generate_scan",
        "generator_args": {**params, "shape": list(params["shape"])},
        "seed": params["seed"],
        "generator_params": _jsonable(phantom.params),
        "grey_values": {"dtype": "uint16", "float_min": low, "float_max": high,
                        "rule": "round((float - float_min) * 65535 / (float_max - float_min))"},
        "command": "python data/make_sample.py",
    }
    return image, phantom.labels.astype(np.uint32, copy=False), metadata


def load_sample() -> tuple:
    """Load the bundled sample scan and its ground-truth labels.

    Reads ``data/sample`` when present; otherwise regenerates the identical
    sample from its recorded seed (a few seconds).

    Returns
    -------
    scan : ps3d_toolkit.io.Scan
        uint16 grey values (a numpy array), 128 x 128 x 128 voxels of 0.01 mm, with
        ``particle_size_mm`` set; ``name`` is ``"sample"``.
    labels : np.ndarray
        uint32 exact instance labels of the same shape, 0 = background.

    Examples
    --------
    >>> scan, truth = load_sample()
    >>> scan.shape, truth.dtype
    ((128, 128, 128), dtype('uint32'))
    """
    from ps3d_toolkit.io import Scan, load_labels, load_scan

    folder = sample_path()
    if folder is None:
        image, labels, metadata = make_sample()
        scan = Scan(image=image, spacing=metadata["spacing"], name="sample",
                    particle_size_mm=metadata["particle_size_mm"])
        return scan, labels
    scan = load_scan(folder / _SCAN_FILE)
    # 4 MB: in memory, as when it is regenerated, so that it is a numpy array either way
    scan.image = np.asarray(scan.image)
    scan.name = "sample"
    return scan, load_labels(folder / _LABELS_FILE)


def _jsonable(value):
    """Plain JSON types for a parameter dict (tuples become lists, numpy scalars numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
