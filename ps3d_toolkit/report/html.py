"""The HTML page: :func:`build_report` (the skeleton around the sections) and :func:`write_report`."""

from __future__ import annotations

import datetime
import html
from importlib import resources
from pathlib import Path

import numpy as np

from ps3d_toolkit import __version__
from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.measurement.inputs import region_mask, sample_region
from ps3d_toolkit.measurement.intensity import rename_phases
from ps3d_toolkit.report.fragments import ReportContext
from ps3d_toolkit.report.payload import figures_block
from ps3d_toolkit.report.sections import SECTIONS


def _css() -> str:
    """The page's style sheet, shipped beside this module."""
    return resources.files("ps3d_toolkit.report").joinpath("style.css").read_text(encoding="utf-8")


def build_report(table, *, scan=None, labels=None, metrics=None,
                 title: str = "ps3d_toolkit particle report", notes: dict | None = None,
                 include_cut: bool = False, roi=None, mask=None, phase_names=None, sections=None,
                 sample_region=None, quality=None, min_confidence: float | None = None) -> str:
    """Build the self-contained HTML report as a string.

    Parameters are those of :func:`write_report`; ``sections`` replaces
    :data:`SECTIONS` (a list of functions of a :class:`ReportContext`).
    """
    check_table(table)
    if phase_names is not None:
        table = rename_phases(table, phase_names)
    if labels is not None:
        labels = np.asarray(labels)
        if scan is not None and tuple(labels.shape) != tuple(scan.shape):
            raise InputError(f"labels and scan must have the same shape, got {labels.shape} and {scan.shape}")
    labels, inside = _in_region(table, scan, labels, roi, region_mask(mask, sample_region, old_name="sample_region"))
    ctx = ReportContext(table=table, scan=scan, labels=labels, metrics=metrics, notes=dict(notes or {}),
                        include_cut=bool(include_cut), sample_region=inside, quality=_quality_record(quality),
                        min_confidence=min_confidence)
    parts = [part for build in (SECTIONS if sections is None else sections) if (part := build(ctx))]
    if ctx.figures:
        parts.append(figures_block(ctx.figures))
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_css()}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">ps3d_toolkit {__version__}, {html.escape(stamp)}</p>\n'
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def _quality_record(quality) -> dict | None:
    """``quality=`` as its record: a QualityReport's ``record()``, a record dict as given."""
    if quality is None:
        return None
    if hasattr(quality, "record"):
        return quality.record()
    if not isinstance(quality, dict):
        raise InputError(f"quality must be a QualityReport or its record (a dict), got {type(quality).__name__}")
    return quality


def _in_region(table, scan, labels, roi, mask):
    """The labels inside the sample region of ``roi`` and ``mask`` (0 outside, as measured), and the region
    as a boolean array; both as given without a region."""
    if roi is None and mask is None:
        return labels, None
    image = None if scan is None else scan.image
    if image is None and labels is None:
        raise InputError("roi and mask outline the sample region on the slices: pass the scan or the labels too")
    spacing = scan.spacing if scan is not None else table.attrs.get("spacing_mm")
    region = sample_region(labels, image, roi=roi, mask=mask, spacing=spacing)
    inside = region.full()
    if labels is not None:
        labels = np.where(inside, labels, 0).astype(labels.dtype, copy=False)
    return labels, inside


def write_report(table, path, *, scan=None, labels=None, metrics=None,
                 title: str = "ps3d_toolkit particle report", notes: dict | None = None,
                 include_cut: bool = False, roi=None, mask=None, phase_names=None, sample_region=None,
                 quality=None, min_confidence: float | None = None) -> Path:
    """Write a self-contained HTML report (opens offline), atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per particle, from :func:`ps3d_toolkit.measurement.measure`.
    path : str or Path
        The ``.html`` file to write.
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for its geometry and the slice images.
    labels : array_like, optional
        The label image, for the outlines on the slices.
    metrics : dict, optional
        Scores against a ground truth, from :func:`ps3d_toolkit.analysis.evaluate.evaluate_instances`.
    title : str
        Heading and window title.
    notes : dict, optional
        Extra summary rows, e.g. ``{"method": "otsu-watershed"}``.
    include_cut : bool
        Count the particles cut by the scan's edge (``touches_border``) in
        every statistic. By default they are left out, and the summary says
        how many.
    roi, mask : optional
        The sample region, as :func:`~ps3d_toolkit.measurement.measure` and
        :func:`~ps3d_toolkit.segmentation.segment` take it (a box
        ``"z0:z1,y0:y1,x0:x1"`` or slices; a mask array, file or ``"auto"``):
        outlined in blue on the slices, with the particles outside it left out
        of them. Measure the table with the same ``roi`` and ``mask``, so that
        the particles it cuts are flagged.
    phase_names : sequence of str, str or dict, optional
        Names for the table's phases in the report (e.g. ``"quartz,magnetite"``,
        darkest first for automatic phases, or ``{"phase_1": "quartz"}``), see
        :func:`~ps3d_toolkit.measurement.rename_phases`. Without names, automatic
        phases are named by their grey values (``"darker phase (grey < 41,157)"``).
    sample_region : array_like of bool, optional
        Deprecated (to be removed in the next release): the old name of ``mask``
        for an array; it warns with a :class:`DeprecationWarning`.
    quality : QualityReport or dict, optional
        The label-free quality estimate of ``segment(..., quality=True)`` (or its
        ``record()``, as ``ps3d segment --quality`` writes it): the section "How far to
        trust these particles" shows it (without it, the section says how to get one).
        The per-particle confidences come from the table's ``confidence`` column
        (``measure(..., confidence=report)``).
    min_confidence : float, optional
        Leave the particles whose ``confidence`` is under this out of every statistic; the
        report says how many.

    Returns
    -------
    Path
        The HTML file.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If ``labels`` and ``scan`` differ in shape, the region does not fit them,
        ``phase_names`` do not name the table's phases, ``path`` does not end
        in ``.html``/``.htm``, or ``min_confidence`` is given without a ``confidence``
        column or outside [0, 1].
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"path must end in .html, got {path}")
    text = build_report(table, scan=scan, labels=labels, metrics=metrics, title=title, notes=notes,
                        include_cut=include_cut, roi=roi, phase_names=phase_names,
                        mask=region_mask(mask, sample_region, old_name="sample_region"), quality=quality,
                        min_confidence=min_confidence)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
