"""The per-particle table: :func:`measure`, its door, and the choice between the in-memory and chunked paths.

:func:`measure` checks its arguments once and measures the whole scan with
:func:`~ps3d_toolkit.measurement.columns.particle_columns` (one private
function per column group), or hands lazy and large inputs to
:func:`~ps3d_toolkit.measurement.chunked.measure_chunked`, which gives the
same table block by block.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import (
    NonFinite,
    check_labels,
    check_non_finite,
    check_same_shape,
    check_spacing,
    check_volume,
)
from ps3d_toolkit.measurement import chunked as _chunked
from ps3d_toolkit.measurement import intensity as _intensity
from ps3d_toolkit.measurement.columns import particle_columns, table_attrs
from ps3d_toolkit.measurement.inputs import (
    add_particle_confidence,
    auto_phase_names,
    check_extra_images,
    check_grey_values,
    checked_extra_image,
    checked_liberation,
    checked_phases,
    refuse_grey_values,
    region_mask,
    resolve_workers,
    sample_region,
    split_confidence,
)

__all__ = ["measure"]


def measure(labels, image=None, *, spacing=1.0, phases=None, phase_map=None, roi=None, mask=None,
            phase_names=None, liberation_phase=None, liberation_thresholds=_intensity.LIBERATION_THRESHOLDS,
            min_phase_fraction: float = _intensity.MIN_PHASE_FRACTION, confidence=None, shape: bool = True,
            workers: int | None = None, non_finite: NonFinite = "refuse",
            force: bool = False, progress: bool = True, chunk_size: int | None = None,
            extra_images=None, feret_min: bool = True, fov_mask=None) -> pd.DataFrame:
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
        ids of ``phase_map``. ``"auto"`` takes the phases from
        :func:`propose_phase_thresholds`: two, named ``phase_1``, ``phase_2``
        darkest first, or one per name of ``phase_names``.
    phase_map : array_like of int, 3D, optional
        Phase id of every voxel (e.g. ``SyntheticScan.phases``), for
        ``phases={name: id}``.
    roi : str or 3 slices, optional
        The box of the scan that holds the sample, as for
        :func:`~ps3d_toolkit.segmentation.segment`: ``"z0:z1,y0:y1,x0:x1"``
        (an empty side is the scan's edge) or three slices.
    mask : array_like of bool, str or Path, optional
        The sample's voxels, as for :func:`~ps3d_toolkit.segmentation.segment`:
        a scan-shaped array (nonzero = sample), a mask file, or ``"auto"`` (the
        inside of the holder, found in ``image``). With ``roi`` or ``mask``
        only the voxels inside the sample region are measured (segment leaves
        the others background), and a particle with a voxel next to its outside
        (6-neighbours) is flagged ``touches_border``, as is one that reaches
        the edge of the array.
    phase_names : sequence of str or str, optional
        Names of the phases of ``phases="auto"``, darkest first (e.g.
        ``["quartz", "magnetite"]`` or ``"quartz,magnetite"``): 2 to 5 names,
        one automatic phase each. A dict of ``phases`` is named by its keys.
    liberation_phase : str or sequence of str, optional
        The phases of interest: each gets a ``liberation_<name>`` column.
        Default: every phase.
    liberation_thresholds : (float, float)
        ``(locked_below, liberated_from)``, see :func:`liberation_class`;
        default locked < 30 % <= middling < 95 % <= liberated.
    min_phase_fraction : float
        Below this volume fraction a phase is absent from a particle, which is
        then ``barren`` in it; default 0.02 (why: :data:`MIN_PHASE_FRACTION`).
    confidence : array_like of float 3D, pandas.Series, mapping or QualityReport, optional
        The ``confidence`` column (0-1, how far to trust each particle): per particle, a
        Series or mapping of label id -> confidence, or the
        :class:`~ps3d_toolkit.segmentation.quality.QualityReport` of
        ``segment(..., quality=True)`` (a particle it did not assess gets NaN); or a
        per-voxel map (e.g. the predicted probability of the voxel's class), averaged
        over each particle.
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
    fov_mask : array_like of bool, 3D, optional
        Deprecated (to be removed in the next release): the old name of ``mask``
        for an array; it warns with a :class:`DeprecationWarning`.

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

        ``table.attrs["spacing_mm"]`` holds the spacing used (with a sample
        region, ``attrs["sample_region"]`` says what it was; with phases,
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
    mask = region_mask(mask, fov_mask)
    confidence, per_particle = split_confidence(confidence)
    lazy = any(_chunked.is_large_and_lazy(a)
               for a in (labels, image, *(check_extra_images(extra_images) or {}).values()))
    if chunk_size is not None or lazy:
        return add_particle_confidence(_chunked.measure_chunked(
            labels, image, spacing=spacing, phases=phases, phase_map=phase_map, roi=roi, mask=mask,
            phase_names=phase_names, liberation_phase=liberation_phase, liberation_thresholds=liberation_thresholds,
            min_phase_fraction=min_phase_fraction, confidence=confidence, shape=shape, workers=workers,
            non_finite=non_finite, force=force, progress=progress, chunk_size=chunk_size,
            extra_images=extra_images, feret_min=feret_min), per_particle)
    thresholds = _intensity.check_liberation_thresholds(liberation_thresholds, min_phase_fraction)
    volumes, spacing, region, phases = _checked_inputs(
        labels, image, spacing, (roi, mask), (phases, phase_map, phase_names), confidence, non_finite, force)
    labels = volumes["labels"]
    extra_images = {name: checked_extra_image(labels, array, name, non_finite)
                    for name, array in (check_extra_images(extra_images) or {}).items()}
    if phases is not None:
        liberation_phase = checked_liberation(phases, liberation_phase)
    table = particle_columns(labels, volumes["image"], volumes["phase_map"], volumes["region"], volumes["confidence"],
                             spacing=spacing, phases=phases,
                             liberation_phase=liberation_phase, thresholds=thresholds, shape=shape,
                             workers=resolve_workers(workers), progress=progress, extra_images=extra_images,
                             feret_min=bool(feret_min))
    frame = pd.DataFrame(table)
    frame.attrs.update(table_attrs(spacing, phases, liberation_phase, thresholds, region))
    return add_particle_confidence(frame, per_particle)


def _checked_inputs(labels, image, spacing, region, phase_options, confidence, non_finite, force):
    """The door of :func:`measure`: every array argument checked against ``labels``, before any work.

    ``region`` is ``(roi, mask)`` and ``phase_options`` ``(phases, phase_map, phase_names)``.
    Returns the checked volumes by name (``labels`` holding only the particles' voxels inside the
    sample region, ``region`` the region as a boolean array or None), the spacing, the
    :class:`~ps3d_toolkit.segmentation.region.SampleRegion` (or None) and the phases.
    """
    phases, phase_map, phase_names = phase_options
    names = auto_phase_names(phases, phase_names)
    labels = check_labels(labels, "labels")
    refuse_grey_values(labels, "labels", force=force)
    spacing = check_spacing(spacing)
    check_non_finite(non_finite)
    if image is not None:
        image = check_volume(image, "image")
        check_same_shape(labels, image, "labels", "image")
        check_grey_values(image, non_finite)
    region = sample_region(labels, image, roi=region[0], mask=region[1], spacing=spacing)
    inside = None if region is None else region.full()
    if inside is not None:
        # segment() leaves the voxels outside the sample region background: so does the measurement
        labels = np.where(inside, labels, 0).astype(labels.dtype, copy=False)
    if phase_map is not None:
        phase_map = check_labels(phase_map, "phase_map")
        check_same_shape(labels, phase_map, "labels", "phase_map")
    phases = checked_phases(phases, names, image, phase_map,
                            partial(_intensity.propose_phase_thresholds, image, labels))
    if confidence is not None:
        confidence = check_volume(confidence, "confidence")
        check_same_shape(labels, confidence, "labels", "confidence")
    volumes = {"labels": labels, "image": image, "phase_map": phase_map, "region": inside, "confidence": confidence}
    return volumes, spacing, region, phases
