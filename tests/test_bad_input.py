"""Bad input, hostile files and faults: never a silent wrong answer, never lost data.

Every case a careful new user tried (issue 13) and more, through the command
line and the API: each asserts the exit code or the toolkit's own error, the
one-line message naming the problem, and that no output or temporary file
remains. docs/reliability.md lists the cases and what each gets.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr
from conftest import assert_one_line_error, ball, listing as _listing

from ps3d_toolkit import io
from ps3d_toolkit.core.errors import CorruptDataError, InputError, InputTypeError, Ps3dError
from ps3d_toolkit.io import load_labels, load_scan, save_labels, save_scan
from ps3d_toolkit.segmentation import METHODS, segment
from ps3d_toolkit.training.loop import TrainingConfig, train

SPACING = 0.01
HAVE_PORESPY = importlib.util.find_spec("porespy") is not None
AVAILABLE_METHODS = tuple(m for m in METHODS if m != "snow" or HAVE_PORESPY)
SEGMENT_METHODS = [pytest.param(m, marks=[pytest.mark.needs_porespy] if m == "snow" else [])
                   for m in METHODS]





# ==================================================================================================
# The command line's door: outputs, devices, flags, the error contract
# ==================================================================================================


@pytest.fixture
def scan_image():
    """Two bright balls in a dark 24 x 32 x 40 float32 scan."""
    image = np.full((24, 32, 40), 100.0, np.float32)
    image[ball(image.shape, (12, 16, 10), 6) | ball(image.shape, (12, 16, 28), 6)] = 200.0
    return image


@pytest.fixture
def scan_tif(tmp_path, scan_image):
    return save_scan(scan_image, tmp_path / "scan.tif", spacing=SPACING)


@pytest.fixture
def fake_segment(monkeypatch):
    """Replace segment() by a stand-in that records its keyword arguments and finds one particle."""
    import ps3d_toolkit.segmentation

    calls = []

    def segment(image, **kwargs):
        calls.append(kwargs)
        return np.ones(np.shape(image), np.uint32)

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", segment)
    return calls


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if a command reads its scan: its refusal must come first."""
    import ps3d_toolkit.io

    def refuse(*args, **kwargs):
        pytest.fail("the scan was read before the refusal")

    monkeypatch.setattr(ps3d_toolkit.io, "load_scan", refuse)
    monkeypatch.setattr(ps3d_toolkit.io, "load_labels", refuse)


# --------------------------------------------------------------------------- segment: the output


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_segment_onto_its_own_scan_is_refused_and_the_scan_kept(ps3d, tmp_path, scan_image, fake_segment,
                                                               suffix):
    scan = save_scan(scan_image, tmp_path / f"scan{suffix}", spacing=SPACING)
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan, "-o", scan, "--method", "otsu-watershed", "--overwrite")
    assert_one_line_error(code, err, str(scan), "input")
    assert _listing(tmp_path) == before
    assert fake_segment == []


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_segment_onto_an_existing_directory_keeps_it(ps3d, tmp_path, scan_tif, fake_segment, overwrite):
    results = tmp_path / "results.tif"
    (results / "inner").mkdir(parents=True)
    (results / "notes.txt").write_text("mine")
    (results / "inner" / "data.bin").write_bytes(b"\x00\x01")
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan_tif, "-o", results, "--method", "otsu-watershed", *overwrite)
    assert_one_line_error(code, err, str(results), "directory")
    assert _listing(tmp_path) == before
    assert fake_segment == []


def test_segment_refuses_an_existing_output_unless_overwrite(ps3d, tmp_path, scan_tif, fake_segment):
    out = tmp_path / "labels.npy"
    out.write_bytes(b"previous result")
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan_tif, "-o", out, "--method", "otsu-watershed")
    assert_one_line_error(code, err, str(out), "exists", "--overwrite")
    assert "overwrite=True" not in err            # the command line's words, not the API's
    assert _listing(tmp_path) == before and fake_segment == []

    code, _, err = ps3d("segment", scan_tif, "-o", out, "--method", "otsu-watershed", "--overwrite", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out), 1)
    # the labels, their spacing, and the record of how they were made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json", "labels.npy", "labels.npy.ps3d.json",
                                                          "scan.tif"]


def _refuse_probes_in(monkeypatch, folder: Path):
    """Make every temporary file in ``folder`` fail as in a read-only folder (root ignores permissions)."""
    original = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if Path(kwargs.get("dir") or ".").resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, "Permission denied")
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("read_only", ["probe", "chmod"])
def test_segment_into_a_read_only_folder_is_refused_before_reading(ps3d, tmp_path, scan_tif, monkeypatch,
                                                                   no_reading, read_only):
    folder = tmp_path / "locked"
    folder.mkdir()
    if read_only == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the 'probe' case covers it")
        folder.chmod(0o555)
    else:
        _refuse_probes_in(monkeypatch, folder)
    try:
        before = _listing(tmp_path)
        code, _, err = ps3d("segment", scan_tif, "-o", folder / "labels.tif", "--method", "otsu-watershed")
        assert_one_line_error(code, err, str(folder))
        assert _listing(tmp_path) == before
    finally:
        folder.chmod(0o755)


def test_segment_refuses_an_uncompressed_output_that_will_not_fit(ps3d, tmp_path, scan_tif, monkeypatch,
                                                                 fake_segment):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan_tif, "-o", tmp_path / "labels.npy", "--method", "otsu-watershed")
    # 24 x 32 x 40 voxels of uint32: 122,880 bytes
    assert_one_line_error(code, err, "labels.npy", "122,880 bytes")
    assert _listing(tmp_path) == before and fake_segment == []
    # a compressed format's size is unknown before writing: not refused
    assert ps3d("segment", scan_tif, "-o", tmp_path / "labels.tif", "--method", "otsu-watershed", "-q")[0] == 0


# --------------------------------------------------------------------------- segment: device and values


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_segment_on_a_missing_device_fails_at_once_without_reading(ps3d, tmp_path, scan_tif, no_reading, device):
    torch = pytest.importorskip("torch")
    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"this machine has {device}")
    before = _listing(tmp_path)
    # no timing: the no_reading fixture fails the test if the scan is read before the refusal
    code, _, err = ps3d("segment", scan_tif, "-o", tmp_path / "labels.tif", "--device", device)
    assert_one_line_error(code, err, device, "not available")
    assert _listing(tmp_path) == before


@pytest.mark.needs_porespy
def test_device_with_a_classic_method_is_refused(ps3d, tmp_path, scan_tif, no_reading):
    code, _, err = ps3d("segment", scan_tif, "-o", tmp_path / "l.tif", "--method", "snow", "--device", "cpu")
    assert_one_line_error(code, err, "--device", "snow")


