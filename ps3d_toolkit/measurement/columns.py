"""The columns of the particle table, one private function per column group, shared by both paths.

:func:`particle_columns` measures the particles of checked in-memory arrays:
:func:`ps3d_toolkit.measurement.measure` calls it on the whole scan, the chunked
path (:mod:`ps3d_toolkit.measurement.chunked`) on crops of it. Every column
group (ids and counts, centroids, bounding boxes, surface and sphericity, axes
and Zingg ratios, Feret diameter, border flags, grey levels, phases and
liberation, confidence) is a short function that returns its columns as a dict;
the groups share one vectorised pass over the volume (:func:`_one_pass`) and the
per-particle loop of :mod:`ps3d_toolkit.measurement.surface`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from ps3d_toolkit.core.geometry import equivalent_diameter, wadell_sphericity
from ps3d_toolkit.core.labels import LUT_MAX_LABEL, compact_ids
from ps3d_toolkit.measurement import intensity as _intensity
from ps3d_toolkit.measurement import surface as _surface

__all__ = ["particle_columns", "table_attrs"]

# z-slices per slab of the scan for present label ids (bounds the temporary memory)
_SLAB_VOXELS = 1 << 24
_BBOX_COLUMNS = ("bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1")


def particle_columns(labels, image, phase_map, region, confidence, *, spacing, phases, liberation_phase,
                     thresholds, shape, workers, progress, origin=(0, 0, 0), scan_shape=None,
                     extra_images=None, feret_min: bool = True) -> dict:
    """The table's columns for the particles of checked in-memory arrays, in label order.

    :func:`measure` calls it on the whole scan; the chunked path
    (:mod:`ps3d_toolkit.measurement.chunked`) on a crop whose corner lies at
    ``origin`` of a scan of shape ``scan_shape``, so that centroids, bounding
    boxes and ``touches_border`` are those of the scan and every value comes
    from the same code. ``region`` (boolean, or None) is the sample region:
    a particle next to its outside is flagged ``touches_border``. ``thresholds``
    is the checked ``(min_phase_fraction, locked_below, liberated_from)``.
    ``extra_images`` (``{name: array}``, checked) add their grey-level columns
    after those of ``image``.
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
    table["touches_border"] = _touches_border(bbox, scan_shape, labels, lookup, len(ids), region)
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
    barren, low, high = thresholds
    for name in ([liberation_phase] if isinstance(liberation_phase, str) else liberation_phase):
        columns[f"liberation_{name}"] = _intensity.liberation_class(columns[f"phase_fraction_{name}"], (low, high),
                                                                    min_phase_fraction=barren)
    return columns


def table_attrs(spacing, phases, liberation_phase, thresholds, region=None) -> dict:
    """The table's ``attrs``: the spacing, the sample region and, with phases, their definitions and liberation
    thresholds."""
    attrs = {"spacing_mm": tuple(spacing)}
    if region is not None:
        # touches_border also flags the particles the region cuts; the report says so
        attrs["sample_region"] = str(region) or "given"
    if phases is not None:
        barren, low, high = thresholds
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


def _touches_border(bbox, shape, labels, lookup, n, region):
    """Particles that reach the edge of the array or the outside of the sample region (6-neighbours)."""
    at_edge = (bbox[:, :3] == 0).any(axis=1) | (bbox[:, 3:] == np.asarray(shape)).any(axis=1)
    if region is None or not n:
        return at_edge
    near_outside = ndi.binary_dilation(~region) & (labels != 0)
    hit = labels[near_outside]
    rows = lookup[hit] if lookup is not None else hit.astype(np.int64) - 1
    flagged = np.zeros(n, dtype=bool)
    flagged[rows] = True
    return at_edge | flagged
