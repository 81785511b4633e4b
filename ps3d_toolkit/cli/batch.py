"""``ps3d segment DIR --output OUTDIR``: every scan of a folder or of a ParticleSeg3D dataset.

Each scan goes through the same code as ``ps3d segment FILE`` (the ``segment_one`` that
:func:`ps3d_toolkit.cli.segment.run` hands in, with the scan and its own output put in), with its own
metadata: a scan of a
ParticleSeg3D dataset finds its entry in ``<dataset>/metadata.json`` (spacing,
and ``particle_size`` unless ``--particle-size`` is given), any other scan what
:func:`~ps3d_toolkit.io.load_scan` finds. A scan that fails is reported and the
next one is done; the run ends with a table (scan, particles, seconds, status)
on stdout, written as ``OUTDIR/summary.csv`` too, and exit code 0 when every
scan was segmented, 2 when one failed on its input or output, 1 when one hit a
bug. Every failure is also a warning line on stderr, with ``--quiet`` too.

The toolkit's own outputs in the folder are never taken as scans: anything with a
``.ps3d.json`` record beside it, a folder holding a ``summary.csv``, and a label store the
toolkit wrote (its OME-Zarr ``multiscales`` of type ``nearest``). An ``--output`` folder inside
the scan folder (or the scan folder itself) is refused unless it is empty.

Output layouts (``--output-layout``): ``toolkit`` writes ``OUTDIR/<name>.ome.zarr``;
``particleseg3d`` writes ``OUTDIR/<name>/<name>.zarr``, a zarr v2 array, as
ParticleSeg3D's ``ps3d_inference`` does.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import time
from pathlib import Path

from ps3d_toolkit.cli.args import RECORD_SUFFIX, CLIError, say
from ps3d_toolkit.cli.messages import one_line

logger = logging.getLogger("ps3d_toolkit.cli.batch")

LAYOUTS = ("toolkit", "particleseg3d")
#: Extension of each scan's labels in the ``toolkit`` layout.
TOOLKIT_SUFFIX = ".ome.zarr"
SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("scan", "particles", "seconds", "status", "error", "output")
# exit codes, as ps3d_toolkit.cli.app gives them for one scan
_EXIT_INPUT, _EXIT_BUG = 2, 1
_SCAN_FILE_SUFFIXES = (".tif", ".tiff", ".npy", ".nii", ".nii.gz", ".zarr")


def add_output_layout(parser) -> None:
    """``--output-layout {toolkit,particleseg3d}``: where a folder's labels go."""
    parser.add_argument("--output-layout", choices=LAYOUTS, default=None,
                        help="with a folder of scans or a ParticleSeg3D dataset as SCAN: toolkit writes "
                             "OUTDIR/<name>.ome.zarr (default), particleseg3d writes OUTDIR/<name>/<name>.zarr "
                             "(zarr v2), as ParticleSeg3D's ps3d_inference does")
    parser.add_argument("--scans", default=None, metavar="NAME[,NAME...]",
                        help="with a folder of scans or a ParticleSeg3D dataset as SCAN: only these scans "
                             "(ParticleSeg3D's -n)")


def run_if_folder(args, segment_one) -> int | None:
    """Segment every scan when ``args.scan`` is a folder of scans (see :func:`is_batch`); None for one scan.

    ``segment_one(args)`` segments one scan (``ps3d segment``'s own ``run``) and returns its exit code.

    Raises
    ------
    CLIError
        When ``--output-layout`` is given for a single scan.
    """
    if is_batch(args):
        return run(args, segment_one)
    if getattr(args, "output_layout", None) is not None:
        raise CLIError(f"--output-layout applies to a folder of scans; {args.scan} is one scan")
    return None


def is_batch(args) -> bool:
    """Whether ``args.scan`` is a folder of scans (or a ParticleSeg3D dataset) rather than one scan.

    A zarr store is one scan. A folder holding only TIFF files is one scan (a
    folder of slices) when ``--output`` names a label file (``.tif``, ``.zarr``,
    ...), and a folder of 3D TIFF scans otherwise.
    """
    from ps3d_toolkit.io._formats import read_format
    from ps3d_toolkit.io.particleseg3d import is_particleseg3d_dataset

    path = Path(args.scan).expanduser()
    if not path.is_dir() or read_format(path) == "zarr":
        return False
    if is_particleseg3d_dataset(path):
        return True
    entries = _scan_entries(path, exclude=None)
    if any(not _is_tiff(entry) for entry in entries):
        return True
    return not _names_label_file(Path(args.output))


