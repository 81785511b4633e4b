"""What the subcommands share: argument types, common options and checks made before any work.

Every value is parsed and checked here, once, at the door: a subcommand hands
the library checked values (a spacing as a 3-tuple of mm, a positive float).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ps3d_toolkit.core.errors import InputError, Ps3dError

__all__ = [
    "CLIError", "HelpFormatter", "add_allow_missing_chunks", "add_force", "add_method", "add_non_finite",
    "add_overwrite", "add_spacing", "add_verbosity", "check_excel", "check_method", "check_output",
    "fraction", "iou_thresholds", "label_formats", "missing_chunks", "non_negative", "phase_count",
    "phase_intervals", "positive", "read_scan_and_labels", "say", "spacing", "uncompressed_bytes", "whole_number",
]

#: Extensions written without compression: their size is known before writing.
UNCOMPRESSED_FORMATS = (".npy", ".nii")


class CLIError(Ps3dError):
    """A user error found by the command line itself (exit code 2)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and examples."""


# --------------------------------------------------------------------------- argument types


def spacing(text: str) -> tuple:
    """``--spacing`` value: one number (isotropic) or three ``z,y,x``, in mm."""
    from ps3d_toolkit.core.checks import check_spacing

    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
        if len(values) not in (1, 3) or not all(0 < v < math.inf for v in values):
            raise ValueError(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be one positive number or three z,y,x separated by commas, in mm; got {text!r}"
        ) from None
    try:
        return check_spacing(values)
    except ValueError as error:  # numbers, but not a voxel size: the check says why
        raise argparse.ArgumentTypeError(str(error)) from None


def positive(text: str) -> float:
    """A positive finite number (the option's name gives its unit)."""
    from ps3d_toolkit.core.checks import check_positive

    try:
        return check_positive(text, "value")
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None


def whole_number(minimum: int):
    """An argument type: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def _number(text: str, accept, words: str) -> float:
    """``text`` as a float that ``accept`` takes, or an argument error saying it must be ``words``."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A share from 0 to 1."""
    return _number(text, lambda value: 0 <= value <= 1, "a number from 0 to 1")


def non_negative(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, lambda value: 0 <= value < math.inf, "a number >= 0")


def iou_thresholds(text: str) -> tuple:
    """``--iou`` value: thresholds in [0.5, 1) separated by commas."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0.5 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be numbers in [0.5, 1) separated by commas, got {text!r}")
    return values


def phase_intervals(text: str) -> dict:
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


def phase_count(text: str) -> int:
    """``--auto-phases`` value: a whole number of phases from 2 to 5."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 2 <= value <= 5:
        raise argparse.ArgumentTypeError(f"must be a whole number of phases from 2 to 5, got {text!r}")
    return value


# --------------------------------------------------------------------------- common options


def add_spacing(parser, what: str) -> None:
    """``--spacing MM``: overrides the spacing stored with ``what``."""
    parser.add_argument(
        "--spacing", type=spacing, metavar="MM",
        help=f"voxel size in mm: one number, or z,y,x (e.g. 0.02,0.01,0.01); "
             f"overrides the spacing stored with {what} and is needed when none is stored",
    )


def add_verbosity(parser) -> None:
    """``-q/--quiet`` (errors only) and ``-v/--verbose`` (the library's debug notes too)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages, only errors")
    group.add_argument("-v", "--verbose", action="store_true", help="also show the library's debug messages")


def add_particle_size(parser, otherwise: str) -> None:
    """``--particle-size MM``: the rough mean particle diameter; ``otherwise`` says what happens without it."""
    parser.add_argument("--particle-size", type=positive, metavar="MM", dest="particle_size_mm",
                        help=f"rough mean particle diameter in mm (default: from the scan's metadata; {otherwise})")


def add_overwrite(parser, what: str = "the output") -> None:
    """``--overwrite``: replace an existing output (never a folder the toolkit did not write)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} when it exists (without it an existing output is refused; "
                             "a folder that ps3d did not write is never replaced)")


def add_allow_missing_chunks(parser) -> None:
    """``--allow-missing-chunks``: read a zarr store's missing chunks as its fill value."""
    parser.add_argument("--allow-missing-chunks", action="store_true",
                        help="read the missing chunks of a zarr store as its fill value (default: refuse "
                             "a store with missing chunks, which usually means an incomplete copy)")


def add_non_finite(parser, masked: str) -> None:
    """``--non-finite {refuse,mask}``: what to do with NaN or infinite grey values; ``masked`` says what mask does."""
    parser.add_argument("--non-finite", choices=("refuse", "mask"), default="refuse",
                        help=f"NaN or infinite grey values: refuse the scan (default, naming how many), "
                             f"or mask them: {masked}")


