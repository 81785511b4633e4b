"""The work folder of a chunked run: blocks' local labels, shells, windows and the ledger.

``<output>.ps3d-work/`` beside the output (a temporary folder without one):

- ``labels.zarr``: each finished block's core with its local ids (chunks = blocks,
  so that blocks written by different workers never share a chunk);
- ``shells/<block>.npz``: its labels over earlier blocks' cores (for stitching);
- ``windows/``: the model's window logits, until no unfinished block needs them;
- ``blocks.json``, the ledger: the plan, the input's fingerprint (:func:`input_fingerprint`),
  and each finished block's particle count and checksum, written atomically after the block's
  labels and shells: a block is done when it is here.

A resumed run checks the ledger before it uses anything in the folder: another input or other
settings are refused, naming what differs; a finished block whose files no longer match their
checksum is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.errors import CorruptDataError, InputError, OutputError
from ps3d_toolkit.segmentation.chunked.grid import Grid, key

logger = logging.getLogger(__name__)

WORK_SUFFIX = ".ps3d-work"
_LEDGER = "blocks.json"
#: Grey values hashed into the input's fingerprint (a strided sample: every block of a large scan
#: contributes, so a scan turned round or another scan of the same shape differs).
_FINGERPRINT_VALUES = 262_144
_START_AFRESH = "run again without resume=True (with overwrite=True) to start afresh"


class Work:
    """A run's work folder.

    Parameters
    ----------
    folder : Path
        The folder (created, or resumed).
    plan_key : dict
        What a resumed run must share with the interrupted one.
    grid : Grid
        The run's blocks.
    resume : bool
        Keep the finished blocks of an earlier run with the same plan and input.
    fingerprint : dict, optional
        The input's :func:`input_fingerprint`; a resume refuses another input.

    Raises
    ------
    CorruptDataError
        When resuming from a ledger that is damaged or records no input.
    InputError
        When resuming with another input or other settings than the interrupted run's.
    OutputError
        When the folder exists and is not a work folder.
    """

    def __init__(self, folder: Path, plan_key: dict, grid: Grid, resume: bool, fingerprint: dict | None = None):
        import zarr

        self.folder = Path(folder)
        self.grid = grid
        #: Whether this run made the folder (it goes again when the run fails before any block is done).
        self.created = False
        ledger = self.folder / _LEDGER
        if resume and ledger.is_file():
            self.record = read_ledger(ledger, grid)
            _check_same_run(self.record, plan_key, fingerprint, self.folder)
            self.labels = zarr.open_array(str(self.folder / "labels.zarr"), mode="r+")
            self._drop_damaged_blocks()
            logger.info("resuming: %d of %d blocks already done", len(self.counts), len(grid.indices()))
            return
        if self.folder.exists():
            if not ledger.is_file():
                raise OutputError(f"{self.folder} exists and is not a ps3d_toolkit work folder; remove it or "
                                  "choose another output")
            shutil.rmtree(self.folder)
        self.created = True
        (self.folder / "shells").mkdir(parents=True)
        self.labels = zarr.create_array(store=str(self.folder / "labels.zarr"), shape=grid.shape,
                                        chunks=grid.block, dtype=np.uint32, fill_value=0, zarr_format=2)
        self.record = {"plan": plan_key, "input": fingerprint, "blocks": {}, "checksums": {}}
        self._save_record()

    @property
    def windows(self) -> Path:
        return self.folder / "windows"

    @property
    def counts(self) -> dict:
        """Finished blocks' particle counts, by key."""
        return self.record["blocks"]

    def todo(self) -> list:
        return [index for index in self.grid.indices() if key(index) not in self.counts]

    def finish(self, index, count: int) -> None:
        """Record a block as done (its labels and shells are written), with its files' checksum."""
        self.record["checksums"][key(index)] = self._checksum(index)
        self.counts[key(index)] = int(count)
        self._save_record()

    def disposable(self) -> bool:
        """Whether a failed run may remove the folder: this run made it and finished no block."""
        return self.created and not self.counts

    def _checksum(self, index) -> str:
        """blake2b of a block's local labels (as stored) and of its shells file."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(np.ascontiguousarray(self.labels[self.grid.core(index)]).tobytes())
        digest.update((self.folder / "shells" / f"{key(index)}.npz").read_bytes())
        return digest.hexdigest()

    def _drop_damaged_blocks(self) -> None:
        """Forget the finished blocks whose files are missing or changed: the run computes them again."""
        damaged = []
        for index in self.grid.indices():
            name = key(index)
            if name not in self.counts:
                continue
            try:
                same = self._checksum(index) == self.record["checksums"].get(name)
            except Exception:  # noqa: BLE001 - any unreadable file (a lost chunk, a torn npz) is damage
                same = False
            if not same:
                damaged.append(name)
                del self.counts[name]
                self.record["checksums"].pop(name, None)
        if damaged:
            logger.warning("%d finished block(s) of %s have missing or damaged files (%s): computing them again",
                           len(damaged), self.folder, ", ".join(damaged[:5]) + (", ..." if len(damaged) > 5 else ""))
            self._save_record()

    def _save_record(self) -> None:
        """Write the ledger atomically (a torn ledger would lose the run)."""
        tmp = self.folder / (_LEDGER + ".tmp")
        tmp.write_text(json.dumps(self.record))
        tmp.replace(self.folder / _LEDGER)

    def read_shells(self, name: str) -> dict:
        path = self.folder / "shells" / f"{name}.npz"
        if not path.is_file():
            return {}
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}


def read_ledger(path: Path, grid: Grid) -> dict:
    """The ledger of an interrupted run, checked: a damaged one is refused in one line.

    Raises
    ------
    CorruptDataError
        When the file is not the ledger this toolkit writes (unreadable, not JSON, another
        structure, block counts that are not whole numbers, blocks not of this grid).
    """
    def damaged(why: str) -> CorruptDataError:
        return CorruptDataError(f"cannot resume from {path}: the ledger is damaged ({why}); delete "
                                f"{path.parent} or pass overwrite=True without resume=True to start afresh")

    try:
        text = path.read_text()
        record = json.loads(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise damaged(f"not JSON: {' '.join(str(error).split())}") from error
    if record is None:
        raise damaged("an empty file")
    if not isinstance(record, dict):
        raise damaged(f"a JSON {type(record).__name__}, not an object")
    for field in ("plan", "blocks"):
        if not isinstance(record.get(field), dict):
            raise damaged(f"no {field!r} object")
    if not isinstance(record.get("input"), dict) or not isinstance(record.get("checksums"), dict):
        raise damaged("it records no input fingerprint or block checksums: an older version wrote it")
    names = {key(index) for index in grid.indices()}
    for name, count in record["blocks"].items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise damaged(f"block {name} has the particle count {count!r}, not a whole number")
        if name not in names:
            raise damaged(f"block {name} is not a block of this run")
    return record


def _check_same_run(record: dict, plan_key: dict, fingerprint: dict | None, folder: Path) -> None:
    """Refuse a resume whose input or settings are not the interrupted run's, naming what differs."""
    if fingerprint is not None:
        differs = fingerprint_differences(record["input"], fingerprint)
        if differs:
            raise InputError(f"cannot resume into {folder}: the input differs from the interrupted run's: "
                             f"{'; '.join(differs)}; {_START_AFRESH}")
        if record["input"].get("path") != fingerprint.get("path"):
            logger.info("the input moved from %s to %s; its size, time and values are the same",
                        record["input"].get("path"), fingerprint.get("path"))
    old = record["plan"]
    changed = [f"{name} {old.get(name)!r} (now {plan_key.get(name)!r})"
               for name in sorted(set(old) | set(plan_key)) if old.get(name) != plan_key.get(name)]
    if changed:
        raise InputError(f"cannot resume into {folder}: the interrupted run used other settings: "
                         f"{'; '.join(changed)}; resume with the same settings, or {_START_AFRESH}")


