"""The report's sections: each takes the :class:`ReportContext` and returns an HTML fragment or None.

A section returns ``None`` when it has nothing to show (an empty table, or a
table without the columns it needs); :data:`SECTIONS` lists them in page order.
"""

from __future__ import annotations

import html

import numpy as np

from ps3d_toolkit.analysis.stats import liberation_limits, phase_labels, phase_names
from ps3d_toolkit.segmentation.quality import LOW_CONFIDENCE as _LOW_CONFIDENCE
from ps3d_toolkit.report.fragments import ReportContext, figures, format_value, frame_table, key_value_table, section
from ps3d_toolkit.report.tables import (
    SHAPE_COLUMNS,
    SIZE_COLUMNS,
    liberation_table,
    phases_frame,
    sieve_frame,
    summary_rows,
)

_OUTLINE_RGB = (255, 120, 0)
_MIN_IMAGE_PX = 384
_TABLE_ROWS = 20


_METRIC_NAMES = {
    "f1": "F1", "precision": "precision", "recall": "recall", "pq": "panoptic quality (PQ)",
    "sq": "segmentation quality (SQ, mean IoU of the matches)", "rq": "recognition quality (RQ)",
    "n_gt": "particles in the ground truth", "n_pred": "particles found",
    "n_matched": "matched particles (IoU > 0.5)", "count_error": "count error (found − true)",
    "relative_count_error": "relative count error",
}
# equal to SQ whenever anything matched
_METRICS_SKIPPED = {"mean_matched_iou"}


def _metric_label(key: str) -> str:
    """``f1_75`` -> ``F1 at IoU > 0.75``; known names spelled out, others as given."""
    name, _, threshold = key.rpartition("_")
    if name in _METRIC_NAMES and threshold.isdigit():
        return f"{_METRIC_NAMES[name]} at IoU > {int(threshold) / 100:g}"
    return _METRIC_NAMES.get(key, key)


def section_summary(ctx: ReportContext) -> str:
    """Count, cut grains left out, volume, d10/d50/d90 by number and volume, sphericity and the scan's geometry.

    Its note is the report's one sentence on the cut particles and the policy the statistics follow.
    """
    rows = summary_rows(ctx.table, scan=ctx.scan, notes=ctx.notes, include_cut=ctx.include_cut,
                        region=ctx.sample_region is not None, min_confidence=ctx.min_confidence)
    note = f'<p class="note">{html.escape(ctx.cut_note())}</p>' if len(ctx.table) else ""
    if ctx.min_confidence is not None and len(ctx.table):
        note += f'<p class="note">{html.escape(ctx.confidence_note())}</p>'
    return section("Summary", note + key_value_table(zip(rows["description"], rows["value"])))


#: Below this confidence a particle is "low confidence" (outlined in :data:`_LOW_RGB` on the slices).
LOW_CONFIDENCE = _LOW_CONFIDENCE
_LOW_RGB = (255, 0, 200)
_TRUST_TITLE = "How far to trust these particles"


def section_trust(ctx: ReportContext) -> str | None:
    """The label-free quality estimate: the estimated F1, what it is made of, the low-confidence share, warnings.

    Without a quality record or a ``confidence`` column it says how to get one; without particles it is left out.
    """
    if not len(ctx.table):
        return None
    record, has_column = ctx.quality or {}, "confidence" in ctx.table.columns
    if not record and not has_column:
        return section(_TRUST_TITLE, '<p class="note">No quality estimate was made for these particles. '
                       "<code>ps3d segment --quality</code> (or <code>segment(..., quality=True)</code>) "
                       "estimates, without labels, the run's instance F1 and a confidence for every particle; "
                       "<code>ps3d measure</code> and <code>ps3d report</code> then pick them up.</p>")
    rows = []
    if "estimated_f1" in record:
        rows.append(("estimated F1@0.5 (label-free, against the unknown truth)", float(record["estimated_f1"])))
    confidence = ctx.table["confidence"].to_numpy(float) if has_column else np.zeros(0)
    assessed = confidence[np.isfinite(confidence)]
    if assessed.size:
        rows += [("particles with a confidence", f"{assessed.size:,} of {len(confidence):,}"),
                 (f"low confidence (under {LOW_CONFIDENCE:g})", f"{100 * np.mean(assessed < LOW_CONFIDENCE):.3g} %"),
                 ("median confidence", float(np.median(assessed)))]
    elif record.get("low_confidence_share") is not None:
        rows.append((f"low confidence (under {LOW_CONFIDENCE:g})", f"{100 * record['low_confidence_share']:.3g} %"))
    if record.get("sampled_blocks") is not None:
        rows.append(("blocks assessed", f"{record['sampled_blocks']} of {record.get('of', '?')} (a random sample)"))
    body = f'<p class="note">{html.escape(_made_of(record))}</p>' + key_value_table(rows)
    warnings = record.get("warnings") or []
    if warnings:
        body += '<ul class="warnings">' + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>"
    if ctx.min_confidence is not None:
        body += f'<p class="note">{html.escape(ctx.confidence_note())}</p>'
    if ctx.labels is not None and assessed.size:
        body += ('<p class="note">On the slices the particles with a confidence under '
                 f"{_low_threshold(ctx):g} are outlined in magenta.</p>")
    return section(_TRUST_TITLE, body)


