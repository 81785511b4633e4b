"""Scans, labels and particle tables as napari layers, and the napari plugin's reader and widget.

napari is optional: everything here returns plain layer-data tuples,
``(data, kwargs, layer_type)``, that napari turns into layers
(``viewer._add_layer_from_data(*layer)`` or ``napari.layers.Layer.create(*layer)``),
and none of it imports napari or Qt. The plugin manifest
(``ps3d_toolkit/napari.yaml``) points napari at :func:`napari_get_reader`
(File > Open on the files the toolkit writes) and :func:`segment_widget`
(Plugins > Segment and measure particles), whose work is done by
:func:`segment_and_measure_layer`.

Both layers carry ``scale`` = the voxel spacing in mm, so that napari's scale
bar and coordinates read in mm, and a labels layer carries the particle table
as ``features``: napari reads row ``i`` of a Labels layer's features as the
row of label value ``i``, row 0 being the background (see :func:`label_features`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ps3d_toolkit.core.checks import check_lazy_volume, check_same_shape, check_spacing, check_table
from ps3d_toolkit.core.errors import InputError

if TYPE_CHECKING:  # the widget's annotations, which magicgui resolves (napari is optional)
    import napari

__all__ = [
    "READ_SUFFIXES", "label_features", "napari_get_reader", "read_layers", "run_on_layer",
    "segment_and_measure_layer", "segment_widget", "to_napari",
]

logger = logging.getLogger(__name__)

#: What the plugin's reader opens: the formats the toolkit writes (a ``.zarr``
#: store and an ``.ome.zarr`` image are folders).
READ_SUFFIXES = (".zarr", ".ome.zarr", ".tif", ".tiff", ".npy")
#: Table files looked for beside a label image of the same name (``labels.tif`` -> ``labels.csv``).
TABLE_SUFFIXES = (".csv", ".parquet")

_UINT32_MAX = np.iinfo(np.uint32).max
# A features table has one row per label value from 0 to the largest label when
# that is at most this many rows, or this many times the number of particles;
# sparser ids get one row per particle and an "index" column naming its label.
_DENSE_ROWS = 4096
_DENSE_FACTOR = 4
# Integer types the toolkit writes labels as (a TIFF of labels that fit is uint16:
# it is told from a scan by its name)
_LABEL_DTYPES = (np.dtype(np.uint32), np.dtype(np.int32), np.dtype(np.uint64), np.dtype(np.int64))
_LABELS_OPACITY = 0.5


def to_napari(scan, labels=None, table=None, *, spacing=None, name: str | None = None) -> list[tuple]:
    """napari layer data for a scan, its labels and its particle table.

    Parameters
    ----------
    scan : Scan, array_like or None
        A :class:`~ps3d_toolkit.io.Scan` (or any object with ``image`` and
        ``spacing``, such as a :class:`~ps3d_toolkit.data.synthetic.SyntheticScan`),
        or a 3D grey-value array (z, y, x) with ``spacing=``; None for labels
        alone. A lazy image (zarr, dask, a scan from ``load_scan``) stays lazy.
    labels : array_like of int, optional
        Label image of the scan's shape, 0 = background; given to napari as
        uint32 (lazy uint32 labels stay lazy).
    table : pandas.DataFrame, optional
        The particle table of ``labels`` (one row per particle, a ``label``
        column, as :func:`~ps3d_toolkit.measurement.measure` returns); becomes
        the labels layer's ``features`` (see :func:`label_features`).
    spacing : float or sequence of 3 float, optional
        Voxel size in mm, (z, y, x). Needed unless ``scan`` carries one; when
        both are given, this one is used (with a warning if they differ).
    name : str, optional
        Layer name of the scan; the labels layer is ``"<name> labels"``.
        Default: the scan's name, else ``"scan"``.

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)`` for napari: an ``"image"`` layer when
        ``scan`` is given, then a ``"labels"`` layer when ``labels`` is given.
        Both have ``scale`` = the spacing in mm, and the spacing (mm) in
        ``metadata["spacing_mm"]``.

    Raises
    ------
    InputError
        If there is neither scan nor labels, no spacing, labels or a scan that
        are not 3D, shapes that differ, labels that are negative or beyond
        uint32, a table without labels, or a table whose ``label`` column is
        not unique non-negative integers.
    InputTypeError
        If the table is not a DataFrame, or the labels are not integers.

    Examples
    --------
    >>> from ps3d_toolkit.data.synthetic import generate_scan
    >>> scan = generate_scan((32, 32, 32), mean_diameter_vox=10, seed=0, spacing=0.02)
    >>> layers = to_napari(scan.image, scan.labels, spacing=scan.spacing)
    >>> [(kind, kwargs["scale"]) for _, kwargs, kind in layers]
    [('image', (0.02, 0.02, 0.02)), ('labels', (0.02, 0.02, 0.02))]
    >>> import napari                                            # doctest: +SKIP
    >>> viewer = napari.Viewer()                                 # doctest: +SKIP
    >>> for layer in layers:                                     # doctest: +SKIP
    ...     viewer.add_layer(napari.layers.Layer.create(*layer))
    """
    if scan is None and labels is None:
        raise InputError("to_napari needs a scan or labels (or both), got neither")
    if table is not None and labels is None:
        raise InputError("table needs labels: its rows describe the particles of a label image")
    image, spacing, name, extra = _scan_parts(scan, spacing, name)
    metadata = {"spacing_mm": spacing}
    layers = []
    if image is not None:
        kwargs = {"name": name, "scale": spacing, "colormap": "gray", "metadata": {**metadata, **extra}}
        if isinstance(image, np.ndarray):
            from ps3d_toolkit.viz.slices import default_window

            # a lazy image is left to napari, which samples it rather than reading it all
            kwargs["contrast_limits"] = default_window(image)
        layers.append((_displayable(image), kwargs, "image"))
    if labels is not None:
        labels = _uint32_labels(labels)
        if image is not None:
            check_same_shape(image, labels, "scan", "labels")
        kwargs = {"name": f"{name} labels", "scale": spacing, "opacity": _LABELS_OPACITY,
                  "blending": "translucent", "metadata": dict(metadata)}
        if table is not None:
            kwargs["features"] = label_features(table)
            kwargs["metadata"]["n_particles"] = len(table)
        layers.append((_displayable(labels), kwargs, "labels"))
    return layers


def label_features(table):
    """The particle table laid out as the ``features`` of a napari Labels layer.

    napari reads row ``i`` of a Labels layer's features as label value ``i``,
    row 0 being the background. So the rows are label values 0, 1, ..., the
    largest label: the background row and the rows of labels the table lacks
    hold NaN (their ``label`` column still says which label they are). When
    the labels are so sparse that this would be many times more rows than
    particles, the table gets one row per particle after a background row, and
    an ``index`` column giving each row's label value, which napari uses
    instead of the row number.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per particle, with a ``label`` column of distinct positive
        integers (the output of :func:`~ps3d_toolkit.measurement.measure`).

    Returns
    -------
    pandas.DataFrame
        A new table with a default index and ``label`` as its first column.

    Raises
    ------
    InputTypeError
        If ``table`` is not a DataFrame.
    InputError
        If it has no ``label`` column, or its labels are not distinct
        positive integers within uint32.

    Examples
    --------
    >>> import pandas as pd
    >>> label_features(pd.DataFrame({"label": [2, 1], "volume_mm3": [0.2, 0.1]}))
       label  volume_mm3
    0      0         NaN
    1      1         0.1
    2      2         0.2
    """
    import pandas as pd

    table = check_table(table, ("label",))
    ids = _table_labels(table)
    rows = int(ids.max()) + 1 if len(ids) else 1
    columns = ["label"] + [c for c in table.columns if c != "label"]
    by_label = table.set_index(pd.Index(ids, name=None))[[c for c in columns if c != "label"]]
    if rows <= max(_DENSE_ROWS, _DENSE_FACTOR * (len(ids) + 1)):
        values = np.arange(rows, dtype=np.int64)
        features = by_label.reindex(values)
        features.insert(0, "label", values)
        if "index" in features.columns:  # napari would read it as the label of each row: make it so
            features["index"] = values
    else:
        values = np.concatenate([[0], np.sort(ids)])
        features = by_label.reindex(values)
        features.insert(0, "label", values)
        features["index"] = values
    return features.reset_index(drop=True)


def _table_labels(table) -> np.ndarray:
    """The ``label`` column as int64, checked: distinct positive integers within uint32."""
    column = table["label"]
    values = column.to_numpy()
    whole_floats = values.dtype.kind == "f" and np.all(np.isfinite(values)) and np.all(np.mod(values, 1) == 0)
    if values.dtype.kind not in "iu" and not whole_floats:
        raise InputError(f"table's 'label' column must hold integer label ids, got dtype {column.dtype}")
    values = values.astype(np.int64)
    if len(values) and (values.min() < 1 or values.max() > _UINT32_MAX):
        raise InputError(f"table's 'label' column must hold particle ids from 1 to {_UINT32_MAX} "
                         f"(0 is the background), got {values.min()} to {values.max()}")
    if len(np.unique(values)) != len(values):
        raise InputError("table's 'label' column must name each particle once, got repeated label ids")
    return values


def _scan_parts(scan, spacing, name):
    """(image or None, spacing, layer name, image metadata) of what ``to_napari`` was given."""
    extra = {}
    stored = None
    if scan is None:
        image = None
    elif hasattr(scan, "image") and hasattr(scan, "spacing"):
        image, stored = scan.image, check_spacing(scan.spacing, "scan.spacing")
        name = name if name is not None else getattr(scan, "name", None)
        for key in ("particle_size_mm", "path"):
            if getattr(scan, key, None) is not None:
                extra[key] = getattr(scan, key) if key != "path" else str(scan.path)
    else:
        image = scan
    if spacing is not None:
        spacing = check_spacing(spacing)
        if stored is not None and not np.allclose(spacing, stored, rtol=1e-6, atol=0):
            warnings.warn(f"spacing={spacing} overrides the scan's spacing {stored}", UserWarning, stacklevel=3)
    elif stored is not None:
        spacing = stored
    else:
        raise InputError("spacing must be given (3 positive numbers in mm, z, y, x) when scan is an array "
                         "or None; a Scan from load_scan carries its own")
    if image is not None:
        image = check_lazy_volume(image, "scan")
    name = "scan" if name is None else str(name)
    return image, tuple(spacing), name, extra


def _uint32_labels(labels):
    """Labels as uint32: lazy uint32 labels are kept lazy, anything else is checked in memory."""
    if not isinstance(labels, np.ndarray) and hasattr(labels, "shape") and hasattr(labels, "dtype") \
            and np.dtype(labels.dtype) == np.uint32:
        return check_lazy_volume(labels, "labels")
    from ps3d_toolkit.io._formats import as_uint32_labels

    return as_uint32_labels(labels, "labels")


def _displayable(array):
    """An array napari slices as it likes: numpy and dask as they are, other lazy arrays through dask."""
    if isinstance(array, np.ndarray) or type(array).__module__.startswith("dask"):
        return array
    import dask.array as da

    chunks = getattr(array, "chunks", None) or "auto"
    return da.from_array(array, chunks=chunks, name=False, asarray=True)


# --- the plugin's reader ------------------------------------------------------------------------------


def napari_get_reader(path):
    """The reader of the napari plugin: a function that reads ``path``, or None when it is not ours.

    Parameters
    ----------
    path : str, Path or list of them
        What napari was asked to open; a list is ours when every path is.

    Returns
    -------
    callable or None
        :func:`read_layers`, taking ``path`` and returning layer data tuples;
        None for a path that is missing or of another format, so that napari
        tries its other readers.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_layers


