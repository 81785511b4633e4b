"""Measure every particle of a label image into a table (CSV or Parquet).

Measure every particle of a label image: volume, equivalent diameter, centroid,
bounding box, shape and, with --image, grey values. One row per particle.
A label image that looks like a grey-value scan (given by mistake) is refused
at once unless --force; NaN or infinite grey values are refused unless
--non-finite mask.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (add_allow_missing_chunks, add_force, add_non_finite, add_overwrite,
                                   add_spacing, add_verbosity, check_output, missing_chunks,
                                   read_scan_and_labels, say)

EXAMPLES = """
ps3d measure labels.tif --image scan.tif --output particles.csv
"""


def add_arguments(parser) -> None:
    parser.add_argument("labels", type=Path, metavar="LABELS", help="label image (0 = background)")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan, for intensity columns (and its stored spacing)")
    add_spacing(parser, "the scan or label image")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TABLE",
                        help="table to write: .csv or .parquet")
    add_overwrite(parser, "--output")
    add_non_finite(parser, "left out of every grey-value column (all NaN for a particle without a finite value)")
    add_force(parser, "measure")
    add_allow_missing_chunks(parser)
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d measure`` on parsed arguments."""
    from ps3d_toolkit.io import TABLE_FORMATS, save_table
    from ps3d_toolkit.measurement import measure

    check_output(args.output, TABLE_FORMATS, "table", inputs=(args.labels, args.image), overwrite=args.overwrite)
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing,
                                                 missing_chunks=missing_chunks(args))
    table = measure(labels, image=None if scan is None else scan.image, spacing=spacing,
                    non_finite=args.non_finite, force=args.force, progress=not args.quiet)
    path = save_table(table, args.output)
    say(args, f"{len(table)} particles; wrote {path}")
    return 0