def _made_of(record: dict) -> str:
    """What the estimate is made of, in words."""
    n = int(record.get("n_variants", 0) or 0)
    parts = []
    if n:
        parts.append(f"whether each particle comes back (IoU ≥ 0.5) when the scan is segmented again under {n} "
                     "stand-in(s) for a rescan (turned, flipped, shifted by part of a voxel, with added noise, "
                     "at a slightly different particle size)")
    parts += ["shape cues of merged grains (solidity, several cores in one particle)",
              "the particle size given against the sizes of the grains found",
              "the labelled volume against the Otsu grain mask"]
    return ("The estimate needs no labels. It is made of " + "; ".join(parts) + ", mapped to a confidence per "
            "particle and an estimated instance F1 by a calibration fitted on generated scans with known answers "
            "(docs/quality.md gives its measured error). A particle's confidence is the estimated chance that it "
            "matches a true grain; it cannot see a grain merged or split the same way every time.")


def _low_threshold(ctx: ReportContext) -> float:
    """The confidence under which the slices mark a particle: ``min_confidence`` when given, else LOW_CONFIDENCE."""
    return LOW_CONFIDENCE if ctx.min_confidence is None else float(ctx.min_confidence)


def _low_confidence_ids(ctx: ReportContext) -> np.ndarray:
    """Label ids whose confidence is under :func:`_low_threshold`."""
    if "confidence" not in ctx.table.columns or "label" not in ctx.table.columns:
        return np.zeros(0, np.int64)
    low = ctx.table["confidence"].to_numpy(float) < _low_threshold(ctx)
    return ctx.table["label"].to_numpy()[low]


def section_metrics(ctx: ReportContext) -> str | None:
    """Scores against the ground truth, when given."""
    if not ctx.metrics:
        return None
    rows = [(_metric_label(key), value) for key, value in ctx.metrics.items() if key not in _METRICS_SKIPPED]
    return section("Accuracy against the ground truth", key_value_table(rows))


def section_size_distribution(ctx: ReportContext) -> str | None:
    """Cumulative PSD with d10/d50/d90 marked, histograms by volume and number, sieve table."""
    if not ctx.has(*SIZE_COLUMNS):
        return None
    from ps3d_toolkit.analysis.stats import percentiles
    from ps3d_toolkit.viz.figures import fig_cumulative_psd, fig_size_histogram

    table = ctx.stats
    marks = {weight: percentiles(table, weight=weight, include_cut=True) for weight in ("volume", "number")}
    characteristic = "".join(
        f"<tr><td>by {weight}</td>" + "".join(f"<td>{format_value(v)}</td>" for v in values.values()) + "</tr>"
        for weight, values in marks.items()
    )
    sieve = sieve_frame(table, include_cut=True)
    tables = (
        '<div class="tables">\n<div><p>Characteristic sizes (equivalent diameter), mm</p>\n'
        f"<table>\n<tr><th>weighting</th><th>d10</th><th>d50</th><th>d90</th></tr>\n{characteristic}\n</table></div>\n"
        "<div><p>Sieve curve: percent passing each aperture (ISO 565)</p>\n"
        + frame_table(sieve, {"size_mm": "aperture, mm", "percent_passing_volume": "% passing by volume",
                               "percent_passing_number": "% passing by number"})
        + "</div>\n</div>"
    )
    plots = [fig_cumulative_psd(table, include_cut=True), fig_size_histogram(table, weight="volume", include_cut=True),
             fig_size_histogram(table, weight="number", include_cut=True)]
    note = ('<p class="note">Sizes are volume-equivalent sphere diameters. The cumulative curve marks '
            "d10/d50/d90 of the volume distribution; the sieve curve counts a particle as passing an "
            "aperture when its equivalent diameter is at most the aperture.</p>")
    return section("Particle-size distribution", note + tables + "\n" + figures(ctx, plots))


_SHAPE_NAMES = {
    "sphericity": "sphericity (Wadell)", "elongation": "elongation I/L", "flatness": "flatness S/I",
    "aspect_ratio": "aspect ratio S/L",
}


