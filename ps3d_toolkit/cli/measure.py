"""Measure every particle of a label image into a table (CSV or Parquet).

Measure every particle of a label image: volume, equivalent diameter, centroid,
bounding box, shape and, with --image, grey values (and, with --extra-image
NAME=PATH, the same grey-value columns of more registered images, named
intensity_NAME_*), and with --phases or --auto-phases the phase fractions and
liberation classes. One row per particle. With --roi or --mask only the sample
region is measured, as 'ps3d segment' takes it, and the particles it cuts are
flagged.
A label image that looks like a grey-value scan (given by mistake) is refused
at once unless --force; NaN or infinite grey values are refused unless
--non-finite mask.
"""

from __future__ import annotations

import logging
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
    fraction,
    missing_chunks,
    phase_count,
    phase_intervals,
    read_scan_and_labels,
    sample_region_options,
    say,
)

EXAMPLES = """
ps3d measure labels.tif --image scan.tif --output particles.csv
ps3d measure labels.tif --image xray.tif --extra-image neutron=neutron.tif --output particles.csv
ps3d measure labels.tif --image scan.tif --mask auto --output particles.csv   (particles the mask cuts flagged)
ps3d measure labels.tif --image scan.tif --auto-phases 3 --phase-names epoxy_rim,quartz,magnetite -o particles.csv
"""


logger = logging.getLogger("ps3d_toolkit.cli.measure")


def add_arguments(parser) -> None:
    parser.add_argument("labels", type=Path, metavar="LABELS", help="label image (0 = background)")
    parser.add_argument("--image", type=Path, metavar="SCAN",
                        help="the grey-value scan, for intensity columns (and its stored spacing)")
    parser.add_argument("--extra-image", action="append", default=[], metavar="NAME=PATH", dest="extra_image",
                        help="another grey-value image on the labels' grid (e.g. neutron=neutron.tif), for "
                             "intensity_NAME_* columns; repeatable")
    add_measure_options(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="TABLE",
                        help="table to write: .csv or .parquet")
    add_overwrite(parser, "--output")
    add_verbosity(parser)


def add_measure_options(parser, *, table: bool = False) -> None:
    """What measuring a label image takes, in ``ps3d measure`` and ``ps3d report`` alike (``table``: the
    report's, which can also read a table): spacing, phases, the sample region, grey-value checks."""
    add_spacing(parser, "the scan or label image")
    add_phase_arguments(parser, table=table)
    add_sample_region(parser, "measure")
    add_non_finite(parser, "left out of every grey-value column and phase fraction (all NaN for a particle "
                           "without a finite value)")
    add_force(parser, "measure")
    add_allow_missing_chunks(parser)


def add_phase_arguments(parser, *, table: bool = False) -> None:
    """--phases, --auto-phases, --phase-names and --min-phase-fraction (``table``: as ``ps3d report --table`` has it)."""
    phases = parser.add_mutually_exclusive_group()
    phases.add_argument("--phases", type=phase_intervals, metavar="NAME:LO:HI[,...]",
                        help="mineral phases as grey-level intervals [LO, HI) (inf allowed); each gets a "
                             "liberation_<name> column")
    phases.add_argument("--auto-phases", type=phase_count, metavar="N",
                        help="split the particles' grey levels into N phases (2-5) automatically")
    parser.add_argument("--phase-names", metavar="NAME[,...]",
                        help="names of the --auto-phases phases, darkest first (e.g. quartz,magnetite)"
                             + (", or new names for the phases of --table" if table else "")
                             + "; default phase_1, phase_2, ... (the report describes them by their grey values)")
    parser.add_argument("--min-phase-fraction", type=fraction, metavar="F",
                        help="a phase filling less than this share of a particle is absent from it (the "
                             "particle is barren in it; default 0.02: partial-volume voxels at a grain's edge)")


def check_phase_options(args) -> None:
    """The phase options: with what they apply to (--image; not --table), --phase-names checked."""
    from ps3d_toolkit.measurement.inputs import auto_phase_names

    table = getattr(args, "table", None)
    phase_option = "--phases" if args.phases else "--auto-phases" if args.auto_phases else None
    if phase_option and table is not None:
        raise CLIError(f"{phase_option} applies when measuring LABELS; it cannot be used with --table")
    if phase_option and args.image is None:
        raise CLIError(f"{phase_option} needs --image, the grey values the phases are read from")
    if args.min_phase_fraction is not None and table is not None:
        raise CLIError("--min-phase-fraction applies when measuring LABELS; it cannot be used with --table")
    if args.phase_names is None:
        return
    if args.phases:
        raise CLIError("--phase-names names the phases of --auto-phases or --table; --phases names its own")
    if not args.auto_phases and table is None:
        raise CLIError("--phase-names needs --auto-phases N" + (" (or --table with phases to rename)"
                                                                 if hasattr(args, "table") else ""))
    names = [n.strip() for n in args.phase_names.split(",")]
    if args.auto_phases and len(names) != args.auto_phases:
        raise CLIError(f"--phase-names: give {args.auto_phases} names for --auto-phases {args.auto_phases}, "
                       f"got {len(names)}")
    try:
        args.phase_names = auto_phase_names("auto", names) if args.auto_phases else names
    except ValueError as error:
        raise CLIError(f"--phase-names: {error}") from None


def phase_options(args) -> dict:
    """:func:`~ps3d_toolkit.measurement.measure`'s phase keywords from the checked options."""
    from ps3d_toolkit.measurement.intensity import phase_names

    options = {}
    if args.phases:
        options["phases"] = args.phases
    elif args.auto_phases:
        options.update(phases="auto", phase_names=args.phase_names or phase_names(args.auto_phases))
    if args.min_phase_fraction is not None:
        options["min_phase_fraction"] = args.min_phase_fraction
    return options


def run(args) -> int:
    """Run ``ps3d measure`` on parsed arguments."""
    from ps3d_toolkit.io import TABLE_FORMATS, save_table
    from ps3d_toolkit.measurement import measure

    extra_paths = _parse_extra_images(args.extra_image)
    check_phase_options(args)
    check_output(args.output, TABLE_FORMATS, "table", inputs=(args.labels, args.image, *extra_paths.values()),
                 overwrite=args.overwrite)
    scan, labels, spacing = read_scan_and_labels(args.image, args.labels, args.spacing,
                                                 missing_chunks=missing_chunks(args))
    extra_images = None
    if extra_paths:
        from ps3d_toolkit.io import load_scan

        extra_images = {name: load_scan(path, spacing=spacing, missing_chunks=missing_chunks(args)).image
                        for name, path in extra_paths.items()}
    roi, mask = sample_region_options(args, scan, labels.shape)
    table = measure(labels, image=None if scan is None else scan.image, spacing=spacing, roi=roi, mask=mask,
                    non_finite=args.non_finite, force=args.force, progress=not args.quiet,
                    extra_images=extra_images, confidence=saved_confidence(args), **phase_options(args))
    if "sample_region" in table.attrs:
        say(args, f"sample region: {table.attrs['sample_region']}")
    path = save_table(table, args.output)
    say(args, f"{len(table)} particles; wrote {path}")
    return 0


def saved_confidence(args):
    """The per-particle confidences ``ps3d segment --quality`` saved beside LABELS (None when there are none)."""
    from ps3d_toolkit.segmentation.assess import read_confidence

    confidence = read_confidence(getattr(args, "labels", None))
    if confidence is not None:
        logger.info("confidence per particle from %s", args.labels)
    return confidence


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