def run(args, segment_one) -> int:
    """Segment every scan of the folder ``args.scan`` into the folder ``args.output`` with ``segment_one``."""
    from ps3d_toolkit.io._formats import stem
    from ps3d_toolkit.io.particleseg3d import is_particleseg3d_dataset, list_scans, scan_path

    folder, out = Path(args.scan).expanduser(), Path(args.output).expanduser()
    if _names_label_file(out):
        raise CLIError(f"{folder} is a folder of scans: --output must be a folder for their labels, got {out}")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--output {out} exists and is not a folder")
    _check_not_inside(out, folder)
    if getattr(args, "resume", False) and getattr(args, "chunk_size", None) is None:
        raise CLIError("--resume continues a chunked run: give the --chunk-size of the interrupted run")
    if is_particleseg3d_dataset(folder):
        scans = [(name, scan_path(folder, name)) for name in list_scans(folder)]
        kind = "ParticleSeg3D dataset"
    else:
        scans = [(stem(entry), entry) for entry in _scan_entries(folder, exclude=out)]
        kind = "folder"
    if not scans:
        raise CLIError(_no_scans(folder))
    scans = _chosen(scans, getattr(args, "scans", None), folder)
    layout = args.output_layout or "toolkit"
    say(args, f"{kind} {folder}: {len(scans)} scan(s) -> {out} ({layout} layout)")
    rows, seen = [], set()
    for name, path in scans:
        target = _target(out, name, layout)
        if name in seen:
            rows.append(_row(name, None, 0.0, "failed", f"another scan is also named {name!r}: {path.name} "
                                                      "is skipped", None, _EXIT_INPUT))
            continue
        seen.add(name)
        rows.append(_segment_one(segment_one, args, name, path, target, layout))
    _write_summary(rows, out / SUMMARY_FILE)
    if not getattr(args, "quiet", False):
        print(_table(rows))
    failed = [row for row in rows if row["status"] != "ok"]
    for row in failed:  # on stderr whatever the verbosity: a run left overnight must say what failed
        logger.warning("scan %s failed: %s", row["scan"], row["error"])
    say(args, f"{len(rows) - len(failed)} of {len(rows)} scans segmented; summary: {out / SUMMARY_FILE}")
    if not failed:
        return 0
    return _EXIT_BUG if any(row["_code"] == _EXIT_BUG for row in failed) else _EXIT_INPUT


def _segment_one(segment_one, args, name: str, path: Path, target: Path, layout: str) -> dict:
    """One scan through ``segment_one``; a failure becomes a row of the summary, not an exception."""
    from ps3d_toolkit.core.errors import Ps3dError

    one = copy.copy(args)
    one.scan, one.output, one.output_layout = path, target, None
    one.zarr_format = 2 if layout == "particleseg3d" else None
    start = time.perf_counter()
    try:
        code = segment_one(one)
    except KeyboardInterrupt:
        raise
    except (Ps3dError, OSError) as error:  # the scan, its metadata or the file system: next scan
        return _failed(name, start, error, _EXIT_INPUT)
    except Exception as error:  # noqa: BLE001 - a bug on this scan: reported, the others still run
        logger.debug("scan %s", name, exc_info=True)
        return _failed(name, start, error, _EXIT_BUG)
    seconds = time.perf_counter() - start
    if code:
        return _row(name, None, seconds, "failed", f"exit code {code}", None, _EXIT_INPUT)
    try:
        particles = _particle_count(target)
    except Exception as error:  # noqa: BLE001 - the labels are written; only the count is missing
        logger.debug("cannot count the particles of %s: %s", target, error)
        particles = None
    return _row(name, particles, seconds, "ok", "", target, 0)


def _chosen(scans: list, names, folder: Path) -> list:
    """The scans ``--scans`` names (all without it), in the folder's order; an unknown name is refused."""
    if names is None:
        return scans
    wanted = [n.strip() for n in str(names).split(",") if n.strip()]
    known = [name for name, _ in scans]
    unknown = [n for n in wanted if n not in known]
    if not wanted or unknown:
        raise CLIError(f"--scans {names}: {folder} has no scan {', '.join(map(repr, unknown)) or 'named'}; "
                       f"its scans: {', '.join(known)}")
    return [(name, path) for name, path in scans if name in wanted]


def _failed(name: str, start: float, error: Exception, code: int) -> dict:
    message = one_line(error)
    if code == _EXIT_BUG:
        message = f"internal error: {type(error).__name__}: {message}"
    return _row(name, None, time.perf_counter() - start, "failed", message, None, code)


def _row(name, particles, seconds, status, error, output, code) -> dict:
    return {"scan": name, "particles": particles, "seconds": round(seconds, 2), "status": status,
            "error": error, "output": "" if output is None else str(output), "_code": code}


def _particle_count(target: Path) -> int:
    """Particles in the labels written: the count stored with them, else the largest label, a slab at a time."""
    import numpy as np

    from ps3d_toolkit.io import load_scan

    labels = load_scan(target).image  # lazy; the writers store the spacing with the labels
    stored = getattr(labels, "attrs", {}).get("n_particles")
    if stored is not None:
        return int(stored)
    step = 64
    return int(max((np.asarray(labels[z:z + step]).max(initial=0) for z in range(0, labels.shape[0], step)),
                   default=0))


