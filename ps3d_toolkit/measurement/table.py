"""The per-particle table: :func:`measure`, one private function per column group.

Every column group (ids and counts, centroids, bounding boxes, surface and
sphericity, axes and Zingg ratios, Feret diameter, border flags, grey levels,
phases and liberation, confidence) is a short function that returns its columns
as a dict; :func:`measure` checks its arguments once and composes them. The
groups share one vectorised pass over the volume (:func:`_one_pass`) and the
per-particle loop of :mod:`ps3d_toolkit.measurement.surface`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from ps3d_toolkit.core.checks import (
    NonFinite,
    check_labels,
    check_non_finite,
    check_same_shape,
    check_spacing,
    check_volume,
    count_non_finite,
)
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.core.geometry import equivalent_diameter, wadell_sphericity
from ps3d_toolkit.core.labels import LUT_MAX_LABEL, compact_ids
from ps3d_toolkit.measurement import chunked as _chunked
from ps3d_toolkit.measurement import intensity as _intensity
from ps3d_toolkit.measurement import surface as _surface

# z-slices per slab of the scan for present label ids (bounds the temporary memory)
_SLAB_VOXELS = 1 << 24
_BBOX_COLUMNS = ("bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1")
# names of extra_images: they become part of column names
_EXTRA_IMAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


# The grey-value test of a label image (see grey_value_reason): planes sampled,
# the evidence needed before judging, and the verdict's thresholds.
_GREY_PLANES = 16
_GREY_MIN_PAIRS = 4096
_GREY_MIN_IDS = 64
_GREY_MAX_AGREEMENT = 0.25


def measure(labels, image=None, *, spacing=1.0, phases=None, phase_map=None, fov_mask=None,
            phase_names=None, liberation_phase=None, liberation_thresholds=_intensity.LIBERATION_THRESHOLDS,
            min_phase_fraction: float = _intensity.MIN_PHASE_FRACTION, confidence=None, shape: bool = True,
            workers: int | None = None, non_finite: NonFinite = "refuse",
            force: bool = False, progress: bool = True, chunk_size: int | None = None,
            extra_images=None, feret_min: bool = True) -> pd.DataFrame:
    """Measure every particle of a label image: one table row per particle.

    Volumes, centroids, bounding boxes, inertia-equivalent axes, grey-level
    statistics and phase fractions come from one vectorised pass over the
    volume; the surface area and Feret diameter come from a short loop over
    each particle's bounding-box crop (see :mod:`ps3d_toolkit.measurement.surface`
    for the methods and their measured errors).

    Parameters
    ----------
    labels : array_like of int, 3D (z, y, x)
        Label image, 0 = background. Label ids need not be contiguous.
    image : array_like, 3D, optional
        Grey-value scan of the same shape; adds the ``intensity_*`` columns.
    extra_images : dict of str to array_like, optional
        More grey-value images of the same shape and grid, registered to
        ``labels`` (a second X-ray energy, a neutron scan): ``{name: array}``.
        Each adds the grey-level columns of ``image`` as
        ``intensity_<name>_mean/std/min/max/p10/p50/p90``. A name is letters,
        digits and underscores, starting with a letter. Non-finite values are
        treated as in ``image`` (see ``non_finite``).
    spacing : float or 3 floats
        Voxel size in mm (z, y, x); a scalar means isotropic. With the default
        1.0 every length is in voxels.
    phases : dict or "auto", optional
        Mineral phases whose volume fraction in each particle becomes a
        ``phase_fraction_<name>`` column: ``{name: (low, high)}`` grey-level
        intervals of ``image`` (``low <= value < high``), or ``{name: id}``
        ids of ``phase_map``. ``"auto"`` takes two phases from
        :func:`propose_phase_thresholds` (named ``phase_1``, ``phase_2``,
        darkest first, unless ``phase_names`` names them).
    phase_map : array_like of int, 3D, optional
        Phase id of every voxel (e.g. ``SyntheticScan.phases``), for
        ``phases={name: id}``.
    fov_mask : array_like of bool, 3D, optional
        Field of view (e.g. the inside of the sample cylinder). A particle with a
        voxel outside it or next to it (6-neighbours) is flagged ``touches_border``,
        as is one that reaches the edge of the array.
    phase_names : sequence of str or str, optional
        Names of the two phases of ``phases="auto"``, darkest first (e.g.
        ``["quartz", "magnetite"]`` or ``"quartz,magnetite"``); a dict of
        ``phases`` is named by its keys.
    liberation_phase : str or sequence of str, optional
        The phases of interest: each gets a ``liberation_<name>`` column.
        Default: every phase.
    liberation_thresholds : (float, float)
        ``(locked_below, liberated_from)``, see :func:`liberation_class`;
        default locked < 30 % <= middling < 95 % <= liberated.
    min_phase_fraction : float
        Below this volume fraction a phase is absent from a particle, which is
        then ``barren`` in it; default 0.02 (why: :data:`MIN_PHASE_FRACTION`).
    confidence : array_like of float, 3D, optional
        Per-voxel model confidence (e.g. the predicted probability of the voxel's
        class); its mean over each particle becomes the ``confidence`` column.
    shape : bool
        Compute ``surface_area_mm2``, ``sphericity`` and the ``feret_*`` columns (the
        per-particle loop). ``False`` leaves them NaN and is several times faster.
    feret_min : bool
        With ``shape``, compute ``feret_min_mm`` and ``feret_ratio`` (about a third of the
        shape work); ``False`` leaves those two NaN.
    workers : int, optional
        Threads for the per-particle shape work (batches of particles run in
        parallel; the filters release the GIL). Default: the CPU cores available
        to this process, at most 8. Results do not depend on it.
    non_finite : {"refuse", "mask"}
        What to do with NaN or infinite grey values in ``image`` (and in each of
        ``extra_images``): refuse them
        (the default; the error gives their count), or leave those voxels out of
        every grey-level statistic and grey-interval phase fraction alike (a
        particle without a finite value then gets NaN there).
    force : bool
        Measure ``labels`` even when they look like a grey-value scan rather
        than a label image (see :func:`grey_value_reason`); a warning says so.
    progress : bool
        Show a progress bar over the particles (over the blocks on the chunked path).
    chunk_size : int, optional
        Measure block by block, reading blocks of this many voxels per edge
        (see :func:`ps3d_toolkit.measurement.chunked.measure_chunked`): memory
        is bounded by the block and the largest particle, and the table is the
        same. Lazy ``labels`` or ``image`` (zarr, dask, :class:`numpy.memmap`,
        anything with ``chunks``) larger than
        :data:`~ps3d_toolkit.measurement.chunked.IN_MEMORY_VOXELS` always
        take this path, with blocks of 128 voxels per edge unless told
        otherwise; smaller lazy inputs are read into memory (it is faster).

    Returns
    -------
    pandas.DataFrame
        One row per particle, sorted by label, with columns

        - ``label``, ``voxel_count``, ``volume_mm3``, ``eq_diameter_mm`` (sphere of
          equal volume);
        - ``centroid_z/y/x`` (voxel index) and ``centroid_z_mm/y_mm/x_mm``
          (index times spacing);
        - ``bbox_z0, bbox_y0, bbox_x0, bbox_z1, bbox_y1, bbox_x1`` (voxel index,
          the ``*1`` bounds exclusive);
        - ``surface_area_mm2``, ``sphericity`` (Wadell: pi^(1/3) (6V)^(2/3) / A);
        - ``axis_major_mm``, ``axis_intermediate_mm``, ``axis_minor_mm``: full
          lengths of the ellipsoid with the particle's inertia (2 sqrt(5 lambda),
          lambda an eigenvalue of the covariance of its voxels in mm, each voxel
          counted with its own second moment spacing^2/12);
        - ``elongation`` (intermediate / major), ``flatness`` (minor / intermediate);
        - ``feret_max_mm``, ``feret_min_mm`` (largest and smallest caliper width
          of the particle's smoothed surface, see :mod:`~ps3d_toolkit.measurement.surface`),
          ``feret_ratio`` (min / max), ``touches_border``;
        - with ``image``: ``intensity_mean/std/min/max/p10/p50/p90``;
        - with ``extra_images``: ``intensity_<name>_mean/std/min/max/p10/p50/p90`` per image;
        - with ``phases``: ``phase_fraction_<name>`` per phase and
          ``liberation_<name>`` (barren, locked, middling, liberated) per phase of interest;
        - with ``confidence``: ``confidence``.

        ``table.attrs["spacing_mm"]`` holds the spacing used (and, with phases,
        ``attrs["phases"]``, ``attrs["liberation_phases"]``,
        ``attrs["liberation_thresholds"]`` and ``attrs["min_phase_fraction"]``).

    Raises
    ------
    TypeError, ValueError
        If an argument has the wrong type, shape or value (the message names it),
        ``image`` holds non-finite values and ``non_finite="refuse"``, or
        ``labels`` look like grey values and ``force`` is False (all
        :class:`~ps3d_toolkit.core.errors.Ps3dError`).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((20, 20, 20), np.uint32)
    >>> labels[5:15, 5:15, 5:15] = 1
    >>> row = measure(labels, spacing=0.1, progress=False).iloc[0]
    >>> round(float(row.volume_mm3), 3), round(float(row.sphericity), 2)
    (1.0, 0.82)
    """
    names, liberation_phase = _auto_phase_names(phases, phase_names, liberation_phase)
    # one tuple through both paths: (min_phase_fraction, locked_below, liberated_from)
    thresholds = _intensity.check_liberation_thresholds(liberation_thresholds, min_phase_fraction)
    extra_images = _check_extra_images(extra_images)
    lazy = any(_chunked.is_large_and_lazy(a) for a in (labels, image, *(extra_images or {}).values()))
    if chunk_size is not None or lazy:
        frame = _chunked.measure_chunked(
            labels, image, spacing=spacing, phases=phases, phase_map=phase_map, fov_mask=fov_mask,
            liberation_phase=liberation_phase, liberation_thresholds=thresholds,
            confidence=confidence, shape=shape, workers=workers, non_finite=non_finite, force=force,
            progress=progress, chunk_size=chunk_size, extra_images=extra_images, feret_min=feret_min)
        return frame if names is None else _intensity.rename_phases(frame, names)
    labels, image, spacing, phases, phase_map, fov_mask, confidence = _checked_inputs(
        labels, image, spacing, phases, phase_map, fov_mask, confidence, non_finite, force)
    if extra_images is not None:
        extra_images = {name: _checked_extra_image(labels, array, name, non_finite)
                        for name, array in extra_images.items()}
    if phases is not None:
        liberation_phase = _checked_liberation(phases, liberation_phase, thresholds)
    table = particle_columns(labels, image, phase_map, fov_mask, confidence, spacing=spacing, phases=phases,
                             liberation_phase=liberation_phase, thresholds=thresholds, shape=shape,
                             workers=_workers(workers), progress=progress, extra_images=extra_images,
                             feret_min=bool(feret_min))
    frame = pd.DataFrame(table)
    frame.attrs.update(_table_attrs(spacing, phases, liberation_phase, thresholds))
    if fov_mask is not None:
        frame.attrs["fov_mask"] = True  # touches_border also flags the particles the field of view cuts
    return frame if names is None else _intensity.rename_phases(frame, names)


def _auto_phase_names(phases, phase_names, liberation_phase):
    """The checked ``phase_names`` of ``phases="auto"`` (None without), and ``liberation_phase`` in the default names.

    The automatic phases are measured as ``phase_1``, ``phase_2`` on both the
    in-memory and the chunked path and renamed at the end.
    """
    if phase_names is None:
        return None, liberation_phase
    if not (isinstance(phases, str) and phases == "auto"):
        raise InputError("phase_names names the phases of phases='auto'; a dict of phases is named by its keys")
    names = _intensity.check_phase_names(phase_names, 2)
    default = dict(zip(names, _intensity.phase_names(2)))
    if liberation_phase is not None:
        wanted = [liberation_phase] if isinstance(liberation_phase, str) else list(liberation_phase)
        liberation_phase = [default.get(name, name) for name in wanted]
    return names, liberation_phase


def particle_columns(labels, image, phase_map, fov_mask, confidence, *, spacing, phases, liberation_phase,
                     thresholds, shape, workers, progress, origin=(0, 0, 0), scan_shape=None,
                     extra_images=None, feret_min: bool = True) -> dict:
    """The table's columns for the particles of checked in-memory arrays, in label order.

    :func:`measure` calls it on the whole scan; the chunked path
    (:mod:`ps3d_toolkit.measurement.chunked`) on a crop whose corner lies at
    ``origin`` of a scan of shape ``scan_shape``, so that centroids, bounding
    boxes and ``touches_border`` are those of the scan and every value comes
    from the same code. ``extra_images`` (``{name: array}``, checked) add their
    grey-level columns after those of ``image``.
    """
    scan_shape = labels.shape if scan_shape is None else tuple(scan_shape)
    extra_images = extra_images or {}
    ids, lookup, labels = _label_ids(labels)
    need_voxels = image is not None or phases is not None or confidence is not None or bool(extra_images)
    sums, voxels = _one_pass(labels, lookup, len(ids), image, phase_map if phases else None, confidence,
                             need_voxels, origin, extra_images)
    slices = _bounding_boxes(labels, ids, lookup)
    bbox = np.array([[s.start for s in sl] + [s.stop for s in sl] for sl in slices],
                    dtype=np.int64).reshape(len(ids), 6)
    if any(origin):
        bbox += np.asarray(tuple(origin) * 2, dtype=np.int64)
    area, feret, feret_min = _shape_metrics(labels, slices, ids, lookup, spacing, shape, workers, progress,
                                            feret_min)

    table = _count_columns(ids, sums[0], spacing)
    table.update(_centroid_columns(sums, spacing))
    table.update(dict(zip(_BBOX_COLUMNS, bbox.T)))
    table.update(_surface_columns(table["volume_mm3"], area))
    table.update(_axis_columns(sums, spacing))
    table.update(_feret_columns(feret, feret_min))
    table["touches_border"] = _touches_border(bbox, scan_shape, labels, lookup, len(ids), fov_mask)
    index = voxels.get("index", np.zeros(0, dtype=np.int64))
    if image is not None:
        values = voxels.get("values", np.zeros(0, dtype=image.dtype))
        table.update(_intensity.intensity_columns(values, index, len(ids)))
    for name, extra in extra_images.items():
        values = voxels.get(f"extra:{name}", np.zeros(0, dtype=extra.dtype))
        table.update(_intensity.intensity_columns(values, index, len(ids), prefix=f"intensity_{name}"))
    if phases is not None:
        table.update(_phase_columns(phases, voxels, index, sums[0], liberation_phase, thresholds))
    if confidence is not None:
        table["confidence"] = _mean_by_particle(voxels.get("confidence", np.zeros(0)), index, sums[0])
    return table


def _checked_inputs(labels, image, spacing, phases, phase_map, fov_mask, confidence, non_finite, force):
    """The door of :func:`measure`: every array argument checked against ``labels``, before any work."""
    labels = check_labels(labels, "labels")
    refuse_grey_values(labels, "labels", force=force)
    spacing = check_spacing(spacing)
    check_non_finite(non_finite)
    if image is not None:
        image = check_volume(image, "image")
        check_same_shape(labels, image, "labels", "image")
        _check_grey_values(image, non_finite)
    if phase_map is not None:
        phase_map = check_labels(phase_map, "phase_map")
        check_same_shape(labels, phase_map, "labels", "phase_map")
    if isinstance(phases, str):
        if phases != "auto":
            raise InputError(f"phases must be a dict or 'auto', got {phases!r}")
        if image is None:
            raise InputError("phases='auto' needs the image")
        phases = _intensity.propose_phase_thresholds(image, labels)
    if phases is not None:
        phases = _intensity.check_phases(phases, image, phase_map)
    if fov_mask is not None:
        fov_mask = check_volume(fov_mask, "fov_mask").astype(bool, copy=False)
        check_same_shape(labels, fov_mask, "labels", "fov_mask")
    if confidence is not None:
        confidence = check_volume(confidence, "confidence")
        check_same_shape(labels, confidence, "labels", "confidence")
    return labels, image, spacing, phases, phase_map, fov_mask, confidence


def _check_extra_images(extra_images) -> dict | None:
    """The ``extra_images`` argument as a dict ``{name: array}`` with valid names (arrays not read yet)."""
    if extra_images is None:
        return None
    if not isinstance(extra_images, Mapping):
        raise InputTypeError("extra_images must be a dict {name: image} of grey-value images, got "
                             f"{type(extra_images).__name__}")
    for name in extra_images:
        if not isinstance(name, str) or not _EXTRA_IMAGE_NAME.fullmatch(name):
            raise InputError("extra_images names must be letters, digits and underscores, starting with a "
                             f"letter (they name the columns intensity_<name>_*), got {name!r}")
    return dict(extra_images)


def _checked_extra_image(labels, array, name: str, non_finite: str, check=check_volume):
    """One extra grey-value image checked against ``labels`` like ``image``: read into memory, or kept
    lazy with ``check=check_lazy_volume`` (the chunked path)."""
    argument = f"extra_images[{name!r}]"
    if array is None:
        raise InputError(f"{argument} must be a 3D grey-value image of the shape of labels, got None")
    array = check(array, argument)
    check_same_shape(labels, array, "labels", argument)
    _check_grey_values(array, non_finite, argument)
    return array


def _check_grey_values(image, non_finite: str, name: str = "image") -> None:
    """Refuse non-finite grey values unless they are to be masked (complex ones are refused at the door)."""
    if non_finite == "mask":
        return
    count = count_non_finite(image)
    if count:
        raise InputError(
            f"{name} holds {count:,} NaN or infinite grey value{'s' if count > 1 else ''} (of {image.size:,} voxels); "
            "fix the scan, or pass non_finite='mask' to leave those voxels out of the grey-level statistics")


def grey_value_reason(labels) -> str | None:
    """Why a label image looks like a grey-value scan rather than labels; None when it looks like labels.

    In a label image every particle is a blob, so a particle voxel's neighbour
    along an axis holds the same id unless the voxel lies on the particle's far
    face: the share of such agreeing neighbours is ``1 - 1/chord`` along each
    axis, at least 50 % for particles 2 voxels across (1,000,000 cubes of 2^3
    voxels filling 200^3 give 50 %, the bundled sample's labels 91 %). In a
    grey-value scan noise makes neighbours differ (the bundled uint16 scan:
    0.01 %; the same scan in uint8: 4 %). The verdict is "grey values" when, in
    up to 16 sampled pairs of z-planes, at least 64 distinct values occur and
    neighbours agree in under 25 % of places along every axis. Few distinct
    values (fast to measure anyway) or too few foreground voxels to judge
    (under 4096 neighbour pairs) always pass.

    Parameters
    ----------
    labels : ndarray of int, 3D
        The label image.

    Returns
    -------
    str or None
        A one-line reason, or None.
    """
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    # a lazy array (zarr, dask) is read a pair of planes at a time below
    depth = labels.shape[0]
    planes = np.unique(np.linspace(0, max(depth - 2, 0), min(_GREY_PLANES, depth)).astype(np.int64))
    same, pairs, ids = np.zeros(3), np.zeros(3), set()
    for z in planes:
        block = np.asarray(labels[z:z + 2])
        for axis in range(3):
            if block.shape[axis] < 2:
                continue
            # in-plane pairs from the first plane only: each pair counted once
            along = np.moveaxis(block if axis == 0 else block[:1], axis, 0)
            low, high = along[:-1], along[1:]
            foreground = low != 0
            pairs[axis] += np.count_nonzero(foreground)
            same[axis] += np.count_nonzero(foreground & (low == high))
        if len(ids) < _GREY_MIN_IDS:
            ids.update(np.unique(block[0].reshape(-1)[:: 1 + block[0].size // 65536]).tolist())
    ids.discard(0)
    if pairs.sum() < _GREY_MIN_PAIRS or len(ids) < _GREY_MIN_IDS:
        return None
    agreement = max(same[a] / pairs[a] for a in range(3) if pairs[a])
    if agreement >= _GREY_MAX_AGREEMENT:
        return None
    return (f"only {100 * agreement:.2g} % of neighbouring voxels hold the same value (in a label image of "
            f"particles 2 or more voxels across: 50 % or more), among {len(ids):,} or more distinct values")


def refuse_grey_values(labels, name: str = "labels", *, force: bool = False) -> None:
    """Raise when ``labels`` look like a grey-value scan (see :func:`grey_value_reason`); warn with ``force``.

    Raises
    ------
    ps3d_toolkit.core.errors.InputError
        If the labels look like grey values and ``force`` is False.
    """
    reason = grey_value_reason(labels)
    if reason is None:
        return
    if force:
        warnings.warn(f"{name} looks like a grey-value scan, not a label image ({reason}); going on "
                      "as force=True asks", UserWarning, stacklevel=3)
        return
    raise InputError(f"{name} looks like a grey-value scan, not a label image: {reason}; if it is a "
                     "label image, pass force=True")


def _checked_liberation(phases: dict, liberation_phase, thresholds) -> list:
    """The phases of interest (default all), each with a ``liberation_<name>`` column; the thresholds checked now."""
    if liberation_phase is None:
        wanted = list(phases)
    else:
        wanted = [liberation_phase] if isinstance(liberation_phase, str) else list(liberation_phase)
    unknown = [name for name in wanted if name not in phases]
    if unknown or not wanted:
        raise InputError(f"liberation_phase must name phases among {list(phases)}, got {liberation_phase!r}")
    _liberation_thresholds(thresholds)
    return list(dict.fromkeys(wanted))


def _liberation_thresholds(thresholds) -> tuple[float, float, float]:
    """``(min_phase_fraction, locked_below, liberated_from)`` from 3 values, or from 2 with the default minimum."""
    values = tuple(thresholds)
    if len(values) == 3:
        return _intensity.check_liberation_thresholds(values[1:], values[0])
    return _intensity.check_liberation_thresholds(values, _intensity.MIN_PHASE_FRACTION)


def _workers(workers) -> int:
    """Number of threads: the given count, or the cores available to this process (at most 8)."""
    if workers is None:
        try:
            available = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            available = os.cpu_count() or 1
        return max(1, min(8, available))
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer or None, got {workers!r}")
    return int(workers)


def _label_ids(labels: np.ndarray):
    """Present label ids, the id -> row lookup (None when compacted) and the labels.

    Below :data:`~ps3d_toolkit.core.labels.LUT_MAX_LABEL` the ids are found a slab
    at a time (a full-volume temporary is not needed) and rows are read through a
    lookup table; huge sparse ids would make that table and ``find_objects`` too
    large, so such label images are compacted to 1..n first.
    """
    top = int(labels.max()) if labels.size else 0
    if top < LUT_MAX_LABEL:
        present = np.zeros(top + 1, dtype=bool)
        step = max(1, _SLAB_VOXELS // max(1, labels[0].size))
        for z in range(0, labels.shape[0], step):
            present[labels[z:z + step].reshape(-1)] = True
        present[0] = False
        ids = np.flatnonzero(present).astype(np.int64)
        lookup = np.full(top + 1, -1, dtype=np.int64)
        lookup[ids] = np.arange(len(ids))
        return ids, lookup, labels
    ids, index = compact_ids(labels)
    if ids[0] == 0:
        return ids[1:], None, index.astype(np.uint32)
    return ids, None, (index + 1).astype(np.uint32)


def _one_pass(labels, lookup, n, image, phase_map, confidence, need_voxels, origin=(0, 0, 0), extra_images=None):
    """Moments up to second order of every particle, and its voxels' values.

    Returns ``(sums, voxels)`` where ``sums`` is a (10, n) array of the voxel
    count and the sums of z, y, x, zz, yy, xx, zy, zx, yx (voxel indices), and
    ``voxels`` holds ``index`` (row of every particle voxel), ``values`` (grey
    value), ``codes`` (phase id), ``confidence`` and ``extra:<name>`` (grey value
    in each of ``extra_images``) when asked for. Indices count from ``origin``
    (the crop's corner in the scan).
    """
    z0, y0, x0 = (int(o) for o in origin)
    sums = np.zeros((10, n))
    extra_images = extra_images or {}
    parts = {"index": [], "values": [], "codes": [], "confidence": []}
    parts.update({f"extra:{name}": [] for name in extra_images})
    width = labels.shape[2]
    for z_crop in range(labels.shape[0]):
        z = z_crop + z0
        plane = labels[z_crop].reshape(-1)
        flat = np.flatnonzero(plane)
        if not flat.size:
            continue
        ids = plane[flat]
        rows = lookup[ids] if lookup is not None else ids.astype(np.int64) - 1
        y, x = np.divmod(flat, width)
        if y0 or x0:
            y, x = y + y0, x + x0
        # a slice at a time: z is constant, so its sums follow from the in-plane ones
        count = np.bincount(rows, minlength=n)
        sum_y = np.bincount(rows, weights=y, minlength=n)
        sum_x = np.bincount(rows, weights=x, minlength=n)
        sums[0] += count
        sums[1] += z * count
        sums[2] += sum_y
        sums[3] += sum_x
        sums[4] += (z * z) * count
        sums[5] += np.bincount(rows, weights=y * y, minlength=n)
        sums[6] += np.bincount(rows, weights=x * x, minlength=n)
        sums[7] += z * sum_y
        sums[8] += z * sum_x
        sums[9] += np.bincount(rows, weights=y * x, minlength=n)
        if need_voxels:
            parts["index"].append(rows)
            if image is not None:
                parts["values"].append(np.asarray(image[z_crop]).reshape(-1)[flat])
            if phase_map is not None:
                parts["codes"].append(np.asarray(phase_map[z_crop]).reshape(-1)[flat])
            if confidence is not None:
                parts["confidence"].append(np.asarray(confidence[z_crop]).reshape(-1)[flat])
            for name, extra in extra_images.items():
                parts[f"extra:{name}"].append(np.asarray(extra[z_crop]).reshape(-1)[flat])
    voxels = {k: np.concatenate(v) for k, v in parts.items() if v}
    return sums, voxels


def _bounding_boxes(labels, ids, lookup):
    """Bounding-box slices of every particle, in row order."""
    if lookup is None:
        return ndi.find_objects(labels)
    found = ndi.find_objects(labels, max_label=int(ids[-1]) if len(ids) else 0)
    return [found[i - 1] for i in ids]


def _shape_metrics(labels, slices, ids, lookup, spacing, shape: bool, workers: int, progress: bool,
                   feret_min: bool = True):
    """Surface area, maximum and minimum Feret diameter of every particle (NaN when ``shape`` is off;
    the minimum NaN too without ``feret_min``)."""
    n = len(ids)
    if not (shape and n):
        return np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    values = ids if lookup is not None else np.arange(1, n + 1)
    with tqdm(total=n, desc="measure", unit="particle", disable=not progress) as bar:
        if not feret_min:
            area, feret = _surface.shape_metrics(labels, slices, values, spacing, progress=bar, workers=workers)
            return area, feret, np.full(n, np.nan)
        return _surface.shape_metrics(labels, slices, values, spacing, progress=bar, workers=workers,
                                      feret_min=True)


def _feret_columns(feret_max, feret_min) -> dict:
    """``feret_max_mm``, ``feret_min_mm`` and ``feret_ratio`` (min / max, in (0, 1])."""
    with np.errstate(invalid="ignore", divide="ignore"):
        # a width never exceeds the diameter; the two differ in their last bits at most
        ratio = np.minimum(feret_min / feret_max, 1.0)
    return {"feret_max_mm": feret_max, "feret_min_mm": feret_min, "feret_ratio": ratio}


def _count_columns(ids, counts, spacing) -> dict:
    """``label``, ``voxel_count``, ``volume_mm3`` and ``eq_diameter_mm``."""
    volume = counts * float(np.prod(spacing))
    return {"label": ids, "voxel_count": counts.astype(np.int64), "volume_mm3": volume,
            "eq_diameter_mm": equivalent_diameter(volume)}


def _centroid_columns(sums, spacing) -> dict:
    """``centroid_z/y/x`` (voxel index), then ``centroid_z/y/x_mm``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums[1:4] / sums[0]
    columns = {f"centroid_{name}": mean[axis] for axis, name in enumerate("zyx")}
    columns.update({f"centroid_{name}_mm": mean[axis] * spacing[axis] for axis, name in enumerate("zyx")})
    return columns


def _surface_columns(volume, area) -> dict:
    """``surface_area_mm2`` and Wadell's ``sphericity``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"surface_area_mm2": area, "sphericity": wadell_sphericity(volume, area)}


def _axis_columns(sums, spacing) -> dict:
    """Inertia-equivalent axis lengths and the Zingg ratios ``elongation``, ``flatness``."""
    major, intermediate, minor = _axis_lengths(sums, spacing)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"axis_major_mm": major, "axis_intermediate_mm": intermediate, "axis_minor_mm": minor,
                "elongation": intermediate / major, "flatness": minor / intermediate}


def _mean_by_particle(values, index, counts) -> np.ndarray:
    """Mean of ``values`` (one per particle voxel) over each particle."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(index, weights=np.asarray(values, dtype=np.float64), minlength=len(counts)) / counts


def _phase_columns(phases, voxels, index, counts, liberation_phase, thresholds) -> dict:
    """``phase_fraction_<name>`` per phase, then ``liberation_<name>`` per phase of interest.

    A grey-interval phase is a fraction of the particle's finite grey values
    (all of them unless ``non_finite="mask"`` let NaN through).
    """
    empty = np.zeros(0)
    values = voxels.get("values", empty)
    finite = np.isfinite(values) if values.dtype.kind == "f" else None
    if finite is not None and finite.all():
        finite = None
    finite_counts = None if finite is None else np.bincount(index[finite], minlength=len(counts))
    masks = _intensity.phase_masks(phases, values, voxels.get("codes", empty))
    columns = {}
    for name, inside in masks:
        if finite is not None and isinstance(phases[name], tuple):
            columns[f"phase_fraction_{name}"] = _mean_by_particle(inside[finite], index[finite], finite_counts)
        else:
            columns[f"phase_fraction_{name}"] = _mean_by_particle(inside, index, counts)
    barren, low, high = _liberation_thresholds(thresholds)
    for name in ([liberation_phase] if isinstance(liberation_phase, str) else liberation_phase):
        columns[f"liberation_{name}"] = _intensity.liberation_class(columns[f"phase_fraction_{name}"], (low, high),
                                                                    min_phase_fraction=barren)
    return columns


def _table_attrs(spacing, phases, liberation_phase, thresholds) -> dict:
    """The table's ``attrs``: the spacing and, with phases, their definitions and liberation thresholds."""
    attrs = {"spacing_mm": tuple(spacing)}
    if phases is not None:
        barren, low, high = _liberation_thresholds(thresholds)
        attrs["phases"] = {k: list(v) if isinstance(v, tuple) else v for k, v in phases.items()}
        attrs["liberation_phases"] = [liberation_phase] if isinstance(liberation_phase, str) else list(liberation_phase)
        # the report classes every phase with the thresholds actually used
        attrs["liberation_thresholds"] = (low, high)
        attrs["min_phase_fraction"] = barren
    return attrs


def _axis_lengths(sums: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full axis lengths (mm) of each particle's inertia-equivalent ellipsoid, major first."""
    n = sums.shape[1]
    if not n:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    count = sums[0]
    mean = sums[1:4] / count
    second = sums[4:10] / count
    cov = np.empty((n, 3, 3))
    diag = second[:3] - mean ** 2
    for i in range(3):
        cov[:, i, i] = diag[i]
    for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 2))):
        cov[:, i, j] = cov[:, j, i] = second[3 + k] - mean[i] * mean[j]
    s = np.asarray(spacing, float)
    cov = cov * np.outer(s, s)
    # a voxel is a box, not a point: its own second moment is spacing^2 / 12 per axis
    cov[:, np.arange(3), np.arange(3)] += s ** 2 / 12.0
    eig = np.clip(np.linalg.eigvalsh(cov), 0.0, None)[:, ::-1]
    lengths = 2.0 * np.sqrt(5.0 * eig)
    return lengths[:, 0], lengths[:, 1], lengths[:, 2]


def _touches_border(bbox, shape, labels, lookup, n, fov_mask):
    """Particles that reach the edge of the array or the outside of the field of view."""
    at_edge = (bbox[:, :3] == 0).any(axis=1) | (bbox[:, 3:] == np.asarray(shape)).any(axis=1)
    if fov_mask is None or not n:
        return at_edge
    near_outside = ndi.binary_dilation(~fov_mask) & (labels != 0)
    hit = labels[near_outside]
    rows = lookup[hit] if lookup is not None else hit.astype(np.int64) - 1
    flagged = np.zeros(n, dtype=bool)
    flagged[rows] = True
    return at_edge | flagged