# --------------------------------------------------------------------------- the input


def input_fingerprint(image) -> dict:
    """What identifies a scan for a resume: its shape, type, a hash of a strided sample of its values,
    and the path, size and modification time of the file or store it is read from, when there is one.

    The sample reads ~262,000 values spread over the whole scan; a folder (a zarr store, TIFF slices)
    counts its files' total size and latest modification time.
    """
    from ps3d_toolkit.core.arrays import strided_sample

    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    values = np.ascontiguousarray(strided_sample(image, _FINGERPRINT_VALUES))
    record = {"shape": [int(n) for n in image.shape], "dtype": str(np.dtype(image.dtype)),
              "sample_blake2b": hashlib.blake2b(values.tobytes(), digest_size=16).hexdigest()}
    path = source_path(image)
    if path is not None:
        size, modified = _size_and_time(path)
        record.update(path=str(path), bytes=size, modified_ns=modified)
    return record


def source_path(image) -> Path | None:
    """The file or store a (lazy) array reads from: the toolkit's readers' ``source``, a zarr
    array's store, a memory map's file, also under a wrapper that turns the values round or
    masks them (``.image``, ``.base``); None for values in memory."""
    for _ in range(4):
        store = getattr(image, "store", None)
        for candidate in (getattr(image, "source", None), getattr(image, "filename", None),
                          getattr(store, "root", None), getattr(store, "path", None)):
            if isinstance(candidate, (str, os.PathLike)) and str(candidate) and Path(candidate).exists():
                return Path(candidate).resolve()
        inner = getattr(image, "image", None)
        image = inner if inner is not None and inner is not image else getattr(image, "base", None)
        if image is None:
            return None
    return None