def test_segment_refuses_nan_grey_values_unless_masked(ps3d, tmp_path, scan_image):
    scan_image[3, 4, 5] = np.nan
    scan = save_scan(scan_image, tmp_path / "scan.tif", spacing=SPACING)
    out = tmp_path / "labels.tif"
    before = _listing(tmp_path)
    argv = ["segment", scan, "-o", out, "--method", "otsu-watershed", "--particle-size", "0.12", "-q"]
    code, _, err = ps3d(*argv)
    assert_one_line_error(code, err, "1", "--non-finite mask")
    assert _listing(tmp_path) == before

    code, _, err = ps3d(*argv, "--non-finite", "mask")
    assert code == 0, err
    assert load_labels(out).max() == 2


@pytest.mark.needs_porespy
def test_non_finite_choice_reaches_segment(ps3d, tmp_path, scan_tif, fake_segment):
    assert ps3d("segment", scan_tif, "-o", tmp_path / "l.tif", "--method", "snow", "--non-finite", "mask",
                "-q")[0] == 0
    assert fake_segment[-1]["non_finite"] == "mask"
    assert ps3d("segment", scan_tif, "-o", tmp_path / "m.tif", "--method", "snow", "-q")[0] == 0
    assert fake_segment[-1]["non_finite"] == "refuse"


# --------------------------------------------------------------------------- measure, evaluate, report


@pytest.fixture
def grey_as_labels(tmp_path):
    """A uint8 noise scan saved where a label image belongs (every value a scattered 'particle')."""
    image = np.random.default_rng(0).integers(1, 256, (20, 20, 20)).astype(np.uint8)
    return save_labels(image, tmp_path / "scan_not_labels.tif", spacing=SPACING)


def test_measure_refuses_a_grey_scan_as_labels_unless_forced(ps3d, tmp_path, grey_as_labels):
    out = tmp_path / "particles.csv"
    before = _listing(tmp_path)
    code, _, err = ps3d("measure", grey_as_labels, "-o", out)
    assert_one_line_error(code, err, "grey-value scan", "--force")
    assert _listing(tmp_path) == before

    code, _, err = ps3d("measure", grey_as_labels, "-o", out, "--force", "-q")
    assert code == 0, err
    assert err.startswith("ps3d: warning: ") and len(err.splitlines()) == 1 and "grey-value" in err
    assert len(out.read_text().splitlines()) == 1 + 255


def test_measure_of_real_labels_is_not_refused(ps3d, tmp_path, two_balls):
    _, labels = two_balls
    path = save_labels(labels, tmp_path / "labels.tif", spacing=SPACING)
    code, _, err = ps3d("measure", path, "-o", tmp_path / "p.csv", "-q")
    assert code == 0 and err == ""


def test_evaluate_refuses_a_grey_scan_as_labels_unless_forced(ps3d, tmp_path, grey_as_labels):
    truth = np.zeros((20, 20, 20), np.uint32)
    truth[5:10, 5:10, 5:10] = 1
    truth_path = save_labels(truth, tmp_path / "truth.tif", spacing=SPACING)
    code, out, err = ps3d("evaluate", truth_path, grey_as_labels)
    assert_one_line_error(code, err, "pred", "--force")
    assert out == ""
    code, out, err = ps3d("evaluate", truth_path, grey_as_labels, "--force", "--json")
    assert code == 0 and '"n_pred": 255' in out


@pytest.fixture
def nan_pair(tmp_path, two_balls):
    """Label and grey-value files of two balls; two grey values of ball 1 are NaN."""
    image, labels = two_balls
    image = image.copy()
    image[12, 16, 10] = image[12, 16, 11] = np.nan
    return (save_labels(labels, tmp_path / "labels.tif", spacing=1.0),
            save_scan(image, tmp_path / "scan.tif", spacing=1.0))


def test_measure_refuses_nan_grey_values_unless_masked(ps3d, tmp_path, nan_pair):
    import pandas as pd

    labels, scan = nan_pair
    out = tmp_path / "particles.csv"
    before = _listing(tmp_path)
    code, _, err = ps3d("measure", labels, "--image", scan, "-o", out)
    assert_one_line_error(code, err, "2 NaN", "--non-finite mask")
    assert _listing(tmp_path) == before

    code, _, err = ps3d("measure", labels, "--image", scan, "-o", out, "--non-finite", "mask", "-q")
    assert code == 0, err
    table = pd.read_csv(out)
    columns = [c for c in table.columns if c.startswith("intensity_")]
    assert np.isfinite(table[columns].to_numpy()).all()
    assert (table["intensity_min"] == 200).all() and (table["intensity_max"] == 200).all()


def test_report_refuses_nan_grey_values_and_existing_outputs(ps3d, tmp_path, nan_pair):
    labels, scan = nan_pair
    html = tmp_path / "report.html"
    before = _listing(tmp_path)
    code, _, err = ps3d("report", labels, "--image", scan, "-o", html)
    assert_one_line_error(code, err, "--non-finite mask")
    assert _listing(tmp_path) == before

    # one of the CSV tables beside --csv exists: refused before any work
    (tmp_path / "tables_summary.csv").write_text("keep")
    before = _listing(tmp_path)
    code, _, err = ps3d("report", labels, "--image", scan, "-o", html, "--csv", tmp_path / "tables.csv",
                        "--non-finite", "mask")
    assert_one_line_error(code, err, "tables_summary.csv", "--overwrite")
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- convert, export, train, demo


def test_convert_onto_its_source_or_an_existing_file_is_refused(ps3d, tmp_path, scan_tif):
    before = _listing(tmp_path)
    assert_one_line_error(*ps3d("convert", scan_tif, scan_tif, "--overwrite")[::2], "input")
    other = tmp_path / "other.npy"
    other.write_bytes(b"keep")
    before = _listing(tmp_path)
    assert_one_line_error(*ps3d("convert", scan_tif, other)[::2], "exists", "--overwrite")
    assert _listing(tmp_path) == before
    assert ps3d("convert", scan_tif, other, "--overwrite", "-q")[0] == 0
    assert np.load(other).shape == (24, 32, 40)


def test_convert_of_a_zarr_with_a_missing_chunk_needs_the_flag(ps3d, tmp_path, scan_image):
    store = save_scan(np.tile(scan_image, (3, 1, 1)), tmp_path / "scan.zarr", spacing=SPACING)
    chunks = sorted(p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")
                    and p.name != "zarr.json")
    assert len(chunks) > 1
    chunks[-1].unlink()
    before = _listing(tmp_path)
    out = tmp_path / "copy.npy"
    code, _, err = ps3d("convert", store, out)
    assert_one_line_error(code, err, "missing", "--allow-missing-chunks")
    assert _listing(tmp_path) == before
    code, _, err = ps3d("convert", store, out, "--allow-missing-chunks", "-q")
    assert code == 0 and "fill value" in err


