"""Tests of self-training on an unlabelled scan: ``adapt()`` and ``ps3d adapt``.

The runs are a few optimiser steps (``max_steps``) on a small generated scan, so
that no test depends on time. Most use a stub scorer that gives the starting and
the adapted weights known estimates, so that the decision is known in advance.
"""

import importlib

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error

from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS
from ps3d_toolkit.segmentation.model.network import load_weights
from ps3d_toolkit.training import adapt
from ps3d_toolkit.training.pseudo import Score, best_iou, flip_stability, pseudo_label_volume
from ps3d_toolkit.training.targets import IGNORE


@pytest.fixture(scope="module")
def small_scan():
    return generate_scan((44, 48, 48), 12, seed=31, preset="medium")


def scorer_saying(start: float, adapted: float):
    """A scorer that gives the starting weights ``start`` and any other weights ``adapted``; every particle sure."""
    def score(image, labels, *, spacing, particle_size_mm, weights):
        confidence = np.ones(int(labels.max()) + 1)
        return Score(estimated_f1=start if weights is None else adapted, confidence=confidence, source="stub")

    return score


def run_adapt(scan, tmp_path, scorer, **options):
    options = {"max_steps": 2, "rounds": 1, "phantoms": 1, "progress": False, "threads": 1, **options}
    return adapt(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                 output=tmp_path / "adapted.pt", scorer=scorer, scan_name="small", command="test", **options)


def test_adapt_writes_weights_that_segment_loads_with_its_record(small_scan, tmp_path):
    from ps3d_toolkit.segmentation import segment

    result = run_adapt(small_scan, tmp_path, scorer_saying(0.5, 0.9), targets=["pseudo", "matched"])
    assert result.kept and result.steps == 2 and result.weights == tmp_path / "adapted.pt"
    assert "kept the adapted weights" in result.message
    record = load_weights(result.weights)[2]["adapt"]
    assert record["scan"] == "small" and record["command"] == "test" and record["kept"] is True
    assert record["steps"] == 2 and record["targets"] == ["pseudo", "matched"] and len(record["rounds"]) == 1
    assert (record["estimate_before"], record["estimate_after"]) == (0.5, 0.9)
    assert record["matched"]["blur_sigma"] > 0 and record["rounds"][0]["pseudo"]["confident"] > 0
    # the adapted weights differ from the shipped ones, and segment runs with them
    shipped = load_weights(DEFAULT_WEIGHTS)[0].state_dict()
    adapted = load_weights(result.weights)[0].state_dict()
    assert any(not torch.equal(shipped[k], adapted[k]) for k in shipped)
    labels = segment(small_scan.image, spacing=small_scan.spacing, particle_size_mm=small_scan.particle_size_mm,
                     weights=result.weights, progress=False)
    assert labels.shape == small_scan.image.shape and np.array_equal(labels, result.labels)


def test_adapt_keeps_the_starting_weights_when_not_better(small_scan, tmp_path):
    result = run_adapt(small_scan, tmp_path, scorer_saying(0.9, 0.6), targets=["matched"])
    assert not result.kept and "kept the starting weights" in result.message
    record = load_weights(result.weights)[2]["adapt"]
    assert record["kept"] is False and record["estimate_after"] == 0.6 and record["targets"] == ["matched"]
    shipped = load_weights(DEFAULT_WEIGHTS)[0].state_dict()
    written = load_weights(result.weights)[0].state_dict()
    assert all(torch.equal(shipped[k], written[k]) for k in shipped)
    assert np.array_equal(result.labels, result.first_pass_labels)


def test_adapt_refuses_bad_arguments(small_scan):
    for bad, match in [({"targets": []}, "targets"), ({"targets": ["labels"]}, "targets"),
                       ({"rounds": 0}, "rounds"), ({"max_steps": 1.5}, "max_steps"), ({"minutes": 0}, "minutes")]:
        with pytest.raises(ValueError, match=match):
            adapt(small_scan.image, spacing=small_scan.spacing, particle_size_mm=small_scan.particle_size_mm,
                  progress=False, **bad)


def test_pseudo_labels_leave_unconfident_particles_out():
    labels = np.zeros((40, 40, 40), np.uint32)
    labels[4:18, 4:18, 4:18] = 1
    labels[22:36, 22:36, 22:36] = 2
    image = (labels > 0).astype(np.float32) + np.random.default_rng(0).normal(0, 0.05, labels.shape)
    score = Score(estimated_f1=0.5, confidence=np.array([0.0, 0.95, 0.3]), source="given")
    network = {**load_weights(DEFAULT_WEIGHTS)[1], "train_diameter_vox": 14.0}
    grid, targets, counts = pseudo_label_volume(image, labels, score, spacing=1.0, particle_size_mm=14.0,
                                                network=network, min_confidence=0.8, band_vox=2)
    assert grid.shape == targets.shape == labels.shape  # 14 voxels already
    assert counts["particles"] == 2 and counts["confident"] == 1
    assert np.all(targets[labels == 2] == IGNORE) and not np.any(targets[labels == 1] == IGNORE)
    # a band around the unconfident particle is left out too, the far background is not
    assert targets[29, 29, 20] == IGNORE and targets[0, 39, 0] == 0