def section_shape(ctx: ReportContext) -> str | None:
    """Shape descriptors, Zingg classes, sphericity against size and the Zingg diagram."""
    if not ctx.has(*SHAPE_COLUMNS):
        return None
    import pandas as pd

    from ps3d_toolkit.analysis.stats import shape_summary
    from ps3d_toolkit.viz.figures import fig_sphericity_vs_size, fig_zingg

    summary = shape_summary(ctx.stats, include_cut=True)
    descriptors = summary.loc[list(_SHAPE_NAMES)].rename(index=_SHAPE_NAMES).rename_axis("name").reset_index()
    zingg = summary.loc[[i for i in summary.index if i.startswith("zingg_")]]
    classes = pd.DataFrame({"name": [i.removeprefix("zingg_") for i in zingg.index],
                            "count": zingg["count"].to_numpy(), "share": zingg["mean"].to_numpy()})
    counts = dict(zip(classes["name"], classes["count"]))
    zingg_figure = fig_zingg(ctx.stats, include_cut=True)
    for trace in zingg_figure.data:
        trace.name = f"{trace.name} ({counts.get(trace.name, 0)})"
    tables = (
        '<div class="tables">\n<div><p>Shape descriptors</p>\n'
        + frame_table(descriptors, {"name": "descriptor", "count": "particles", "mean": "mean", "std": "std",
                                     "p10": "p10", "median": "median", "p90": "p90"})
        + "</div>\n<div><p>Zingg classes (boundaries at 2/3)</p>\n"
        + frame_table(classes, {"name": "class", "count": "particles", "share": "share, %"}, percent={"share"})
        + "</div>\n</div>"
    )
    note = ('<p class="note">Axes L ≥ I ≥ S from the inertia tensor. Sphericity 1 is a perfect sphere; '
            "voxelised grains of a few voxels read lower.</p>")
    plots = [fig_sphericity_vs_size(ctx.stats, include_cut=True), zingg_figure]
    return section("Shape", note + tables + "\n" + figures(ctx, plots))


def section_phases(ctx: ReportContext) -> str | None:
    """Volume of each mineral phase over all particles (tables measured with ``phases=``)."""
    if not ctx.has("volume_mm3") or not phase_names(ctx.table):
        return None
    frame = phases_frame(ctx.stats, include_cut=True)
    labels = phase_labels(ctx.table)
    # an automatic phase's name already says its grey values
    named = any(labels[name] == name for name in frame["phase"])
    frame["phase"] = frame["phase"].map(labels)
    minimum = 100 * liberation_limits(ctx.table)[0]
    columns = {"phase": "phase"}
    if "definition" in frame.columns and named:
        columns["definition"] = "defined as"
    columns.update({"volume_mm3": "volume, mm³", "volume_fraction": "share of particle volume, %",
                    "mean_particle_fraction": "mean share within a particle, %",
                    "particles_with_phase": f"particles containing it (≥ {minimum:g} %)",
                    "particles": "particles"})
    table = frame_table(frame, columns, percent={"volume_fraction", "mean_particle_fraction"})
    note = (f'<p class="note">A particle contains a phase when the phase fills at least {minimum:g} % of it; '
            "below that the phase is absent (partial-volume voxels at a grain's edge take the grey level of "
            "the neighbouring phase and are not a phase).</p>")
    return section("Phases", note + table)


def section_liberation(ctx: ReportContext) -> str | None:
    """Particles and phase volume per liberation class (barren included), for every phase."""
    if not ctx.has("volume_mm3") or not phase_names(ctx.table):
        return None
    from ps3d_toolkit.viz.figures import fig_liberation

    frame = liberation_table(ctx.stats, include_cut=True)
    frame["phase"] = frame["phase"].map(phase_labels(ctx.table))
    barren = 100 * frame.attrs["min_phase_fraction"]
    low, high = (100 * t for t in frame.attrs["liberation_thresholds"])
    note = (f'<p class="note">For each phase, a particle is <em>barren</em> in it when the phase fills less '
            f"than {barren:g} % of its volume (the phase is absent), <em>locked</em> below {low:g} %, "
            f"<em>middling</em> from {low:g} to {high:g} %, <em>liberated</em> from {high:g} %. The phase-volume "
            "share says how much of the phase sits in particles of the class (the usual liberation measure).</p>")
    table = frame_table(
        frame,
        {"phase": "phase", "liberation_class": "class", "count": "particles", "count_share": "particles, %",
         "particle_volume_share": "particle volume, %", "phase_volume_share": "phase volume, %"},
        percent={"count_share", "particle_volume_share", "phase_volume_share"},
    )
    return section("Liberation", note + table + "\n" + figures(ctx, [fig_liberation(ctx.stats, include_cut=True)]))


