"""A self-contained HTML mineralogy report of a segmented scan, and its tables.

One file that opens offline: a summary table (count, volume, number- and
volume-weighted d10/d50/d90, sphericity, the scan's geometry), the
particle-size distribution (cumulative curve with d10/d50/d90 marked,
histograms, sieve table), shape statistics (Zingg classes, sphericity against
size), phase volume fractions and a liberation table when the particles were
measured with phases, the scores against a ground truth when one is given,
slices of the scan with the particle outlines and a scale bar drawn on them
(PNG inside the file) and the largest particles in the statistics, in the
columns a reader needs. plotly.js is embedded once, uncompressed, and every
figure is drawn as the page loads, so a screenshot, a print or the PDF shows it
(the sample's report is about 5 MB). Particles cut by the scan's edge (or by
the sample region of ``roi``/``mask``) are left out of every statistic unless
``include_cut=True``; the summary says how many, once. Phases keep the names
the user gave them, and automatic ones are named by their grey values
(``"darker phase (grey < 41,157)"``). :func:`write_pdf` prints the page to PDF
with headless Chromium.

The report is a list of sections, :data:`SECTIONS`: each is a small function
that takes the :class:`ReportContext` and returns an HTML fragment, or ``None``
when it has nothing to show (an empty table, or a table without the columns
the section needs).

The same tables go to CSV files or one Excel workbook with
:func:`export_tables`; :func:`summary_table` and :func:`liberation_table` give
them as DataFrames.

Modules
-------
html
    :func:`build_report`, :func:`write_report`: the page around the sections.
sections
    One function per section, and :data:`SECTIONS`.
tables
    :func:`summary_table`, :func:`liberation_table` (from
    :mod:`ps3d_toolkit.analysis.stats`) and the other frames of the report.
export
    :func:`export_tables`: CSV or Excel.
fragments
    :class:`ReportContext` and the HTML building blocks.
payload
    plotly.js, the figures and the script that draws them as the page loads.
pdf
    :func:`write_pdf`: the report printed by headless Chromium.
"""

from __future__ import annotations

from ps3d_toolkit.report.export import export_tables
from ps3d_toolkit.report.fragments import ReportContext
from ps3d_toolkit.report.html import build_report, write_report
from ps3d_toolkit.report.pdf import write_pdf
from ps3d_toolkit.report.sections import SECTIONS
from ps3d_toolkit.report.tables import liberation_table, summary_table

__all__ = ["ReportContext", "SECTIONS", "build_report", "export_tables", "liberation_table",
           "summary_table", "write_pdf", "write_report"]