def _target(out: Path, name: str, layout: str) -> Path:
    from ps3d_toolkit.io.particleseg3d import particleseg3d_labels_path

    return particleseg3d_labels_path(out, name) if layout == "particleseg3d" else out / f"{name}{TOOLKIT_SUFFIX}"


def _write_summary(rows: list, path: Path) -> None:
    from ps3d_toolkit.core.atomic import atomic_path

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "particles": "" if row["particles"] is None else row["particles"]} for row in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _table(rows: list) -> str:
    """The summary as an aligned text table: scan, particles, seconds, status (the error when failed)."""
    lines = [("scan", "particles", "seconds", "status")]
    for row in rows:
        status = "ok" if row["status"] == "ok" else f"failed: {row['error']}"
        lines.append((row["scan"], "" if row["particles"] is None else str(row["particles"]),
                      f"{row['seconds']:.1f}", status))
    widths = [max(len(line[i]) for line in lines) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in lines)


def _is_tiff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".tif", ".tiff")


def _names_label_file(path: Path) -> bool:
    from ps3d_toolkit.io import SUPPORTED_FORMATS

    return any(path.name.lower().endswith(ext) for ext in SUPPORTED_FORMATS)


def _scan_entries(folder: Path, exclude: Path | None) -> list:
    """The scans of a plain folder, in natural order: scan files, zarr stores and folders of TIFF slices."""
    from ps3d_toolkit.io._formats import read_format
    from ps3d_toolkit.io.readers import _natural_key

    excluded = None if exclude is None else exclude.resolve()
    found = []
    for entry in folder.iterdir():
        if entry.name.startswith(".") or (excluded is not None and entry.resolve() == excluded):
            continue
        if _toolkit_output(entry):
            logger.debug("%s is an output of ps3d_toolkit, not a scan: skipped", entry)
            continue
        name = entry.name.lower()
        if entry.is_dir():
            if name.endswith(".zarr") or read_format(entry) == "zarr" or any(map(_is_tiff, entry.iterdir())):
                found.append(entry)
        elif any(name.endswith(ext) for ext in _SCAN_FILE_SUFFIXES):
            found.append(entry)
    return sorted(found, key=_natural_key)


def _toolkit_output(entry: Path) -> bool:
    """Whether ``entry`` is something the toolkit wrote as a result, never a scan: labels with their
    ``.ps3d.json`` record beside them, a batch's output folder (it holds ``summary.csv``), or a
    label store (the toolkit's mark, and a ``nearest`` pyramid: label values are never averaged)."""
    if entry.with_name(entry.name + RECORD_SUFFIX).exists() or entry.name.endswith(RECORD_SUFFIX):
        return True
    if not entry.is_dir():
        return False
    if (entry / SUMMARY_FILE).is_file():
        return True
    attrs = _zarr_attributes(entry)
    if not str(attrs.get("written_by", "")).startswith("ps3d_toolkit"):
        return False
    scales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales") or [{}]
    return "image-label" in attrs or "n_particles" in attrs or (
        isinstance(scales, list) and isinstance(scales[0], dict) and scales[0].get("type") == "nearest")


def _zarr_attributes(folder: Path) -> dict:
    """The root attributes of a zarr store (v2 ``.zattrs`` or v3 ``zarr.json``); {} for anything else."""
    for name in (".zattrs", "zarr.json"):
        try:
            meta = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            return meta.get("attributes", {}) if name == "zarr.json" else meta
    return {}


def _check_not_inside(out: Path, folder: Path) -> None:
    """Refuse an output folder that is, or lies inside, the scan folder, unless it is empty.

    Its labels would otherwise sit among the scans, for the next run to find.
    """
    inside = out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents
    if inside and out.exists() and any(out.iterdir()):
        raise CLIError(f"--output {out} lies inside the scan folder {folder} and is not empty; choose an output "
                       f"folder outside {folder}, or an empty one")


def _no_scans(folder: Path) -> str:
    """Why a folder gives no scans, and what to do; a ParticleSeg3D dataset without its metadata says so."""
    from ps3d_toolkit.io.particleseg3d import IMAGES_FOLDER, METADATA_FILE

    images = folder / IMAGES_FOLDER
    if images.is_dir() and not (folder / METADATA_FILE).is_file():
        return (f"{folder} looks like a ParticleSeg3D dataset ({IMAGES_FOLDER}/) but has no {METADATA_FILE} "
                f"with each scan's spacing and particle_size; add it, or segment {images} as a folder of scans")
    return (f"{folder} holds no scans ({', '.join(_SCAN_FILE_SUFFIXES)} or folders of TIFF slices); give a "
            "folder of scans, or one scan")
