"""Scans, labels and particle tables as napari layers, and the napari plugin: reader, sample data, widget.

napari is optional: everything here returns plain layer-data tuples,
``(data, kwargs, layer_type)``, that napari turns into layers
(``viewer._add_layer_from_data(*layer)`` or ``napari.layers.Layer.create(*layer)``),
and importing it imports neither napari nor Qt. The plugin manifest
(``ps3d_toolkit/napari.yaml``) points napari at :func:`napari_get_reader`
(File > Open on the files the toolkit writes; None for anything else),
:func:`sample_layers` (File > Open Sample: the bundled scan and its truth) and
:func:`segment_widget` (Plugins > Segment and measure particles). The widget
runs :func:`layer_steps` in napari's ``thread_worker``: the work
(:func:`segment_and_measure_steps`) yields its progress and never runs in the
interface thread; :func:`segment_and_measure_layer` is the same work, run at once.

Every layer carries ``scale`` = the voxel spacing in mm, per axis (z, y, x),
so that napari's scale bar and coordinates read in mm, and a labels layer carries the particle table
as ``features``: napari reads row ``i`` of a Labels layer's features as the
row of label value ``i``, row 0 being the background (see :func:`label_features`).
"""

from __future__ import annotations

import logging
import queue
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ps3d_toolkit.core.checks import check_lazy_volume, check_same_shape, check_spacing, check_table
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.progress import Stages

if TYPE_CHECKING:  # the widget's annotations, which magicgui resolves (napari is optional)
    import napari

__all__ = [
    "READ_SUFFIXES", "Progress", "label_features", "layer_steps", "napari_get_reader", "read_layers", "run_on_layer",
    "sample_layers", "segment_and_measure_layer", "segment_and_measure_steps", "segment_widget", "to_napari",
]

logger = logging.getLogger(__name__)

#: Names the plugin's reader looks at: the formats the toolkit writes (a ``.zarr``
#: store, an ``.ome.zarr`` image included, is a folder); it opens those that hold a 3D scan.
READ_SUFFIXES = (".zarr", ".tif", ".tiff", ".npy")
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

    A path is ours when the toolkit opens it as a 3D scan: a ``.zarr`` store
    (an ``.ome.zarr`` image included), a TIFF or a ``.npy`` file holding a 3D
    volume of numbers. Only the header is read to decide. A 2D TIFF, a stack
    of colour images, a ``.npy`` of another shape or type, a folder that is
    not a zarr store of one 3D array, a missing or damaged file: None, so that
    napari offers them to its other readers.

    Parameters
    ----------
    path : str, Path or list of them
        What napari was asked to open; a list is ours when every path is.

    Returns
    -------
    callable or None
        :func:`read_layers`, taking ``path`` and returning layer data tuples.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    if not paths or not all(_opens_as_scan(p) for p in paths):
        return None
    return read_layers


def _opens_as_scan(path) -> bool:
    """Whether ``path`` has one of our names and opens as a 3D numeric volume (headers only)."""
    try:
        path = Path(path)
    except TypeError:
        return False
    if not path.name.lower().endswith(READ_SUFFIXES) or not path.exists():
        return False
    from ps3d_toolkit.core.errors import Ps3dError
    from ps3d_toolkit.io import load_scan

    try:
        with warnings.catch_warnings():
            # a stored spacing replaced by the probe's, an odd unit: said again when the file is read
            warnings.simplefilter("ignore")
            scan = load_scan(path, spacing=1.0)
    except (Ps3dError, OSError, ValueError) as error:
        logger.debug("not a scan the toolkit reads: %s (%s)", path, error)
        return False
    return np.dtype(scan.dtype).kind in "buif" and not _colour_tiff(path)


def _colour_tiff(path: Path) -> bool:
    """Whether a TIFF holds colour samples (RGB): a picture, which load_scan would take as a thin 3D scan."""
    if not path.name.lower().endswith((".tif", ".tiff")):
        return False
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return "S" in tif.series[0].axes


