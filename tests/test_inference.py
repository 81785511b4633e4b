"""Tests of model inference: the shipped weights on the bundled sample, and the plumbing."""

import numpy as np
import pytest
import torch

from ps3d_toolkit.segmentation.model.inference import (load_model, predict_probabilities, segment_with_model,
                                    select_device, window_sizes)
from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS
from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network

# The shipped model scores F1@0.5 ~0.99 on the sample (docs/model_card.md); the floor
# leaves room for CPU/library differences but fails on a broken model or pipeline.
SAMPLE_F1_50_FLOOR = 0.9
SAMPLE_F1_75_FLOOR = 0.8


@pytest.fixture(scope="module")
def sample():
    from ps3d_toolkit.data import load_sample

    return load_sample()


def test_shipped_weights_exist_and_load():
    assert DEFAULT_WEIGHTS.is_file(), "the package must ship its default weights"
    assert DEFAULT_WEIGHTS.stat().st_size < 10 * 2**20
    payload = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    assert payload["metadata"]["command"].startswith("ps3d train")
    model, config, meta = load_model()
    assert config["target_diameter_vox"] > 0


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
    labels, details = segment_with_model(np.asarray(scan.image), spacing=scan.spacing,
                                         device="cpu", progress=False, return_details=True)
    assert "size_estimate" in details and "model_mask_estimate" in details
    assert 0.7 < details["particle_size_mm"] / scan.particle_size_mm < 1.3
    assert 0 < details["network_seconds"] < details["seconds"]
    assert evaluate_instances(truth, labels)["f1_50"] >= SAMPLE_F1_50_FLOOR - 0.05


def test_predict_probabilities_sum_to_one_and_tta():
    torch.manual_seed(0)
    model = build_network().eval()
    x = np.random.default_rng(0).normal(size=(20, 24, 28)).astype(np.float32)
    probs = predict_probabilities(x, model, roi_size=16, overlap=0.25, progress=False)
    assert probs.shape == (3, 20, 24, 28)
    assert np.allclose(probs.sum(0), 1, atol=1e-4)
    probs_tta = predict_probabilities(x, model, roi_size=16, tta=True, progress=False)
    assert probs_tta.shape == probs.shape and not np.allclose(probs_tta, probs)
    with pytest.raises(ValueError, match="overlap"):
        predict_probabilities(x, model, overlap=1.0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        predict_probabilities(x, model, batch_size=0, progress=False)


def test_window_sizes_cover_the_scan_with_least_work():
    import math

    def work(n, w, overlap):
        return w if n <= w else (math.ceil((n - w) / int(w * (1 - overlap))) + 1) * w

    assert window_sizes((50, 90, 96)) == (56, 96, 96)  # one window per axis, multiple of 8
    for n in (100, 118, 142, 200, 333):
        (w,) = window_sizes((n,), overlap=0.125)
        assert 64 <= w <= 96 and w % 8 == 0
        assert work(n, w, 0.125) == min(work(n, c, 0.125) for c in range(64, 97, 8))
    torch.manual_seed(0)
    model = build_network().eval()
    x = np.random.default_rng(0).normal(size=(20, 24, 100)).astype(np.float32)
    probs = predict_probabilities(x, model, roi_size="auto", overlap=0.125, progress=False)
    assert probs.shape == (3, 20, 24, 100) and np.allclose(probs.sum(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="roi_size"):
        predict_probabilities(x, model, roi_size="big", progress=False)


@pytest.mark.slow
def test_too_small_size_estimate_is_corrected_from_the_model_mask(sample, monkeypatch):
    # Noise fragments the Otsu mask and the first estimate comes out too small;
    # the estimate on the model's own particle mask sends the model back near the truth.
    import ps3d_toolkit.segmentation.model.inference as inference
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.normalize import SizeEstimate

    scan, truth = sample
    real = inference.estimate_particle_size

    def fragmented_first_estimate(image, *, spacing, foreground=None, **kwargs):
        if foreground is None:
            return SizeEstimate(0.5 * scan.particle_size_mm, 0.3, 100)
        return real(image, spacing=spacing, foreground=foreground, **kwargs)

    monkeypatch.setattr(inference, "estimate_particle_size", fragmented_first_estimate)
    f1 = {}
    for refine in (False, True):
        labels, details = segment_with_model(np.asarray(scan.image), spacing=scan.spacing,
                                             device="cpu", progress=False, refine_size=refine,
                                             return_details=True)
        f1[refine] = evaluate_instances(truth, labels)["f1_50"]
    assert 0.85 < details["particle_size_mm"] / scan.particle_size_mm < 1.2, details
    assert f1[True] >= SAMPLE_F1_50_FLOOR and f1[True] > f1[False] + 0.05, f1


def test_tta_is_automatic_on_a_gpu_only():
    model = build_network().eval()
    image = np.random.default_rng(2).normal(size=(16, 16, 16)).astype(np.float32)
    run = dict(spacing=1.0, particle_size_mm=18.0, weights=(model, DEFAULT_CONFIG), device="cpu",
               progress=False, return_details=True)
    assert segment_with_model(image, **run)[1]["tta"] is False
    assert segment_with_model(image, tta=True, **run)[1]["tta"] is True
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
        _, details = segment_with_model(image, spacing=1.0, particle_size_mm=18.0,
                                        weights=(model, config), device="cpu", progress=False,
                                        return_details=True)
        shapes[diameter] = details["network_shape"]
    # particles of 18 voxels drawn 18 wide (training target) or 27 wide (1.5x the grid)
    assert shapes[None] == (30, 30, 30)
    assert shapes[27.0] == (45, 45, 45)
