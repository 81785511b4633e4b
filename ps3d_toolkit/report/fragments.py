"""What every report section draws on: the :class:`ReportContext` and small HTML building blocks."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np


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
        cells.append([f"{100 * v:.3g}" if column in percent and _finite(v) else format_value(v) for v in values])
    rows = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in zip(*cells))
    return f"<table>\n<tr>{head}</tr>\n{rows}\n</table>"


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and bool(np.isfinite(value))


def figures(ctx: ReportContext, plots) -> str:
    """Plotly figures as HTML fragments, one ``div`` each."""
    return "\n".join(f'<div class="figure">{ctx.figure_html(fig)}</div>' for fig in plots)



def format_value(value) -> str:
    """A cell value as the report shows it: thousands separators, 4 significant digits, n/a."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{float(value):.4g}"
    return str(value)
