"""A self-contained HTML report of a segmented scan.

One file that opens offline: a summary table (count, d10/d50/d90), the
particle-size distribution as interactive plotly figures (plotly.js embedded),
slices of the scan with the particle outlines drawn on them (PNG inside the
file), the scores against a ground truth when one is given, and the first rows
of the particle table.

The report is a list of sections, :data:`SECTIONS`: each is a small function
that takes the :class:`ReportContext` and returns an HTML fragment, or ``None``
when it has nothing to show. A richer report (mineralogy, shape, liberation)
adds its own section functions.
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
from ps3d_toolkit._atomic import atomic_path

__all__ = ["ReportContext", "SECTIONS", "build_report", "write_report"]

_OUTLINE_RGB = (255, 120, 0)
_MIN_IMAGE_PX = 384
_TABLE_ROWS = 20
_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 70em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
.meta { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f5f5f5; }
td:first-child, th:first-child { text-align: left; }
.slices { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; }
figcaption { color: #555; font-size: 0.85em; margin-top: 0.3em; }
img.slice { image-rendering: pixelated; border: 1px solid #ccc; }
.scroll { overflow-x: auto; }
"""


@dataclass
class ReportContext:
    """Everything a report section may draw on.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per particle (see :func:`ps3d_toolkit.measure.measure`).
    scan : ps3d_toolkit.io.Scan or None
        The scan the particles were found in.
    labels : np.ndarray or None
        The label image, same shape as the scan.
    metrics : dict or None
        Scores against a ground truth (:func:`ps3d_toolkit.evaluate.evaluate_instances`).
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


# --------------------------------------------------------------------------- building blocks


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _key_value_table(rows) -> str:
    cells = "\n".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(_format(value))}</td></tr>" for key, value in rows
    )
    return f"<table>\n{cells}\n</table>"


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
    """Particle count, d10/d50/d90 and the scan's geometry."""
    from ps3d_toolkit.stats import percentiles

    table = ctx.table
    rows = [("particles", len(table))]
    if len(table):
        for weight in ("volume", "number"):
            values = percentiles(table, weight=weight)
            rows += [(f"{name.removesuffix('_mm')} by {weight}, mm", value) for name, value in values.items()]
        rows += [
            ("mean equivalent diameter, mm", float(table["eq_diameter_mm"].mean())),
            ("total particle volume, mm³", float(table["volume_mm3"].sum())),
        ]
    if ctx.scan is not None:
        shape = " × ".join(str(s) for s in ctx.scan.shape)
        spacing = " × ".join(f"{s:g}" for s in ctx.scan.spacing)
        rows += [("scan", ctx.scan.name), ("voxels (z × y × x)", shape), ("voxel size, mm", spacing)]
        if ctx.scan.particle_size_mm is not None:
            rows.append(("particle size given, mm", ctx.scan.particle_size_mm))
    rows += list(ctx.notes.items())
    return _section("Summary", _key_value_table(rows))


def section_metrics(ctx: ReportContext) -> str | None:
    """Scores against the ground truth, when given."""
    if not ctx.metrics:
        return None
    rows = [(_metric_label(key), value) for key, value in ctx.metrics.items() if key not in _METRICS_SKIPPED]
    return _section("Accuracy against the ground truth", _key_value_table(rows))


def section_size_distribution(ctx: ReportContext) -> str | None:
    """Interactive particle-size distribution figures."""
    if not len(ctx.table):
        return None
    from ps3d_toolkit.stats import fig_cumulative_psd, fig_size_histogram

    figures = [fig_size_histogram(ctx.table), fig_cumulative_psd(ctx.table)]
    body = "\n".join(f'<div class="figure">{ctx.figure_html(fig)}</div>' for fig in figures)
    return _section("Particle-size distribution", body)


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
SECTIONS = [section_summary, section_metrics, section_size_distribution, section_slices, section_particles]


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
        One row per particle, from :func:`ps3d_toolkit.measure.measure`.
    path : str or Path
        The ``.html`` file to write.
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for its geometry and the slice images.
    labels : array_like, optional
        The label image, for the outlines on the slices.
    metrics : dict, optional
        Scores against a ground truth, from :func:`ps3d_toolkit.evaluate.evaluate_instances`.
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
