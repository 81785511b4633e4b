"""Write a self-contained HTML mineralogy report (and Excel/CSV tables) of a label image.

Measure every particle of a label image (or read a particle table made by
'ps3d measure') and write one HTML file that opens offline: summary, particle-size
distribution with d10/d50/d90, shape statistics, phase volumes and liberation
(with --phases or --auto-phases), slices with the particles outlined, and the table.
--excel and --csv write the same tables for a spreadsheet. Every output is checked
before any work (an existing one is refused unless --overwrite); a label image that
looks like a grey-value scan is refused unless --force, NaN grey values unless
--non-finite mask.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (CLIError, add_allow_missing_chunks, add_force, add_non_finite, add_overwrite,
                                   add_spacing, add_verbosity, check_excel, check_output, missing_chunks,
                                   phase_count, phase_intervals, read_scan_and_labels, say)

EXAMPLES = """
ps3d report labels.tif --image scan.tif --auto-phases 2 --excel report.xlsx
ps3d report labels.tif --image scan.tif --phases 'gangue:0:30000,ore:30000:inf'
ps3d report --table particles.csv --output report.html
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
    add_spacing(parser, "the scan or label image")
    phases = parser.add_mutually_exclusive_group()
    phases.add_argument("--phases", type=phase_intervals, metavar="NAME:LO:HI[,...]",
                        help="mineral phases as grey-level intervals [LO, HI) (inf allowed); "
                             "the first one sets the liberation class column")
    phases.add_argument("--auto-phases", type=phase_count, metavar="N",
                        help="split the particles' grey levels into N phases (2-5) automatically")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="HTML",
                        help="report to write (default: report.html)")
    parser.add_argument("--excel", type=Path, metavar="XLSX",
                        help="also write every table as a sheet of this Excel workbook")
    parser.add_argument("--csv", type=Path, metavar="CSV",
                        help="also write the particle table to this .csv and each other table beside "
                             "it as <name>_<table>.csv")
    parser.add_argument("--title", default="ps3d_toolkit mineralogy report", help="the report's heading")
    add_overwrite(parser, "the report and tables")
    add_non_finite(parser, "left out of the grey levels and phase fractions")
    add_force(parser, "measure")
    add_allow_missing_chunks(parser)
    add_verbosity(parser)


def _check_arguments(args) -> None:
    """Refuse contradictory options and unwritable outputs before any work."""
    if args.labels is None and args.table is None:
        raise CLIError("give a label image LABELS to measure, or --table with a particle table")
    phase_option = "--phases" if args.phases else "--auto-phases" if args.auto_phases else None
    if phase_option and args.table is not None:
        raise CLIError(f"{phase_option} applies when measuring LABELS; it cannot be used with --table")
    if phase_option and args.image is None:
        raise CLIError(f"{phase_option} needs --image, the grey values the phases are read from")
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


def _particle_table(args, scan, labels, spacing, notes: dict):
    """The table to report on: read from ``--table``, else measured on LABELS."""
    from ps3d_toolkit.io import read_table
    from ps3d_toolkit.measurement import measure, propose_phase_thresholds

    if args.table is not None:
        table = read_table(args.table)
        if spacing is not None:
            table.attrs.setdefault("spacing_mm", tuple(spacing))
        notes["particle table"] = str(args.table)
        return table
    phases = args.phases
    if args.auto_phases:
        phases = propose_phase_thresholds(scan.image, labels, n_phases=args.auto_phases)
    return measure(labels, image=None if scan is None else scan.image, spacing=spacing, phases=phases,
                   non_finite=args.non_finite, force=args.force, progress=not args.quiet)


def run(args) -> int:
    """Run ``ps3d report`` on parsed arguments."""
    from ps3d_toolkit.report import export_tables, write_report

    _check_arguments(args)
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing,
                                                 missing_chunks=missing_chunks(args))
    notes = {} if args.labels is None else {"label image": str(args.labels)}
    table = _particle_table(args, scan, labels, spacing, notes)
    written = {"report": write_report(table, args.output, scan=scan, labels=labels, title=args.title,
                                      notes=notes)}
    if args.excel is not None:
        written["tables (Excel)"] = export_tables(table, args.excel, scan=scan, notes=notes)[0]
    if args.csv is not None:
        paths = export_tables(table, args.csv, scan=scan, notes=notes)
        written["tables (CSV)"] = ", ".join(str(p) for p in paths)
    say(args, f"{len(table)} particles")
    for what, path in written.items():
        say(args, f"wrote {what}: {path}")
    return 0
