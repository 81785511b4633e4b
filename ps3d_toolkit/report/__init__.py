"""A self-contained HTML mineralogy report of a segmented scan, and its tables.

One file that opens offline: a summary table (count, volume, number- and
volume-weighted d10/d50/d90, sphericity, the scan's geometry), the
particle-size distribution (cumulative curve with d10/d50/d90 marked,
histograms, sieve table), shape statistics (Zingg classes, sphericity against
size), phase volume fractions and a liberation table when the particles were
measured with phases, the scores against a ground truth when one is given,
slices of the scan with the particle outlines drawn on them (PNG inside the
file) and the first rows of the particle table. plotly.js is embedded once.

The report is a list of sections, :data:`SECTIONS`: each is a small function
that takes the :class:`ReportContext` and returns an HTML fragment, or ``None``
when it has nothing to show (an empty table, or a table without the columns
the section needs).

The same tables go to CSV files or one Excel workbook with
:func:`export_tables`; :func:`summary_table` and :func:`liberation_table` give
them as DataFrames.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ps3d_toolkit import __version__
from ps3d_toolkit.core.atomic import atomic_path

__all__ = ["ReportContext", "SECTIONS", "build_report", "export_tables", "liberation_table",
           "summary_table", "write_report"]

_OUTLINE_RGB = (255, 120, 0)
_MIN_IMAGE_PX = 384
_TABLE_ROWS = 20
_PHASE_PREFIX = "phase_fraction_"
_SIZE_COLUMNS = ("eq_diameter_mm", "volume_mm3")
_SHAPE_COLUMNS = ("label", "eq_diameter_mm", "sphericity", "elongation", "flatness",
                  "axis_major_mm", "axis_minor_mm")
#: measure()'s default classes: locked below 30 %, liberated from 90 % of the phase
_LIBERATION_THRESHOLDS = (0.3, 0.9)
# a worksheet holds 1,048,576 rows, one of them the header
_EXCEL_MAX_ROWS = 1_048_575
_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 70em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f5f5f5; }
td { white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
.slices { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; }
figcaption { color: #555; font-size: 0.85em; margin-top: 0.3em; }
img.slice { image-rendering: pixelated; border: 1px solid #ccc; }
.scroll { overflow-x: auto; }
.tables { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
.tables p { margin: 0 0 0.3em 0; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
"""


@dataclass
class ReportContext:
    """Everything a report section may draw on.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per particle (see :func:`ps3d_toolkit.measurement.measure`).
    scan : ps3d_toolkit.io.Scan or None
        The scan the particles were found in.
    labels : np.ndarray or None
        The label image, same shape as the scan.
    metrics : dict or None
        Scores against a ground truth (:func:`ps3d_toolkit.analysis.evaluate.evaluate_instances`).
    notes : dict
        Extra lines for the summary (method, run time, ...), shown as given.
    """

    table: object
    scan: object = None
    labels: np.ndarray | None = None
    metrics: dict | None = None
    notes: dict = field(default_factory=dict)
    _plotlyjs_done: bool = False

    def figure_html(self, figure) -> str:
        """A plotly figure as an HTML fragment; plotly.js goes inline with the first one."""
        fragment = figure.to_html(full_html=False, include_plotlyjs=not self._plotlyjs_done,
                                  config={"displaylogo": False})
        self._plotlyjs_done = True
        return fragment

    def has(self, *columns) -> bool:
        """Whether the table has rows and every one of ``columns``."""
        return len(self.table) > 0 and all(c in self.table.columns for c in columns)


# --------------------------------------------------------------------------- building blocks


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _key_value_table(rows) -> str:
    cells = "\n".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(_format(value))}</td></tr>" for key, value in rows
    )
    return f"<table>\n{cells}\n</table>"


def _frame_table(frame, columns: dict, percent=()) -> str:
    """An HTML table of ``frame``; ``columns`` maps the columns shown to their headings.

    Columns named in ``percent`` hold shares (0..1) and are shown in percent.
    """
    head = "".join(f"<th>{html.escape(heading)}</th>" for heading in columns.values())
    cells = []
    for column in columns:
        values = frame[column].tolist()
        cells.append([f"{100 * v:.3g}" if column in percent and _finite(v) else _format(v) for v in values])
    rows = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in zip(*cells))
    return f"<table>\n<tr>{head}</tr>\n{rows}\n</table>"


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def _figures(ctx: ReportContext, figures) -> str:
    return "\n".join(f'<div class="figure">{ctx.figure_html(fig)}</div>' for fig in figures)