def test_best_iou_and_flip_stability(small_scan):
    a = np.zeros((6, 6, 6), np.uint32)
    a[:3], a[3:] = 1, 2
    b = np.zeros_like(a)
    b[:3, :3] = 7
    assert best_iou(a, b).tolist() == [0.0, 0.5, 0.0]
    from ps3d_toolkit.segmentation import segment

    labels = segment(small_scan.image, spacing=small_scan.spacing, particle_size_mm=small_scan.particle_size_mm,
                     progress=False)
    score = flip_stability(small_scan.image, labels, spacing=small_scan.spacing,
                           particle_size_mm=small_scan.particle_size_mm)
    assert 0.5 < score.estimated_f1 <= 1 and score.confidence.shape == (labels.max() + 1,)
    assert score.other.shape == labels.shape and score.source == "flip stability"


def test_ps3d_adapt_never_reads_a_label_file_and_segment_uses_its_weights(small_scan, tmp_path, ps3d, monkeypatch):
    import ps3d_toolkit.io as io
    import ps3d_toolkit.io.readers as readers

    module = importlib.import_module("ps3d_toolkit.training.adapt")  # the module, not the function

    scan_path, truth_path = tmp_path / "scan.npy", tmp_path / "scan_labels.npy"
    np.save(scan_path, small_scan.image)
    np.save(truth_path, small_scan.labels)

    def no_labels(*args, **kwargs):
        raise AssertionError("adapt read a label file")

    monkeypatch.setattr(io, "load_labels", no_labels)
    monkeypatch.setattr(readers, "load_labels", no_labels)
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    monkeypatch.setattr(module, "quality_score", scorer_saying(0.5, 0.9))
    out = tmp_path / "adapted.pt"
    code, stdout, stderr = ps3d("adapt", scan_path, "--spacing", small_scan.spacing[0], "--particle-size",
                                small_scan.particle_size_mm, "--output", out, "--max-steps", 2, "--rounds", 1,
                                "--threads", 1, "--quiet")
    assert code == 0, stderr
    assert stdout.count("\n") == 1 and "ps3d adapt: estimated F1@0.5" in stdout and str(out) in stdout
    assert stderr == ""  # --quiet: no stages shown
    monkeypatch.setattr(builtins, "open", real_open)
    assert str(truth_path) not in opened and str(scan_path) in opened
    assert "ps3d adapt" in load_weights(out)[2]["adapt"]["command"]
    code, stdout, stderr = ps3d("segment", scan_path, "--spacing", small_scan.spacing[0], "--particle-size",
                                small_scan.particle_size_mm, "--weights", out, "--output", tmp_path / "l.npy",
                                "--quiet")
    assert code == 0, stderr
    assert (tmp_path / "l.npy").is_file()


def test_ps3d_adapt_checks_its_output_before_any_work(small_scan, tmp_path, ps3d, monkeypatch):
    import ps3d_toolkit.training as training

    monkeypatch.setattr(training, "adapt", lambda *a, **k: pytest.fail("adapt ran"))
    scan_path = tmp_path / "scan.npy"
    np.save(scan_path, small_scan.image)
    (tmp_path / "exists.pt").write_bytes(b"x")
    code, _, err = ps3d("adapt", scan_path, "--spacing", 0.01, "--particle-size", 0.1, "--output",
                        tmp_path / "exists.pt")
    assert_one_line_error(code, err, "exists.pt")
    code, _, err = ps3d("adapt", scan_path, "--spacing", 0.01, "--particle-size", 0.1, "--output",
                        tmp_path / "w.tif")
    assert_one_line_error(code, err, "--output", ".pt")
    code, _, err = ps3d("adapt", tmp_path / "missing.npy", "--spacing", 0.01, "--output", tmp_path / "w.pt")
    assert_one_line_error(code, err, "missing.npy")


def test_a_large_scan_trains_on_a_sample_of_its_blocks():
    adapt_module = importlib.import_module("ps3d_toolkit.training.adapt")
    grid = np.zeros((96, 96, 200), np.float32)
    targets = np.zeros(grid.shape, np.uint8)
    targets[:, :, 120:180] = 1  # the usable particles lie in the second block along x
    targets[:, :, :96] = IGNORE
    blocks = adapt_module._sample_blocks(grid, targets, 1, np.random.default_rng(0))
    assert len(blocks) == 1 and blocks[0][0].shape == (96, 96, 96)
    assert np.count_nonzero(blocks[0][1] == 1) == 96 * 96 * 60
    # a scan that fits is used whole
    whole = adapt_module._sample_blocks(grid, targets, 3, np.random.default_rng(0))
    assert len(whole) == 1 and whole[0][0].shape == grid.shape


def test_ps3d_adapt_help_has_its_examples_and_does_not_import_torch(ps3d):
    import subprocess
    import sys

    code, stdout, _ = ps3d("adapt", "--help")
    assert code == 0 and stdout.startswith("usage: ps3d adapt")
    examples = stdout.split("example", 1)[1]
    assert "ps3d adapt" in examples and "ps3d segment" in examples and "--weights" in examples
    run = ("import sys; from ps3d_toolkit import cli; cli.main(['adapt', '--help']); "
           "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr
