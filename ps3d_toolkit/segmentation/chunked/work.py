"""The work folder of a chunked run: blocks' local labels, shells, windows and the ledger.

``<output>.ps3d-work/`` beside the output (a temporary folder without one):

- ``labels.zarr``: each finished block's core with its local ids (chunks = blocks,
  so that blocks written by different workers never share a chunk);
- ``shells/<block>.npz``: its labels over earlier blocks' cores (for stitching);
- ``windows/``: the model's window logits, until no unfinished block needs them;
- ``blocks.json``: the plan, and each finished block's particle count, written
  atomically after the block's labels and shells: a block is done when it is here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.errors import InputError, OutputError
from ps3d_toolkit.segmentation.chunked.grid import Grid, key

logger = logging.getLogger(__name__)

WORK_SUFFIX = ".ps3d-work"
_LEDGER = "blocks.json"


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
        Keep the finished blocks of an earlier run with the same plan.
    """

    def __init__(self, folder: Path, plan_key: dict, grid: Grid, resume: bool):
        import zarr

        self.folder = Path(folder)
        self.grid = grid
        ledger = self.folder / _LEDGER
        if resume and ledger.is_file():
            self.record = json.loads(ledger.read_text())
            if self.record.get("plan") != plan_key:
                raise InputError(f"cannot resume into {self.folder}: the interrupted run used other settings "
                                 f"({self.record.get('plan')}); run again without resume=True (with "
                                 "overwrite=True)")
            logger.info("resuming: %d of %d blocks already done", len(self.record["blocks"]), len(grid.indices()))
            self.labels = zarr.open_array(str(self.folder / "labels.zarr"), mode="r+")
            return
        if self.folder.exists():
            if not ledger.is_file():
                raise OutputError(f"{self.folder} exists and is not a ps3d_toolkit work folder; remove it or "
                                  "choose another output")
            shutil.rmtree(self.folder)
        (self.folder / "shells").mkdir(parents=True)
        self.labels = zarr.create_array(store=str(self.folder / "labels.zarr"), shape=grid.shape,
                                        chunks=grid.block, dtype=np.uint32, fill_value=0, zarr_format=2)
        self.record = {"plan": plan_key, "blocks": {}}
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
        """Record a block as done (its labels and shells are written)."""
        self.counts[key(index)] = int(count)
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
    """Refuse an existing output unless resumed or overwritten; refuse a non-zarr target."""
    from ps3d_toolkit.io.outputs import replaceable_directory

    if "".join(output.suffixes[-1:]).lower() != ".zarr":
        raise InputError(f"output must be a .zarr store for chunked segmentation, got {output}")
    if output.exists():
        if not (resume or overwrite):
            raise OutputError(f"{output} exists; pass overwrite=True to replace it or resume=True to "
                              "continue an interrupted run")
        if not replaceable_directory(output):
            raise OutputError(f"{output} exists and is not a zarr store written by ps3d_toolkit; "
                              "choose another output")
    return output