def _readable(path) -> bool:
    try:
        path = Path(path)
    except TypeError:
        return False
    return path.name.lower().endswith(READ_SUFFIXES) and path.exists()


def read_layers(path) -> list[tuple]:
    """Layer data tuples of a scan or label image the toolkit wrote (``.zarr``, ``.ome.zarr``, TIFF, ``.npy``).

    A label image (integer data whose type is 32 or 64 bits, or whose name
    holds ``label``, or an OME-Zarr label pyramid) becomes a labels layer, with
    the table of the same name beside it (``labels.csv`` or
    ``labels.parquet`` for ``labels.tif``) as its features; anything else an
    image layer. Both are scaled by the stored spacing in mm; a file without
    one is shown in voxels (scale 1), with a warning.

    Parameters
    ----------
    path : str, Path or list of them
        One file or store, or several (their layers one after another).

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``, one per file.

    Raises
    ------
    MissingInputError, CorruptDataError, InputError
        As :func:`~ps3d_toolkit.io.load_scan`.
    """
    if isinstance(path, (list, tuple)):
        return [layer for one in path for layer in read_layers(one)]
    from ps3d_toolkit.io import load_scan

    path = Path(path)
    try:
        scan = load_scan(path)
    except InputError as error:
        if "spacing is not stored" not in str(error):
            raise
        warnings.warn(f"{path} stores no voxel size: shown in voxels (scale 1); "
                      "pass the spacing to ps3d_toolkit.viz.to_napari to see it in mm", UserWarning, stacklevel=2)
        scan = load_scan(path, spacing=1.0)
    if not _holds_labels(path, scan):
        return to_napari(scan)
    return to_napari(None, scan.image, _table_beside(path, scan.name), spacing=scan.spacing, name=scan.name)


