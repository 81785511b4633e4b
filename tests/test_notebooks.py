"""Every tutorial notebook runs top to bottom, headless, on the bundled sample, and its outputs are clean.

The notebooks are executed with nbclient in a python3 kernel (this virtual
environment's ipykernel), two threads, from the ``notebooks/`` folder as a
user would open them, with progress bars on as a user has them. A failing cell
fails the test with the cell's error; so does noise in an output (see
:func:`output_noise`: warning text, anything on stderr, a bare repr), and a
``ps3d_tutorial_*`` folder left in the temporary folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from pathlib import Path

import pytest
from _browser import CHROMIUM, unavailable

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
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    env.pop("TQDM_DISABLE", None)    # progress bars on, as a user has them: they must not spill onto stderr
    if tmp_dir is not None:
        env["TMPDIR"] = str(tmp_dir)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}},
                                     store_widget_state=store_widget_state)
    client.execute(env=env)
    return nb


#: Whether kaleido can draw the JPEG beside each figure here (it takes the system's Chromium); CI has both.
STATIC_FIGURES = importlib.util.find_spec("kaleido") is not None and CHROMIUM.is_file()
#: A saved tutorial (outputs without widget state, as JupyterLab saves by default) stays under this size.
MAX_SAVED_BYTES = 3 * 2**20


#: Text no output of a tutorial may hold: warnings, tracebacks, numpy scalar and array reprs.
NOISE = re.compile(r"\b\w*Warning\b|\bwarnings\.warn|Traceback|\bnp\.(?:u?int|float|bool|str)\w*\(|\barray\(")
#: Output types a reader sees: anything richer than text/plain means the cell shows a table, figure or widget.
RICH = ("text/html", "image/png", "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json")


def output_noise(nb) -> list:
    """What in a notebook's outputs a reader should not see, one line per finding (empty: clean).

    Warning text or a numpy repr anywhere in printed or plain-text output, any stderr
    output (warnings, progress bars written as text) and bare reprs: a result with
    nothing but ``text/plain`` (a dict, a ``Scan(...)``) where the tutorial should print
    a sentence or show a table.
    """
    found = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            where = f"cell {index} ({cell.source.splitlines()[0] if cell.source else ''!r})"
            if out.output_type == "stream":
                text = out.text
                if out.name == "stderr":
                    found.append(f"{where}: stderr: {text.strip()[:200]!r}")
            elif out.output_type in ("execute_result", "display_data"):
                data = out.get("data", {})
                text = data.get("text/plain", "")
                if not set(data) & set(RICH):
                    found.append(f"{where}: a bare repr: {text[:200]!r}")
                    continue
                if "application/vnd.jupyter.widget-view+json" in data:
                    text = ""    # a widget's text/plain is its repr, shown only where widgets cannot be
            else:
                continue
            match = NOISE.search(text)
            if match:
                found.append(f"{where}: {match.group(0)!r} in {text.strip()[:200]!r}")
    return found


def test_output_noise_finds_warnings_stderr_and_reprs():
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    def notebook(*outputs):
        return new_notebook(cells=[new_code_cell("x = 1", outputs=list(outputs))])

    clean = notebook(new_output("stream", name="stdout", text="223 particles\n"),
                     new_output("execute_result", data={"text/plain": "<Styler>", "text/html": "<table/>"}),
                     new_output("display_data", data={"text/plain": "VBox(children=(array(...)))",
                                                      "application/vnd.jupyter.widget-view+json": {}}))
    assert output_noise(clean) == []
    noisy = [new_output("stream", name="stderr", text="100%|##########| 4/4 [00:02<00:00]"),
             new_output("stream", name="stdout", text="display.py:448: UserWarning: Consider using IFrame"),
             new_output("stream", name="stdout", text="selected [np.uint32(55), np.uint32(83)]"),
             new_output("execute_result", data={"text/plain": "{'labels': array([[0, 0]])}"}),
             new_output("execute_result", data={"text/plain": "<b>x</b>", "text/html": "FutureWarning: x"})]
    for output in noisy[:-1]:
        assert len(output_noise(notebook(output))) == 1, output
    assert output_noise(notebook(noisy[-1])) == []     # HTML (a report, a table) is not scanned: its words are its own


# --------------------------------------------------------------------------- viz.notebook, the tutorials' figures


def _plotly_bundle():
    import plotly.graph_objects as go

    return go.Figure(go.Bar(y=[3, 1, 2]), layout={"width": 300, "height": 200})._repr_mimebundle_()


@pytest.fixture
def plotly_renderer():
    """Plotly's default renderer, restored after the test."""
    import plotly.io as pio

    before = pio.renderers.default
    yield
    pio.renderers.default = before


