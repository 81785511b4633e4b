"""Tests of model inference: the shipped weights on the bundled sample, and the plumbing."""

import numpy as np
import pytest
import torch

from ps3d_toolkit.segmentation.model.inference import (load_model, predict_probabilities, run_model,
                                                       segment_with_model, select_device, window_sizes)
from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS
from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network

# The shipped model scores F1@0.5 ~0.99 on the sample (docs/model_card.md); the floor
# leaves room for CPU/library differences but fails on a broken model or pipeline.
SAMPLE_F1_50_FLOOR = 0.9
SAMPLE_F1_75_FLOOR = 0.8


def test_shipped_weights_exist_and_load():
    assert DEFAULT_WEIGHTS.is_file(), "the package must ship its default weights"
    assert DEFAULT_WEIGHTS.stat().st_size < 10 * 2**20
    payload = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert payload["metadata"]["command"].startswith("ps3d train")
    model, config, meta = load_model()
    # the shipped file still names the training diameter target_diameter_vox; it loads renamed
    assert "target_diameter_vox" in payload["config"]
    assert config["train_diameter_vox"] == payload["config"]["target_diameter_vox"] > 0
    assert "target_diameter_vox" not in config


@pytest.mark.slow
def test_model_segments_bundled_sample(sample):
    from ps3d_toolkit.analysis.evaluate import evaluate_instances

    scan, truth = sample
    labels = segment_with_model(np.asarray(scan.image), spacing=scan.spacing,
                                particle_size_mm=scan.particle_size_mm, device="cpu",
                                progress=False)
    assert labels.dtype == np.uint32 and labels.shape == truth.shape
    metrics = evaluate_instances(truth, labels)
    assert metrics["f1_50"] >= SAMPLE_F1_50_FLOOR, metrics
    assert metrics["f1_75"] >= SAMPLE_F1_75_FLOOR, metrics


@pytest.mark.slow
def test_model_without_particle_size(sample):
    from ps3d_toolkit.analysis.evaluate import evaluate_instances

    scan, truth = sample
    run = run_model(np.asarray(scan.image), spacing=scan.spacing, device="cpu", progress=False)
    assert run.size_estimate is not None and run.model_mask_estimate is not None
    assert 0.7 < run.particle_size_mm / scan.particle_size_mm < 1.3
    assert 0 < run.network_seconds < run.seconds
    assert run.n_particles == run.labels.max() > 0
    assert evaluate_instances(truth, run.labels)["f1_50"] >= SAMPLE_F1_50_FLOOR - 0.05


