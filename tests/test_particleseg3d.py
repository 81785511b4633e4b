"""ParticleSeg3D datasets (ps3d_toolkit.io.particleseg3d) and ``ps3d segment DIR`` (ps3d_toolkit.cli.batch)."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import zarr

from ps3d_toolkit import cli
from ps3d_toolkit.cli import batch
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.io import load_scan, save_scan
from ps3d_toolkit.io.particleseg3d import (
    dataset_of,
    is_particleseg3d_dataset,
    list_scans,
    particleseg3d_labels_path,
    save_particleseg3d_labels,
    scan_metadata,
)

SHAPE = (40, 40, 40)
# per scan: spacing and particle size in mm; the grains are 10 voxels across in both
METADATA = {"ore2": {"spacing": 0.01, "particle_size": 0.1}, "ore10": {"spacing": 0.02, "particle_size": 0.2}}


@pytest.fixture(scope="module")
def scans():
    return {name: generate_scan(SHAPE, mean_diameter_vox=10, seed=seed, preset="easy")
            for seed, name in enumerate(METADATA, start=3)}


def _write_v2(image, path):
    """A zarr v2 array with no attributes, as ParticleSeg3D's ps3d_tiff2zarr writes its images."""
    array = zarr.create_array(store=str(path), shape=image.shape, chunks=(20, 20, 20), dtype=image.dtype,
                              zarr_format=2, config={"write_empty_chunks": True})
    array[...] = image
    return path


@pytest.fixture
def dataset(tmp_path, scans):
    root = tmp_path / "dataset"
    (root / "images").mkdir(parents=True)
    for name, scan in scans.items():
        _write_v2(scan.image, root / "images" / f"{name}.zarr")
    (root / "metadata.json").write_text(json.dumps(METADATA))
    return root


# --------------------------------------------------------------------------- reading a dataset


def test_dataset_is_recognised_and_its_scans_listed_in_natural_order(dataset, tmp_path):
    assert is_particleseg3d_dataset(dataset)
    assert list_scans(dataset) == ["ore2", "ore10"]
    assert dataset_of(dataset / "images" / "ore2.zarr") == dataset
    assert not is_particleseg3d_dataset(dataset / "images")
    (tmp_path / "plain").mkdir()
    assert dataset_of(tmp_path / "plain" / "x.zarr") is None
    with pytest.raises(InputError, match="ParticleSeg3D dataset"):
        list_scans(tmp_path / "plain")


def test_scan_metadata_reads_each_scans_entry(dataset):
    meta = scan_metadata(dataset, "ore10")
    assert meta["spacing"] == (0.02, 0.02, 0.02)
    assert meta["particle_size_mm"] == 0.2
    assert meta["path"] == dataset / "metadata.json"
    assert scan_metadata(dataset / "metadata.json", "ore2")["spacing"] == (0.01, 0.01, 0.01)


def test_flat_particle_size_holds_for_every_scan_without_its_own(dataset):
    (dataset / "metadata.json").write_text(json.dumps(
        {"particle_size": 0.3, "ore2": {"spacing": 0.01}, "ore10": {"spacing": 0.02, "particle_size": 0.2}}))
    assert scan_metadata(dataset, "ore2")["particle_size_mm"] == 0.3
    assert scan_metadata(dataset, "ore10")["particle_size_mm"] == 0.2
    assert load_scan(dataset / "images" / "ore2.zarr").particle_size_mm == 0.3


def test_wholly_flat_metadata_holds_for_every_scan(dataset):
    (dataset / "metadata.json").write_text(json.dumps({"spacing": [0.03, 0.01, 0.01], "particle_size": 0.25}))
    for name in ("ore2", "ore10"):
        meta = scan_metadata(dataset, name)
        assert meta["spacing"] == (0.03, 0.01, 0.01) and meta["particle_size_mm"] == 0.25