def _holds_labels(path: Path, scan) -> bool:
    """Whether a file read as a scan holds labels: by its type, its name or its zarr attributes."""
    dtype = np.dtype(scan.dtype)
    if dtype.kind not in "iu":
        return False
    if dtype in _LABEL_DTYPES or "label" in scan.name.lower():
        return True
    attrs = _zarr_attributes(path)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}]
    return "n_particles" in attrs or multiscales[0].get("type") == "nearest"


def _zarr_attributes(path: Path) -> dict:
    if not path.is_dir():
        return {}
    try:
        import zarr

        return dict(zarr.open(str(path), mode="r").attrs)
    except Exception as error:  # noqa: BLE001 - the attributes only refine a guess
        logger.debug("no zarr attributes in %s: %s", path, error)
        return {}


def _table_beside(path: Path, stem: str):
    """The particle table named as the label image, beside it, or None."""
    from ps3d_toolkit.io import read_table

    for suffix in TABLE_SUFFIXES:
        candidate = path.parent / f"{stem}{suffix}"
        if candidate.is_file():
            try:
                return read_table(candidate)
            except (InputError, ValueError) as error:
                warnings.warn(f"{candidate} is beside {path.name} but is not its particle table ({error}); "
                              "labels opened without features", UserWarning, stacklevel=3)
    return None