def test_export_onto_its_source_is_refused_before_any_work(ps3d, tmp_path, monkeypatch):
    import ps3d_toolkit.training.export

    monkeypatch.setattr(ps3d_toolkit.training.export, "export_weights", lambda *a, **k: pytest.fail("exported"))
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights")
    before = _listing(tmp_path)
    assert_one_line_error(*ps3d("export", src, src, "--overwrite")[::2], "input")
    assert_one_line_error(*ps3d("export", src, tmp_path / "model.pt")[::2], "input")
    (tmp_path / "mine.pt").write_bytes(b"older")
    before = _listing(tmp_path)
    assert_one_line_error(*ps3d("export", src, tmp_path / "mine.pt")[::2], "exists", "--overwrite")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("case", ["a file", "a data folder", "read-only"])
def test_train_refuses_a_bad_run_folder_before_any_work(ps3d, tmp_path, monkeypatch, case):
    import ps3d_toolkit.training.loop

    monkeypatch.setattr(ps3d_toolkit.training.loop, "train", lambda *a, **k: pytest.fail("trained"))
    data = tmp_path / "my_labels"
    data.mkdir()
    output = {"a file": tmp_path / "run.txt", "a data folder": data, "read-only": tmp_path / "runs"}[case]
    if case == "a file":
        output.write_text("keep")
    if case == "read-only":
        output.mkdir()
        _refuse_probes_in(monkeypatch, output)
    before = _listing(tmp_path)
    code, _, err = ps3d("train", "--output", output, "--data", data, "-q")
    assert_one_line_error(code, err, str(output))
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("argv, fragment", [
    (["--lr", "-1"], "--lr"),
    (["--synthetic-fraction", "2"], "--synthetic-fraction"),
    (["--steps", "0"], "--steps"),
    (["--patch-size", "8"], "--patch-size"),
    (["--preset-weights", "0", "0", "0"], "--preset-weights"),
    (["--device", "tpu"], "tpu"),
])
def test_train_refuses_bad_settings_before_any_work(ps3d, tmp_path, monkeypatch, argv, fragment):
    import ps3d_toolkit.training.loop

    monkeypatch.setattr(ps3d_toolkit.training.loop, "train", lambda *a, **k: pytest.fail("trained"))
    code, _, err = ps3d("train", "--output", tmp_path / "run", *argv, "-q")
    assert_one_line_error(code, err, fragment)
    assert _listing(tmp_path) == []


def test_demo_reruns_into_its_own_folder_but_never_onto_a_foreign_directory(ps3d, tmp_path, monkeypatch):
    import ps3d_toolkit.data
    from ps3d_toolkit.cli.demo import DEMO_FILES
    from ps3d_toolkit.core.errors import InputError

    def stop(*args, **kwargs):
        raise InputError("the door let the demo in")

    monkeypatch.setattr(ps3d_toolkit.data, "load_sample", stop)
    folder = tmp_path / "demo"
    folder.mkdir()
    for name in DEMO_FILES:                              # a previous run's results
        (folder / name).write_text("old")
    assert_one_line_error(*ps3d("demo", "-o", folder, "-q")[::2], "the door let the demo in")
    (folder / "labels.tif").unlink()
    (folder / "labels.tif").mkdir()                      # not a file the demo wrote
    (folder / "labels.tif" / "keep.txt").write_text("keep")
    before = _listing(tmp_path)
    assert_one_line_error(*ps3d("demo", "-o", folder, "-q")[::2], "labels.tif", "directory")
    assert _listing(tmp_path) == before


# --------------------------------------------------------------------------- the error contract


def test_an_internal_bug_exits_1_asking_for_a_report(ps3d, tmp_path, monkeypatch):
    from ps3d_toolkit.cli import evaluate

    monkeypatch.setattr(evaluate, "run", lambda args: 1 / 0)
    code, out, err = ps3d("evaluate", tmp_path / "a.tif", tmp_path / "b.tif")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ps3d: internal error: ZeroDivisionError")
    assert "please report" in lines[0] and "PS3D_DEBUG=1" in lines[0]


def test_debug_shows_the_traceback_of_a_bug_and_of_a_user_error(tmp_path, monkeypatch):
    from ps3d_toolkit import cli
    from ps3d_toolkit.cli import evaluate
    from ps3d_toolkit.core.errors import OutputError

    monkeypatch.setenv("PS3D_DEBUG", "1")
    monkeypatch.setattr(evaluate, "run", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["evaluate", str(tmp_path / "a.tif"), str(tmp_path / "b.tif")])
    scan = save_scan(np.zeros((4, 4, 4), np.uint8), tmp_path / "scan.tif", spacing=SPACING)
    with pytest.raises(OutputError):
        cli.main(["convert", str(scan), str(scan)])



# ==================================================================================================
# Readers and writers: truncated, mixed, incomplete and damaged files; full disks
# ==================================================================================================


@pytest.fixture
def grey():
    return (np.arange(12 * 16 * 20) % 997).reshape(12, 16, 20).astype(np.uint16)


def test_convert_promotes_a_folder_of_mixed_slice_types_with_one_warning(ps3d, tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "z0.tif", np.full((6, 8), 9, np.uint8))
    tifffile.imwrite(folder / "z1.tif", np.full((6, 8), 4000, np.uint16))
    code, _, err = ps3d("convert", folder, tmp_path / "scan.npy", "--spacing", SPACING, "-q")
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ps3d: warning: the slices of") and "as uint16" in lines[0]
    assert np.load(tmp_path / "scan.npy")[:, 0, 0].tolist() == [9, 4000]


def test_convert_refuses_slices_with_no_exact_common_type(ps3d, tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    tifffile.imwrite(folder / "z0.tif", np.full((6, 8), 2**60, np.int64))
    tifffile.imwrite(folder / "z1.tif", np.full((6, 8), 0.5, np.float32))
    before = _listing(tmp_path)
    code, _, err = ps3d("convert", folder, tmp_path / "scan.npy", "--spacing", SPACING)
    assert_one_line_error(code, err, "z1.tif", "float32", "int64", "convert the slices to one type")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_convert_of_a_truncated_tiff_says_so_in_one_line(ps3d, tmp_path, grey, compression):
    source = tmp_path / "cut.tif"
    tifffile.imwrite(source, grey, compression=compression)
    source.write_bytes(source.read_bytes()[: source.stat().st_size * 2 // 3])
    before = _listing(tmp_path)
    code, _, err = ps3d("convert", source, tmp_path / "copy.npy", "--spacing", SPACING)
    assert_one_line_error(code, err, "cut.tif", "the file is truncated or damaged (")  # no tifffile log line
    assert _listing(tmp_path) == before


def test_convert_of_a_zarr_with_a_corrupt_chunk_names_it_and_leaves_nothing(ps3d, tmp_path, grey):
    store = save_scan(np.tile(grey, (6, 1, 1)), tmp_path / "scan.zarr", spacing=SPACING)  # 72 slices: 2 chunks
    (store / "c" / "1" / "0" / "0").write_bytes(b"\x28\xb5\x2f\xfd garbage")
    before = _listing(tmp_path)
    for target in ("copy.tif", "copy.npy", "copy.zarr"):
        code, _, err = ps3d("convert", store, tmp_path / target, "-q")
        assert_one_line_error(code, err, "cannot read chunk (1, 0, 0) (key 'c/1/0/0')", "scan.zarr")
        assert _listing(tmp_path) == before


def test_convert_never_replaces_a_directory_it_did_not_write(ps3d, tmp_path, grey):
    source = save_scan(grey, tmp_path / "scan.npy", spacing=SPACING)
    for name in ("results.tif", "results.zarr"):
        target = tmp_path / name
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    for name in ("results.tif", "results.zarr"):
        for extra in ((), ("--overwrite",)):
            code, _, err = ps3d("convert", source, tmp_path / name, *extra)
            assert_one_line_error(code, err, name, "did not write")
    assert _listing(tmp_path) == before


def test_convert_onto_a_disk_that_fills_up_is_one_line_and_leaves_no_temp(ps3d, tmp_path, grey, monkeypatch):
    source = save_scan(grey, tmp_path / "scan.zarr", spacing=SPACING)

    class FullDisk:
        def __init__(self, path, mode):
            self.handle = open(path, mode)  # noqa: SIM115

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(io.writers, "open", FullDisk, raising=False)
    before = _listing(tmp_path)
    code, _, err = ps3d("convert", source, tmp_path / "copy.npy", "-q")
    assert_one_line_error(code, err, "copy.npy", "No space left on device", "free some space")
    assert _listing(tmp_path) == before


def test_api_readers_and_writers_raise_the_toolkit_errors(tmp_path, grey):
    """The same cases through the API: each error is a Ps3dError of the documented kind."""
    from ps3d_toolkit.core.errors import CorruptDataError, InputError, OutputError, Ps3dError

    store = save_scan(grey, tmp_path / "scan.zarr", spacing=SPACING)
    (store / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(CorruptDataError) as missing:
        load_scan(store)
    with pytest.raises(InputError, match="missing_chunks"):
        load_scan(store, missing_chunks=True)
    (tmp_path / "out.npy").mkdir()
    with pytest.raises(OutputError) as directory:
        io.save_scan(grey, tmp_path / "out.npy")
    assert all(isinstance(info.value, Ps3dError) for info in (missing, directory))
    assert zarr.open_array(str(store), mode="r").attrs["written_by"].startswith("ps3d_toolkit")



# ==================================================================================================
# Segmentation's door: non-finite values, scale, memory, blank scans
# ==================================================================================================


# Two bright balls of 12 voxels across in a dark, noisy 32 x 40 x 48 scan.
SHAPE = (32, 40, 48)
SIZE_MM = 0.12


@pytest.fixture
def two_grains():
    """Grey scan (float32) and labels of two separate balls of radius 6 in noisy epoxy."""
    truth = np.zeros(SHAPE, np.uint32)
    truth[ball(SHAPE, (16, 20, 14), 6)] = 1
    truth[ball(SHAPE, (16, 20, 33), 6)] = 2
    noise = np.random.default_rng(0).normal(0, 5, SHAPE)
    return (np.where(truth > 0, 200.0, 100.0) + noise).astype(np.float32), truth


def _segment(image, method, **options):
    return segment(image, spacing=SPACING, method=method, progress=False, **options)


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize("method", SEGMENT_METHODS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_voxel_is_refused_naming_the_count(two_grains, method, value):
    image, _ = two_grains
    image[3, 4, 5] = value
    image[20, 30, 40] = value
    with pytest.raises(InputError, match=r"2 NaN or infinite grey values \(of 61,440 voxels\).*non_finite='mask'"):
        _segment(image, method, particle_size_mm=SIZE_MM)
    with pytest.raises(InputError, match="2 NaN or infinite"):  # the size estimate's path too
        _segment(image, method)


@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_masked_non_finite_voxels_are_background_and_change_nothing_else(sample, method):
    scan, truth = sample
    crop = (slice(0, 64), slice(32, 96), slice(32, 96))  # air, epoxy and ~40 grains
    image = np.asarray(scan.image, np.float32)[crop]
    options = {"spacing": scan.spacing, "particle_size_mm": scan.particle_size_mm, "method": method,
               "progress": False}
    clean = segment(image, **options)
    assert clean.max() > 20
    grain, background = np.argwhere(truth[crop] > 0), np.argwhere(truth[crop] == 0)
    holes = [tuple(grain[len(grain) // 3]), tuple(grain[2 * len(grain) // 3]), tuple(background[0]),
             tuple(background[-1])]
    for index, value in zip(holes, [np.nan, np.inf, -np.inf, np.nan]):
        image[index] = value
    masked = segment(image, non_finite="mask", **options)
    assert masked.dtype == np.uint32 and abs(int(masked.max()) - int(clean.max())) <= 1
    assert all(masked[index] == 0 for index in holes)
    others = np.ones(image.shape, bool)
    others[tuple(np.transpose(holes))] = False
    assert np.mean(masked[others] == clean[others]) > 0.99


def test_masking_logs_how_many_voxels(two_grains, caplog):
    image, _ = two_grains
    image[0, 0, :3] = np.nan
    with caplog.at_level(logging.INFO, logger="ps3d_toolkit"):
        _segment(image, "otsu-watershed", particle_size_mm=SIZE_MM, non_finite="mask")
    assert any("3 NaN or infinite voxels" in r.getMessage() and "background" in r.getMessage()
               for r in caplog.records)


def test_a_scan_without_a_finite_value_is_refused_even_masked():
    with pytest.raises(InputError, match="no finite grey value"):
        _segment(np.full((8, 8, 8), np.nan, np.float32), "otsu-watershed", non_finite="mask")


def test_an_unknown_non_finite_choice_is_refused(two_grains):
    with pytest.raises(InputError, match="non_finite must be one of"):
        _segment(two_grains[0], "otsu-watershed", non_finite="ignore")


def test_the_finite_check_copies_nothing_for_integer_scans(two_grains, monkeypatch):
    import ps3d_toolkit.core.checks as checks

    image = two_grains[0].astype(np.uint16)
    monkeypatch.setattr(checks.np, "isfinite", lambda *a, **k: pytest.fail("isfinite on an integer scan"))
    assert checks.count_non_finite(image) == 0


def test_the_finite_count_works_slab_by_slab(monkeypatch):
    import ps3d_toolkit.core.checks as checks

    monkeypatch.setattr(checks, "_FINITE_SLAB_VALUES", 100)  # 1 z-slice of 10 x 10 at a time
    image = np.zeros((10, 10, 10))
    image[0, 0, 0] = image[9, 9, 9] = np.nan
    image[5, 5, 5] = -np.inf
    assert checks.count_non_finite(image) == 3


# --------------------------------------------------------------------------- complex values


def test_complex_scans_are_refused(two_grains):
    from ps3d_toolkit.core.checks import check_lazy_volume

    image = two_grains[0].astype(np.complex64)
    for method in AVAILABLE_METHODS:
        with pytest.raises(InputTypeError, match="complex"):
            _segment(image, method, particle_size_mm=SIZE_MM)

    class LazyComplex:  # a zarr- or dask-like array: shape and dtype, values never read
        shape, dtype = SHAPE, np.dtype(np.complex128)

    with pytest.raises(InputTypeError, match="complex"):
        check_lazy_volume(LazyComplex())


# --------------------------------------------------------------------------- particle size and spacing


@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_a_particle_under_3_voxels_is_refused(two_grains, method):
    for size in (1e-9, 0.02):  # 1e-7 and 2 voxels
        with pytest.raises(InputError, match=r"particle_size_mm .* voxels across .*at least 3 voxels"):
            _segment(two_grains[0], method, particle_size_mm=size)


@pytest.mark.parametrize("method", SEGMENT_METHODS)
def test_a_particle_larger_than_the_scan_is_refused(two_grains, method):
    # the scan is at most 48 voxels of 0.01 mm = 0.48 mm across
    with pytest.raises(InputError, match=r"larger than the scan \(32 x 40 x 48 voxels .*0\.48 mm at most\)"):
        _segment(two_grains[0], method, particle_size_mm=0.5)


def test_anisotropic_spacing_counts_the_coarsest_axis(two_grains):
    image = two_grains[0]
    # 0.12 mm is 12 voxels along y and x, but only 2.4 slices of 0.05 mm along z
    with pytest.raises(InputError, match="2.4 voxels"):
        segment(image, spacing=(0.05, 0.01, 0.01), particle_size_mm=0.12, method="otsu-watershed",
                progress=False)
    labels = segment(image, spacing=(0.02, 0.01, 0.01), particle_size_mm=0.12, method="otsu-watershed",
                     progress=False)
    assert labels.max() >= 1


def test_a_thin_scan_takes_a_particle_that_fits_its_largest_extent():
    image = np.full((2, 64, 64), 100.0, np.float32)
    image[:, 20:32, 20:32] = 200
    labels = segment(image, spacing=SPACING, particle_size_mm=0.12, method="otsu-watershed", progress=False)
    assert labels.shape == image.shape


@pytest.mark.parametrize("spacing", [1e-300, 1e300, (0.01, 0.01, 1e-12)])
def test_an_absurd_spacing_is_refused_in_words(two_grains, spacing):
    for size in (None, SIZE_MM):
        with pytest.raises(InputError, match=r"spacing .* is not a plausible voxel size .*give the spacing in mm"):
            segment(two_grains[0], spacing=spacing, particle_size_mm=size, method="otsu-watershed",
                    progress=False)


# --------------------------------------------------------------------------- no particles where there are none


def _blank(kind: str, shape=(48, 48, 48)) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":
        return np.full(shape, 12345, np.uint16)
    return np.random.default_rng(7).normal(1000, 50, shape).astype(np.float32)


@pytest.mark.parametrize("method", SEGMENT_METHODS)
@pytest.mark.parametrize("kind", ["zeros", "constant", "noise"])
def test_an_empty_constant_or_noise_scan_has_no_particles(method, kind, caplog):
    with caplog.at_level(logging.WARNING, logger="ps3d_toolkit"):
        for size in (SIZE_MM, None):
            labels = _segment(_blank(kind), method, particle_size_mm=size)
            assert labels.dtype == np.uint32 and labels.shape == (48, 48, 48)
            assert not labels.any()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("no grain contrast" in w for w in warnings)


def test_grain_contrast_tells_noise_from_grains(two_grains):
    from ps3d_toolkit.segmentation._checks import MIN_GRAIN_CONTRAST, grain_contrast

    image, _ = two_grains
    assert grain_contrast(image) > 10 * MIN_GRAIN_CONTRAST
    assert grain_contrast(np.zeros((20, 20, 20))) == 0
    for seed in range(3):
        noise = np.random.default_rng(seed).normal(size=(40, 40, 40))
        assert 0.7 < grain_contrast(noise) < 1.5 < MIN_GRAIN_CONTRAST
        assert grain_contrast(noise.astype(np.float32) * 1e30) < 1.5  # no overflow
    # two faint grains (3 noise sigmas brighter) filling 3 % of the scan still count
    faint = np.where(two_grains[1] > 0, 3.0, 0.0) + np.random.default_rng(1).normal(size=SHAPE)
    assert grain_contrast(faint) > 2 * MIN_GRAIN_CONTRAST


# --------------------------------------------------------------------------- command line




@pytest.fixture
def two_grains_tif(tmp_path, two_grains):
    from ps3d_toolkit.io import save_scan

    return save_scan(two_grains[0], tmp_path / "scan.tif", spacing=SPACING)


@pytest.mark.parametrize("method", ["otsu-watershed", "model"])
@pytest.mark.parametrize("size, words", [("1e-9", "at least 3 voxels"), ("0.02", "at least 3 voxels"),
                                         ("5", "larger than the scan")])
def test_cli_refuses_a_particle_size_out_of_scale(ps3d, tmp_path, two_grains_tif, method, size, words):
    before = _listing(tmp_path)
    code, out, err = ps3d("segment", two_grains_tif, "-o", tmp_path / "labels.tif", "--method", method,
                          "--particle-size", size)
    assert_one_line_error(code, err, words, "particle")
    assert out == "" and _listing(tmp_path) == before


def test_cli_refuses_an_absurd_spacing_in_words(ps3d, tmp_path, two_grains):
    scan = tmp_path / "scan.npy"
    np.save(scan, two_grains[0])  # no stored spacing: --spacing gives it
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan, "-o", tmp_path / "labels.tif", "--method", "otsu-watershed",
                        "--spacing", "1e-300")
    assert_one_line_error(code, err, "1e-300", "not a plausible voxel size")
    assert _listing(tmp_path) == before


def test_cli_refuses_weights_of_another_network(ps3d, tmp_path, two_grains_tif):
    import torch

    weights = tmp_path / "other.pt"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}, "config": {}}, weights)
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", two_grains_tif, "-o", tmp_path / "labels.tif", "--weights", weights,
                        "--device", "cpu")
    assert_one_line_error(code, err, "other.pt", "not a weights file for this network", "missing keys",
                          "unexpected keys encoder.weight")
    assert _listing(tmp_path) == before


class _Touch:
    """Unpickling this object with plain pickle creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_cli_refuses_a_crafted_weights_pickle_without_running_it(ps3d, tmp_path, two_grains_tif):
    import torch

    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "config": _Touch(marker)}, weights)
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", two_grains_tif, "-o", tmp_path / "labels.tif", "--weights", weights,
                        "--device", "cpu")
    assert_one_line_error(code, err, "evil.pt")
    assert not marker.exists() and _listing(tmp_path) == before


def test_cli_says_why_a_noise_scan_has_no_particles(ps3d, tmp_path):
    from ps3d_toolkit.io import load_labels, save_scan

    scan = save_scan(_blank("noise"), tmp_path / "noise.tif", spacing=SPACING)
    for method in AVAILABLE_METHODS:
        out = tmp_path / f"{method}.tif"
        code, _, err = ps3d("segment", scan, "-o", out, "--method", method, "--particle-size", "0.12", "-q")
        assert code == 0, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ps3d: warning: ") and "no grain contrast" in lines[0]
        assert not load_labels(out).any()


def test_every_refusal_is_the_toolkits_error(two_grains):
    image = two_grains[0]
    for kwargs in ({"particle_size_mm": 1e-9}, {"particle_size_mm": 1e9}, {"spacing": 1e-300}):
        options = {"spacing": SPACING, "method": "otsu-watershed", "progress": False} | kwargs
        with pytest.raises(Ps3dError):
            segment(image, **options)



# ==================================================================================================
# Crafted pickles: a checkpoint, weights, a .npy and a zarr run no code
# ==================================================================================================


class _Payload:
    """Unpickling this object creates ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / "last.pt"
    torch.save({"model": _Payload(marker)}, last, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return last


def test_crafted_checkpoint_is_refused_by_the_api_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    last = _crafted_checkpoint(tmp_path / "run", marker)
    # the crafted file really is executable: an unsafe load creates the marker
    torch.load(last, weights_only=False)
    assert marker.exists()
    marker.unlink()
    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=1, batch_size=1, patch_size=32,
                            pool_size=1, val_every=0, seed=0, threads=1)
    with pytest.raises(CorruptDataError, match="cannot resume from .*last.pt"):
        train(config, progress=False)
    assert not marker.exists()
    assert last.read_bytes()  # the user's file is left as it was


def test_crafted_checkpoint_is_refused_by_the_cli(tmp_path, ps3d):
    marker = tmp_path / "pwned"
    _crafted_checkpoint(tmp_path / "run", marker)
    code, _, err = ps3d("train", "--output", str(tmp_path / "run"), "--steps", "1", "--batch-size", "1",
                  "--patch-size", "32", "--pool-size", "1", "--val-every", "0", "--threads", "1", "-q")
    assert_one_line_error(code, err, "cannot resume from", "last.pt")
    assert not marker.exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]


def test_checkpoint_without_the_run_state_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"model": {}}, folder / "last.pt")
    config = TrainingConfig(output_dir=str(folder), steps=1, batch_size=1, patch_size=32,
                            pool_size=1, val_every=0, seed=0, threads=1)
    with pytest.raises(CorruptDataError, match="lacks"):
        train(config, progress=False)


def test_npy_holding_pickled_objects_is_refused_unread(tmp_path):
    import numpy as np

    from ps3d_toolkit.io import load_scan

    marker = tmp_path / "pwned"
    path = tmp_path / "scan.npy"
    np.save(path, np.array([[[_Payload(marker)]]], dtype=object), allow_pickle=True)
    with pytest.raises(Ps3dError, match="scan.npy"):
        load_scan(path, spacing=0.01)
    assert not marker.exists()


def test_zarr_with_a_pickle_codec_is_refused_unread(tmp_path):
    import json

    from ps3d_toolkit.io import load_scan

    marker = tmp_path / "pwned"
    store = tmp_path / "scan.zarr"
    store.mkdir()
    (store / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [1, 1, 1], "chunks": [1, 1, 1], "dtype": "|O", "compressor": None,
        "fill_value": None, "filters": [{"id": "pickle"}], "order": "C", "dimension_separator": "."}))
    (store / "0.0.0").write_bytes(pickle.dumps(np.array([_Payload(marker)], dtype=object)))
    with pytest.raises(Ps3dError, match="scan.zarr"):
        scan = load_scan(store, spacing=0.01)
        np.asarray(scan.image)
    assert not marker.exists()


# ==================================================================================================
# Faults: SIGTERM in the middle of a write, a file system that is really full
# ==================================================================================================


