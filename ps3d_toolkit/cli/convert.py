"""Convert a scan to another format (reads TIFF, a TIFF folder, zarr, NIfTI, npy).

Convert a scan, keeping its dtype, spacing and particle size. SRC may be a
.tif, a folder of 2D TIFF slices, .zarr, .nii(.gz) or .npy; DST is one file or
zarr store (.tif, .zarr, .nii.gz, .npy), its extension naming the format. A
folder of slices is read, not written: write one multi-page .tif instead.
zarr input is copied chunk by chunk, so scans larger than memory work.
DST is checked before any work: not SRC itself, not an existing file unless
--overwrite, writable, and for .npy/.nii room for the uncompressed scan.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (
    CLIError,
    add_allow_missing_chunks,
    add_overwrite,
    add_spacing,
    add_verbosity,
    check_output,
    label_formats,
    missing_chunks,
    say,
    uncompressed_bytes,
)

EXAMPLES = """
ps3d convert slices/ scan.zarr --spacing 0.01
ps3d convert scan.zarr scan.tif
ps3d convert data/sample/scan.tif sample.zarr
"""


def add_arguments(parser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help="scan to read")
    parser.add_argument("dst", type=Path, metavar="DST",
                        help="scan to write, one file or store (.tif, .zarr, .nii.gz, .npy); not a folder of slices")
    add_spacing(parser, "SRC")
    add_overwrite(parser, "DST")
    add_allow_missing_chunks(parser)
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d convert`` on parsed arguments: what :func:`ps3d_toolkit.io.convert` does, checked at each step."""
    import numpy as np

    from ps3d_toolkit.io import load_scan, save_scan

    _refuse_a_folder_of_slices(args.dst)
    check_output(args.dst, label_formats(), "scan", inputs=(args.src,), overwrite=args.overwrite)
    scan = load_scan(args.src, spacing=args.spacing, missing_chunks=missing_chunks(args))
    size = uncompressed_bytes(args.dst, scan.image.size, np.dtype(scan.image.dtype).itemsize)
    if size is not None:
        # zarr input is read lazily: its size is known before the copy
        check_output(args.dst, None, "scan", inputs=(args.src,), overwrite=args.overwrite, expected_bytes=size)
    path = save_scan(scan.image, args.dst, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                     progress=not args.quiet)
    say(args, f"wrote {path}")
    return 0


def _refuse_a_folder_of_slices(dst: Path) -> None:
    """Say why a DST without an extension (a folder, as for TIFF slices) is refused."""
    if not dst.suffix:
        raise CLIError(f"{dst} has no extension, so it names a folder: ps3d convert reads a folder of TIFF "
                       f"slices but writes one file or zarr store; name one with its format, e.g. "
                       f"{dst.with_suffix('.tif').name} (one multi-page TIFF) or {dst.with_suffix('.zarr').name}")