def read_layers(path) -> list[tuple]:
    """Layer data tuples of a scan or label image the toolkit wrote (``.zarr``, ``.ome.zarr``, TIFF, ``.npy``).

    A label image (integer data whose type is 32 or 64 bits, or whose name
    holds ``label``, or an OME-Zarr label pyramid) becomes a labels layer, with
    the table of the same name beside it (``labels.csv`` or
    ``labels.parquet`` for ``labels.tif``) as its features, with each particle's
    ``confidence`` from ``labels.tif.quality.csv`` (``ps3d segment --quality``) when the
    table has none; anything else an image layer. An OME-Zarr image that holds NGFF labels (``labels/<name>``,
    see :func:`~ps3d_toolkit.io.ome_zarr.save_ome_zarr`) also gives a labels
    layer per label image. Every layer is scaled by its stored spacing in mm
    (per axis, z, y, x); a file without one is shown in voxels (scale 1), with
    a warning.

    Parameters
    ----------
    path : str, Path or list of them
        One file or store, or several (their layers one after another).

    Returns
    -------
    list of tuple
        ``(data, kwargs, layer_type)``: one per file, then one per NGFF label image.

    Raises
    ------
    MissingInputError, CorruptDataError, InputError
        As :func:`~ps3d_toolkit.io.load_scan`.
    """
    if isinstance(path, (list, tuple)):
        return [layer for one in path for layer in read_layers(one)]
    from ps3d_toolkit.io import load_scan
    from ps3d_toolkit.io.ome_zarr import label_paths

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
        layers = to_napari(scan)
    else:
        table = _with_confidence(_table_beside(path, scan.name), path)
        layers = to_napari(None, scan.image, table, spacing=scan.spacing, name=scan.name)
    for name, store in label_paths(path).items():
        labels = load_scan(store)
        layers += to_napari(None, labels.image, spacing=labels.spacing)
        layers[-1][1]["name"] = f"{scan.name} {name}"
    return layers


def _holds_labels(path: Path, scan) -> bool:
    """Whether a file read as a scan holds labels: by its type, its name or its zarr attributes."""
    dtype = np.dtype(scan.dtype)
    if dtype.kind not in "iu":
        return False
    if dtype in _LABEL_DTYPES or "label" in scan.name.lower():
        return True
    attrs = _zarr_attributes(path)
    ome = attrs.get("ome", {})
    multiscales = attrs.get("multiscales") or ome.get("multiscales") or [{}]
    return ("n_particles" in attrs or "image-label" in attrs or "image-label" in ome
            or multiscales[0].get("type") == "nearest")


def _zarr_attributes(path: Path) -> dict:
    if not path.is_dir():
        return {}
    try:
        import zarr

        return dict(zarr.open(str(path), mode="r").attrs)
    except Exception as error:  # noqa: BLE001 - the attributes only refine a guess
        logger.debug("no zarr attributes in %s: %s", path, error)
        return {}


def _with_confidence(table, path: Path):
    """The table with each particle's ``confidence`` from ``<labels>.quality.csv`` (``ps3d segment --quality``)
    when it has none; a table of the confidences alone when there is no table."""
    from ps3d_toolkit.segmentation.assess import read_confidence

    confidence = read_confidence(path)
    if confidence is None or (table is not None and "confidence" in table.columns):
        return table
    if table is None:
        import pandas as pd

        return pd.DataFrame({"label": confidence.index.to_numpy(), "confidence": confidence.to_numpy()})
    return table.assign(confidence=table["label"].map(confidence).astype(np.float64))


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


# --- the plugin's sample data -------------------------------------------------------------------------


def sample_layers() -> list[tuple]:
    """The bundled sample scan and its true particles, as napari layers scaled in mm.

    The plugin's *File > Open Sample > ps3d toolkit* entry
    (:func:`~ps3d_toolkit.data.sample.load_sample`: 128^3 voxels of 0.01 mm,
    uint16 grey values, exact uint32 labels).

    Returns
    -------
    list of tuple
        An ``"image"`` layer ``"sample"`` and a ``"labels"`` layer ``"sample truth"``,
        both with ``scale`` = the spacing in mm.
    """
    from ps3d_toolkit.data.sample import load_sample

    scan, truth = load_sample()
    layers = to_napari(scan, truth, name="sample")
    layers[1][1]["name"] = "sample truth"
    return layers


# --- the plugin's widget and the work behind it -------------------------------------------------------


class Progress(NamedTuple):
    """Where a run of :func:`segment_and_measure_steps` stands: the step running, steps done of those known."""

    stage: str
    done: int
    total: int


class _Cancelled(Exception):
    """Raised in the working thread at its next step once the run was abandoned."""


