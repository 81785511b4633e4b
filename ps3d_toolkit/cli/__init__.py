"""The ``ps3d`` command: a thin shell over the library.

Every subcommand parses its arguments, calls the public functions the notebooks
use (``load_scan``, ``segment``, ``measure``, ``evaluate_instances``, ...) and
says what it wrote. No processing lives here.

Adding a subcommand is one builder function decorated with :func:`subcommand`:
it adds its parser to the subparsers and sets ``run`` to a function that takes
the parsed arguments and returns an exit code::

    @subcommand
    def _report(subparsers):
        parser = subparsers.add_parser("report", help="...", description="...")
        parser.add_argument(...)
        parser.set_defaults(run=_run_report)   # _run_report(args) -> int

A subcommand whose parser lives in a module that is slow to import (torch)
is registered with :func:`deferred_subcommand`, so that ``ps3d --help`` and the
other commands stay fast: ``ps3d train`` is registered so, with the parser in
``ps3d_toolkit.cli.train``.

Errors a user can cause (a missing or unreadable file, a bad spacing, an
unknown format or method) end with exit code 2 and one line on stderr,
``ps3d: error: ...``; set ``PS3D_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

from ps3d_toolkit import __version__

__all__ = ["main", "build_parser", "subcommand", "deferred_subcommand", "SUBCOMMANDS"]

PROG = "ps3d"
EXIT_USAGE = 2

#: Builders of the subcommands, in the order ``ps3d --help`` lists them.
SUBCOMMANDS: list = []


def subcommand(builder):
    """Register a function that adds one subcommand's parser (see the module doc)."""
    SUBCOMMANDS.append(builder)
    return builder


def deferred_subcommand(name: str, help: str, builder: str):
    """Register a subcommand whose parser is built only when it runs.

    Parameters
    ----------
    name : str
        The subcommand, e.g. ``"train"``.
    help : str
        Its one-line help in ``ps3d --help``.
    builder : str
        ``"module:function"``; the function takes a subparsers object, adds the
        ``name`` parser to it and sets ``run`` (or ``func``) on it. The module is
        imported only when ``ps3d NAME ...`` is run.
    """

    def build(subparsers):
        # no options of its own: every argument, --help included, goes to the real parser
        parser = subparsers.add_parser(name, help=help, add_help=False, prefix_chars="\0")
        parser.add_argument("arguments", nargs="*")
        parser.set_defaults(run=lambda args: _run_deferred(name, builder, args.arguments))

    build.__name__ = f"_{name}"
    return subcommand(build)


def _run_deferred(name: str, builder: str, arguments) -> int:
    import importlib

    module, function = builder.split(":")
    parser = _Parser(prog=PROG)
    getattr(importlib.import_module(module), function)(
        parser.add_subparsers(required=True, parser_class=_Parser))
    try:
        args = parser.parse_args([name, *arguments])
    except SystemExit as stop:  # --help or a usage error
        return stop.code if isinstance(stop.code, int) else 0
    return _dispatch(args)


def _dispatch(args) -> int:
    run = getattr(args, "run", None) or getattr(args, "func")
    code = run(args)
    return 0 if code is None else int(code)


class CLIError(Exception):
    """A user error found by the command line itself (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and examples."""


# --------------------------------------------------------------------------- argument types


def _spacing(text: str) -> tuple:
    """``--spacing`` value: one number (isotropic) or three ``z,y,x``, in mm."""
    from ps3d_toolkit.core.checks import check_spacing

    try:
        return check_spacing([float(v) for v in text.replace(" ", "").split(",")])
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be one positive number or three z,y,x separated by commas, in mm; got {text!r}"
        ) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number in mm, got {text!r}")
    return value


