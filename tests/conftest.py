"""Fixtures shared by several test files."""

from __future__ import annotations

import hashlib
import html.parser
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

#: porespy is the optional extra ``classic`` (SNOW). Without it the tests marked ``needs_porespy``
#: are skipped; CI installs the extra after the README's test command and runs them
#: (``pytest -m needs_porespy``).
HAVE_PORESPY = importlib.util.find_spec("porespy") is not None


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs porespy, the optional extra 'classic' (pip install -e '.[classic]')")
    for item in items:
        if not HAVE_PORESPY and item.get_closest_marker("needs_porespy"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _in_own_folder(tmp_path, monkeypatch):
    """Run every test in its own ``tmp_path`` as the working directory.

    A default output (``ps3d report`` without ``-o`` writes ``report.html``, ``ps3d demo`` its
    folder) lands there, and the files that the README's commands leave in the repository root
    (``report.html``, ``labels.tif``) are never in a test's way.
    """
    monkeypatch.chdir(tmp_path)


def listing(folder: Path) -> list:
    """Every file and folder under ``folder`` (hidden ones too), with each file's hash.

    Two listings are equal when nothing under ``folder`` was written, replaced or left behind.
    """
    entries = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            entries.append((str(path.relative_to(folder)), digest))
    return sorted(entries)


def ball(shape, centre, radius) -> np.ndarray:
    """Boolean digital ball of ``radius`` voxels around ``centre`` in a volume of ``shape``."""
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


@pytest.fixture
def two_balls():
    """Labels 1 and 2: two separate balls of radius 5 in a 24 x 32 x 40 volume; grey image to match."""
    labels = np.zeros((24, 32, 40), np.uint32)
    labels[ball(labels.shape, (12, 16, 10), 5)] = 1
    labels[ball(labels.shape, (12, 16, 28), 5)] = 2
    image = np.where(labels > 0, 200.0, 100.0).astype(np.float32)
    return image, labels


@pytest.fixture(scope="session")
def untrained_weights(tmp_path_factory):
    """A weight file of an untrained network of the default architecture (seed 0)."""
    torch = pytest.importorskip("torch")
    from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network, save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "untrained.pt"
    return save_weights(build_network(DEFAULT_CONFIG), path, dict(DEFAULT_CONFIG))


class _TextOf(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.bold = [], []
        self._in_bold = 0

    def handle_starttag(self, tag, attrs):
        self._in_bold += tag == "b"
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag):
        self._in_bold -= tag == "b"

    def handle_data(self, data):
        self.parts.append(data)
        if self._in_bold:
            self.bold.append(data)


@pytest.fixture
def html_text():
    """Parse an HTML fragment: returns (its text with <br> as newlines, the texts in bold)."""

    def parse(fragment: str):
        parser = _TextOf()
        parser.feed(fragment)
        parser.close()
        return "".join(parser.parts), parser.bold

    return parse


@pytest.fixture
def two_balls_table(two_balls):
    """A hand-made particle table of :func:`two_balls` (label, voxel_count, volume, size, centroids), 1 mm voxels."""
    import pandas as pd

    _, labels = two_balls
    rows = []
    for label in (1, 2):
        where = np.argwhere(labels == label)
        z, y, x = where.mean(axis=0)
        rows.append({"label": label, "voxel_count": len(where), "volume_mm3": float(len(where)),
                     "eq_diameter_mm": np.cbrt(6 * len(where) / np.pi), "sphericity": 0.9 + 0.01 * label,
                     "centroid_z": z, "centroid_y": y, "centroid_x": x})
    table = pd.DataFrame(rows)
    table.attrs["spacing_mm"] = (1.0, 1.0, 1.0)
    return table


@pytest.fixture
def ps3d(capsys):
    """Run ``ps3d *argv`` in-process: returns (exit code, stdout, stderr)."""
    from ps3d_toolkit import cli

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_one_line_error(code, err, *fragments):
    """A CLI failure: exit code 2 and one ``ps3d: error:`` line holding every fragment."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ps3d: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="session")
def sample():
    """The bundled sample: ``(scan, truth)`` from :func:`ps3d_toolkit.data.load_sample`."""
    from ps3d_toolkit.data import load_sample

    return load_sample()
