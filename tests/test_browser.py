"""In a real browser: the tutorial notebooks' figures and widgets render in JupyterLab.

Headless Chromium (Debian's ``chromium`` package at /usr/bin/chromium, never a
browser downloaded by ``playwright install``) is driven by Playwright:

tutorial notebooks 03 (measure, distributions, linked explorer, 3D grains)
and 04 (tuner) are opened in a JupyterLab server and run there, as a user
would; the plotly figures (SVG drawn, traces present), the plotly
``FigureWidget``s and the ipywidgets controls must be on the page, and no cell
may fail. (The HTML report has its own browser test, tests/test_report_browser.py.)

Screenshots go to ``$PS3D_SCREENSHOT_DIR`` when it is set (``docs/screenshots``
holds the committed ones), else to the test's temporary folder. Without
Chromium the tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _browser import PlaywrightTimeout, browser, shots, unavailable  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent
LAB_NOTEBOOKS = ("03_measure_and_shapes.ipynb", "04_tune_parameters.ipynb")


_PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => ({
    traces: (div.data || []).length,
    svg: div.querySelectorAll('.main-svg').length,
    width: div.getBoundingClientRect().width,
    types: (div.data || []).map(t => t.type || 'scatter')}))"""


# Every figure on the page drawn: its traces set, its SVG layers made, laid out at full width.
# A FigureWidget draws in stages (SVG first, traces later), so a busy machine shows half-drawn ones for a while.
_PLOTS_DRAWN_JS = """(minimum) => {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    return plots.length >= minimum && plots.every(div => (div.data || []).length > 0
        && div.querySelectorAll('.main-svg').length > 0 && div.getBoundingClientRect().width > 100);
}"""

#: How long the page may take to draw what its outputs hold (generous: a loaded 2-core machine).
DRAW_TIMEOUT_MS = 240_000


def _check_plots(page, minimum: int) -> list:
    """Wait until at least ``minimum`` figures are on the page and all are drawn; return what they hold."""
    try:
        page.wait_for_function(_PLOTS_DRAWN_JS, arg=minimum, timeout=DRAW_TIMEOUT_MS, polling=500)
    except PlaywrightTimeout:
        pass    # the assertions below say what is missing
    plots = page.evaluate(_PLOTS_JS)
    assert len(plots) >= minimum, f"expected at least {minimum} plotly figures, found {len(plots)}"
    for plot in plots:
        assert plot["traces"] > 0 and plot["svg"] > 0 and plot["width"] > 100, plot
    return plots


def _wait_for_count(locator, minimum: int) -> int:
    """Wait until ``locator`` matches at least ``minimum`` elements (widgets render after their outputs arrive)."""
    try:
        locator.nth(minimum - 1).wait_for(state="attached", timeout=DRAW_TIMEOUT_MS)
    except PlaywrightTimeout:
        pass    # the caller's assertion says what is missing
    return locator.count()


# --------------------------------------------------------------------------- JupyterLab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on a free port, serving copies of the notebooks run in it."""
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        unavailable("JupyterLab is not installed (pip install -e .[notebooks])")
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    root.mkdir()
    for name in LAB_NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (no virtual scrolling), so that all outputs are in the page.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # No "get Jupyter news?" pop-up over the screenshots.
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), "ps3d-browser-test"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "TQDM_DISABLE": "1",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "TMPDIR": str(tmp_path)}
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
         f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
         "--LabApp.extension_manager=readonly", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


_KERNEL_READY_JS = """() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const session = panel && panel.sessionContext && panel.sessionContext.session;
    return !!(session && session.kernel && session.kernel.connectionStatus === 'connected'
              && session.kernel.status === 'idle' && panel.content && panel.content.model);
}"""