def test_predict_probabilities_sum_to_one_and_tta():
    torch.manual_seed(0)
    model = build_network().eval()
    x = np.random.default_rng(0).normal(size=(20, 24, 28)).astype(np.float32)
    probs = predict_probabilities(x, model, roi_size=16, overlap=0.25, batch_size=2, progress=False)
    assert probs.shape == (3, 20, 24, 28)
    assert np.allclose(probs.sum(0), 1, atol=1e-4)
    probs_tta = predict_probabilities(x, model, roi_size=16, overlap=0.25, batch_size=2, tta=True,
                                      progress=False)
    assert probs_tta.shape == probs.shape and not np.allclose(probs_tta, probs)
    with pytest.raises(ValueError, match="overlap"):
        predict_probabilities(x, model, roi_size=16, overlap=1.0, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        predict_probabilities(x, model, roi_size=16, overlap=0.25, batch_size=0, progress=False)


def test_window_sizes_cover_the_scan_with_least_work():
    import math

    def work(n, w, overlap):
        return w if n <= w else (math.ceil((n - w) / int(w * (1 - overlap))) + 1) * w

    assert window_sizes((50, 90, 96), overlap=0.125) == (56, 96, 96)  # one window per axis, multiple of 8
    for n in (100, 118, 142, 200, 333):
        (w,) = window_sizes((n,), overlap=0.125)
        assert 64 <= w <= 96 and w % 8 == 0
        assert work(n, w, 0.125) == min(work(n, c, 0.125) for c in range(64, 97, 8))
    torch.manual_seed(0)
    model = build_network().eval()
    x = np.random.default_rng(0).normal(size=(20, 24, 100)).astype(np.float32)
    probs = predict_probabilities(x, model, roi_size="auto", overlap=0.125, batch_size=2, progress=False)
    assert probs.shape == (3, 20, 24, 100) and np.allclose(probs.sum(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="roi_size"):
        predict_probabilities(x, model, roi_size="big", overlap=0.25, batch_size=2, progress=False)


@pytest.mark.slow
def test_too_small_size_estimate_is_corrected_from_the_model_mask(sample, monkeypatch):
    # Noise fragments the Otsu mask and the first estimate comes out too small;
    # the estimate on the model's own particle mask sends the model back near the truth.
    import ps3d_toolkit.segmentation.model.inference as inference
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.grains import SizeEstimate

    scan, truth = sample
    real = inference._estimate_particle_size

    def fragmented_first_estimate(image, spacing, foreground, eq_per_inscribed):
        if foreground is None:
            return SizeEstimate(0.5 * scan.particle_size_mm, 0.3, 100)
        return real(image, spacing, foreground, eq_per_inscribed)

    monkeypatch.setattr(inference, "_estimate_particle_size", fragmented_first_estimate)
    f1 = {}
    for refine in (False, True):
        run = run_model(np.asarray(scan.image), spacing=scan.spacing, device="cpu", progress=False,
                        refine_size=refine)
        f1[refine] = evaluate_instances(truth, run.labels)["f1_50"]
    assert 0.85 < run.particle_size_mm / scan.particle_size_mm < 1.2, run
    assert f1[True] >= SAMPLE_F1_50_FLOOR and f1[True] > f1[False] + 0.05, f1


def test_tta_is_automatic_on_a_gpu_only():
    model = build_network().eval()
    image = np.random.default_rng(2).normal(size=(16, 16, 16)).astype(np.float32)
    run = dict(spacing=1.0, particle_size_mm=18.0, weights=(model, DEFAULT_CONFIG), device="cpu",
               progress=False)
    assert run_model(image, **run).tta is False
    assert run_model(image, tta=True, **run).tta is True
    with pytest.raises(ValueError, match="tta"):
        segment_with_model(image, tta="sometimes", **run)


def test_segment_with_loaded_model_pair_keeps_shape():
    model = build_network().eval()
    image = np.random.default_rng(1).normal(size=(30, 34, 38)).astype(np.float32)
    labels = segment_with_model(image, spacing=(0.02, 0.01, 0.01), particle_size_mm=0.2,
                                weights=(model, DEFAULT_CONFIG), device="cpu", progress=False)
    assert labels.shape == image.shape and labels.dtype == np.uint32


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device"):
        select_device("quantum")


def test_bad_inputs():
    with pytest.raises(ValueError, match="spacing"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0, particle_size_mm=0.1)
    with pytest.raises(ValueError, match="particle_size_mm"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0.01, particle_size_mm=-2)
    with pytest.raises(FileNotFoundError):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0.01, particle_size_mm=0.1,
                           weights="/nonexistent/w.pt")


def test_inference_diameter_sets_the_network_grid():
    torch.manual_seed(0)
    model = build_network().eval()
    image = np.random.default_rng(1).normal(size=(30, 30, 30)).astype(np.float32)
    shapes = {}
    for diameter in (None, 27.0):
        config = dict(DEFAULT_CONFIG, inference_diameter_vox=diameter)
        shapes[diameter] = run_model(image, spacing=1.0, particle_size_mm=18.0, weights=(model, config),
                                     device="cpu", progress=False).network_shape
    # particles of 18 voxels drawn 18 wide (training target) or 27 wide (1.5x the grid)
    assert shapes[None] == (30, 30, 30)
    assert shapes[27.0] == (45, 45, 45)
    # a keyword override wins over the weights' value
    assert run_model(image, spacing=1.0, particle_size_mm=18.0, weights=(model, config), device="cpu",
                     progress=False, inference_diameter_vox=9).network_shape == (15, 15, 15)


def test_run_model_refuses_an_unknown_option():
    image = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(TypeError, match="target_diameter_vox"):
        run_model(image, spacing=1.0, particle_size_mm=4.0, target_diameter_vox=18)


def test_segment_with_model_is_run_model_labels():
    torch.manual_seed(0)
    model = build_network().eval()
    image = np.random.default_rng(3).normal(size=(24, 24, 24)).astype(np.float32)
    run = dict(spacing=1.0, particle_size_mm=12.0, weights=(model, DEFAULT_CONFIG), device="cpu",
               progress=False, core_threshold=0.4, min_particle_fraction=0.0)
    assert np.array_equal(segment_with_model(image, **run), run_model(image, **run).labels)


def test_load_weights_reads_the_old_training_diameter_key(tmp_path):
    from ps3d_toolkit.segmentation.model.network import load_weights, save_weights

    old = {k: v for k, v in DEFAULT_CONFIG.items() if k != "train_diameter_vox"}
    old["target_diameter_vox"] = 23.0
    path = save_weights(build_network(), tmp_path / "old.pt", old)
    _, config, _ = load_weights(path)
    assert config["train_diameter_vox"] == 23.0 and "target_diameter_vox" not in config
    new = save_weights(build_network(), tmp_path / "new.pt", dict(DEFAULT_CONFIG, train_diameter_vox=21.0))
    assert load_weights(new)[1]["train_diameter_vox"] == 21.0


def test_segment_refuses_the_old_particle_size_alias():
    from ps3d_toolkit.segmentation import segment

    image = np.zeros((8, 8, 8), np.float32)
    for method in ("otsu-watershed", "snow", "model"):
        with pytest.raises(TypeError, match="particle_size"):
            segment(image, spacing=1.0, particle_size=4.0, method=method, progress=False)