def section_slices(ctx: ReportContext) -> str | None:
    """The middle z and y slices with every particle outlined, and a scale bar."""
    from ps3d_toolkit.viz.slices import draw_scale_bar, outlined_slice, png_base64

    volume = ctx.labels if ctx.labels is not None else (ctx.scan.image if ctx.scan is not None else None)
    if volume is None:
        return None
    image = ctx.scan.image if ctx.scan is not None else None
    spacing = _spacing(ctx)
    images, low = [], _low_confidence_ids(ctx)
    for axis, plane in ((0, "z"), (1, "y")):
        index = volume.shape[axis] // 2
        take = (slice(None),) * axis + (index,)
        grey = None if image is None else np.asarray(image[take])
        labels = None if ctx.labels is None else np.asarray(ctx.labels[take])
        region = None if ctx.sample_region is None else np.asarray(ctx.sample_region[take], dtype=bool)
        rgb = outlined_slice(grey, labels, outline_rgb=_OUTLINE_RGB, min_size_px=_MIN_IMAGE_PX, region=region,
                             highlight=low, highlight_rgb=_LOW_RGB)
        if spacing is not None:
            # the plane's rows and columns are the two axes other than ``axis``
            pixel = [s for i, s in enumerate(spacing) if i != axis]
            factor = rgb.shape[0] // _plane_shape(volume, axis)[0]
            rgb = draw_scale_bar(rgb, pixel[1] / factor)
        png = png_base64(rgb, optimize=True, palette=True)
        caption = f"{plane} = {index} (middle slice)"
        if labels is not None:
            caption += f", {len(np.unique(labels[labels > 0]))} particles outlined"
        if labels is not None and low.size:
            caption += f", {len(np.intersect1d(labels, low)):,} with a confidence under {_low_threshold(ctx):g} in magenta"
        if region is not None:
            caption += ", the sample region's edge in blue"
        images.append(
            f'<figure><img class="slice" alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return section("Slices", '<div class="slices">\n' + "\n".join(images) + "\n</div>")


def _plane_shape(volume, axis: int) -> tuple:
    """The shape of a plane of ``volume`` across ``axis``."""
    return tuple(s for i, s in enumerate(volume.shape) if i != axis)


def _spacing(ctx: ReportContext):
    """The voxel size (z, y, x) in mm: the scan's, else the table's ``attrs``; None when unknown."""
    spacing = ctx.scan.spacing if ctx.scan is not None else ctx.table.attrs.get("spacing_mm")
    return None if spacing is None else tuple(float(s) for s in np.broadcast_to(spacing, (3,)))


#: The columns of the particle table the report shows (all of them go to CSV/Excel), with their headings.
PARTICLE_COLUMNS = {
    "label": "label", "eq_diameter_mm": "eq. diameter, mm", "volume_mm3": "volume, mm³",
    "feret_max_mm": "max Feret, mm", "feret_min_mm": "min Feret, mm",
    "sphericity": "sphericity", "elongation": "I/L", "flatness": "S/I",
    "touches_border": "cut",
}


def section_particles(ctx: ReportContext) -> str | None:
    """The largest particles in the statistics, in the columns a reader needs (the full table is in CSV/Excel).

    With ``include_cut`` the statistics, and so this table, hold the cut particles too: the
    ``cut`` column marks them.
    """
    if not len(ctx.stats):
        return None
    columns = {c: h for c, h in PARTICLE_COLUMNS.items() if c in ctx.table.columns}
    labels = phase_labels(ctx.table)
    for name in phase_names(ctx.table):
        columns[f"phase_fraction_{name}"] = f"{labels[name]}, %"
        if f"liberation_{name}" in ctx.table.columns:
            columns[f"liberation_{name}"] = f"{labels[name]}: liberation"
    by = [c for c in ("volume_mm3", "voxel_count") if c in ctx.stats.columns][:1]
    shown = (ctx.stats.sort_values(by, ascending=False, kind="stable") if by else ctx.stats).head(_TABLE_ROWS)
    percent = {c for c in columns if c.startswith("phase_fraction_")}
    which = f"largest of the {len(ctx.stats):,} particles in the statistics, by volume" if by else (
        f"first of the {len(ctx.stats):,} particles in the statistics")
    caption = (f"<p>The {len(shown)} {which}, "
               f"in {len(columns)} of the table's {len(ctx.table.columns)} columns; the exported tables (CSV, "
               f"Excel) hold all {len(ctx.table):,} particles in every column.</p>")
    return section("Particles", caption + f'<div class="scroll">{frame_table(shown, columns, percent=percent)}</div>')


#: The report's sections, in order. Each takes a :class:`ReportContext` and
#: returns an HTML fragment or ``None`` (section left out).
SECTIONS = [section_summary, section_trust, section_metrics, section_size_distribution, section_shape, section_phases,
            section_liberation, section_slices, section_particles]