_RUN_STATE_JS = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.model.cells;
    let pending = 0, errors = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        if (cell.executionCount === null) pending++;
        for (const out of cell.outputs.toJSON()) {
            if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
        }
    }
    return {pending, errors, status: panel.sessionContext.session.kernel.status};
}"""


def _run_in_lab(browser, jupyterlab, name: str):
    """Open a notebook in JupyterLab, run all its cells there, return the page once all is drawn."""
    url, token = jupyterlab
    # Tall enough that a whole widget fits on screen for its screenshot.
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    page.goto(f"{url}/lab/tree/{name}?token={token}&reset")
    page.wait_for_function(_KERNEL_READY_JS, timeout=180_000, polling=500)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + 400
    while True:
        state = page.evaluate(_RUN_STATE_JS)
        assert not state["errors"], f"a cell of {name} failed in JupyterLab: {state['errors']}"
        if state["pending"] == 0 and state["status"] == "idle":
            break
        assert time.monotonic() < deadline, f"{name} did not finish: {state}"
        time.sleep(1)
    # Figures and widgets draw asynchronously after their outputs arrive.
    page.wait_for_selector(".jupyter-widgets .js-plotly-plot .main-svg", timeout=DRAW_TIMEOUT_MS)
    assert page.get_by_text("Error displaying widget", exact=False).count() == 0
    return page


def _plot_titles(page) -> list:
    return page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).map("
                         "d => String(((d.layout || {}).title || {}).text || ''))")


@pytest.mark.slow
def test_measure_notebook_in_jupyterlab_shows_figures_and_linked_widgets(browser, jupyterlab, shots):
    page = _run_in_lab(browser, jupyterlab, LAB_NOTEBOOKS[0])
    plots = _check_plots(page, minimum=6)
    types = {t for plot in plots for t in plot["types"]}
    # scatter plots of up to 5,000 particles are SVG ("scatter"), larger ones WebGL ("scattergl")
    assert {"image", "mesh3d", "bar"} <= types and types & {"scatter", "scattergl"}, f"trace types drawn: {types}"
    assert _wait_for_count(page.locator(".jupyter-widgets .widget-slider"), 3) >= 3      # viewer sliders
    assert _wait_for_count(page.locator(".jupyter-widgets button"), 1) >= 1             # "show in 3D"
    assert _wait_for_count(page.get_by_text("grains selected", exact=False), 1) >= 1    # the linked selection

    explorer = page.locator(".jp-OutputArea-output .widget-vbox").filter(
        has=page.locator(".js-plotly-plot")).first
    explorer.scroll_into_view_if_needed()
    time.sleep(1)
    explorer.screenshot(path=str(shots / "linked_explorer.png"))
    titles = _plot_titles(page)
    zingg = page.locator(".js-plotly-plot").nth(next(i for i, t in enumerate(titles) if "Zingg" in t))
    zingg.scroll_into_view_if_needed()
    time.sleep(0.5)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.screenshot(path=str(shots / "jupyterlab_notebook.png"))
    grains = page.locator(".js-plotly-plot").nth(len(titles) - 1)    # the last output: grains in 3D
    grains.scroll_into_view_if_needed()
    time.sleep(1)
    grains.screenshot(path=str(shots / "particles_3d.png"))
    page.close()


@pytest.mark.slow
def test_tuning_notebook_in_jupyterlab_shows_the_tuner(browser, jupyterlab, shots):
    page = _run_in_lab(browser, jupyterlab, LAB_NOTEBOOKS[1])
    _check_plots(page, minimum=3)             # two tuner previews and the sweep figure
    tuner = page.locator(".jp-OutputArea-output .widget-vbox").filter(has=page.locator("textarea")).last
    assert _wait_for_count(tuner.locator(".widget-slider"), 3) >= 3
    assert _wait_for_count(tuner.locator("select"), 1) >= 1           # method, n_classes
    code = tuner.locator("textarea").input_value()
    assert "segment(scan.image, spacing=scan.spacing, method=" in code and "ps3d segment" in code
    assert tuner.get_by_text("F1@0.5", exact=False).count() == 1
    tuner.scroll_into_view_if_needed()
    time.sleep(1)
    tuner.screenshot(path=str(shots / "segmentation_tuner.png"))
    page.close()
