"""Measure every particle of a label image into a table (CSV or Parquet).

Measure every particle of a label image: volume, equivalent diameter, centroid,
bounding box, shape and, with --image, grey values (and, with --extra-image
NAME=PATH, the same grey-value columns of more registered images, named
intensity_NAME_*). One row per particle.
A label image that looks like a grey-value scan (given by mistake) is refused
at once unless --force; NaN or infinite grey values are refused unless
--non-finite mask.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (
    CLIError,
    add_allow_missing_chunks,
    add_force,
    add_non_finite,
    add_overwrite,
    add_sample_region,
    add_spacing,
    add_verbosity,
    check_output,
    missing_chunks,
    read_scan_and_labels,
    restrict_to_sample_region,
    say,
)

EXAMPLES = """
ps3d measure labels.tif --image scan.tif --output particles.csv
ps3d measure labels.tif --image xray.tif --extra-image neutron=neutron.tif --output particles.csv
ps3d measure labels.tif --image scan.tif --mask auto --output particles.csv   (particles the mask cuts flagged)
"""


def add_arguments(parser) -> None:
    parser.add_argument("labels", type=Path, metavar="LABELS", help="label image (0 = background)")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan, for intensity columns (and its stored spacing)")
    parser.add_argument("--extra-image", action="append", default=[], metavar="NAME=PATH", dest="extra_image",
                        help="another grey-value image on the labels' grid (e.g. neutron=neutron.tif), for "
                             "intensity_NAME_* columns; repeatable")
    add_spacing(parser, "the scan or label image")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TABLE",
                        help="table to write: .csv or .parquet")
    add_overwrite(parser, "--output")
    add_non_finite(parser, "left out of every grey-value column (all NaN for a particle without a finite value)")
    add_force(parser, "measure")
    add_sample_region(parser, "measure")
    add_allow_missing_chunks(parser)
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d measure`` on parsed arguments."""
    from ps3d_toolkit.io import TABLE_FORMATS, save_table
    from ps3d_toolkit.measurement import measure

    extra_paths = _parse_extra_images(args.extra_image)
    check_output(args.output, TABLE_FORMATS, "table", inputs=(args.labels, args.image, *extra_paths.values()),
                 overwrite=args.overwrite)
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing,
                                                 missing_chunks=missing_chunks(args))
    extra_images = None
    if extra_paths:
        from ps3d_toolkit.io import load_scan

        extra_images = {name: load_scan(path, spacing=spacing, missing_chunks=missing_chunks(args)).image
                        for name, path in extra_paths.items()}
    labels, region = restrict_to_sample_region(args, scan, labels, spacing)
    table = measure(labels, image=None if scan is None else scan.image, spacing=spacing, fov_mask=region,
                    non_finite=args.non_finite, force=args.force, progress=not args.quiet,
                    extra_images=extra_images)
    path = save_table(table, args.output)
    say(args, f"{len(table)} particles; wrote {path}")
    return 0


def _parse_extra_images(values) -> dict:
    """``{name: Path}`` from ``--extra-image NAME=PATH`` values, in order; a name given twice is refused."""
    images = {}
    for value in values:
        name, sep, path = value.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise CLIError(f"--extra-image takes NAME=PATH (e.g. neutron=neutron.tif), got {value!r}")
        if name in images:
            raise CLIError(f"--extra-image names must differ; {name!r} is given twice")
        images[name] = Path(path)
    return images
