"""In a real browser: every figure and slice image of the HTML mineralogy report is drawn.

The report of the bundled sample, measured with two mineral phases (so that
every section is present), is opened from disk in headless Chromium (Debian's
``chromium`` package at /usr/bin/chromium, never a browser downloaded by
``playwright install``) driven by Playwright, with nothing fetched from the
network. The figures must be drawn by the time the page has been parsed,
without waiting for anything: a full-page screenshot taken at load, and a
screenshot by Chromium's own ``--screenshot`` with no script of ours, show each
of them.
The full-page screenshot goes to ``$PS3D_SCREENSHOT_DIR`` when it is set
(``docs/screenshots/report.png`` is the committed one), else to the test's
temporary folder. Without Chromium the test is skipped, except in CI (``CI``
set), where it fails.
"""

from __future__ import annotations

import subprocess

import numpy as np
from _browser import CHROMIUM, LAUNCH_ARGS, browser, shots  # noqa: F401 (fixtures)
from PIL import Image

# The drawn plotly layers of each figure when the document has been parsed (DOMContentLoaded).
_DRAWN_AT_PARSE_JS = """document.addEventListener('DOMContentLoaded', () => {
    window.ps3dDrawnAtParse = Array.from(document.querySelectorAll('div.ps3d-figure')).map(
        div => div.querySelectorAll('.main-svg').length);
});"""

_FIGURE_BOXES_JS = """() => Array.from(document.querySelectorAll('div.ps3d-figure')).map(div => {
    const box = div.getBoundingClientRect();
    return [box.left + window.scrollX, box.top + window.scrollY, box.width, box.height];
})"""

_PLOTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(div => ({
    title: (div.layout && div.layout.title && div.layout.title.text) || '',
    traces: (div.data || []).length,
    svg: div.querySelectorAll('.main-svg').length,
    drawn: div.querySelectorAll('.trace, .point, .bars path, canvas').length,
    width: div.getBoundingClientRect().width,
    height: div.getBoundingClientRect().height}))"""


def test_mineralogy_report_renders_every_figure_offline(browser, tmp_path, shots):
    from ps3d_toolkit.data import load_sample
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.report import write_report

    scan, truth = load_sample()
    table = measure(truth, scan.image, spacing=scan.spacing, phases="auto", progress=False)
    path = write_report(table, tmp_path / "report.html", scan=scan, labels=truth,
                        title="ps3d mineralogy report: the bundled sample",
                        notes={"labels": "ground truth of the bundled sample"})
    text = path.read_text(encoding="utf-8")
    n_figures = text.count('<div class="ps3d-figure"')
    assert n_figures == 6  # cumulative PSD, 2 histograms, sphericity vs size, Zingg, liberation
    for heading in ("Summary", "Particle-size distribution", "Shape", "Phases", "Liberation", "Slices",
                    "Particles"):
        assert f"<h2>{heading}</h2>" in text

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    remote, errors = [], []
    page.on("request", lambda request: remote.append(request.url)
            if not request.url.startswith(("file:", "data:", "blob:", "about:")) else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(_DRAWN_AT_PARSE_JS)
    page.goto(path.as_uri())   # returns at the page's load event; nothing is waited for after it
    # every figure was drawn by the end of parsing (a page that draws later, as one inflating a compressed
    # plotly.js with DecompressionStream, shows blank figures in a screenshot taken at load, now and then)
    drawn_at_parse = page.evaluate("() => window.ps3dDrawnAtParse")
    assert len(drawn_at_parse) == n_figures and all(drawn_at_parse), drawn_at_parse
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.wait_for_function("() => document.body.dataset.figures", timeout=60_000, polling=100)
    assert page.evaluate("() => document.body.dataset.figures") == "ready"
    boxes = page.evaluate(_FIGURE_BOXES_JS)
    drawn = Image.open(shots / "report.png")
    _assert_every_figure_is_in(drawn, boxes)

    plots = page.evaluate(_PLOTS_JS)
    assert len(plots) == n_figures, plots
    for plot in plots:
        assert plot["traces"] > 0 and plot["svg"] > 0 and plot["drawn"] > 0, plot
        assert plot["width"] > 300 and plot["height"] > 200, plot
    titles = " | ".join(p["title"] for p in plots)
    for expected in ("Cumulative", "by volume", "by number", "Sphericity", "Zingg", "Liberation"):
        assert expected in titles, titles
    images = page.evaluate(
        "() => Array.from(document.querySelectorAll('img.slice')).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 2 and all(done and width > 0 for done, width in images), images
    assert not remote, f"the report fetched from the network: {remote[:3]}"
    assert not errors, errors
    height = int(page.evaluate("() => document.documentElement.scrollHeight"))
    page.close()

    # Chromium's own screenshot, as a user takes one from the command line: the same figures
    plain = tmp_path / "plain.png"
    subprocess.run([str(CHROMIUM), *LAUNCH_ARGS, "--hide-scrollbars", f"--screenshot={plain}",
                    f"--window-size=1280,{height}", path.as_uri()], check=True, capture_output=True, timeout=300)
    _assert_every_figure_is_in(Image.open(plain), boxes, like=drawn)


def _assert_every_figure_is_in(screenshot, boxes, like=None) -> None:
    """Each figure's box in the screenshot holds its drawing: coloured traces, not a blank space; with
    ``like``, the same drawing as in that screenshot (so the page is laid out as when all is drawn)."""
    rgb = np.asarray(screenshot.convert("RGB")).astype(int)
    other = None if like is None else np.asarray(like.convert("RGB")).astype(int)
    assert len(boxes) == 6
    for left, top, width, height in boxes:
        assert width > 300 and height > 200, (left, top, width, height)
        window = (slice(int(top), int(top + height)), slice(int(left), int(left + width)))
        crop = rgb[window]
        coloured = (crop.max(axis=-1) - crop.min(axis=-1)) > 60
        assert coloured.sum() > 150, f"the figure at y = {top:.0f} is blank in the screenshot"
        if other is not None:
            differs = (np.abs(crop - other[window]).max(axis=-1) > 40).mean()
            assert differs < 0.05, f"the figure at y = {top:.0f} is not drawn as in the browser ({differs:.0%})"