def test_a_scan_without_an_entry_is_refused_naming_the_file_and_the_scan(dataset):
    (dataset / "metadata.json").write_text(json.dumps({"ore2": METADATA["ore2"]}))
    with pytest.raises(InputError) as caught:
        scan_metadata(dataset, "ore10")
    message = str(caught.value)
    assert "'ore10'" in message and str(dataset / "metadata.json") in message and "ore2" in message
    # load_scan finds no spacing either, and says where it looked
    with pytest.raises(InputError, match="no entry for scan 'ore10'"):
        load_scan(dataset / "images" / "ore10.zarr")


def test_conflicting_particle_size_keys_are_refused(dataset):
    (dataset / "metadata.json").write_text(json.dumps({"ore2": {"spacing": 0.01, "particle_size": 0.1,
                                                                "particle_size_mm": 0.5}}))
    with pytest.raises(InputError, match="keep one"):
        scan_metadata(dataset, "ore2")


def test_load_scan_of_a_dataset_member_takes_its_entry(dataset, scans):
    scan = load_scan(dataset / "images" / "ore10.zarr")
    assert scan.spacing == (0.02, 0.02, 0.02)
    assert scan.particle_size_mm == 0.2
    assert scan.name == "ore10"
    np.testing.assert_array_equal(np.asarray(scan.image), scans["ore10"].image)


def test_flat_particle_size_of_a_plain_sidecar_is_read(tmp_path, scans):
    path = tmp_path / "s.npy"
    np.save(path, scans["ore2"].image)
    (tmp_path / "s.json").write_text(json.dumps({"spacing": 0.01, "particle_size": 0.12}))
    assert load_scan(path).particle_size_mm == 0.12


# --------------------------------------------------------------------------- writing its layout


def test_labels_written_in_particleseg3d_layout_open_as_zarr_v2(tmp_path, scans):
    labels = scans["ore2"].labels
    path = save_particleseg3d_labels(labels, tmp_path / "out", "ore2", spacing=0.01)
    assert path == tmp_path / "out" / "ore2" / "ore2.zarr" == particleseg3d_labels_path(tmp_path / "out", "ore2")
    assert json.loads((path / ".zarray").read_text())["zarr_format"] == 2
    stored = zarr.open_array(str(path), mode="r", zarr_format=2)
    np.testing.assert_array_equal(stored[...], labels)
    assert list(stored.attrs["spacing"]) == [0.01] * 3
    with pytest.raises(InputError, match="name"):
        save_particleseg3d_labels(labels, tmp_path / "out", "../up", spacing=0.01)


# --------------------------------------------------------------------------- ps3d segment DIR