# A writer that runs in its own process: it fills a small file system, or hangs
# on its input until it is sent SIGTERM.
_WRITER = """
import sys, time
import numpy as np
from ps3d_toolkit.io import save_scan

class Endless:
    shape, dtype = (64 * 100, 8, 8), np.dtype(np.uint8)

    def __getitem__(self, index):
        if index.start > 0:
            while True:
                time.sleep(0.05)
        return np.zeros((index.stop - index.start,) + self.shape[1:], np.uint8)

save_scan(Endless(), sys.argv[1], spacing=1, progress=False)
"""


def _temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("name", ["big.npy", "big.tif", "big.zarr"])
def test_sigterm_during_a_write_removes_the_temp_file(tmp_path, name):
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / name)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not _temp_files(tmp_path):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never created its temporary file"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        process.kill()
    assert list(tmp_path.iterdir()) == []


_FULL_DISK = """
import json, shutil, sys
from pathlib import Path
import numpy as np
from ps3d_toolkit.core.errors import OutputError
from ps3d_toolkit.io import check_output_path, save_scan

folder, results = Path(sys.argv[1]), {}
try:
    check_output_path(folder / "out.tif", expected_bytes=2**20)
except OutputError as error:
    results["check"] = str(error)
image = np.ones((64, 64, 64), np.uint16)                  # 512 KiB: more than the 256 KiB there
for case in ("checked", "unchecked"):
    if case == "unchecked":                              # as if the size were unknown: the disk fills up
        real = shutil.disk_usage
        shutil.disk_usage = lambda path: real(path)._replace(free=2**40)
    try:
        save_scan(image, folder / "scan.npy")
        results[case] = "written"
    except OutputError as error:
        results[case] = str(error)
    results[case + "_left"] = sorted(p.name for p in folder.iterdir())
print(json.dumps(results))
"""


