"""Convert a scan between formats (TIFF, TIFF folder, zarr, NIfTI, npy).

Convert a scan, keeping its dtype, spacing and particle size. Formats follow the
extensions; zarr input is copied chunk by chunk, so scans larger than memory work.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import add_spacing, add_verbosity, check_output, label_formats, say

EXAMPLES = """
ps3d convert slices/ scan.zarr --spacing 0.01
ps3d convert scan.zarr scan.tif
"""


def add_arguments(parser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help="scan to read")
    parser.add_argument("dst", type=Path, metavar="DST", help="scan to write (.tif, .zarr, .nii.gz, .npy)")
    add_spacing(parser, "SRC")
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d convert`` on parsed arguments."""
    from ps3d_toolkit.io import convert

    check_output(args.dst, label_formats(), "scan")
    path = convert(args.src, args.dst, spacing=args.spacing, progress=not args.quiet)
    say(args, f"wrote {path}")
    return 0
