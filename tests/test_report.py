"""Tests of the self-contained HTML report (ps3d_toolkit.report)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ps3d_toolkit.evaluate import evaluate_instances
from ps3d_toolkit.io import Scan
from ps3d_toolkit.measure import measure
from ps3d_toolkit.report import build_report, write_report

SPACING = 0.1


@pytest.fixture(scope="module")
def cubes():
    """Two bright cubes of known size on a dark background, and their labels."""
    labels = np.zeros((20, 24, 28), np.uint32)
    labels[2:8, 3:9, 4:10] = 1      # 6^3 voxels
    labels[10:18, 12:20, 14:22] = 2  # 8^3 voxels
    image = np.where(labels > 0, 1000, 100).astype(np.uint16)
    scan = Scan(image=image, spacing=SPACING, name="cubes")
    table = measure(labels, image=image, spacing=SPACING, progress=False)
    return scan, labels, table


def _pngs(text: str) -> list:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'<img class="slice"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_is_self_contained_with_every_section(cubes, tmp_path):
    scan, labels, table = cubes
    metrics = evaluate_instances(labels, labels)
    path = write_report(table, tmp_path / "report.html", scan=scan, labels=labels, metrics=metrics,
                        title="Two <cubes>", notes={"method": "by hand"})
    assert path == tmp_path / "report.html"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left
    text = path.read_text(encoding="utf-8")
    assert "<title>Two &lt;cubes&gt;</title>" in text
    for heading in ("Summary", "Accuracy against the ground truth", "Particle-size distribution",
                    "Slices", "Particles"):
        assert f"<h2>{heading}</h2>" in text
    # plotly.js is inline (once) and nothing is loaded from elsewhere
    assert text.count("plotly.js v") == 1 and "<script src=" not in text
    assert text.count("Plotly.newPlot") == 2
    assert "<td>particles</td><td>2</td>" in text
    assert "<td>F1 at IoU &gt; 0.5</td><td>1</td>" in text
    assert "<td>method</td><td>by hand</td>" in text


def test_slice_images_show_the_outlines(cubes, tmp_path):
    scan, labels, table = cubes
    text = write_report(table, tmp_path / "r.html", scan=scan, labels=labels).read_text()
    images = _pngs(text)
    assert len(images) == 2
    z_slice = np.asarray(images[0].convert("RGB"))
    # enlarged by a whole factor to at least 384 px, aspect kept
    factor = z_slice.shape[0] // labels.shape[1]
    assert factor >= 2 and z_slice.shape[:2] == (labels.shape[1] * factor, labels.shape[2] * factor)
    orange = np.all(z_slice == (255, 120, 0), axis=-1)
    # the middle z slice (10) cuts cube 2 only: its outline is a square ring of 8 x 8 voxels
    expected = np.zeros(labels.shape[1:], bool)
    expected[12:20, 14:22] = True
    expected[13:19, 15:21] = False
    np.testing.assert_array_equal(orange[::factor, ::factor], expected)


def test_report_without_scan_labels_or_metrics(cubes, tmp_path):
    _, _, table = cubes
    text = write_report(table, tmp_path / "r.html").read_text()
    assert "<h2>Accuracy" not in text and "<h2>Slices" not in text
    assert "<h2>Particle-size distribution</h2>" in text


def test_empty_table_still_makes_a_report(tmp_path):
    empty = measure(np.zeros((8, 8, 8), np.uint32), spacing=SPACING, progress=False)
    text = write_report(empty, tmp_path / "r.html").read_text()
    assert "<td>particles</td><td>0</td>" in text
    assert "Plotly" not in text


def test_sections_are_pluggable(cubes):
    _, _, table = cubes
    text = build_report(table, sections=[lambda ctx: f"<p>custom {len(ctx.table)}</p>", lambda ctx: None])
    body = text.split("<body>", 1)[1]
    assert "<p>custom 2</p>" in body and "<h2>" not in body


def test_bad_input_leaves_an_existing_report_untouched(cubes, tmp_path):
    scan, labels, table = cubes
    path = tmp_path / "report.html"
    path.write_text("previous report")
    with pytest.raises(TypeError, match="table"):
        write_report(table.to_dict(), path)
    with pytest.raises(ValueError, match="same shape"):
        write_report(table, path, scan=scan, labels=labels[:-1])
    with pytest.raises(ValueError, match=".html"):
        write_report(table, tmp_path / "report.pdf")
    assert path.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_table_is_a_dataframe_of_measure(cubes):
    # guards the columns the summary reads
    _, _, table = cubes
    assert isinstance(table, pd.DataFrame)
    assert {"eq_diameter_mm", "volume_mm3"} <= set(table.columns)
    np.testing.assert_allclose(sorted(table["volume_mm3"]), [216 * SPACING**3, 512 * SPACING**3])
