"""Write a self-contained HTML mineralogy report (and Excel/CSV tables) of a label image.

Measure every particle of a label image (or read a particle table made by
'ps3d measure') and write one HTML file that opens offline: summary, particle-size
distribution with d10/d50/d90, shape statistics, phase volumes and liberation
(with --phases or --auto-phases, named with --phase-names or by their grey values),
slices with the particles outlined, and the largest particles. Particles cut by the
scan border (or by the sample region of --roi/--mask) are left out of every statistic
(the summary says how many) unless --include-cut. --excel and --csv write the same tables for a
spreadsheet, --pdf prints the report to PDF with headless Chromium. Every output is checked
before any work (an existing one is refused unless --overwrite); a label image that
looks like a grey-value scan is refused unless --force, NaN grey values unless
--non-finite mask.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from ps3d_toolkit.cli.args import (
    CLIError,
    add_overwrite,
    add_verbosity,
    check_excel,
    check_output,
    missing_chunks,
    read_record,
    read_scan_and_labels,
    sample_region_options,
    say,
)
from ps3d_toolkit.cli.measure import add_measure_options, check_phase_options, phase_options, saved_confidence

EXAMPLES = """
ps3d report data/sample/labels.tif --image data/sample/scan.tif --auto-phases 2 --phase-names quartz,magnetite
ps3d report data/sample/labels.tif --image data/sample/scan.tif --phases 'gangue:0:40000,ore:40000:inf' --pdf report.pdf
ps3d report --table particles.csv --include-cut --output report.html
ps3d report labels.tif --image scan.tif --mask auto   (the particles the holder's inside cuts are left out)
ps3d report labels.tif --image scan.tif --min-confidence 0.5   (after ps3d segment --quality)
"""

#: The tables that --csv writes beside the particle table, as <name>_<table>.csv
#: (those of :func:`ps3d_toolkit.report.export_tables`; each only when the table allows it).
CSV_TABLES = ("summary", "psd", "shape", "phases", "liberation")


def add_arguments(parser) -> None:
    parser.add_argument("labels", type=Path, nargs="?", metavar="LABELS",
                        help="label image to measure (0 = background); optional with --table")
    parser.add_argument("--table", type=Path, metavar="TABLE",
                        help="a particle table (.csv or .parquet from 'ps3d measure') to report on "
                             "instead of measuring; LABELS and --image then only give the slices")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan: grey levels, phases, slices (and its stored spacing)")
    add_measure_options(parser, table=True)
    parser.add_argument("--include-cut", action="store_true",
                        help="count the particles cut by the scan's edge (or the sample region's) in every "
                             "statistic (default: leave them out, and say how many)")
    parser.add_argument("--min-confidence", type=_confidence, default=None, metavar="C",
                        help="leave the particles whose confidence (ps3d segment --quality) is under C (0-1) "
                             "out of every statistic, and say how many")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="HTML",
                        help="report to write (default: report.html)")
    parser.add_argument("--excel", type=Path, metavar="XLSX",
                        help="also write every table as a sheet of this Excel workbook")
    parser.add_argument("--csv", type=Path, metavar="CSV",
                        help="also write the particle table to this .csv and each other table beside "
                             "it as <name>_<table>.csv")
    parser.add_argument("--pdf", type=Path, metavar="PDF",
                        help="also print the report to this PDF (headless Chromium at /usr/bin/chromium, "
                             "driven by Playwright)")
    parser.add_argument("--title", default="ps3d_toolkit mineralogy report", help="the report's heading")
    add_overwrite(parser, "the report and tables")
    add_verbosity(parser)


def _check_arguments(args) -> None:
    """Refuse contradictory options and unwritable outputs before any work."""
    if args.labels is None and args.table is None:
        raise CLIError("give a label image LABELS to measure, or --table with a particle table")
    check_phase_options(args)
    inputs = (args.labels, args.table, args.image)
    check_output(args.output, (".html", ".htm"), "report", inputs=inputs, overwrite=args.overwrite)
    if args.excel is not None:
        check_excel(args.excel, inputs=inputs, overwrite=args.overwrite)
    if args.csv is not None:
        check_output(args.csv, (".csv",), "CSV table", inputs=inputs, overwrite=args.overwrite)
        stem = args.csv.with_suffix("")
        for name in CSV_TABLES:
            check_output(stem.with_name(f"{stem.name}_{name}.csv"), None, "CSV table", inputs=inputs,
                         overwrite=args.overwrite)
    if args.pdf is not None:
        _check_pdf(args, inputs)


def _check_pdf(args, inputs) -> None:
    """The PDF can be written and printed: a .pdf path, Chromium and Playwright present."""
    from ps3d_toolkit.report.pdf import find_chromium

    check_output(args.pdf, (".pdf",), "PDF report", inputs=inputs, overwrite=args.overwrite)
    if find_chromium() is None:
        raise CLIError("--pdf needs Chromium: apt-get install chromium (or set PS3D_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        raise CLIError("--pdf needs Playwright: pip install playwright (no 'playwright install' needed)")


def _particle_table(args, scan, labels, spacing, notes: dict, roi=None, mask=None):
    """The table to report on: read from ``--table``, else measured on LABELS in the sample region."""
    from ps3d_toolkit.io import read_table
    from ps3d_toolkit.measurement import measure

    if args.table is not None:
        table = read_table(args.table)
        if spacing is not None:
            table.attrs.setdefault("spacing_mm", tuple(spacing))
        notes["particle table"] = str(args.table)
        return table if args.phase_names is None else _renamed(table, args.phase_names)
    return measure(labels, image=None if scan is None else scan.image, spacing=spacing, roi=roi, mask=mask,
                   non_finite=args.non_finite, force=args.force, progress=not args.quiet,
                   confidence=saved_confidence(args), **phase_options(args))


def _segmentation_notes(record: dict) -> dict:
    """Summary lines on how the labels were made, from the record ``ps3d segment`` wrote beside them."""
    notes = {}
    if record.get("method"):
        notes["segmentation"] = str(record["method"])
    if record.get("grains"):
        reason = record.get("grains_reason") or "given"
        notes["grains"] = f"{record['grains']} than their matrix ({reason})"
    return notes


def _confidence(text: str) -> float:
    """``--min-confidence``: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def _renamed(table, names):
    """The table read from --table with its phases renamed by --phase-names."""
    from ps3d_toolkit.measurement.intensity import rename_phases

    try:
        return rename_phases(table, names)
    except ValueError as error:
        raise CLIError(f"--phase-names: {error}") from None


def run(args) -> int:
    """Run ``ps3d report`` on parsed arguments."""
    from ps3d_toolkit.report import export_tables, write_pdf, write_report

    _check_arguments(args)
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing,
                                                 missing_chunks=missing_chunks(args))
    notes = {} if args.labels is None else {"label image": str(args.labels)}
    notes.update(_segmentation_notes(read_record(args.labels)))
    roi = mask = None
    if labels is not None:
        roi, mask = sample_region_options(args, scan, labels.shape)
        if roi is not None or mask is not None:
            notes["sample region"] = " ".join(f"--{k} {v}" for k, v in (("roi", roi), ("mask", mask))
                                              if v is not None)
    elif args.roi is not None or args.mask is not None:
        raise CLIError("--roi and --mask apply when measuring LABELS; they cannot be used with --table alone")
    table = _particle_table(args, scan, labels, spacing, notes, roi, mask)
    if args.min_confidence is not None and "confidence" not in table.columns:
        raise CLIError("--min-confidence needs each particle's confidence: segment with ps3d segment --quality "
                       "(it saves them beside the labels as <labels>.quality.csv)")
    cut = {"include_cut": args.include_cut, "min_confidence": args.min_confidence}
    written = {"report": write_report(table, args.output, scan=scan, labels=labels, title=args.title,
                                      notes=notes, roi=roi, mask=mask,
                                      quality=read_record(args.labels).get("quality"), **cut)}
    if args.pdf is not None:
        written["PDF"] = write_pdf(args.output, args.pdf)
    if args.excel is not None:
        written["tables (Excel)"] = export_tables(table, args.excel, scan=scan, notes=notes, **cut)[0]
    if args.csv is not None:
        paths = export_tables(table, args.csv, scan=scan, notes=notes, **cut)
        written["tables (CSV)"] = ", ".join(str(p) for p in paths)
    say(args, f"{len(table)} particles")
    say(args, _statistics_line(table, args.include_cut, roi is not None or mask is not None))
    if args.min_confidence is not None:
        from ps3d_toolkit.analysis.stats import select_particles

        kept = select_particles(table, include_cut=args.include_cut, min_confidence=args.min_confidence)
        say(args, f"{kept.attrs['n_low_confidence_left_out']} particles with a confidence under "
                  f"{args.min_confidence:g} left out of the statistics (--min-confidence)")
    for what, path in written.items():
        say(args, f"wrote {what}: {path}")
    return 0


def _statistics_line(table, include_cut: bool, region: bool = False) -> str:
    """Which particles the statistics count, in one line."""
    from ps3d_toolkit.analysis.stats import cut_particles

    n_cut = int(cut_particles(table).sum())
    by = "the scan border or the sample region" if region else "the scan border"
    if include_cut:
        return f"statistics count all {len(table)} particles, {n_cut} of them cut by {by} (--include-cut)"
    return (f"statistics count {len(table) - n_cut} particles: {n_cut} cut by {by} left out "
            "(--include-cut counts them)")