def roi_text(text: str) -> str:
    """A --roi argument whose form is right (three ranges); the ranges are checked against the scan later."""
    from ps3d_toolkit.segmentation.region import parse_roi

    try:
        parse_roi(text, None)
    except Ps3dError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def check_sample_region(args, shape) -> None:
    """--roi inside the scan and a --mask file that exists, before any work."""
    from ps3d_toolkit.segmentation.region import parse_roi

    if getattr(args, "roi", None) is not None:
        try:
            parse_roi(args.roi, shape)
        except Ps3dError as error:
            raise CLIError(f"--roi: {error}") from None
    mask = getattr(args, "mask", None)
    if mask is not None and mask != "auto" and not Path(mask).exists():
        raise CLIError(f"--mask {mask}: no such file (give a mask image, nonzero = sample, or 'auto')")


def add_sample_region(parser, command: str) -> None:
    """--grains, --roi and --mask: which way round the grains are, and where the sample is."""
    from ps3d_toolkit.segmentation.region import GRAIN_POLARITIES

    group = parser.add_argument_group("the sample")
    if command == "segment":
        group.add_argument("--grains", choices=GRAIN_POLARITIES, default="brighter",
                           help="grains brighter than their matrix (X-ray CT of minerals in epoxy; the default), "
                                "darker (neutron CT of concrete, light minerals in a heavy matrix, pores), or "
                                "auto: decided from the scan, and said which")
    group.add_argument("--roi", type=roi_text, default=None, metavar="Z0:Z1,Y0:Y1,X0:X1",
                       help=f"{command} only this box of voxels (stop excluded; an empty side is the scan's "
                            "edge, e.g. ':,100:400,:'); particles it cuts are flagged as cut")
    group.add_argument("--mask", default=None, metavar="auto|PATH",
                       help=f"{command} only the sample: 'auto' finds the inside of the holder (without its "
                            "wall and the air around it), or a mask image (nonzero = sample); particles it "
                            "cuts are flagged as cut")


def add_force(parser, what: str) -> None:
    """``--force``: go on with a label image that looks like grey values."""
    parser.add_argument("--force", action="store_true",
                        help=f"{what} even when a label image looks like a grey-value scan (too many values, "
                             "neighbours that rarely share one); without it such input is refused at once")


def add_method(parser) -> None:
    """``--method``: one of the segmentation methods, those other packages register included; default
    resolved by :func:`check_method`."""
    from ps3d_toolkit.segmentation.methods import BUILT_IN, method_names

    names = method_names()
    outside = [n for n in names if n not in BUILT_IN]
    parser.add_argument("--method", choices=names, default=None,
                        help="segmentation method (default: the model when its weights ship, otherwise "
                             "otsu-watershed)" + (f"; from other packages: {', '.join(outside)}" if outside else ""))


# --------------------------------------------------------------------------- checks before any work


def check_output(path: Path, formats, what: str, *, inputs=(), overwrite: bool = False,
                 expected_bytes: int | None = None) -> Path:
    """Fail before any work when an output cannot or must not be written.

    Checks the extension (against ``formats``; None: any), then asks
    :func:`ps3d_toolkit.io.check_output_path` whether the output is one of the
    ``inputs``, exists (refused unless ``overwrite``), is a folder the toolkit
    did not write, lies in a folder that cannot be written, or would not fit
    (``expected_bytes``).
    """
    from ps3d_toolkit.io import check_output_path

    name = path.name.lower()
    if formats is not None and not any(name.endswith(ext) for ext in formats):
        raise CLIError(f"unknown {what} format for {path}: use one of {', '.join(formats)}")
    check_output_path(path, inputs=tuple(p for p in inputs if p is not None), overwrite=overwrite,
                      expected_bytes=expected_bytes)
    return path


def uncompressed_bytes(path: Path, voxels: int, itemsize: int) -> int | None:
    """The size of ``voxels`` values written to ``path`` when its format is uncompressed, else None."""
    name = path.name.lower()
    if any(name.endswith(ext) for ext in UNCOMPRESSED_FORMATS):
        return int(voxels) * int(itemsize)
    return None


def missing_chunks(args) -> str:
    """The ``missing_chunks`` of the readers that ``--allow-missing-chunks`` asks for."""
    return "fill" if getattr(args, "allow_missing_chunks", False) else "error"


def label_formats() -> tuple:
    """The extensions a scan or label image can be written to."""
    from ps3d_toolkit.io import SUPPORTED_FORMATS

    return SUPPORTED_FORMATS


def check_method(method):
    """Resolve the default method; refuse the model while no weights ship, and SNOW without porespy."""
    from ps3d_toolkit.segmentation.methods import check_method as resolve
    from ps3d_toolkit.segmentation.model import weights_available

    method = resolve(method)
    if method == "model" and not weights_available():
        raise CLIError(
            "method 'model' needs the trained weights, which this version does not ship yet; "
            "use --method otsu-watershed or --method snow"
        )
    return method