def test_batch_over_a_dataset_into_particleseg3d_layout(dataset, scans, tmp_path, capsys, monkeypatch):
    import ps3d_toolkit.segmentation

    sizes = {}
    real = ps3d_toolkit.segmentation.segment

    def recording(image, **kwargs):
        sizes[image.shape, kwargs["spacing"]] = kwargs["particle_size_mm"]
        return real(image, **kwargs)

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", recording)
    out = tmp_path / "predictions"
    code = cli.main(["segment", str(dataset), "--method", "otsu-watershed", "--output-layout", "particleseg3d",
                     "--output", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    # each scan was segmented with its own spacing and particle size from metadata.json
    assert sizes == {(SHAPE, (0.01,) * 3): 0.1, (SHAPE, (0.02,) * 3): 0.2}
    for name in METADATA:
        path = out / name / f"{name}.zarr"
        assert json.loads((path / ".zarray").read_text())["zarr_format"] == 2
        labels = zarr.open_array(str(path), mode="r", zarr_format=2)
        assert labels.shape == SHAPE
        assert int(labels[...].max()) > 0
        assert list(labels.attrs["spacing"]) == [METADATA[name]["spacing"]] * 3
    with open(out / "summary.csv", newline="") as file:
        rows = {row["scan"]: row for row in csv.DictReader(file)}
    assert set(rows) == set(METADATA)
    assert all(row["status"] == "ok" and int(row["particles"]) > 0 for row in rows.values())
    assert int(rows["ore2"]["particles"]) == int(zarr.open_array(str(out / "ore2" / "ore2.zarr"))[...].max())
    assert "ore10" in stdout and "particles" in stdout


def test_batch_reports_a_broken_scan_and_writes_the_others(dataset, tmp_path, capsys):
    broken = dataset / "images" / "broken.zarr"
    broken.mkdir()
    (broken / ".zarray").write_text("{ not json")
    (dataset / "metadata.json").write_text(json.dumps({**METADATA, "broken": {"spacing": 0.01}}))
    out = tmp_path / "predictions"
    code = cli.main(["segment", str(dataset), "--method", "otsu-watershed", "--output-layout", "particleseg3d",
                     "-o", str(out), "-q"])
    capsys.readouterr()
    assert code != 0
    with open(out / "summary.csv", newline="") as file:
        rows = {row["scan"]: row for row in csv.DictReader(file)}
    assert rows["broken"]["status"] == "failed" and "broken.zarr" in rows["broken"]["error"]
    assert rows["ore2"]["status"] == rows["ore10"]["status"] == "ok"
    assert not (out / "broken").exists()
    for name in METADATA:
        assert zarr.open_array(str(out / name / f"{name}.zarr"), mode="r", zarr_format=2).shape == SHAPE


def test_batch_over_a_plain_folder_into_toolkit_layout(tmp_path, scans, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    np.save(folder / "a.npy", scans["ore2"].image)  # its spacing from the shared metadata.json's entry
    save_scan(scans["ore10"].image, folder / "b.tif", spacing=0.02)
    (folder / "metadata.json").write_text(json.dumps({"a": {"spacing": 0.01, "particle_size": 0.1}}))
    out = folder / "labels"  # inside the folder: not taken for a scan
    code = cli.main(["segment", str(folder), "--method", "otsu-watershed", "-o", str(out), "-q"])
    capsys.readouterr()
    assert code == 0
    assert load_scan(out / "a.ome.zarr").spacing == (0.01,) * 3
    assert load_scan(out / "b.ome.zarr").shape == SHAPE
    with open(out / "summary.csv", newline="") as file:
        assert [row["scan"] for row in csv.DictReader(file)] == ["a", "b"]


def test_a_folder_of_slices_with_a_label_file_output_is_one_scan(tmp_path, scans, dataset):
    import tifffile

    slices = tmp_path / "slices"
    slices.mkdir()
    for z in range(3):
        tifffile.imwrite(slices / f"s{z}.tif", scans["ore2"].image[z])
    assert not batch.is_batch(argparse.Namespace(scan=slices, output=tmp_path / "labels.tif"))
    assert batch.is_batch(argparse.Namespace(scan=slices, output=tmp_path / "labels"))
    assert batch.is_batch(argparse.Namespace(scan=dataset, output=tmp_path / "out"))
    assert not batch.is_batch(argparse.Namespace(scan=dataset / "images" / "ore2.zarr", output=tmp_path / "o.zarr"))


def test_output_layout_is_refused_for_a_single_scan(dataset, tmp_path, capsys):
    code = cli.main(["segment", str(dataset / "images" / "ore2.zarr"), "--output-layout", "particleseg3d",
                     "-o", str(tmp_path / "l.zarr")])
    err = capsys.readouterr().err
    assert code == 2 and "--output-layout" in err
    assert not (tmp_path / "l.zarr").exists()


def test_batch_segments_only_the_scans_named(dataset, tmp_path, capsys):
    out = tmp_path / "predictions"
    code = cli.main(["segment", str(dataset), "--scans", "ore10", "--method", "otsu-watershed",
                     "--output-layout", "particleseg3d", "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    with open(out / "summary.csv", newline="") as file:
        assert [row["scan"] for row in csv.DictReader(file)] == ["ore10"]
    assert (out / "ore10" / "ore10.zarr").exists() and not (out / "ore2").exists()
    code = cli.main(["segment", str(dataset), "--scans", "ore3", "-o", str(tmp_path / "none"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "'ore3'" in err and "ore2, ore10" in err