# --- the plugin's widget ------------------------------------------------------------------------------


def segment_and_measure_layer(image, *, spacing, method: str | None = None, particle_size_mm=None,
                              name: str = "scan") -> list[tuple]:
    """Segment a scan and measure its particles: a labels layer with the table as its features.

    The work behind the plugin's widget, without napari or Qt.

    Parameters
    ----------
    image : array_like
        Grey-value scan, (z, y, x).
    spacing : float or sequence of 3 float
        Voxel size in mm.
    method : {"model", "otsu-watershed", "snow"}, optional
        Segmentation method; default: the toolkit's default
        (:func:`~ps3d_toolkit.segmentation.default_method`).
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; estimated when omitted.
    name : str
        Name of the scan layer; the new layer is ``"<name> labels"``.

    Returns
    -------
    list of tuple
        One ``(labels, kwargs, "labels")`` tuple (see :func:`to_napari`); the
        table is ``kwargs["features"]``, and ``kwargs["metadata"]["method"]``
        names the method.

    Raises
    ------
    InputError, InputTypeError
        As :func:`~ps3d_toolkit.segmentation.segment`.
    """
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.segmentation import default_method, segment

    spacing = check_spacing(spacing)
    method = method or default_method()
    labels = segment(image, spacing=spacing, particle_size_mm=particle_size_mm, method=method, progress=False)
    table = measure(labels, image, spacing=spacing, progress=False)
    layers = to_napari(None, labels, table, spacing=spacing, name=name)
    layers[0][1]["metadata"]["method"] = method
    return layers


def run_on_layer(image: napari.layers.Image, method: str | None = None, particle_size_mm: float = 0.0,
                 spacing_mm: float = 0.0) -> napari.types.LayerDataTuple:
    """Segment and measure a napari image layer (what the widget's button calls).

    Parameters
    ----------
    image : napari.layers.Image
        A 3D image layer (or anything with ``data``, ``scale`` and ``name``);
        of a multiscale layer, the full resolution is segmented.
    method : str, optional
        As :func:`segment_and_measure_layer`.
    particle_size_mm : float
        Rough mean particle diameter in mm; 0 estimates it.
    spacing_mm : float
        Isotropic voxel size in mm; 0 takes the layer's ``scale`` (which the
        plugin's reader and :func:`to_napari` set in mm).

    Returns
    -------
    tuple
        The labels layer of :func:`segment_and_measure_layer`,
        ``(labels, kwargs, "labels")``, placed on the image (same scale and
        translation).

    Raises
    ------
    InputError
        If no layer is given or it is not 3D.
    """
    if image is None:
        raise InputError("image must be a napari image layer, got None: open a scan first")
    data = image.data[0] if getattr(image, "multiscale", False) else image.data
    if len(data.shape) != 3:
        raise InputError(f"image must be a 3D image layer (z, y, x), got {image.name!r} of shape {data.shape}")
    if spacing_mm:
        spacing = spacing_mm
    else:
        spacing = tuple(float(s) for s in np.asarray(image.scale)[-3:])
    size = float(particle_size_mm) if particle_size_mm else None
    layers = segment_and_measure_layer(data, spacing=spacing, method=method, particle_size_mm=size,
                                       name=str(image.name))
    layer = layers[0]
    translate = getattr(image, "translate", None)
    if translate is not None and np.any(np.asarray(translate) != 0):
        layer[1]["translate"] = tuple(float(t) for t in np.asarray(translate)[-3:])
    return layer


def segment_widget():
    """The napari dock widget: pick an image layer, a method and a size, then segment and measure.

    A magicgui function widget around :func:`run_on_layer`; magicgui (and Qt)
    are imported only when napari builds the widget.

    Returns
    -------
    magicgui.widgets.FunctionGui
    """
    from magicgui import magicgui

    from ps3d_toolkit.segmentation import METHODS, default_method

    return magicgui(
        run_on_layer,
        call_button="Segment and measure",
        method={"widget_type": "ComboBox", "choices": list(METHODS), "value": default_method()},
        particle_size_mm={"label": "particle size (mm, 0 = estimate)", "min": 0.0, "max": 1e4, "step": 0.001},
        spacing_mm={"label": "voxel size (mm, 0 = layer scale)", "min": 0.0, "max": 1e4, "step": 0.0001},
    )