def _in_small_tmpfs(script, *args, options="size=256k"):
    """Run ``script`` in a private mount namespace over a small tmpfs, or skip where one cannot be made."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare command: cannot make a small file system without root")
    folder = Path(tempfile.mkdtemp())
    namespace = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                 f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"', str(folder)]
    try:
        probe = subprocess.run([*namespace, "true"], check=False, capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs without root here: {probe.stderr.strip()[:200]}")
        result = subprocess.run([*namespace, sys.executable, "-c", script, str(folder), *args],
                                check=False, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_real_full_disk_gives_output_errors_and_no_temp_file():
    results = _in_small_tmpfs(_FULL_DISK)
    assert results["checked"].startswith("not enough space to write")
    assert "it needs 524,416 bytes" in results["checked"]
    assert results["unchecked"].startswith("cannot write") and "No space left on device" in results["unchecked"]
    assert results["checked_left"] == results["unchecked_left"] == []
    assert "not enough space to write" in results["check"]


_READ_ONLY = """
import json, sys
from pathlib import Path
import numpy as np
from ps3d_toolkit.core.errors import OutputError
from ps3d_toolkit.io import check_output_path, save_labels

folder, results = Path(sys.argv[1]), {}
for name, call in (("check", lambda: check_output_path(folder / "labels.tif")),
                   ("save", lambda: save_labels(np.ones((2, 2, 2), np.uint32), folder / "labels.npy"))):
    try:
        call()
        results[name] = "passed"
    except OutputError as error:
        results[name] = str(error)