def _size_and_time(path: Path) -> tuple:
    """Bytes and latest modification (ns) of a file, or of every file under a folder."""
    if not path.is_dir():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    size, modified = 0, path.stat().st_mtime_ns
    for root, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            size, modified = size + stat.st_size, max(modified, stat.st_mtime_ns)
    return size, modified


def fingerprint_differences(old: dict, new: dict) -> list:
    """What differs between two fingerprints, in words (the path alone does not count: a moved scan)."""
    words = {"shape": "shape", "dtype": "type", "sample_blake2b": "values (a hash of a sample of them)",
             "bytes": "size in bytes", "modified_ns": "modification time"}
    differs = []
    for field, word in words.items():
        before, now = old.get(field), new.get(field)
        if before == now:
            continue
        if field == "modified_ns" and before is not None and now is not None:
            before, now = _time_text(before), _time_text(now)
        differs.append(f"{word} {before} (now {now})" if field != "sample_blake2b" else word)
    if differs and old.get("path") != new.get("path"):
        differs.insert(0, f"path {old.get('path')} (now {new.get('path')})")
    return differs


def _time_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def save_block(folder: Path, grid: Grid, index, core: np.ndarray, shells: dict) -> None:
    """Write a block's local labels and shells (on any worker); the ledger is the driver's."""
    import zarr

    labels = zarr.open_array(str(Path(folder) / "labels.zarr"), mode="r+")
    labels[grid.core(index)] = core
    path = Path(folder) / "shells" / f"{key(index)}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **shells)
    tmp.replace(path)


def check_output(output: Path, resume: bool, overwrite: bool) -> Path:
    """Refuse a non-zarr target, and an existing output unless ``overwrite`` (``resume`` alone never replaces it).

    A finished run leaves its output and no work folder; an interrupted one a work folder and
    (only when it was replacing an earlier output with ``overwrite``) that earlier output.
    """
    from ps3d_toolkit.io.outputs import replaceable_directory

    if "".join(output.suffixes[-1:]).lower() != ".zarr":
        raise InputError(f"output must be a .zarr store for chunked segmentation, got {output}")
    if output.exists():
        if not overwrite:
            if resume:
                raise OutputError(f"{output} exists: resume=True continues an interrupted run into a new output "
                                  "and never replaces a finished one; pass overwrite=True to replace it, or "
                                  "choose another output")
            raise OutputError(f"{output} exists; pass overwrite=True to replace it or resume=True to "
                              "continue an interrupted run")
        if not replaceable_directory(output):
            raise OutputError(f"{output} exists and is not a zarr store written by ps3d_toolkit; "
                              "choose another output")
    return output