def _phase_names(table) -> list:
    return [c[len(_PHASE_PREFIX):] for c in table.columns if c.startswith(_PHASE_PREFIX)]


def _check_table(table):
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame of particles, got {type(table).__name__}")
    return table


def _format(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.4g}"
    return str(value)


def _png_base64(rgb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _outlined_slice(grey, labels) -> np.ndarray:
    """An RGB image of a 2D slice with particle outlines, enlarged for the screen."""
    from skimage.segmentation import find_boundaries

    if grey is None:
        rgb = np.zeros(labels.shape + (3,), np.uint8)
    else:
        grey = np.asarray(grey, dtype=np.float64)
        low, high = np.percentile(grey, (0.5, 99.5))
        scaled = np.clip((grey - low) / (high - low if high > low else 1.0), 0, 1)
        rgb = np.repeat((scaled * 255).astype(np.uint8)[..., None], 3, axis=2)
    if labels is not None:
        rgb[find_boundaries(labels, mode="inner")] = _OUTLINE_RGB
    factor = max(1, int(np.ceil(_MIN_IMAGE_PX / max(rgb.shape[:2]))))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


# --------------------------------------------------------------------------- sections


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
    """Count, volume, d10/d50/d90 by number and volume, sphericity and the scan's geometry."""
    rows = summary_table(ctx.table, scan=ctx.scan, notes=ctx.notes)
    return _section("Summary", _key_value_table(zip(rows["description"], rows["value"])))


def section_metrics(ctx: ReportContext) -> str | None:
    """Scores against the ground truth, when given."""
    if not ctx.metrics:
        return None
    rows = [(_metric_label(key), value) for key, value in ctx.metrics.items() if key not in _METRICS_SKIPPED]
    return _section("Accuracy against the ground truth", _key_value_table(rows))


def section_size_distribution(ctx: ReportContext) -> str | None:
    """Cumulative PSD with d10/d50/d90 marked, histograms by volume and number, sieve table."""
    if not ctx.has(*_SIZE_COLUMNS):
        return None
    from ps3d_toolkit.analysis.stats import fig_cumulative_psd, fig_size_histogram, percentiles

    table = ctx.table
    marks = {weight: percentiles(table, weight=weight) for weight in ("volume", "number")}
    characteristic = "".join(
        f"<tr><td>by {weight}</td>" + "".join(f"<td>{_format(v)}</td>" for v in values.values()) + "</tr>"
        for weight, values in marks.items()
    )
    sieve = _sieve_frame(table)
    tables = (
        '<div class="tables">\n<div><p>Characteristic sizes (equivalent diameter), mm</p>\n'
        f"<table>\n<tr><th>weighting</th><th>d10</th><th>d50</th><th>d90</th></tr>\n{characteristic}\n</table></div>\n"
        "<div><p>Sieve curve: percent passing each aperture</p>\n"
        + _frame_table(sieve, {"size_mm": "aperture, mm", "percent_passing_volume": "% passing by volume",
                               "percent_passing_number": "% passing by number"})
        + "</div>\n</div>"
    )
    figures = [fig_cumulative_psd(table), fig_size_histogram(table, weight="volume"),
               fig_size_histogram(table, weight="number")]
    note = ('<p class="note">Sizes are volume-equivalent sphere diameters. The cumulative curve marks '
            "d10/d50/d90 of the volume distribution; the sieve curve counts a particle as passing an "
            "aperture when its equivalent diameter is at most the aperture.</p>")
    return _section("Particle-size distribution", note + tables + "\n" + _figures(ctx, figures))


_SHAPE_NAMES = {
    "sphericity": "sphericity (Wadell)", "elongation": "elongation I/L", "flatness": "flatness S/I",
    "aspect_ratio": "aspect ratio S/L",
}


def section_shape(ctx: ReportContext) -> str | None:
    """Shape descriptors, Zingg classes, sphericity against size and the Zingg diagram."""
    if not ctx.has(*_SHAPE_COLUMNS):
        return None
    import pandas as pd

    from ps3d_toolkit.analysis.stats import fig_sphericity_vs_size, fig_zingg, shape_summary

    summary = shape_summary(ctx.table)
    descriptors = summary.loc[list(_SHAPE_NAMES)].rename(index=_SHAPE_NAMES).rename_axis("name").reset_index()
    zingg = summary.loc[[i for i in summary.index if i.startswith("zingg_")]]
    classes = pd.DataFrame({"name": [i.removeprefix("zingg_") for i in zingg.index],
                            "count": zingg["count"].to_numpy(), "share": zingg["mean"].to_numpy()})
    counts = dict(zip(classes["name"], classes["count"]))
    zingg_figure = fig_zingg(ctx.table)
    for trace in zingg_figure.data:
        trace.name = f"{trace.name} ({counts.get(trace.name, 0)})"
    tables = (
        '<div class="tables">\n<div><p>Shape descriptors</p>\n'
        + _frame_table(descriptors, {"name": "descriptor", "count": "particles", "mean": "mean", "std": "std",
                                     "p10": "p10", "median": "median", "p90": "p90"})
        + "</div>\n<div><p>Zingg classes (boundaries at 2/3)</p>\n"
        + _frame_table(classes, {"name": "class", "count": "particles", "share": "share, %"}, percent={"share"})
        + "</div>\n</div>"
    )
    note = ('<p class="note">Axes L ≥ I ≥ S from the inertia tensor. Sphericity 1 is a perfect sphere; '
            "voxelised grains of a few voxels read lower.</p>")
    figures = [fig_sphericity_vs_size(ctx.table), zingg_figure]
    return _section("Shape", note + tables + "\n" + _figures(ctx, figures))


def section_phases(ctx: ReportContext) -> str | None:
    """Volume of each mineral phase over all particles (tables measured with ``phases=``)."""
    if not ctx.has("volume_mm3") or not _phase_names(ctx.table):
        return None
    frame = _phases_frame(ctx.table)
    columns = {"phase": "phase"}
    if "definition" in frame.columns:
        columns["definition"] = "defined as"
    columns.update({"volume_mm3": "volume, mm³", "volume_fraction": "share of particle volume, %",
                    "mean_particle_fraction": "mean share within a particle, %",
                    "particles_with_phase": "particles containing it"})
    table = _frame_table(frame, columns, percent={"volume_fraction", "mean_particle_fraction"})
    return _section("Phases", table)


def section_liberation(ctx: ReportContext) -> str | None:
    """Particles and phase volume per liberation class, for every phase."""
    if not ctx.has("volume_mm3") or not _phase_names(ctx.table):
        return None
    import plotly.graph_objects as go

    from ps3d_toolkit.measurement import LIBERATION_CLASSES

    frame = liberation_table(ctx.table)
    low, high = ctx.table.attrs.get("liberation_thresholds", _LIBERATION_THRESHOLDS)
    note = (f'<p class="note">For each phase, a particle is <em>locked</em> when the phase fills less than '
            f"{100 * low:g} % of its volume, <em>liberated</em> from {100 * high:g} %, <em>middling</em> "
            "in between. The phase-volume share says how much of the phase sits in particles of the "
            "class (the usual liberation measure).</p>")
    table = _frame_table(
        frame,
        {"phase": "phase", "liberation_class": "class", "count": "particles", "count_share": "particles, %",
         "particle_volume_share": "particle volume, %", "phase_volume_share": "phase volume, %"},
        percent={"count_share", "particle_volume_share", "phase_volume_share"},
    )
    figure = go.Figure()
    for cls in LIBERATION_CLASSES:
        rows = frame[frame["liberation_class"] == cls]
        figure.add_trace(go.Bar(x=100 * rows["phase_volume_share"], y=rows["phase"], orientation="h", name=cls,
                                hovertemplate="%{y}: %{x:.1f} % of its volume<extra>" + cls + "</extra>"))
    figure.update_layout(barmode="stack", title="Liberation: where each phase's volume sits",
                         xaxis_title="share of the phase's volume (%)", xaxis_range=[0, 100],
                         yaxis_title="phase", template="plotly_white",
                         height=max(260, 120 + 60 * frame["phase"].nunique()))
    return _section("Liberation", note + table + "\n" + _figures(ctx, [figure]))


def section_slices(ctx: ReportContext) -> str | None:
    """The middle z and y slices with every particle outlined."""
    volume = ctx.labels if ctx.labels is not None else (ctx.scan.image if ctx.scan is not None else None)
    if volume is None:
        return None
    image = ctx.scan.image if ctx.scan is not None else None
    figures = []
    for axis, plane in ((0, "z"), (1, "y")):
        index = volume.shape[axis] // 2
        take = (slice(None),) * axis + (index,)
        grey = None if image is None else np.asarray(image[take])
        labels = None if ctx.labels is None else np.asarray(ctx.labels[take])
        png = _png_base64(_outlined_slice(grey, labels))
        caption = f"{plane} = {index} (middle slice)"
        if labels is not None:
            caption += f", {len(np.unique(labels[labels > 0]))} particles outlined"
        figures.append(
            f'<figure><img class="slice" alt="{html.escape(caption)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return _section("Slices", '<div class="slices">\n' + "\n".join(figures) + "\n</div>")


def section_particles(ctx: ReportContext) -> str | None:
    """The first rows of the particle table."""
    if not len(ctx.table):
        return None
    shown = ctx.table.head(_TABLE_ROWS)
    caption = f"<p>The first {len(shown)} of {len(ctx.table)} particles.</p>"
    table = shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    return _section("Particles", caption + f'<div class="scroll">{table}</div>')


#: The report's sections, in order. Each takes a :class:`ReportContext` and
#: returns an HTML fragment or ``None`` (section left out).
SECTIONS = [section_summary, section_metrics, section_size_distribution, section_shape, section_phases,
            section_liberation, section_slices, section_particles]


# --------------------------------------------------------------------------- tables


def summary_table(table, *, scan=None, notes: dict | None = None):
    """Headline numbers of a particle table, one row per quantity.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table (:func:`ps3d_toolkit.measurement.measure`).
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for its name, shape, voxel size and the particle size given.
    notes : dict, optional
        Extra rows, appended as given.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity`` (a key, e.g. ``d50_volume_mm``), ``description``
        (as the report shows it) and ``value``. Rows: ``n_particles``; with
        ``volume_mm3`` ``total_volume_mm3``; with ``eq_diameter_mm`` also
        ``d10/d50/d90_volume_mm`` and ``..._number_mm`` (the values of
        :func:`ps3d_toolkit.analysis.stats.percentiles`) and ``mean_eq_diameter_mm``;
        ``mean_sphericity`` and ``n_touching_border`` when the table has those
        columns; ``scan``, ``scan_shape`` with a scan; ``spacing_mm`` from the
        scan or the table's ``attrs``; then the notes.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    """
    import pandas as pd

    from ps3d_toolkit.analysis.stats import percentiles

    table = _check_table(table)
    columns = set(table.columns)
    rows = [("n_particles", "particles", len(table))]
    if "volume_mm3" in columns:
        rows.append(("total_volume_mm3", "total particle volume, mm³", float(table["volume_mm3"].sum())))
    if {"eq_diameter_mm", "volume_mm3"} <= columns:
        for weight in ("volume", "number"):
            for name, value in percentiles(table, weight=weight).items():
                d = name.removesuffix("_mm")
                rows.append((f"{d}_{weight}_mm", f"{d} by {weight}, mm", value))
    if "eq_diameter_mm" in columns:
        rows.append(("mean_eq_diameter_mm", "mean equivalent diameter, mm", float(table["eq_diameter_mm"].mean())))
    if "sphericity" in columns:
        rows.append(("mean_sphericity", "mean sphericity (Wadell)", float(table["sphericity"].mean())))
    if "touches_border" in columns:
        rows.append(("n_touching_border", "particles touching the scan border",
                     int(table["touches_border"].astype(bool).sum())))
    spacing = scan.spacing if scan is not None else table.attrs.get("spacing_mm")
    if scan is not None:
        rows += [("scan", "scan", scan.name),
                 ("scan_shape", "voxels (z × y × x)", " × ".join(str(s) for s in scan.shape))]
    if spacing is not None:
        rows.append(("spacing_mm", "voxel size (z × y × x), mm", " × ".join(f"{float(s):g}" for s in spacing)))
    if scan is not None and scan.particle_size_mm is not None:
        rows.append(("particle_size_given_mm", "particle size given, mm", scan.particle_size_mm))
    rows += [(str(key), str(key), value) for key, value in (notes or {}).items()]
    return pd.DataFrame(rows, columns=["quantity", "description", "value"])


def liberation_table(table, *, thresholds=None):
    """Particles and phase volume per liberation class, for every phase of the table.

    For each phase, each particle is classed by the volume fraction of that
    phase inside it (:func:`ps3d_toolkit.measurement.liberation_class`): locked,
    middling or liberated.

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=`` (``phase_fraction_<name>`` columns).
    thresholds : (float, float), optional
        ``(locked_below, liberated_from)``. By default the table's
        ``attrs["liberation_thresholds"]``, else (0.3, 0.9) as in
        :func:`~ps3d_toolkit.measurement.measure`; and the phase behind the
        table's own ``liberation_class`` column (``attrs["liberation_phase"]``,
        else the first phase) keeps that column's classes.

    Returns
    -------
    pandas.DataFrame
        One row per phase and class (locked, middling, liberated): ``phase``,
        ``liberation_class``, ``count`` (particles), ``count_share`` (of all
        particles), ``particle_volume_mm3`` and ``particle_volume_share`` (of
        all particle volume), ``phase_volume_mm3`` (volume of the phase in
        those particles) and ``phase_volume_share`` (of the phase's whole
        volume; sums to 1 over the classes of a phase that is present).

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If the table lacks ``volume_mm3`` or has no ``phase_fraction_*``
        column, or the thresholds are out of order.
    """
    import pandas as pd

    from ps3d_toolkit.measurement import LIBERATION_CLASSES, liberation_class

    table = _check_table(table)
    names = _phase_names(table)
    if not names or "volume_mm3" not in table.columns:
        raise ValueError("table must have volume_mm3 and phase_fraction_<name> columns; measure it with phases=")
    own_classes = thresholds is None and "liberation_class" in table.columns
    if thresholds is None:
        thresholds = table.attrs.get("liberation_thresholds", _LIBERATION_THRESHOLDS)
    own_phase = table.attrs.get("liberation_phase", names[0])
    volume = table["volume_mm3"].to_numpy(dtype=float)
    total_volume = np.nansum(volume)
    rows = []
    for name in names:
        fraction = table[_PHASE_PREFIX + name].to_numpy(dtype=float)
        classes = table["liberation_class"] if own_classes and name == own_phase else liberation_class(
            fraction, thresholds)
        # NaN (no class) becomes "nan", which matches no class
        classes = np.asarray(pd.Series(classes).astype(str))
        phase_volume = fraction * volume
        phase_total = np.nansum(phase_volume)
        for cls in LIBERATION_CLASSES:
            inside = classes == cls
            rows.append({
                "phase": name,
                "liberation_class": cls,
                "count": int(inside.sum()),
                "count_share": inside.sum() / len(table) if len(table) else np.nan,
                "particle_volume_mm3": float(np.nansum(volume[inside])),
                "particle_volume_share": np.nansum(volume[inside]) / total_volume if total_volume > 0 else np.nan,
                "phase_volume_mm3": float(np.nansum(phase_volume[inside])),
                "phase_volume_share": np.nansum(phase_volume[inside]) / phase_total if phase_total > 0 else np.nan,
            })
    return pd.DataFrame(rows)


def _sieve_frame(table):
    """Sieve curves by volume and by number on the same apertures."""
    import pandas as pd

    from ps3d_toolkit.analysis.stats import sieve_curve

    volume = sieve_curve(table, weight="volume")
    number = sieve_curve(table, volume["size_mm"], weight="number")
    return pd.DataFrame({
        "size_mm": volume["size_mm"],
        "percent_passing_volume": volume["percent_passing"],
        "percent_retained_volume": volume["percent_retained"],
        "percent_passing_number": number["percent_passing"],
        "percent_retained_number": number["percent_retained"],
    })


def _phase_definition(spec) -> str:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return f"phase id {int(spec)}"
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError):
        return ""
    if np.isinf(low):
        return f"grey < {high:.6g}"
    if np.isinf(high):
        return f"grey ≥ {low:.6g}"
    return f"{low:.6g} ≤ grey < {high:.6g}"


def _phases_frame(table):
    """:func:`ps3d_toolkit.analysis.stats.phase_summary` with a ``phase`` column and, when known, each definition."""
    from ps3d_toolkit.analysis.stats import phase_summary

    frame = phase_summary(table).reset_index()
    definitions = table.attrs.get("phases") or {}
    if definitions:
        frame.insert(1, "definition", [_phase_definition(definitions.get(name)) for name in frame["phase"]])
    return frame


def _export_frames(table, scan=None, notes=None) -> dict:
    """The tables of the report, by sheet name (only those the table's columns allow)."""
    from ps3d_toolkit.analysis.stats import shape_summary

    frames = {"particles": table, "summary": summary_table(table, scan=scan, notes=notes)}
    columns = set(table.columns)
    if set(_SIZE_COLUMNS) <= columns:
        frames["psd"] = _sieve_frame(table)
    if set(_SHAPE_COLUMNS) <= columns:
        frames["shape"] = shape_summary(table).rename_axis("quantity").reset_index()
    if "volume_mm3" in columns and _phase_names(table):
        frames["phases"] = _phases_frame(table)
        frames["liberation"] = liberation_table(table)
    return frames


def export_tables(table, path, *, scan=None, notes: dict | None = None) -> list:
    """Write the particle table and the report's tables as CSV files or one Excel workbook, atomically.

    The tables (sheets) are ``particles`` (the table itself), ``summary``
    (:func:`summary_table`), ``psd`` (sieve curves by volume and number),
    ``shape`` (:func:`ps3d_toolkit.analysis.stats.shape_summary`), ``phases``
    (:func:`ps3d_toolkit.analysis.stats.phase_summary`) and ``liberation``
    (:func:`liberation_table`); ``psd``, ``shape``, ``phases`` and
    ``liberation`` only when the table has the columns they need.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    path : str or Path
        ``report.xlsx``: one workbook, a sheet per table (needs openpyxl).
        ``particles.csv``: the particle table to that file and every other
        table beside it as ``particles_<table>.csv``. A path without
        extension is a stem: ``stem_<table>.csv`` for every table.
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for the summary.
    notes : dict, optional
        Extra summary rows.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If the extension is neither ``.xlsx`` nor ``.csv`` (nor absent), or a
        workbook would need more rows than a sheet holds.
    ImportError
        If openpyxl is missing for ``.xlsx``.

    Examples
    --------
    >>> export_tables(table, "out/report.xlsx")            # doctest: +SKIP
    [PosixPath('out/report.xlsx')]
    """
    import pandas as pd

    table = _check_table(table)
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv", ""):
        raise ValueError(f"path must end in .xlsx or .csv, or be a stem without extension, got {path.name!r}")
    if suffix == ".xlsx":
        try:
            import openpyxl  # noqa: F401
        except ImportError:
            raise ImportError("writing .xlsx needs openpyxl: pip install openpyxl") from None
        if len(table) > _EXCEL_MAX_ROWS:
            raise ValueError(f"{len(table):,} particles do not fit in an Excel sheet "
                             f"({_EXCEL_MAX_ROWS:,} rows); export to .csv instead")
    frames = _export_frames(table, scan=scan, notes=notes)
    if suffix == ".xlsx":
        with atomic_path(path) as tmp:
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                for name, frame in frames.items():
                    frame.to_excel(writer, sheet_name=name, index=False, freeze_panes=(1, 0))
        return [path]
    stem = path.with_suffix("") if suffix else path
    written = []
    for name, frame in frames.items():
        target = path if (suffix == ".csv" and name == "particles") else stem.with_name(f"{stem.name}_{name}.csv")
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(target)
    return written


# --------------------------------------------------------------------------- public API


def build_report(table, *, scan=None, labels=None, metrics=None,
                 title: str = "ps3d_toolkit particle report", notes: dict | None = None,
                 sections=None) -> str:
    """Build the self-contained HTML report as a string.

    Parameters are those of :func:`write_report`; ``sections`` replaces
    :data:`SECTIONS` (a list of functions of a :class:`ReportContext`).
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame of particles, got {type(table).__name__}")
    if labels is not None:
        labels = np.asarray(labels)
        if scan is not None and tuple(labels.shape) != tuple(scan.shape):
            raise ValueError(f"labels and scan must have the same shape, got {labels.shape} and {scan.shape}")
    ctx = ReportContext(table=table, scan=scan, labels=labels, metrics=metrics, notes=dict(notes or {}))
    parts = [part for build in (SECTIONS if sections is None else sections) if (part := build(ctx))]
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">ps3d_toolkit {__version__}, {html.escape(stamp)}</p>\n'
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def write_report(table, path, *, scan=None, labels=None, metrics=None,
                 title: str = "ps3d_toolkit particle report", notes: dict | None = None) -> Path:
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

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If ``labels`` and ``scan`` differ in shape, or ``path`` does not end in ``.html``/``.htm``.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"path must end in .html, got {path}")
    text = build_report(table, scan=scan, labels=labels, metrics=metrics, title=title, notes=notes)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