class _ReportingStages(Stages):
    """A silent :class:`~ps3d_toolkit.core.progress.Stages` that reports every stage and step to ``report``.

    ``report`` is called in the thread that runs the work; :meth:`cancel`
    (from any thread) makes the next stage or step raise, which ends the run.
    """

    def __init__(self, what: str, report):
        super().__init__(what, enabled=False)
        self._report = report
        self._cancelled = threading.Event()
        self._done = self._total = self._left = 0

    def start(self, name: str, steps: int = 1) -> None:
        self._stop_if_cancelled()
        super().start(name, steps)
        self._done, self._total, self._left = self._done + self._left, self._total + steps, steps
        self._report(Progress(name, self._done, self._total))

    def advance(self, steps: int = 1) -> None:
        self._stop_if_cancelled()
        super().advance(steps)
        self._done, self._left = self._done + steps, self._left - steps
        self._report(Progress(self._name, self._done, self._total))

    def close(self) -> None:
        super().close()
        self._done, self._left = self._done + self._left, 0

    def cancel(self) -> None:
        """End the run at its next stage or step."""
        self._cancelled.set()

    def _stop_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise _Cancelled(f"{self.what} was stopped")


def segment_and_measure_layer(image, *, spacing, method: str | None = None, particle_size_mm=None,
                              roi=None, mask=None, name: str = "scan") -> list[tuple]:
    """Segment a scan and measure its particles: a labels layer with the table as its features.

    The work behind the plugin's widget, without napari or Qt, run here and now;
    :func:`segment_and_measure_steps` runs the same in a worker thread with progress.

    Parameters
    ----------
    image : array_like
        Grey-value scan, (z, y, x).
    spacing : float or sequence of 3 float
        Voxel size in mm, (z, y, x).
    method : str, optional
        Segmentation method, one of
        :func:`~ps3d_toolkit.segmentation.available_methods`; default:
        :func:`~ps3d_toolkit.segmentation.default_method`.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; estimated when omitted.
    roi : str or 3 slices, optional
        Box of the scan to segment, ``"z0:z1,y0:y1,x0:x1"`` (as
        :func:`~ps3d_toolkit.segmentation.segment`); the particles it cuts are
        flagged in the table's ``touches_border``.
    mask : array_like of bool or "auto", optional
        The sample's voxels (nonzero = sample), or ``"auto"`` (as
        :func:`~ps3d_toolkit.segmentation.segment`).
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
    return _segment_and_measure(image, spacing, method, particle_size_mm, roi, mask, name, progress=False)


def segment_and_measure_steps(image, *, spacing, method: str | None = None, particle_size_mm=None,
                              roi=None, mask=None, name: str = "scan"):
    """:func:`segment_and_measure_layer` as a generator: it yields progress while the work runs.

    The function napari's ``thread_worker`` runs for the widget, in a worker
    thread: each ``yield`` becomes the worker's ``yielded`` signal in napari's
    interface thread, and the return value its ``returned`` signal. The work
    itself runs in a thread of its own, reporting each stage (the model's
    normalise, network windows, instances; then the measurement) as it goes.
    Closing the generator early (napari's ``worker.quit()``) stops the run at
    its next stage or network window.

    Parameters
    ----------
    image, spacing, method, particle_size_mm, roi, mask, name
        As :func:`segment_and_measure_layer`.

    Yields
    ------
    Progress
        ``(stage, done, total)``: the stage running and the steps done of
        those known so far (``total`` grows as stages start).

    Returns
    -------
    list of tuple
        As :func:`segment_and_measure_layer` (the generator's ``StopIteration.value``).

    Raises
    ------
    InputError, InputTypeError
        As :func:`segment_and_measure_layer`, raised from the generator.

    Examples
    --------
    >>> from ps3d_toolkit.data.synthetic import generate_scan
    >>> scan = generate_scan((32, 32, 32), mean_diameter_vox=10, seed=0, spacing=0.02)
    >>> steps = segment_and_measure_steps(scan.image, spacing=scan.spacing, method="otsu-watershed")
    >>> stages = []
    >>> while True:
    ...     try:
    ...         stages.append(next(steps).stage)
    ...     except StopIteration as finished:
    ...         layers = finished.value
    ...         break
    >>> stages[0], stages[-1], layers[0][2]
    ('segment', 'layers', 'labels')
    """
    events = queue.SimpleQueue()
    stages = _ReportingStages(method or "segment", events.put)
    outcome = {}

    def work():
        try:
            outcome["layers"] = _segment_and_measure(image, spacing, method, particle_size_mm, roi, mask, name,
                                                     progress=stages)
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            outcome["error"] = error
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name=f"ps3d {stages.what}", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        stages.cancel()  # a no-op after the end; after an early close, it ends the run at its next step
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["layers"]


def _segment_and_measure(image, spacing, method, particle_size_mm, roi, mask, name, progress) -> list[tuple]:
    """Segment, measure, make the layer; ``progress`` is False or a Stages that reports each step."""
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.segmentation import default_method, segment

    spacing = check_spacing(spacing)
    method = method or default_method()
    # a reporting Stages is silent (False as a bool), so that no method draws a terminal bar of its own
    stages = progress if isinstance(progress, Stages) else Stages(method, enabled=False)
    if isinstance(mask, (str, Path)):
        # "auto" or a file: found once, for segment and measure both (each would find it again)
        from ps3d_toolkit.segmentation.region import resolve_region

        stages.start("sample mask")
        mask = resolve_region(image, mask=mask, spacing=spacing).mask
    stages.start("segment")
    labels = segment(image, spacing=spacing, particle_size_mm=particle_size_mm, method=method, roi=roi,
                     mask=mask, progress=progress)
    stages.start("measure")
    table = measure(labels, image, spacing=spacing, roi=roi, mask=mask, progress=False)
    stages.start("layers")
    layers = to_napari(None, labels, table, spacing=spacing, name=name)
    layers[0][1]["metadata"]["method"] = method
    stages.close()
    return layers


def run_on_layer(image: napari.layers.Image, method: str | None = None, particle_size_mm: float = 0.0,
                 spacing_z_mm: float = 0.0, spacing_y_mm: float = 0.0, spacing_x_mm: float = 0.0,
                 roi: str = "", mask=None) -> napari.types.LayerDataTuple:
    """Segment and measure a napari image layer, here and now (the widget runs the same in a worker).

    Parameters
    ----------
    image : napari.layers.Image
        A 3D image layer (or anything with ``data``, ``scale`` and ``name``);
        of a multiscale layer, the full resolution is segmented.
    method : str, optional
        As :func:`segment_and_measure_layer`.
    particle_size_mm : float
        Rough mean particle diameter in mm; 0 estimates it.
    spacing_z_mm, spacing_y_mm, spacing_x_mm : float
        Voxel size in mm along each axis; 0 takes the layer's ``scale`` on
        that axis (which the plugin's reader and :func:`to_napari` set in mm).
    roi : str
        Box of the scan to segment, ``"z0:z1,y0:y1,x0:x1"`` in voxels; empty:
        the whole scan.
    mask : napari layer, array_like of bool, "auto" or None
        The sample's voxels: a labels or image layer (or array) of the scan's
        shape, nonzero inside; ``"auto"`` finds the inside of the holder;
        None: the whole scan (or box).

    Returns
    -------
    tuple
        The labels layer of :func:`segment_and_measure_layer`,
        ``(labels, kwargs, "labels")``, placed on the image (same scale and
        translation).

    Raises
    ------
    InputError
        If no layer is given or it is not 3D, or a spacing is negative.
    """
    return _finish(layer_steps(image, method=method, particle_size_mm=particle_size_mm,
                               spacing_mm=(spacing_z_mm, spacing_y_mm, spacing_x_mm), roi=roi, mask=mask,
                               report=False))


def layer_steps(image, *, method: str | None = None, particle_size_mm: float = 0.0, spacing_mm=(0.0, 0.0, 0.0),
                roi: str = "", mask=None, report: bool = True):
    """The widget's work on a napari image layer, as a generator (see :func:`segment_and_measure_steps`).

    Parameters are those of :func:`run_on_layer` (``spacing_mm`` the three
    spacings, z, y, x, 0 meaning the layer's). The layer is read in the
    calling thread (napari's interface thread, when the widget starts the
    worker); the generator then works only on its data.

    Yields
    ------
    Progress
        With ``report`` True; none otherwise.

    Returns
    -------
    tuple
        ``(labels, kwargs, "labels")`` placed on the image (its scale and translation).
    """
    data, spacing, translate, name = _layer_parts(image, spacing_mm)
    size = float(particle_size_mm) if particle_size_mm else None
    roi = roi.strip() if isinstance(roi, str) else roi
    mask = _mask_data(mask)
    return _placed(data, spacing, translate, name, method, size, roi or None, mask, report)


def _placed(data, spacing, translate, name, method, size, roi, mask, report):
    kwargs = dict(spacing=spacing, method=method, particle_size_mm=size, roi=roi, mask=mask, name=name)
    if report:
        layers = yield from segment_and_measure_steps(data, **kwargs)
    else:
        layers = segment_and_measure_layer(data, **kwargs)
    layer = layers[0]
    if translate is not None:
        layer[1]["translate"] = translate
    return layer


def _relay(steps):
    """A generator function (what napari's worker needs to pass ``yield`` on) around a started generator."""
    return (yield from steps)


def _finish(steps):
    """Run a generator to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def _layer_parts(image, spacing_mm):
    """(full-resolution data, spacing in mm per axis, translation or None, name) of an image layer."""
    if image is None:
        raise InputError("image must be a napari image layer, got None: open a scan first")
    data = image.data[0] if getattr(image, "multiscale", False) else image.data
    if len(data.shape) != 3:
        raise InputError(f"image must be a 3D image layer (z, y, x), got {image.name!r} of shape {data.shape}")
    given = tuple(float(s) for s in spacing_mm)
    if len(given) != 3 or any(s < 0 for s in given):
        raise InputError(f"spacing_mm must be 3 voxel sizes in mm (z, y, x), 0 for the layer's, got {spacing_mm}")
    scale = np.asarray(image.scale, dtype=float)[-3:]
    spacing = check_spacing(tuple(g or float(s) for g, s in zip(given, scale)), "spacing")
    translate = getattr(image, "translate", None)
    if translate is not None and np.any(np.asarray(translate) != 0):
        translate = tuple(float(t) for t in np.asarray(translate)[-3:])
    else:
        translate = None
    return data, spacing, translate, str(image.name)


def _mask_data(mask):
    """A mask given as a napari layer becomes its data (full resolution); anything else is left as it is."""
    if mask is None or isinstance(mask, str) or not hasattr(mask, "data") or isinstance(mask, np.ndarray):
        return mask
    return mask.data[0] if getattr(mask, "multiscale", False) else mask.data


def segment_widget():
    """The napari dock widget: segment and measure an image layer in a worker thread, with a progress bar.

    A magicgui function widget: an image layer, a method (those of
    :func:`~ps3d_toolkit.segmentation.available_methods`, outside methods
    included), a rough particle size, the voxel size along z, y and x (0: the
    layer's scale), a box ``roi`` and a sample mask (a layer, or found
    automatically). The button starts :func:`layer_steps` in napari's
    ``thread_worker``, so the interface stays live; each step moves the
    widget's progress bar, the labels layer is added when the work returns,
    and an error is shown in napari's notifications. magicgui, napari and Qt
    are imported only here, when napari builds the widget.

    Returns
    -------
    magicgui.widgets.FunctionGui
    """
    from magicgui import magicgui
    from magicgui.widgets import ProgressBar

    from ps3d_toolkit.segmentation import available_methods, default_method

    bar = ProgressBar(value=0, min=0, max=1, label="progress", visible=False)

    def segment_and_measure(viewer: napari.Viewer, image: napari.layers.Image, method: str = default_method(),
                            particle_size_mm: float = 0.0, spacing_z_mm: float = 0.0, spacing_y_mm: float = 0.0,
                            spacing_x_mm: float = 0.0, roi: str = "", sample_mask: napari.layers.Labels | None = None,
                            auto_mask: bool = False):
        from napari.qt.threading import create_worker

        if auto_mask and sample_mask is not None:
            raise InputError("choose either a sample mask layer or auto_mask, not both")
        steps = layer_steps(image, method=method, particle_size_mm=particle_size_mm,
                            spacing_mm=(spacing_z_mm, spacing_y_mm, spacing_x_mm), roi=roi,
                            mask="auto" if auto_mask else sample_mask)
        worker = create_worker(_relay, steps, _start_thread=False)
        worker.yielded.connect(lambda step: _show_step(bar, step))
        worker.returned.connect(lambda layer: viewer.add_layer(_layer_from_tuple(layer)))
        worker.finished.connect(lambda: _end_run(gui, bar))
        gui.call_button.enabled, bar.visible = False, True
        worker.start()
        return worker

    gui = magicgui(
        segment_and_measure,
        call_button="Segment and measure",
        method={"widget_type": "ComboBox", "choices": list(available_methods())},
        particle_size_mm={"label": "particle size (mm, 0 = estimate)", "min": 0.0, "max": 1e4, "step": 0.001},
        spacing_z_mm={"label": "voxel z (mm, 0 = layer scale)", "min": 0.0, "max": 1e4, "step": 0.0001},
        spacing_y_mm={"label": "voxel y (mm, 0 = layer scale)", "min": 0.0, "max": 1e4, "step": 0.0001},
        spacing_x_mm={"label": "voxel x (mm, 0 = layer scale)", "min": 0.0, "max": 1e4, "step": 0.0001},
        roi={"label": "box z0:z1,y0:y1,x0:x1 (empty = all)"},
        sample_mask={"label": "sample mask layer"},
        auto_mask={"label": "find the sample mask"},
    )
    gui.append(bar)
    return gui


def _show_step(bar, step: Progress) -> None:
    bar.max, bar.value, bar.label = max(step.total, 1), step.done, step.stage


def _end_run(gui, bar) -> None:
    gui.call_button.enabled, bar.visible = True, False


def _layer_from_tuple(layer):
    from napari.layers import Layer

    return Layer.create(*layer)
