"""``ps3d convert``: a scan from one format to another, chunk by chunk."""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import HelpFormatter, add_spacing, add_verbosity, check_output, label_formats, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> None:
    """Add ``convert`` to the ``ps3d`` subparsers."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a scan between formats (TIFF, TIFF folder, zarr, NIfTI, npy)",
        description=(
            "Convert a scan, keeping its dtype, spacing and particle size. Formats follow the\n"
            "extensions; zarr input is copied chunk by chunk, so scans larger than memory work."
        ),
        epilog="examples:\n  ps3d convert slices/ scan.zarr --spacing 0.01\n  ps3d convert scan.zarr scan.tif",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="scan to read")
    parser.add_argument("dst", type=Path, metavar="DST", help="scan to write (.tif, .zarr, .nii.gz, .npy)")
    add_spacing(parser, "SRC")
    add_verbosity(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    """Run ``ps3d convert`` on parsed arguments."""
    from ps3d_toolkit.io import convert

    check_output(args.dst, label_formats(), "scan")
    path = convert(args.src, args.dst, spacing=args.spacing, progress=not args.quiet)
    say(args, f"wrote {path}")
    return 0