def check_excel(path: Path, *, inputs=(), overwrite: bool = False) -> Path:
    """Fail before any work when a workbook cannot or must not be written (see :func:`check_output`)."""
    check_output(path, (".xlsx",), "Excel workbook", inputs=inputs, overwrite=overwrite)
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise CLIError("writing an Excel workbook needs openpyxl: pip install openpyxl") from None
    return path


# --------------------------------------------------------------------------- reading and saying


#: The record ``ps3d segment`` writes beside its labels: ``<labels>.ps3d.json``.
RECORD_SUFFIX = ".ps3d.json"


def record_path(labels_path) -> Path:
    """Where the record of how a label image was made lies: ``labels.tif`` -> ``labels.tif.ps3d.json``."""
    path = Path(labels_path)
    return path.with_name(path.name.rstrip("/") + RECORD_SUFFIX)


def write_record(labels_path, record: dict) -> Path:
    """Write, atomically, how ``ps3d segment`` made a label image (method, grains, sample region)."""
    import json

    from ps3d_toolkit.core.atomic import atomic_path

    path = record_path(labels_path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_record(labels_path) -> dict:
    """The record beside a label image ({} when there is none or it cannot be read)."""
    import json

    if labels_path is None:
        return {}
    try:
        record = json.loads(record_path(labels_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def sample_region_options(args, scan, shape) -> tuple:
    """The ``roi`` and ``mask`` to measure in (each None when not given), checked before any work.

    Without --roi and --mask, those ``ps3d segment`` recorded beside the labels are used (an
    automatic mask when the scan is given). ``--mask auto`` is found on the scan, so it needs
    ``--image``. :func:`~ps3d_toolkit.measurement.measure` and the report resolve the region
    from them, as :func:`~ps3d_toolkit.segmentation.segment` does.
    """
    roi, mask = getattr(args, "roi", None), getattr(args, "mask", None)
    if roi is None and mask is None:
        record = read_record(getattr(args, "labels", None))
        roi = record.get("roi")
        mask = record.get("mask")
        if mask == "auto" and scan is None or mask not in (None, "auto") and not Path(mask).exists():
            mask = None
        if roi is not None or mask is not None:
            say(args, f"the sample region {record_path(args.labels).name} records: "
                      + " ".join(f"--{k} {v}" for k, v in (("roi", roi), ("mask", mask)) if v is not None))
            args.roi, args.mask = roi, mask
    if mask == "auto" and scan is None:
        raise CLIError("--mask auto finds the sample in the grey values: give the scan with --image")
    check_sample_region(args, shape)
    return roi, mask


def read_scan_and_labels(image_path, labels_path, spacing, *, missing_chunks: str = "error"):
    """Read the grey-value scan and the label image a command was given (either may be None).

    The spacing comes from ``--spacing``, else the scan's stored one, else the
    label image's stored one. Without ``--spacing``, labels that store another
    spacing than the scan are refused (they were made on another grid, or the
    scan's metadata is wrong). ``missing_chunks`` goes to the readers.

    Returns
    -------
    scan : ps3d_toolkit.io.Scan or None
    labels : np.ndarray or None
    spacing : tuple of 3 float or None
    """
    import numpy as np

    from ps3d_toolkit.io import load_scan

    scan = labels = None
    given = spacing
    if image_path is not None:
        scan = load_scan(image_path, spacing=spacing, missing_chunks=missing_chunks)
        spacing = scan.spacing
    if labels_path is not None:
        stored = _labels_on_the_grid(labels_path, spacing, given=scan is None or given is not None,
                                     missing_chunks=missing_chunks)
        if not np.allclose(stored.spacing, spacing or stored.spacing, rtol=1e-5, atol=0):
            raise CLIError(f"the labels {labels_path} store the spacing {tuple(stored.spacing)} mm, the scan "
                           f"{image_path} {tuple(spacing)} mm: were the labels made from this scan? Pass --spacing "
                           "to measure on one of them")
        labels, spacing = np.asarray(stored.image), stored.spacing
    return scan, labels, spacing


def _labels_on_the_grid(path, spacing, *, given: bool, missing_chunks: str):
    """The label image with its own stored spacing; ``spacing`` when it stores none or was given."""
    from ps3d_toolkit.io import load_scan

    if given or spacing is None:
        return load_scan(path, spacing=spacing, missing_chunks=missing_chunks)
    try:
        return load_scan(path, missing_chunks=missing_chunks)
    except InputError:  # no spacing stored with the labels: the scan's
        return load_scan(path, spacing=spacing, missing_chunks=missing_chunks)


def command_line(name: str) -> str:
    """The running command as ``ps3d NAME ARGS``, shell-quoted: what a run records of how it was made.

    ``sys.argv`` lacks the subcommand when the module is run another way; it is then put in.
    """
    import shlex
    import sys

    words = sys.argv[1:]
    if words[:1] != [name]:
        words = [name, *words]
    return "ps3d " + " ".join(shlex.quote(word) for word in words)


def say(args, message: str) -> None:
    """Print a result line on stdout unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message)
