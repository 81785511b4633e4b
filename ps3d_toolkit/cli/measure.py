"""``ps3d measure``: a label image in, one table row per particle out."""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import HelpFormatter, add_spacing, add_verbosity, check_output, read_scan_and_labels, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    """Add ``measure`` to the ``ps3d`` subparsers."""
    parser = subparsers.add_parser(
        "measure",
        help="measure every particle of a label image into a table (CSV or Parquet)",
        description=(
            "Measure every particle of a label image: volume, equivalent diameter, centroid,\n"
            "bounding box, shape and, with --image, grey values. One row per particle."
        ),
        epilog="example:\n  ps3d measure labels.tif --image scan.tif --output particles.csv",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("labels", type=Path, metavar="LABELS", help="label image (0 = background)")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan, for intensity columns (and its stored spacing)")
    add_spacing(parser, "the scan or label image")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TABLE",
                        help="table to write: .csv or .parquet")
    add_verbosity(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    """Run ``ps3d measure`` on parsed arguments."""
    from ps3d_toolkit.io import TABLE_FORMATS, save_table
    from ps3d_toolkit.measurement import measure

    check_output(args.output, TABLE_FORMATS, "table")
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing)
    table = measure(labels, image=None if scan is None else scan.image, spacing=spacing, progress=not args.quiet)
    path = save_table(table, args.output)
    say(args, f"{len(table)} particles; wrote {path}")
    return 0
