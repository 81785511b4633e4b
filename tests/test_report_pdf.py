"""The PDF export of the report (ps3d_toolkit.report.pdf): headless Chromium's print-to-PDF, read back by poppler.

Chromium (/usr/bin/chromium, Debian's ``chromium``) and Playwright drive the
printing; without them the tests are skipped, except in CI, where they fail
(as the browser tests). ``pdftoppm`` and ``pdfinfo`` (Debian's
``poppler-utils``) read the PDF back; the tests that need them are skipped
only when they are missing. The first page of the sample's PDF, rendered by
pdftoppm, goes to ``$PS3D_SCREENSHOT_DIR`` when set
(``docs/screenshots/report_pdf_page1.png`` is the committed one).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _browser import unavailable
from conftest import assert_one_line_error
from PIL import Image

from ps3d_toolkit.report.pdf import find_chromium, write_pdf


@pytest.fixture(scope="module")
def printer():
    """Skip (or fail in CI) without Chromium or Playwright."""
    if find_chromium() is None:
        unavailable("no Chromium to print with (apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        unavailable("playwright is not installed (pip install playwright)")


@pytest.fixture
def pages_folder(tmp_path) -> Path:
    """Where the rendered first page goes: ``$PS3D_SCREENSHOT_DIR`` when set, else the test's temporary folder."""
    folder = Path(os.environ.get("PS3D_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _poppler():
    if shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None:
        pytest.skip("pdftoppm/pdfinfo missing (apt-get install poppler-utils)")


def _pages(pdf) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def _render_first_page(pdf, stem) -> Image.Image:
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(stem)],
                   check=True, capture_output=True)
    return Image.open(f"{stem}.png")


def test_cli_report_prints_the_sample_to_pdf(printer, ps3d, tmp_path, pages_folder):
    from ps3d_toolkit.data.sample import sample_path

    folder = sample_path()
    if folder is None:
        pytest.skip("the bundled sample's files are not installed (a wheel)")
    code, stdout, err = ps3d("report", folder / "labels.tif", "--image", folder / "scan.tif", "--auto-phases", "2",
                             "--phase-names", "quartz,magnetite", "-o", tmp_path / "report.html",
                             "--pdf", tmp_path / "report.pdf", "--title", "ps3d report: the bundled sample")
    assert code == 0, err
    pdf = tmp_path / "report.pdf"
    assert f"wrote PDF: {pdf}" in stdout
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.glob("report*")) == ["report.html", "report.pdf"]  # no temporary file
    _poppler()
    assert _pages(pdf) >= 1
    page = np.asarray(_render_first_page(pdf, pages_folder / "report_pdf_page1").convert("L"))
    # an A4 page at 80 dpi, with ink on it (the title, the summary table)
    assert page.shape == pytest.approx((935, 661), abs=3)
    assert (page < 128).mean() > 0.005


def test_write_pdf_draws_the_figures_before_printing(printer, tmp_path):
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.report import write_report

    labels = np.zeros((20, 24, 28), np.uint32)
    labels[2:8, 3:9, 4:10] = 1
    labels[10:18, 12:20, 14:22] = 2
    table = measure(labels, spacing=0.1, progress=False)
    html = write_report(table, tmp_path / "cubes.html")
    pdf = write_pdf(html, tmp_path / "cubes.pdf")
    assert pdf == tmp_path / "cubes.pdf" and pdf.read_bytes()[:5] == b"%PDF-"
    _poppler()
    n_pages = _pages(pdf)
    assert n_pages >= 2  # summary, size distribution and shape figures do not fit one A4 page
    # a drawn plotly figure leaves coloured pixels (the blue traces); an undrawn one leaves none
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    colour = 0
    for path in sorted(tmp_path.glob("page*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
        colour += int(((rgb[..., 2] - rgb[..., 0]) > 60).sum())
    assert colour > 500


def test_write_pdf_refuses_bad_paths(tmp_path):
    with pytest.raises(ValueError, match=".pdf"):
        write_pdf(tmp_path / "r.html", tmp_path / "r.png")
    with pytest.raises(FileNotFoundError, match="no HTML report"):
        write_pdf(tmp_path / "missing.html", tmp_path / "r.pdf")
    assert not list(tmp_path.iterdir())


def test_cli_pdf_is_checked_before_any_work(ps3d, tmp_path):
    labels = tmp_path / "labels.tif"
    code, _, err = ps3d("report", labels, "--pdf", tmp_path / "report.png")
    assert_one_line_error(code, err, "PDF report", ".pdf")
    assert not any(tmp_path.iterdir())