def test_static_figure_fallbacks_put_a_jpeg_beside_each_figure(plotly_renderer):
    import base64
    import io

    import plotly.io as pio
    from PIL import Image

    from ps3d_toolkit.viz.notebook import STATIC_FALLBACK_RENDERER, static_figure_fallbacks

    if not STATIC_FIGURES:
        unavailable("kaleido (the 'notebooks' extra) or Chromium (apt-get install chromium) is missing")
    assert static_figure_fallbacks() is True
    assert pio.renderers.default == STATIC_FALLBACK_RENDERER
    bundle = _plotly_bundle()
    assert "application/vnd.plotly.v1+json" in bundle
    image = Image.open(io.BytesIO(base64.b64decode(bundle["image/jpeg"])))
    assert image.format == "JPEG" and image.size == (300, 200)
    assert "image/png" not in bundle    # JupyterLab's plotly renderer would show a PNG instead of the figure


@pytest.mark.parametrize("broken", ["no kaleido", "no browser"])
def test_without_kaleido_or_a_browser_figures_stay_interactive(plotly_renderer, monkeypatch, caplog, broken):
    import plotly.io as pio

    from ps3d_toolkit.viz.notebook import static_figure_fallbacks

    pio.renderers.default = "plotly_mimetype"
    if broken == "no kaleido":
        monkeypatch.setitem(sys.modules, "kaleido", None)
    else:
        def no_browser(*args, **kwargs):
            raise RuntimeError("\n\nKaleido requires Google Chrome to be installed.\n\nEither download ...")

        monkeypatch.setattr(pio, "to_image", no_browser)
    with caplog.at_level(logging.INFO, logger="ps3d_toolkit.viz.notebook"):
        assert static_figure_fallbacks() is False
    assert pio.renderers.default == "plotly_mimetype"
    assert sorted(_plotly_bundle()) == ["application/vnd.plotly.v1+json"]
    reason = {"no kaleido": "kaleido (the 'notebooks' extra) is not installed",
              "no browser": "kaleido cannot draw an image (Kaleido requires Google Chrome to be installed.)"}[broken]
    assert caplog.messages == [f"figures are interactive only: {reason}"]


# --------------------------------------------------------------------------- the tutorials


def test_every_tutorial_cleans_up_and_ends_with_next():
    for name, cells in SOURCES.items():
        code_cells = [c for c in cells if c.cell_type == "code"]
        assert "shutil.rmtree(workdir)" in code_cells[-1].source, f"{name}: the last code cell must remove workdir"
        assert "ps3d_tutorial_" in cells[1].source + code_cells[0].source, f"{name}: the set-up names its folder"
        assert cells[-1].cell_type == "markdown" and cells[-1].source.startswith("**Next:**"), \
            f"{name} must end with a 'Next:' pointer"


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
def test_notebook_runs(name, tmp_path_factory):
    # A short folder name: the kernel's TMPDIR is also where Chromium (kaleido's, for the JPEGs)
    # puts its singleton socket, whose path may hold at most 107 bytes; under pytest-xdist the
    # test's own tmp_path (popen-gw0/test_notebook_runs_03_measure_a0) is too long for it.
    tmp_path = tmp_path_factory.mktemp("nb")
    nb = execute(NOTEBOOKS / name, tmp_dir=tmp_path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors
    # Each tutorial ends with something to look at: a figure or a widget in its last code cell
    # before the clean-up.
    last = code_cells[-2].outputs
    shown = {key for o in last for key in o.get("data", {})}
    assert shown & {"application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-view+json"}, \
        f"the last code cell of {name} shows no figure or widget (outputs: {sorted(shown)})"
    assert output_noise(nb) == [], f"{name} shows noise in its outputs"
    figures = [o for c in code_cells for o in c.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    if STATIC_FIGURES:
        assert all("image/jpeg" in o.data for o in figures), f"a figure of {name} has no JPEG beside it"
    # executed without the widgets' state, which JupyterLab too saves only when told to; a report
    # page shown inline (tutorial 06: an <iframe srcdoc>, ~5 MB with its own plotly.js) is the
    # tutorial's product, so it is not counted
    pages = sum(len(o.data["text/html"].encode()) for c in code_cells for o in c.outputs
                if "<iframe srcdoc=" in o.get("data", {}).get("text/html", ""))
    saved = len(nbformat.writes(nb).encode()) - pages
    assert saved < MAX_SAVED_BYTES, f"{name} saved with its outputs is too large ({saved} bytes besides report pages)"
    left = sorted(p.name for p in tmp_path.glob("ps3d_tutorial_*"))
    assert not left, f"{name} left its temporary folder behind: {left}"
