"""Tests of the bundled sample (ps3d_toolkit.data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ps3d_toolkit import data
from ps3d_toolkit.io import Scan


@pytest.fixture(scope="module")
def from_files():
    assert data.sample_path() is not None, "data/sample is missing: run python data/make_sample.py"
    return data.load_sample()


@pytest.fixture(scope="module")
def regenerated():
    return data.make_sample()


def test_sample_files_are_small_and_typed():
    folder = data.sample_path()
    total = sum(f.stat().st_size for f in folder.iterdir())
    assert total <= 10 * 2**20
    import tifffile

    with tifffile.TiffFile(folder / "scan.tif") as tif:
        assert tif.series[0].dtype == np.uint16
        assert tif.pages[0].compression.name in ("ADOBE_DEFLATE", "DEFLATE")
    with tifffile.TiffFile(folder / "labels.tif") as tif:
        assert tif.series[0].dtype == np.uint32


def test_load_sample_from_files(from_files):
    scan, labels = from_files
    assert isinstance(scan, Scan)
    assert scan.name == "sample"
    assert scan.shape == (128, 128, 128) == labels.shape
    assert scan.dtype == np.uint16 and labels.dtype == np.uint32
    assert scan.spacing == (0.01, 0.01, 0.01)
    assert 0.1 < scan.particle_size_mm < 0.3  # 20 voxels of 0.01 mm, give or take the spread
    # the grey values use the whole uint16 range, and grains are labelled
    assert scan.image.min() == 0 and scan.image.max() == np.iinfo(np.uint16).max
    assert len(np.unique(labels)) - 1 > 50


def test_metadata_records_how_the_sample_was_made(from_files):
    meta = json.loads((data.sample_path() / "metadata.json").read_text())
    scan, labels = from_files
    assert meta["seed"] == data.SAMPLE_PARAMS["seed"] == 2026
    assert meta["generator_args"]["shape"] == list(data.SAMPLE_PARAMS["shape"])
    assert meta["generator_args"]["preset"] == "medium"
    assert meta["spacing"] == list(scan.spacing)
    assert meta["particle_size_mm"] == pytest.approx(scan.particle_size_mm)
    assert meta["n_particles"] == len(np.unique(labels)) - 1
    assert meta["command"] == "python data/make_sample.py"


def test_regenerated_sample_matches_the_files(from_files, regenerated):
    scan, labels = from_files
    image, truth, meta = regenerated
    np.testing.assert_array_equal(truth, labels)
    # identical on this platform; a one-step rounding difference of the float
    # phantom on another numpy/CPU would still be the same sample
    difference = np.abs(image.astype(np.int32) - np.asarray(scan.image).astype(np.int32))
    assert difference.max() <= 1
    assert np.count_nonzero(difference) <= 1e-4 * difference.size
    assert meta["particle_size_mm"] == pytest.approx(scan.particle_size_mm)


def test_load_sample_without_the_folder_regenerates_it(monkeypatch, from_files, regenerated):
    # A wheel install has no data/sample: the public loader must fall back.
    from ps3d_toolkit.data import sample

    # patch where load_sample looks the names up: its own module
    monkeypatch.setattr(sample, "sample_path", lambda: None)
    # reuse the fixture's phantom (already checked against the files) instead of
    # generating it a second time
    calls = []
    monkeypatch.setattr(sample, "make_sample", lambda: calls.append(1) or regenerated)
    scan, labels = data.load_sample()
    assert calls == [1]
    assert scan.name == "sample" and scan.path is None
    assert scan.spacing == from_files[0].spacing
    assert scan.particle_size_mm == pytest.approx(from_files[0].particle_size_mm)
    np.testing.assert_array_equal(labels, from_files[1])
    np.testing.assert_array_equal(scan.image, regenerated[0])