print(json.dumps(results))
"""


def test_read_only_file_system_is_refused():
    results = _in_small_tmpfs(_READ_ONLY, options="size=256k,ro")
    assert results["check"].startswith("cannot write to the folder") and "Read-only file system" in results["check"]
    assert results["save"].startswith("cannot write") and "Read-only file system" in results["save"]


# ==================================================================================================
# Runs left overnight (issue 24): batch mode, lazy arrays, and messages that did not help
# (resume, locks and Dask addresses: tests/test_resume.py)
# ==================================================================================================


@pytest.fixture
def small_crop(sample):
    """The bundled sample cropped to 48^3, its spacing and particle size."""
    scan, _ = sample
    return np.ascontiguousarray(scan.image[:48, :48, :48]), scan.spacing, scan.particle_size_mm


@pytest.fixture
def scan_folder(tmp_path, small_crop):
    image, spacing, size = small_crop
    folder = tmp_path / "scans"
    save_scan(image, folder / "a.tif", spacing=spacing, particle_size_mm=size)
    return folder


def _batch(ps3d, folder, output, *extra):
    return ps3d("segment", folder, "-o", output, "--method", "otsu-watershed", "-q", *extra)


def _summary(output: Path) -> list:
    import csv

    with open(output / "summary.csv", newline="") as file:
        return [(row["scan"], row["status"]) for row in csv.DictReader(file)]


def test_batch_refuses_an_output_folder_inside_the_scan_folder_unless_empty(ps3d, tmp_path, scan_folder):
    before = _listing(tmp_path)
    code, _, err = _batch(ps3d, scan_folder, scan_folder)  # issue 24, case 7: -o f onto f
    assert_one_line_error(code, err, f"--output {scan_folder} lies inside the scan folder", "choose an output")
    (scan_folder / "old").mkdir()
    (scan_folder / "old" / "notes.txt").write_text("mine")
    code, _, err = _batch(ps3d, scan_folder, scan_folder / "old")
    assert_one_line_error(code, err, "lies inside the scan folder", "not empty")
    (scan_folder / "old" / "notes.txt").unlink()
    (scan_folder / "old").rmdir()
    assert _listing(tmp_path) == before
    code, _, err = _batch(ps3d, scan_folder, scan_folder / "out")  # an empty (new) folder inside is fine
    assert code == 0, err
    assert _summary(scan_folder / "out") == [("a", "ok")]


def test_batch_never_takes_the_toolkits_own_outputs_as_scans(ps3d, tmp_path, scan_folder):
    # labels written beside the scan (with their .ps3d.json record), a copy of them without the
    # record, and an earlier batch's output folder: none of them is a scan, and a.tif is no name clash
    assert ps3d("segment", scan_folder / "a.tif", "-o", scan_folder / "a.ome.zarr", "--method",
                "otsu-watershed", "-q")[0] == 0
    shutil.copytree(scan_folder / "a.ome.zarr", scan_folder / "copy.ome.zarr")
    assert _batch(ps3d, scan_folder, tmp_path / "first")[0] == 0
    shutil.copytree(tmp_path / "first", scan_folder / "first")
    code, _, err = _batch(ps3d, scan_folder, tmp_path / "second")
    assert code == 0, err
    assert _summary(tmp_path / "second") == [("a", "ok")]


def test_batch_failures_are_printed_also_with_quiet(ps3d, tmp_path, scan_folder):
    (scan_folder / "b.tif").write_bytes(b"II*\x00 not a tiff")
    code, out, err = _batch(ps3d, scan_folder, tmp_path / "out")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ps3d: warning: scan b failed: cannot read"), err
    assert _summary(tmp_path / "out") == [("a", "ok"), ("b", "failed")]


def test_a_dataset_without_metadata_json_says_what_is_missing(ps3d, tmp_path, small_crop):
    image, spacing, _ = small_crop
    save_scan(image, tmp_path / "dataset" / "images" / "s1.zarr", spacing=spacing)
    code, _, err = _batch(ps3d, tmp_path / "dataset", tmp_path / "out")
    assert_one_line_error(code, err, "looks like a ParticleSeg3D dataset", "no metadata.json",
                          f"segment {tmp_path / 'dataset' / 'images'} as a folder of scans")
    assert not (tmp_path / "out").exists()


def test_batch_and_segment_import_no_cycle():
    """cli.batch gets ps3d segment's run handed in; it imports neither cli.segment nor cli.app."""
    import ast

    import ps3d_toolkit.cli.batch as batch

    imported = set()
    for node in ast.walk(ast.parse(Path(batch.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
    assert not {"ps3d_toolkit.cli.segment", "ps3d_toolkit.cli.app"} & imported


def test_segment_takes_a_dask_array_in_blocks(small_crop):
    """Issue 24, case 8: dask's chunks are a tuple of tuples (irregular here); the labels as for numpy."""
    da = pytest.importorskip("dask.array")
    image, spacing, size = small_crop
    options = dict(spacing=spacing, particle_size_mm=size, method="otsu-watershed", chunk_size=16, progress=False)
    with pytest.warns(UserWarning, match="under two particle diameters"):
        expected = segment(image, **options)
    with pytest.warns(UserWarning, match="under two particle diameters"):
        labels = segment(da.from_array(image, chunks=((20, 28), (16, 32), (48,))), **options)
    np.testing.assert_array_equal(labels, expected)


def test_segment_takes_any_array_with_array_and_shape(small_crop):
    image, spacing, size = small_crop

    class Plain:  # __array__ and shape (and dtype), no slicing
        shape, dtype = image.shape, image.dtype

        def __array__(self, dtype=None, copy=None):
            return image

    options = dict(spacing=spacing, particle_size_mm=size, method="otsu-watershed", chunk_size=32, progress=False)
    np.testing.assert_array_equal(segment(Plain(), **options), segment(image, **options))


def test_blocks_under_two_particle_diameters_get_a_warning(ps3d, tmp_path, scan_folder):
    code, _, err = ps3d("segment", scan_folder / "a.tif", "-o", tmp_path / "l.zarr", "--method", "otsu-watershed",
                        "--chunk-size", 16, "--particle-size", 0.2, "-q")
    assert code == 0, err
    assert err.strip() == ("ps3d: warning: --chunk-size 16 is under two particle diameters (40 voxels at 0.2 mm): "
                           "most particles cross a block face and the labels can differ from those of larger "
                           "blocks; pass --chunk-size 40 or more")


@pytest.mark.parametrize("roi, words", [("10:0,:,:", "range 10:0 of axis z is empty"),
                                        ("10:60,:,:", "range 10:60 of axis z is empty or outside the scan (0:48)")])
def test_the_roi_message_shows_the_scans_real_extent(ps3d, tmp_path, scan_folder, roi, words):
    before = _listing(tmp_path)
    code, _, err = ps3d("segment", scan_folder / "a.tif", "-o", tmp_path / "l.tif", "--roi", roi, "--method",
                        "otsu-watershed")
    assert_one_line_error(code, err, words)
    assert str(1 << 62) not in err
    assert _listing(tmp_path) == before


def test_a_float_mask_is_called_a_mask_with_a_fix(ps3d, tmp_path, scan_folder, small_crop):
    image, spacing, size = small_crop
    np.save(tmp_path / "fraction.npy", np.full(image.shape, 0.5, np.float32))
    code, _, err = ps3d("segment", scan_folder / "a.tif", "-o", tmp_path / "l.tif", "--mask",
                        tmp_path / "fraction.npy", "--method", "otsu-watershed")
    assert_one_line_error(code, err, "mask", "must hold booleans or integers", "(mask > 0).astype('uint8')")
    assert "labels" not in err and not (tmp_path / "l.tif").exists()
    with pytest.raises(InputTypeError, match=r"mask must hold booleans or integers .* got float32 values; "
                                             r"pass a boolean mask, e.g. mask > 0"):
        segment(image, spacing=spacing, particle_size_mm=size, method="otsu-watershed",
                mask=np.full(image.shape, 0.5, np.float32), progress=False)


@pytest.mark.parametrize("method", ["otsu-watershed", "model"])
@pytest.mark.parametrize("box", [np.s_[:48, :48, :3], np.s_[:48, :48, :4], np.s_[:3, :48, :48]])
def test_thin_scans_leak_no_rgb_warning(sample, method, box):
    import warnings

    scan, _ = sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-image's "looks like an RGB image" among them
        segment(np.ascontiguousarray(scan.image[box]), spacing=scan.spacing, particle_size_mm=0.05, method=method,
                progress=False)


def test_a_malformed_ome_zarr_multiscales_says_it_is_malformed(ps3d, tmp_path, small_crop):
    image, spacing, _ = small_crop
    store = save_scan(image, tmp_path / "scan.ome.zarr", spacing=spacing)
    attrs_file = store / ".zattrs" if (store / ".zattrs").exists() else store / "zarr.json"
    meta = json.loads(attrs_file.read_text())
    attrs = meta.get("attributes", meta)
    holder = attrs["ome"] if "ome" in attrs else attrs
    holder["multiscales"] = [{"datasets": "not a list"}]
    attrs_file.write_text(json.dumps(meta))
    with pytest.raises(CorruptDataError, match="'multiscales' metadata is malformed"):
        load_scan(store)
    assert load_scan(store, spacing=spacing).spacing == spacing
    code, _, err = ps3d("segment", store, "-o", tmp_path / "l.tif", "--method", "otsu-watershed")
    assert_one_line_error(code, err, "cannot read the spacing of", "malformed", "--spacing")
    assert "is not stored" not in err


def test_measure_with_labels_and_scan_of_other_spacing_says_so(ps3d, tmp_path, two_balls):
    image, labels = two_balls
    save_scan(image, tmp_path / "scan.tif", spacing=0.01)
    save_labels(labels, tmp_path / "labels.tif", spacing=0.02)
    code, _, err = ps3d("measure", tmp_path / "labels.tif", "--image", tmp_path / "scan.tif",
                        "-o", tmp_path / "t.csv")
    assert_one_line_error(code, err, "labels", "(0.02, 0.02, 0.02) mm", "(0.01, 0.01, 0.01) mm", "Pass --spacing")
    assert "overrides" not in err and not (tmp_path / "t.csv").exists()
    code, _, err = ps3d("measure", tmp_path / "labels.tif", "--image", tmp_path / "scan.tif",
                        "-o", tmp_path / "t.csv", "--spacing", "0.01", "-q")
    assert code == 0, err


def test_the_grains_auto_refusal_names_the_flag(ps3d, tmp_path):
    save_scan(np.full((24, 24, 24), 7, np.uint16), tmp_path / "flat.tif", spacing=SPACING)
    code, _, err = ps3d("segment", tmp_path / "flat.tif", "-o", tmp_path / "l.tif", "--grains", "auto",
                        "--method", "otsu-watershed", "--particle-size", 0.05)
    assert_one_line_error(code, err, "--grains brighter or --grains darker")
    assert "grains=" not in err and not (tmp_path / "l.tif").exists()