def _iou_thresholds(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0.5 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be numbers in [0.5, 1) separated by commas, got {text!r}")
    return values


def _phase_intervals(text: str) -> dict:
    """``--phases`` value: ``name:low:high`` grey-level intervals separated by commas."""
    phases = {}
    for item in text.split(","):
        try:
            name, low, high = (part.strip() for part in item.split(":"))
            low, high = float(low), float(high)
        except ValueError:
            name, low, high = "", math.nan, math.nan
        if not name or name in phases or not low < high:
            raise argparse.ArgumentTypeError(
                f"must be name:low:high grey-level intervals (low < high, distinct names) separated by "
                f"commas, e.g. 'quartz:0:30000,sulphide:30000:inf'; got {text!r}"
            )
        phases[name] = (low, high)
    return phases


def _phase_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 2 <= value <= 5:
        raise argparse.ArgumentTypeError(f"must be a whole number of phases from 2 to 5, got {text!r}")
    return value


def _add_spacing(parser, what: str) -> None:
    parser.add_argument(
        "--spacing", type=_spacing, metavar="MM",
        help=f"voxel size in mm: one number, or z,y,x (e.g. 0.02,0.01,0.01); "
             f"overrides the spacing stored with {what} and is needed when none is stored",
    )


def _add_quiet(parser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages, only errors")


# --------------------------------------------------------------------------- helpers


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _check_output(path: Path, formats, what: str) -> Path:
    """Fail before any work when the output's extension cannot be written."""
    name = path.name.lower()
    if not any(name.endswith(ext) for ext in formats):
        raise CLIError(f"unknown {what} format for {path}: use one of {', '.join(formats)}")
    return path


def _label_formats():
    from ps3d_toolkit.io import SUPPORTED_FORMATS

    return SUPPORTED_FORMATS


def _check_method(method):
    """Resolve the default method and refuse the model while no weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available
    from ps3d_toolkit.segmentation import default_method

    method = method or default_method()
    if method == "model" and not weights_available():
        raise CLIError(
            "method 'model' needs the trained weights, which this version does not ship yet; "
            "use --method otsu-watershed or --method snow"
        )
    return method


def _check_excel(path: Path) -> Path:
    """Fail before any work when a workbook cannot be written."""
    _check_output(path, (".xlsx",), "Excel workbook")
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise CLIError("writing an Excel workbook needs openpyxl: pip install openpyxl") from None
    return path


def _say(args, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(message)


def _method_names():
    from ps3d_toolkit.segmentation import METHODS

    return METHODS


# --------------------------------------------------------------------------- subcommands


@subcommand
def _demo(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="segment and measure the bundled sample scan; write labels, a table, an HTML report and a workbook",
        description=(
            "Run the whole pipeline on the bundled sample (a 128^3 synthetic micro-CT scan of\n"
            "mineral grains in epoxy, 0.01 mm voxels, with exact ground-truth labels):\n"
            "segment it, measure every particle (with two mineral phases split by grey level),\n"
            "score the result against the ground truth and write labels.tif, particles.csv,\n"
            "report.html (opens offline) and report.xlsx (every table of the report) into DIR."
        ),
        epilog="example:\n  ps3d demo --output ps3d_demo_output",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("ps3d_demo_output"), metavar="DIR",
                        help="folder for the results (created if needed)")
    parser.add_argument("--method", choices=_method_names(), default=None,
                        help="segmentation method (default: the model when its weights ship, "
                             "otherwise otsu-watershed)")
    _add_quiet(parser)
    parser.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from ps3d_toolkit.data import load_sample
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.io import save_labels
    from ps3d_toolkit.measurement import measure, save_table
    from ps3d_toolkit.report import export_tables, write_report
    from ps3d_toolkit.segmentation import segment

    method = _check_method(args.method)
    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"--output must be a folder, but {args.output} is a file")
    _check_excel(args.output / "report.xlsx")
    scan, truth = load_sample()
    _say(args, f"sample: {' x '.join(map(str, scan.shape))} voxels of {scan.spacing[0]:g} mm, "
               f"segmenting with {method}")
    start = time.perf_counter()
    labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                     method=method, progress=not args.quiet)
    seconds = time.perf_counter() - start
    table = measure(labels, image=scan.image, spacing=scan.spacing, phases="auto", progress=not args.quiet)
    metrics = evaluate_instances(truth, labels)
    notes = {"method": method, "segmentation time, s": round(seconds, 1)}

    written = {
        "labels": save_labels(labels, args.output / "labels.tif", spacing=scan.spacing),
        "particle table": save_table(table, args.output / "particles.csv"),
        "report": write_report(
            table, args.output / "report.html", scan=scan, labels=labels, metrics=metrics,
            title="ps3d demo: the bundled sample", notes=notes,
        ),
        "tables (Excel)": export_tables(table, args.output / "report.xlsx", scan=scan, notes=notes)[0],
    }
    _say(args, f"found {len(table)} particles ({metrics['n_gt']} in the ground truth) in {seconds:.1f} s; "
               f"F1 at IoU > 0.5 = {metrics['f1_50']:.3f}, PQ = {metrics['pq']:.3f}")
    for what, path in written.items():
        print(f"wrote {what}: {path}")
    return 0


@subcommand
def _segment(subparsers):
    parser = subparsers.add_parser(
        "segment",
        help="find every particle in a scan and write a uint32 label image",
        description=(
            "Segment every particle of a 3D scan into a label image (uint32, 0 = background,\n"
            "one id per particle). Input: .tif/.tiff, a folder of TIFF slices, .zarr,\n"
            ".nii/.nii.gz or .npy. The output format follows the extension of --output."
        ),
        epilog=(
            "examples:\n"
            "  ps3d segment scan.tif --spacing 0.01 --output labels.tif\n"
            "  ps3d segment scan.zarr --particle-size 0.2 --method snow --output labels.zarr"
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("scan", type=Path, metavar="SCAN", help="the scan to segment")
    _add_spacing(parser, "the scan")
    parser.add_argument("--particle-size", type=_positive, metavar="MM", dest="particle_size_mm",
                        help="rough mean particle diameter in mm (default: from the scan's metadata, "
                             "else estimated)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="PATH",
                        help="label image to write (.tif, .zarr, .npy, .nii.gz, ...)")
    parser.add_argument("--method", choices=_method_names(), default=None,
                        help="segmentation method (default: the model when its weights ship, "
                             "otherwise otsu-watershed)")
    model = parser.add_argument_group("model options (with the default method)")
    model.add_argument("--weights", type=Path, metavar="PT", default=None,
                       help="weight file, e.g. a fine-tuned runs/mine/model.pt (default: shipped)")
    model.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or mps")
    model.add_argument("--overlap", type=float, default=0.25,
                       help="sliding-window overlap in [0, 1) (default 0.25)")
    model.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="average over 8 mirrorings of the scan (default: on a GPU only; "
                            "8x the network time)")
    model.add_argument("--network-diameter", type=_positive, default=None, metavar="VOX",
                       help="mean particle diameter in voxels on the network's grid (default: the "
                            "weights' own, 20 for the shipped model; larger is slower)")
    _add_quiet(parser)
    parser.set_defaults(run=_run_segment)


def _run_segment(args) -> int:
    from ps3d_toolkit.io import load_scan, save_labels
    from ps3d_toolkit.segmentation import segment

    _check_output(args.output, _label_formats(), "label image")
    method = _check_method(args.method)
    scan = load_scan(args.scan, spacing=args.spacing)
    size = args.particle_size_mm or scan.particle_size_mm
    start = time.perf_counter()
    options = {}
    if method == "model":
        options = dict(weights=args.weights, device=args.device, overlap=args.overlap,
                       tta="auto" if args.tta is None else args.tta,
                       target_diameter_vox=args.network_diameter)
    elif args.weights is not None or args.tta is not None or args.network_diameter is not None:
        raise ValueError("--weights, --tta and --network-diameter apply to the model, not to "
                         f"--method {method}")
    labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=size,
                     method=method, progress=not args.quiet, **options)
    seconds = time.perf_counter() - start
    path = save_labels(labels, args.output, spacing=scan.spacing)
    _say(args, f"{method}: {int(labels.max())} particles in {seconds:.1f} s; wrote {path}")
    return 0


@subcommand
def _measure(subparsers):
    parser = subparsers.add_parser(
        "measure",
        help="measure every particle of a label image into a table (CSV or Parquet)",
        description=(
            "Measure every particle of a label image: volume, equivalent diameter, centroid,\n"
            "bounding box, shape and, with --image, grey values. One row per particle."
        ),
        epilog="example:\n  ps3d measure labels.tif --image scan.tif --output particles.csv",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("labels", type=Path, metavar="LABELS", help="label image (0 = background)")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan, for intensity columns (and its stored spacing)")
    _add_spacing(parser, "the scan or label image")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TABLE",
                        help="table to write: .csv or .parquet")
    _add_quiet(parser)
    parser.set_defaults(run=_run_measure)


def _run_measure(args) -> int:
    import numpy as np

    from ps3d_toolkit.io import load_scan
    from ps3d_toolkit.measurement import TABLE_FORMATS, measure, save_table

    _check_output(args.output, TABLE_FORMATS, "table")
    spacing, image = args.spacing, None
    if args.image is not None:
        scan = load_scan(args.image, spacing=spacing)
        spacing, image = scan.spacing, scan.image
    # the label image's own stored spacing serves when neither is given
    labels = load_scan(args.labels, spacing=spacing)
    table = measure(np.asarray(labels.image), image=image, spacing=labels.spacing, progress=not args.quiet)
    path = save_table(table, args.output)
    _say(args, f"{len(table)} particles; wrote {path}")
    return 0


@subcommand
def _evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="score a predicted label image against the ground truth (F1, PQ, count error)",
        description=(
            "Compare a predicted label image with a ground-truth one of the same shape.\n"
            "A particle is found when a predicted particle overlaps it with IoU above the\n"
            "threshold; prints F1/precision/recall per threshold, panoptic quality (PQ, SQ,\n"
            "RQ at IoU > 0.5) and the count error."
        ),
        epilog="examples:\n  ps3d evaluate truth.tif labels.tif\n  ps3d evaluate truth.tif labels.tif --json",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("gt", type=Path, metavar="GT", help="ground-truth label image")
    parser.add_argument("pred", type=Path, metavar="PRED", help="predicted label image")
    parser.add_argument("--iou", type=_iou_thresholds, default=(0.5, 0.75), metavar="T[,T...]",
                        help="IoU thresholds in [0.5, 1)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.io import load_labels

    metrics = evaluate_instances(load_labels(args.gt), load_labels(args.pred), iou_thresholds=args.iou)
    if args.json:
        # NaN and infinity are not JSON: they become null
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        print(json.dumps(clean, allow_nan=False))
    else:
        width = max(len(k) for k in metrics)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0


@subcommand
def _report(subparsers):
    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML mineralogy report (and Excel/CSV tables) of a label image",
        description=(
            "Measure every particle of a label image (or read a particle table made by\n"
            "'ps3d measure') and write one HTML file that opens offline: summary, particle-size\n"
            "distribution with d10/d50/d90, shape statistics, phase volumes and liberation\n"
            "(with --phases or --auto-phases), slices with the particles outlined, and the table.\n"
            "--excel and --csv write the same tables for a spreadsheet."
        ),
        epilog=(
            "examples:\n"
            "  ps3d report labels.tif --image scan.tif --auto-phases 2 --excel report.xlsx\n"
            "  ps3d report labels.tif --image scan.tif --phases 'gangue:0:30000,ore:30000:inf'\n"
            "  ps3d report --table particles.csv --output report.html"
        ),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("labels", type=Path, nargs="?", metavar="LABELS",
                        help="label image to measure (0 = background); optional with --table")
    parser.add_argument("--table", type=Path, metavar="TABLE",
                        help="a particle table (.csv or .parquet from 'ps3d measure') to report on "
                             "instead of measuring; LABELS and --image then only give the slices")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan: grey levels, phases, slices (and its stored spacing)")
    _add_spacing(parser, "the scan or label image")
    phases = parser.add_mutually_exclusive_group()
    phases.add_argument("--phases", type=_phase_intervals, metavar="NAME:LO:HI[,...]",
                        help="mineral phases as grey-level intervals [LO, HI) (inf allowed); "
                             "the first one sets the liberation class column")
    phases.add_argument("--auto-phases", type=_phase_count, metavar="N",
                        help="split the particles' grey levels into N phases (2-5) automatically")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="HTML",
                        help="report to write (default: report.html)")
    parser.add_argument("--excel", type=Path, metavar="XLSX",
                        help="also write every table as a sheet of this Excel workbook")
    parser.add_argument("--csv", type=Path, metavar="CSV",
                        help="also write the particle table to this .csv and each other table beside "
                             "it as <name>_<table>.csv")
    parser.add_argument("--title", default="ps3d_toolkit mineralogy report", help="the report's heading")
    _add_quiet(parser)
    parser.set_defaults(run=_run_report)


def _read_table(path: Path):
    import pandas as pd

    from ps3d_toolkit.measurement import TABLE_FORMATS

    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise CLIError(f"unknown table format for {path}: use one of {', '.join(TABLE_FORMATS)}")
    table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    if not {"eq_diameter_mm", "volume_mm3"} <= set(table.columns):
        raise CLIError(f"{path} is not a particle table: it has no eq_diameter_mm and volume_mm3 columns")
    return table


def _run_report(args) -> int:
    import numpy as np

    from ps3d_toolkit.io import load_scan
    from ps3d_toolkit.measurement import measure, propose_phase_thresholds
    from ps3d_toolkit.report import export_tables, write_report

    if args.labels is None and args.table is None:
        raise CLIError("give a label image LABELS to measure, or --table with a particle table")
    phase_option = "--phases" if args.phases else "--auto-phases" if args.auto_phases else None
    if phase_option and args.table is not None:
        raise CLIError(f"{phase_option} applies when measuring LABELS; it cannot be used with --table")
    if phase_option and args.image is None:
        raise CLIError(f"{phase_option} needs --image, the grey values the phases are read from")
    _check_output(args.output, (".html", ".htm"), "report")
    if args.excel is not None:
        _check_excel(args.excel)
    if args.csv is not None:
        _check_output(args.csv, (".csv",), "CSV table")

    spacing, scan, labels, notes = args.spacing, None, None, {}
    if args.image is not None:
        scan = load_scan(args.image, spacing=spacing)
        spacing = scan.spacing
    if args.labels is not None:
        # the label image's own stored spacing serves when neither is given
        stored = load_scan(args.labels, spacing=spacing)
        labels, spacing = np.asarray(stored.image), stored.spacing
        notes["label image"] = str(args.labels)
    if args.table is not None:
        table = _read_table(args.table)
        if spacing is not None:
            table.attrs.setdefault("spacing_mm", tuple(spacing))
        notes["particle table"] = str(args.table)
    else:
        phases = args.phases
        if args.auto_phases:
            phases = propose_phase_thresholds(scan.image, labels, n_phases=args.auto_phases)
        table = measure(labels, image=None if scan is None else scan.image, spacing=spacing, phases=phases,
                        progress=not args.quiet)
    written = {"report": write_report(table, args.output, scan=scan, labels=labels, title=args.title,
                                      notes=notes)}
    if args.excel is not None:
        written["tables (Excel)"] = export_tables(table, args.excel, scan=scan, notes=notes)[0]
    if args.csv is not None:
        paths = export_tables(table, args.csv, scan=scan, notes=notes)
        written["tables (CSV)"] = ", ".join(str(p) for p in paths)
    _say(args, f"{len(table)} particles")
    for what, path in written.items():
        _say(args, f"wrote {what}: {path}")
    return 0


@subcommand
def _convert(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="convert a scan between formats (TIFF, TIFF folder, zarr, NIfTI, npy)",
        description=(
            "Convert a scan, keeping its dtype, spacing and particle size. Formats follow the\n"
            "extensions; zarr input is copied chunk by chunk, so scans larger than memory work."
        ),
        epilog="examples:\n  ps3d convert slices/ scan.zarr --spacing 0.01\n  ps3d convert scan.zarr scan.tif",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="scan to read")
    parser.add_argument("dst", type=Path, metavar="DST", help="scan to write (.tif, .zarr, .nii.gz, .npy)")
    _add_spacing(parser, "SRC")
    _add_quiet(parser)
    parser.set_defaults(run=_run_convert)


def _run_convert(args) -> int:
    from ps3d_toolkit.io import convert

    _check_output(args.dst, _label_formats(), "scan")
    path = convert(args.src, args.dst, spacing=args.spacing, progress=not args.quiet)
    _say(args, f"wrote {path}")
    return 0


deferred_subcommand("train", "train or fine-tune the border-core U-Net ('ps3d train --help')",
                    "ps3d_toolkit.cli.train:add_train_parser")


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``ps3d`` argument parser with every registered subcommand."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Find and measure individual particles in 3D micro-CT scans of mineral samples.\n"
            "Run 'ps3d demo' to try it on the bundled sample, 'ps3d COMMAND --help' for details."
        ),
        epilog="Set PS3D_DEBUG=1 to see a traceback when a command fails.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    for builder in SUBCOMMANDS:
        builder(subparsers)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Run the ``ps3d`` command line; return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 on a usage or input error (one line on stderr).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else 0
    debug = os.environ.get("PS3D_DEBUG", "").strip() not in ("", "0")
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            return _dispatch(args)
        except KeyboardInterrupt:
            if debug:
                raise
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        except (CLIError, ValueError, TypeError, OSError) as error:
            # FileNotFoundError and PermissionError are OSErrors
            if debug:
                raise
            print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
