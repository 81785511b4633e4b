"""What every report section draws on: the :class:`ReportContext` and small HTML building blocks."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np

from ps3d_toolkit.analysis.stats import cut_particles, select_particles


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
    include_cut : bool
        Whether the statistics count the particles cut by the scan's edge (or the sample region's).
    sample_region : np.ndarray of bool or None
        The sample region the particles were measured in (from ``roi`` and ``mask``),
        same shape as the scan: outlined on the slices.
    figures : list
        The plotly figures placed so far; the page draws them as it loads
        (:mod:`ps3d_toolkit.report.payload`).
    quality : dict or None
        The label-free quality record (``QualityReport.record()``, as ``ps3d segment --quality``
        writes it in the labels' ``.ps3d.json``).
    min_confidence : float or None
        The statistics leave out the particles whose ``confidence`` is under this.
    """

    table: object
    scan: object = None
    labels: np.ndarray | None = None
    metrics: dict | None = None
    notes: dict = field(default_factory=dict)
    include_cut: bool = False
    sample_region: object = None
    figures: list = field(default_factory=list)
    quality: dict | None = None
    min_confidence: float | None = None
    _stats: object = field(default=None, init=False, repr=False)

    @property
    def stats(self):
        """The particles the statistics use (:func:`ps3d_toolkit.analysis.stats.select_particles`)."""
        if self._stats is None:
            self._stats = select_particles(self.table, include_cut=self.include_cut,
                                           min_confidence=self.min_confidence)
        return self._stats

    def confidence_note(self) -> str:
        """The one sentence on the particles ``min_confidence`` leaves out of the statistics ("" without it)."""
        if self.min_confidence is None:
            return ""
        n_low = int(self.stats.attrs.get("n_low_confidence_left_out", 0))
        return (f"{n_low:,} particles with a confidence under {self.min_confidence:g} are left out of the "
                f"statistics (min_confidence); {len(self.stats):,} remain.")

    def figure_html(self, figure) -> str:
        """A placeholder ``div`` for a plotly figure, drawn by the page's loader."""
        self.figures.append(figure)
        return f'<div class="ps3d-figure" data-figure="{len(self.figures) - 1}"></div>'

    def has(self, *columns) -> bool:
        """Whether the statistics have particles and the table every one of ``columns``."""
        return len(self.stats) > 0 and all(c in self.table.columns for c in columns)

    @property
    def cut_by(self) -> str:
        """What cuts particles: the scan's edge, and the sample region's when there is one."""
        return cut_by(self.table, self.sample_region is not None)

    def cut_note(self) -> str:
        """The one sentence on the particles cut by an edge, and what the statistics do with them."""
        n_all, n_cut = len(self.table), int(cut_particles(self.table).sum())
        if not n_cut:
            return f"No particle is cut by {self.cut_by}: all {n_all:,} are in the statistics."
        if self.include_cut:
            return (f"All {n_all:,} particles are in the statistics, also the {n_cut:,} that {self.cut_by} cuts "
                    "(measured as they are: their sizes and shapes are smaller than the grains' own).")
        return (f"{n_cut:,} of the {n_all:,} particles are left out of the statistics because {self.cut_by} cuts "
                f"them (their sizes and shapes are not their own); the statistics count the other "
                f"{n_all - n_cut:,} as they are, without an edge correction.")


def cut_by(table, region: bool = False) -> str:
    """What cuts the table's particles, in words: the scan's edge, and the sample region's with a region."""
    if region or table.attrs.get("sample_region"):
        return "the edge of the scan or of the sample region"
    return "the scan's edge"


def section(title: str, body: str) -> str:
    """A report section: a heading and its body."""
    return f"<section>\n<h2>{html.escape(title)}</h2>\n{body}\n</section>"


def key_value_table(rows) -> str:
    """A two-column HTML table of (key, value) rows."""
    cells = "\n".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(format_value(value))}</td></tr>" for key, value in rows
    )
    return f"<table>\n{cells}\n</table>"


def frame_table(frame, columns: dict, percent=()) -> str:
    """An HTML table of ``frame``; ``columns`` maps the columns shown to their headings.

    Columns named in ``percent`` hold shares (0..1) and are shown in percent.
    """
    head = "".join(f"<th>{html.escape(heading)}</th>" for heading in columns.values())
    cells = []
    for column in columns:
        values = frame[column].tolist()
        cells.append([format_value(100 * v) if column in percent and _finite(v) else format_value(v)
                      for v in values])
    rows = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in zip(*cells))
    return f"<table>\n<tr>{head}</tr>\n{rows}\n</table>"


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def figures(ctx: ReportContext, plots) -> str:
    """Plotly figures as HTML fragments, one ``div`` each."""
    return "\n".join(f'<div class="figure">{ctx.figure_html(fig)}</div>' for fig in plots)



#: Significant digits of every measured value in the report: a 10-voxel grain's
#: diameter is known to about 1 %, so a fourth digit would be noise.
SIGNIFICANT_DIGITS = 3


def format_value(value) -> str:
    """A cell value as the report shows it: 3 significant digits, thousands separators, n/a.

    Numbers of 1,000 and more are rounded to whole units rather than written
    in powers of ten (``12,346``, not ``1.23e+04``).
    """
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "n/a"
        if abs(value) >= 10 ** SIGNIFICANT_DIGITS:
            return f"{float(value):,.0f}"
        return f"{float(value):.{SIGNIFICANT_DIGITS}g}"
    return str(value)
