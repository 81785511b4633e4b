"""Every tutorial notebook runs top to bottom, headless, on the bundled sample.

The notebooks are executed with nbclient in a python3 kernel (this virtual
environment's ipykernel), two threads, from the ``notebooks/`` folder as a
user would open them. A failing cell fails the test with the cell's error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
from build_notebooks import NOTEBOOKS as SOURCES  # noqa: E402

sys.path.remove(str(NOTEBOOKS))

# Seconds per cell; the slowest cell (20 fine-tuning steps) takes ~1 minute on 2 cores.
CELL_TIMEOUT = 600


def execute(path: Path, *, tmp_dir: Path | None = None, store_widget_state: bool = False):
    """Run a notebook in a fresh python3 kernel and return it with its outputs.

    ``tmp_dir`` becomes the kernel's TMPDIR, where the notebooks write their files.
    """
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TQDM_DISABLE": "1"}
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}},
                                     store_widget_state=store_widget_state)
    client.execute(env=env)
    return nb


def test_notebooks_are_generated_and_stored_without_outputs():
    for name, cells in SOURCES.items():
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert len(nb.cells) == len(cells), f"{name} is stale: run python notebooks/build_notebooks.py"
        for cell, source in zip(nb.cells, cells):
            assert cell.source == source.source, f"{name} is stale: run python notebooks/build_notebooks.py"
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} is stored with outputs"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_notebook_runs(name, tmp_path):
    nb = execute(NOTEBOOKS / name, tmp_dir=tmp_path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors
    # Each tutorial ends with something to look at: a figure or a widget in its last code cell.
    last = code_cells[-1].outputs
    shown = {key for o in last for key in o.get("data", {})}
    assert shown & {"application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json"}, \
        f"the last code cell of {name} shows no figure or widget (outputs: {sorted(shown)})"
