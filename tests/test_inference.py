"""Tests of model inference: the shipped weights on the bundled sample, and the plumbing."""

import numpy as np
import pytest
import torch

from ps3d_toolkit.core.errors import DeviceError, InputError, ResourceError
from ps3d_toolkit.segmentation.methods.model import run_model, segment_with_model
from ps3d_toolkit.segmentation.model.device import load_model, select_device
from ps3d_toolkit.segmentation.model.windows import predict_probabilities, window_sizes
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
    probs = predict_probabilities(x, model, window_size=16, overlap=0.25, batch_size=2)
    assert probs.shape == (3, 20, 24, 28)
    assert np.allclose(probs.sum(0), 1, atol=1e-4)
    probs_tta = predict_probabilities(x, model, window_size=16, overlap=0.25, batch_size=2, tta=True)
    assert probs_tta.shape == probs.shape and not np.allclose(probs_tta, probs)
    with pytest.raises(ValueError, match="overlap"):
        predict_probabilities(x, model, window_size=16, overlap=1.0, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        predict_probabilities(x, model, window_size=16, overlap=0.25, batch_size=0)


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
    probs = predict_probabilities(x, model, window_size="auto", overlap=0.125, batch_size=2)
    assert probs.shape == (3, 20, 24, 100) and np.allclose(probs.sum(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="window_size"):
        predict_probabilities(x, model, window_size="big", overlap=0.25, batch_size=2)


@pytest.mark.slow
def test_too_small_size_estimate_is_corrected_from_the_model_mask(sample, monkeypatch):
    # Noise fragments the Otsu mask and the first estimate comes out too small;
    # the estimate on the model's own particle mask sends the model back near the truth.
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation import engine
    from ps3d_toolkit.segmentation.foreground import SizeEstimate

    scan, truth = sample
    monkeypatch.setattr(engine, "estimate_particle_size_of",
                        lambda image, spacing: SizeEstimate(0.5 * scan.particle_size_mm, 0.3, 100))
    f1 = {}
    for refine in (False, True):
        run = run_model(np.asarray(scan.image), spacing=scan.spacing, device="cpu", progress=False,
                        refine_size=refine)
        f1[refine] = evaluate_instances(truth, run.labels)["f1_50"]
    assert 0.85 < run.particle_size_mm / scan.particle_size_mm < 1.2, run
    assert f1[True] >= SAMPLE_F1_50_FLOOR and f1[True] > f1[False] + 0.05, f1


def _grains(shape, seed=0) -> np.ndarray:
    """A noisy grey scan of a few bright balls (grain contrast, unlike pure noise)."""
    from conftest import ball

    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.2, shape)
    for _ in range(4):
        image[ball(shape, [rng.integers(0, n) for n in shape], min(shape) // 4)] += 1
    return image.astype(np.float32)


def test_tta_is_automatic_on_a_gpu_only():
    model = build_network().eval()
    image = _grains((16, 16, 16), seed=2)
    run = dict(spacing=1.0, particle_size_mm=12.0, weights=(model, DEFAULT_CONFIG), device="cpu",
               progress=False)
    assert run_model(image, **run).tta is False
    assert run_model(image, tta=True, **run).tta is True
    with pytest.raises(ValueError, match="tta"):
        segment_with_model(image, tta="sometimes", **run)


def test_segment_with_loaded_model_pair_keeps_shape():
    model = build_network().eval()
    image = _grains((30, 34, 38), seed=1)
    labels = segment_with_model(image, spacing=(0.02, 0.01, 0.01), particle_size_mm=0.2,
                                weights=(model, DEFAULT_CONFIG), device="cpu", progress=False)
    assert labels.shape == image.shape and labels.dtype == np.uint32


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    for unknown in ("quantum", "xla", "meta", "cuda:x", 3.5):
        with pytest.raises(DeviceError, match="device must be 'auto', 'cpu', 'cuda' or 'mps'"):
            select_device(unknown)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_a_missing_device_is_refused_at_once(device):
    available = torch.cuda.is_available() if device.startswith("cuda") else torch.backends.mps.is_available()
    if available:
        pytest.skip(f"this machine has {device}")
    with pytest.raises(DeviceError, match=rf"device '{device}' is not available on this machine "
                                          r"\(it has cpu.*\); use device='cpu' or 'auto'"):
        select_device(device)
    # the model refuses it before reading the weights or looking at the scan
    with pytest.raises(DeviceError):
        segment_with_model(np.zeros((8, 8, 8)), spacing=1.0, particle_size_mm=4.0, device=device,
                           weights="/nonexistent/w.pt", progress=False)


def test_a_cuda_index_beyond_the_devices_is_refused():
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match=f"cuda:{count + 7}"):
        select_device(f"cuda:{count + 7}")


def test_bad_inputs():
    with pytest.raises(ValueError, match="spacing"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0, particle_size_mm=0.1)
    with pytest.raises(ValueError, match="particle_size_mm"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0.01, particle_size_mm=-2)
    with pytest.raises(FileNotFoundError):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0.01, particle_size_mm=0.05,
                           weights="/nonexistent/w.pt")
    with pytest.raises(ValueError, match="inference_diameter_vox must be at least 3"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=0.01, particle_size_mm=0.05,
                           weights=(build_network(), DEFAULT_CONFIG), inference_diameter_vox=1)


def test_inference_diameter_sets_the_network_grid():
    torch.manual_seed(0)
    model = build_network().eval()
    image = _grains((30, 30, 30), seed=1)
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
    image = _grains((24, 24, 24), seed=3)
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


@pytest.mark.needs_porespy
def test_segment_refuses_the_old_particle_size_alias():
    from ps3d_toolkit.segmentation import segment

    image = np.zeros((8, 8, 8), np.float32)
    for method in ("otsu-watershed", "snow", "model"):
        with pytest.raises(TypeError, match="particle_size"):
            segment(image, spacing=1.0, particle_size=4.0, method=method, progress=False)


def test_a_scan_with_grains_reaches_the_network():
    torch.manual_seed(0)
    image = _grains((24, 24, 24), seed=3)
    run = run_model(image, spacing=1.0, particle_size_mm=12.0, weights=(build_network().eval(), DEFAULT_CONFIG),
                    device="cpu", progress=False, core_threshold=0.4, min_particle_fraction=0.0)
    assert run.network_seconds > 0  # the network ran: the grains passed the contrast test


def test_weights_of_another_network_are_refused_naming_the_keys(tmp_path):
    from ps3d_toolkit.segmentation.model.network import load_weights

    state = build_network().state_dict()
    renamed = {("encoder." + k if i < 2 else k): v for i, (k, v) in enumerate(state.items())}
    path = tmp_path / "renamed.pt"
    torch.save({"state_dict": renamed, "config": dict(DEFAULT_CONFIG)}, path)
    with pytest.raises(InputError, match=r"renamed\.pt is not a weights file for this network: missing keys "
                                         r".*; unexpected keys encoder\..*; use weights written by"):
        load_weights(path)
    first = next(iter(state))
    resized = dict(state, **{first: torch.zeros(2, 2)})
    torch.save({"state_dict": resized, "config": dict(DEFAULT_CONFIG)}, path)
    with pytest.raises(InputError, match=f"wrong shapes for {first}"):
        load_weights(path)
    # a smaller network's weights under the default config
    small = build_network(dict(DEFAULT_CONFIG, channels=(8, 16, 32, 64))).state_dict()
    torch.save({"state_dict": small, "config": dict(DEFAULT_CONFIG)}, path)
    with pytest.raises(InputError, match="wrong shapes for .* and .* more"):
        segment_with_model(np.zeros((8, 8, 8)), spacing=1.0, particle_size_mm=4.0, weights=path, device="cpu",
                           progress=False)
    for payload in ({"state_dict": {"a": 1}}, {"state_dict": state, "config": [1, 2]}, [1, 2]):
        torch.save(payload, path)
        with pytest.raises(InputError, match="not a ps3d_toolkit weights file"):
            load_weights(path)


class _Touch:
    """Unpickling this object with plain pickle creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_crafted_weights_pickle_is_refused_and_never_run(tmp_path):
    from ps3d_toolkit.segmentation.model.network import load_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": build_network().state_dict(), "config": _Touch(marker)}, path)
    with pytest.raises(InputError, match=r"cannot read weights file .*evil\.pt"):
        load_weights(path)
    assert not marker.exists()
    # the file is hostile indeed: a plain unpickling runs its code
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_the_memory_budget_refuses_a_grid_too_large_before_any_work(monkeypatch):
    from ps3d_toolkit.segmentation import engine

    monkeypatch.setattr(engine, "segment_region", lambda *a, **k: pytest.fail("work began"))
    image = _grains((32, 32, 32))
    options = dict(spacing=1.0, weights=(build_network().eval(), DEFAULT_CONFIG), device="cpu", progress=False)
    # 4-voxel particles drawn 18 voxels wide: a 144^3 grid, 42 bytes a voxel = 0.125 GB
    with pytest.raises(ResourceError, match=r"particle_size_mm 4 mm the model's network grid would be 144 x 144 x "
                                            r"144 voxels .* need ~0\.125 GB \(42 bytes a voxel\), above the memory "
                                            r"budget of 0\.1 GB \(memory_limit_gb=0\.1\); segment it block by block "
                                            r"with chunk_size=128 .* a smaller inference_diameter_vox, or crop the "
                                            r"scan"):
        run_model(image, particle_size_mm=4.0, memory_limit_gb=0.1, **options)
    with pytest.raises(ResourceError, match=r"~0\.233 GB \(78 bytes a voxel\)"):  # test-time augmentation
        run_model(image, particle_size_mm=4.0, memory_limit_gb=0.2, tta=True, **options)
    with pytest.raises(ValueError, match="memory_limit_gb"):
        run_model(image, particle_size_mm=4.0, memory_limit_gb=-1, **options)


def test_the_default_memory_budget_is_most_of_the_available_memory(monkeypatch):
    import ps3d_toolkit.segmentation._checks as checks

    available = checks.available_memory_bytes()
    assert available is None or available > 0
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: 10e9)
    assert checks.memory_budget_bytes(None) == (8e9, "80% of the 10 GB available; set memory_limit_gb to change it")
    assert checks.memory_budget_bytes(2)[0] == 2e9
    monkeypatch.setattr(checks, "available_memory_bytes", lambda: None)
    assert checks.memory_budget_bytes(None)[0] == float("inf")


def test_the_sample_fits_the_default_memory_budget(sample):
    from ps3d_toolkit.segmentation._checks import memory_budget_bytes
    from ps3d_toolkit.segmentation.model.memory import GridCheck

    scan, _ = sample
    grid = GridCheck(scan.shape, scan.spacing, 20.0, False, memory_budget_bytes(None))
    assert grid.check(scan.particle_size_mm) == scan.particle_size_mm
    assert grid.check(scan.particle_size_mm, estimated=True) == scan.particle_size_mm
    with pytest.raises(ResourceError, match="0.03 mm"):  # 3 voxels: a 853^3 grid, ~26 GB
        GridCheck(scan.shape, scan.spacing, 20.0, False, (16e9, "a 16 GB budget")).check(0.03)


def test_an_estimated_size_out_of_scale_is_refused(monkeypatch):
    from ps3d_toolkit.segmentation import engine
    from ps3d_toolkit.segmentation.foreground import SizeEstimate

    monkeypatch.setattr(engine, "estimate_particle_size_of", lambda *a: SizeEstimate(0.02, 0.3, 5))
    with pytest.raises(InputError, match=r"the estimated particle size 0\.02 mm is only 2 voxels across.*"
                                         "pass particle_size_mm"):
        run_model(_grains((32, 32, 32)), spacing=0.01, weights=(build_network().eval(), DEFAULT_CONFIG),
                  device="cpu", progress=False)


def test_a_scan_without_grain_contrast_skips_the_network(monkeypatch):
    from ps3d_toolkit.segmentation.model import windows

    monkeypatch.setattr(windows, "run_windows", lambda *a, **k: pytest.fail("the network ran"))
    noise = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    options = dict(spacing=1.0, weights=(build_network().eval(), DEFAULT_CONFIG), device="cpu", progress=False)
    run = run_model(noise, particle_size_mm=8.0, **options)
    assert run.n_particles == 0 and run.network_seconds == 0 and run.network_shape == (72, 72, 72)
    run = run_model(noise, **options)
    assert run.n_particles == 0 and np.isnan(run.particle_size_mm) and run.size_estimate is None


def test_no_phantom_particles_in_the_empty_half_of_a_scan(sample):
    # Without the phantom filter the network draws ~100 particles in this empty
    # half (the whole sample beside its own epoxy-level noise: 649).
    from ps3d_toolkit.analysis.evaluate import evaluate_instances

    scan, truth = sample
    crop = (slice(32, 96),) * 3
    image = np.asarray(scan.image, np.float32)[crop]
    epoxy = image[(truth[crop] == 0) & (image > np.percentile(image, 20))]
    empty = np.random.default_rng(0).normal(np.median(epoxy), epoxy.std(), image.shape).astype(np.float32)
    labels = segment_with_model(np.concatenate([image, empty], axis=2), spacing=scan.spacing,
                                particle_size_mm=scan.particle_size_mm, device="cpu", progress=False)
    assert np.unique(labels[:, :, 64 + 8:]).tolist() == [0]  # a particle may cross the seam by a few voxels
    assert evaluate_instances(truth[crop], labels[:, :, :64])["f1_50"] > 0.75


def test_the_phantom_filter_keeps_bright_and_contrasted_particles():
    from conftest import ball

    from ps3d_toolkit.segmentation.model.postprocess import drop_phantom_particles

    shape = (40, 40, 100)
    rng = np.random.default_rng(0)
    image = rng.normal(0.3, 0.02, shape)  # epoxy
    image[:, :, :10] = rng.normal(0.0, 0.02, (40, 40, 10))  # air
    labels = np.zeros(shape, np.uint32)
    for label, (centre, value) in enumerate([((20, 20, 25), 1.0),   # a bright grain
                                             ((20, 20, 50), 0.45),  # a dull grain below the Otsu cut
                                             ((20, 20, 75), None)],  # a phantom: epoxy noise only
                                            start=1):
        where = ball(shape, centre, 6)
        labels[where] = label
        if value is not None:
            image[where] = rng.normal(value, 0.02, np.count_nonzero(where))
    image = image.astype(np.float32)
    bright = image > 0.7  # a grain threshold between the two grain phases, as in a crop without air
    kept = drop_phantom_particles(labels, image, bright)
    assert kept.max() == 2 and np.array_equal(kept > 0, (labels == 1) | (labels == 2))
    assert drop_phantom_particles(np.zeros(shape, np.uint32), image, bright).max() == 0
