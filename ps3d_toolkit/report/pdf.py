"""The HTML report printed to PDF by headless Chromium (Playwright drives it; nothing is downloaded).

The PDF is what a reader gets from the browser's own "print to PDF": the same
page, with the figures drawn. :func:`write_pdf` opens the report from disk,
checks that the page drew every figure as it loaded (``document.body.dataset.figures``,
see :mod:`ps3d_toolkit.report.payload`), and prints it on A4.

Chromium is looked for at ``$PS3D_CHROMIUM``, then ``/usr/bin/chromium``,
``/usr/bin/chromium-browser`` and ``/usr/bin/google-chrome`` (Debian:
``apt-get install chromium``); Playwright (``pip install playwright``) drives
it. ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.errors import InputError, MissingInputError, OutputError

_BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
_LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]
# the figures are drawn before the page's load event; this bounds the wait for their promises
_FIGURES_TIMEOUT_MS = 120_000


def find_chromium() -> Path | None:
    """The Chromium (or Chrome) executable to print with, or None when there is none."""
    candidates = [os.environ.get("PS3D_CHROMIUM"), *_BROWSERS, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def write_pdf(html_path, pdf_path, *, timeout_ms: int = _FIGURES_TIMEOUT_MS) -> Path:
    """Print an HTML report to PDF (A4, backgrounds on) with headless Chromium, atomically.

    Parameters
    ----------
    html_path : str or Path
        The report written by :func:`ps3d_toolkit.report.write_report`.
    pdf_path : str or Path
        The ``.pdf`` file to write.
    timeout_ms : int
        How long to wait for the figures to be drawn (they are, by the time the page has loaded).

    Returns
    -------
    Path
        The PDF file.

    Raises
    ------
    MissingInputError
        If ``html_path`` does not exist, or there is no Chromium or no Playwright.
    InputError
        If ``pdf_path`` does not end in ``.pdf``.
    OutputError
        If the figures were not drawn in time.
    """
    html_path = Path(html_path).expanduser().resolve()
    pdf_path = Path(pdf_path).expanduser()
    if pdf_path.suffix.lower() != ".pdf":
        raise InputError(f"pdf_path must end in .pdf, got {pdf_path}")
    if not html_path.is_file():
        raise MissingInputError(f"no HTML report at {html_path}; write it first with write_report")
    chromium = find_chromium()
    if chromium is None:
        raise MissingInputError("printing to PDF needs Chromium: apt-get install chromium (or set PS3D_CHROMIUM "
                                "to a Chromium or Chrome executable)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingInputError("printing to PDF needs Playwright: pip install 'ps3d_toolkit[pdf]' (it drives the "
                                "Chromium already installed; no 'playwright install')") from None
    with atomic_path(pdf_path) as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=_LAUNCH_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.goto(html_path.as_uri())
            _wait_for_figures(page, timeout_ms, PlaywrightError)
            page.emulate_media(media="print")
            page.pdf(path=str(tmp), format="A4", print_background=True,
                     margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
        finally:
            browser.close()
    return pdf_path


def _wait_for_figures(page, timeout_ms: int, error_type) -> None:
    """Wait until the report's script has drawn every figure (a page without figures is ready at once)."""
    ready = ("() => !document.querySelector('div.ps3d-figure') || "
             "['ready', 'failed'].includes(document.body.dataset.figures)")
    try:
        page.wait_for_function(ready, timeout=timeout_ms, polling=200)
    except error_type as error:
        raise OutputError(f"the report's figures were not drawn within {timeout_ms / 1000:g} s: {error}") from None
    if page.evaluate("() => document.body.dataset.figures") == "failed":
        raise OutputError("the report's figures could not be drawn in Chromium (see its console); write the "
                          "report again with this version of ps3d_toolkit")
