"""Tests of training: border-core targets, weight files, volumes, a tiny run, export."""

import json

import numpy as np
import pytest
import torch

from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network, load_weights, save_weights
from ps3d_toolkit.training.targets import BORDER, CORE, border_core_targets
from ps3d_toolkit.training.loop import TrainingConfig, train
from ps3d_toolkit.training.volumes import load_label_set


def test_targets_shell_thickness():
    labels = np.zeros((30, 30, 30), np.uint32)
    labels[5:25, 5:25, 5:25] = 3
    t = border_core_targets(labels, border_vox=2)
    line = t[15, 15, :]
    assert line[:5].tolist() == [0] * 5
    assert line[5:7].tolist() == [BORDER] * 2 and line[7] == CORE
    assert line[23:25].tolist() == [BORDER] * 2
    # the core is the particle eroded by 2 voxels
    assert np.count_nonzero(t == CORE) == 16**3


def test_targets_separate_touching_particles():
    labels = np.zeros((20, 20, 40), np.uint32)
    labels[2:18, 2:18, 2:20] = 1
    labels[2:18, 2:18, 20:38] = 2
    t = border_core_targets(labels, border_vox=2)
    # two voxels of border on each side of the contact plane
    assert t[10, 10, 18:22].tolist() == [BORDER] * 4
    assert t[10, 10, 17] == CORE and t[10, 10, 22] == CORE


def test_targets_keep_core_at_scan_edge():
    labels = np.ones((10, 10, 10), np.uint32)  # a particle filling the scan, cut by its edges
    t = border_core_targets(labels, border_vox=2)
    assert np.all(t == CORE)


def test_targets_validate():
    with pytest.raises(ValueError, match="border_vox"):
        border_core_targets(np.zeros((4, 4, 4), np.uint32), border_vox=0)
    with pytest.raises(TypeError, match="labels"):
        border_core_targets(np.zeros((4, 4, 4), np.float32) + 0.5, border_vox=2)


def test_weights_round_trip_with_weights_only(tmp_path):
    model = build_network()
    path = save_weights(model, tmp_path / "w.pt", DEFAULT_CONFIG, {"seed": 3})
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "config", "metadata"}
    loaded, config, meta = load_weights(path)
    assert meta["seed"] == 3 and config == {**DEFAULT_CONFIG, "channels": list(DEFAULT_CONFIG["channels"]),
                                            "strides": list(DEFAULT_CONFIG["strides"]),
                                            "intensity_percentiles": list(DEFAULT_CONFIG["intensity_percentiles"])}
    x = torch.randn(1, 1, 32, 32, 32)
    model.eval()
    with torch.no_grad():
        # float16 storage: outputs agree to float16 precision
        assert torch.allclose(model(x), loaded(x), atol=2e-2)


def test_load_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read weights"):
        load_weights(bad)


@pytest.mark.slow
def test_tiny_training_run_and_resume(tmp_path):
    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=4, batch_size=1, patch_size=32,
                            pool_size=1, refresh_every=100, val_every=0, checkpoint_every=2,
                            seed=1, threads=1)
    final = train(config, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in log)
    model, cfg, meta = load_weights(final)
    assert meta["step"] == 4
    # resume: asking for more steps continues from the checkpoint
    config.steps = 6
    train(config, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_generator_workers_give_the_same_run_every_time(tmp_path):
    def run(name):
        config = TrainingConfig(output_dir=str(tmp_path / name), steps=3, batch_size=1,
                                patch_size=32, pool_size=2, refresh_every=1, val_every=0,
                                seed=5, threads=1, workers=2)
        train(config, progress=False)
        return [json.loads(line)["loss"] for line in
                (tmp_path / name / "log.jsonl").read_text().splitlines()]

    first = run("a")
    assert len(first) == 3 and all(np.isfinite(first))
    # volumes are taken in the order they were asked for, whichever worker finishes first
    assert run("b") == first


def test_time_limit_stops_the_run_and_sets_the_schedule(tmp_path):
    from ps3d_toolkit.training.loop import _learning_rate

    config = TrainingConfig(steps=10_000, learning_rate=1e-3, time_limit_s=100.0)
    # the cosine decay follows the time when it is further along than the steps
    assert _learning_rate(500, config, elapsed_s=50.0) == pytest.approx(1e-3 * (0.02 + 0.98 * 0.5))
    assert _learning_rate(500, config, elapsed_s=100.0) == pytest.approx(1e-3 * 0.02)
    assert _learning_rate(500, config, elapsed_s=0.0) > 0.9e-3
    with pytest.raises(ValueError, match="time_limit_s"):
        train(TrainingConfig(output_dir=str(tmp_path / "x"), time_limit_s=0.0), progress=False)
    with pytest.raises(ValueError, match="workers"):
        train(TrainingConfig(output_dir=str(tmp_path / "x"), workers=-1), progress=False)


@pytest.mark.slow
def test_time_limited_run_ends_with_weights(tmp_path):
    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=10_000, batch_size=1,
                            patch_size=32, pool_size=1, val_every=0, seed=2, threads=1,
                            time_limit_s=1e-3)
    final = train(config, progress=False)
    _, _, meta = load_weights(final)
    # the limit is checked after each step: one step, then the final weights
    assert meta["step"] == 1


@pytest.mark.slow
def test_fine_tune_on_user_label_set(tmp_path):
    from ps3d_toolkit.io import save_labels, save_scan, write_metadata
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((40, 48, 48), 12, seed=4, preset="easy")
    folder = tmp_path / "labels" / "grain_a"
    save_scan(scan.image, folder / "scan.tif", spacing=scan.spacing)
    save_labels(scan.labels, folder / "labels.tif", spacing=scan.spacing)
    samples = load_label_set(tmp_path / "labels")
    assert len(samples) == 1 and samples[0]["labels"].max() == scan.labels.max()
    assert samples[0]["particle_size_mm"] == pytest.approx(scan.particle_size_mm, rel=1e-6)

    base = train(TrainingConfig(output_dir=str(tmp_path / "base"), steps=1, batch_size=1,
                                patch_size=32, pool_size=1, val_every=0, threads=1), progress=False)
    tuned = train(TrainingConfig(output_dir=str(tmp_path / "tuned"), steps=2, batch_size=1,
                                 patch_size=32, pool_size=1, val_every=0, threads=1,
                                 data_dirs=[str(tmp_path / "labels")], synthetic_fraction=0.0,
                                 init_weights=str(base)), progress=False)
    assert tuned.is_file()


def test_load_label_set_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_label_set(tmp_path / "nope")
    with pytest.raises(ValueError, match="no scan/labels pairs"):
        load_label_set(tmp_path)


def test_shipped_model_card_travels_with_the_weights():
    """The card in the package is the card in docs/ (so they cannot drift apart)."""
    from pathlib import Path

    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    card = DEFAULT_WEIGHTS.with_suffix(".md")
    docs = Path(__file__).resolve().parents[1] / "docs" / "model_card.md"
    assert card.is_file() and card.read_text() == docs.read_text()
    assert "Exact commands" in card.read_text()


def test_stress_scans_push_past_the_hard_preset():
    from ps3d_toolkit.training.volumes import make_training_volume, stress_overrides
    from ps3d_toolkit.data.synthetic import PRESETS

    rng = np.random.default_rng(0)
    draws = [stress_overrides(rng) for _ in range(200)]
    contrasts = [d["contrast"] for d in draws if "contrast" in d]
    rings = [d["ring_strength"] for d in draws if "ring_strength" in d]
    assert 60 < len(contrasts) < 140  # each setting pushed about half the time
    assert min(contrasts) < PRESETS["hard"]["contrast"][0]
    assert max(rings) > PRESETS["hard"]["ring_strength"][1]
    network = dict(DEFAULT_CONFIG, train_diameter_vox=12)
    volume, targets = make_training_volume(np.random.default_rng(1), network, preset_weights=(1, 1, 1),
                                           stress_fraction=1.0)
    assert volume.shape == targets.shape and set(np.unique(targets)) == {0, 1, 2}
    with pytest.raises(ValueError, match="stress_fraction"):
        make_training_volume(rng, network, preset_weights=(1, 1, 1), stress_fraction=1.5)


def test_export_sets_diameter_and_threshold_and_keeps_its_history(tmp_path, monkeypatch):
    from ps3d_toolkit.training import volumes
    from ps3d_toolkit.training.export import export_weights
    from ps3d_toolkit.data.synthetic import generate_scan

    monkeypatch.setattr(volumes, "validation_scans",
                        lambda: [generate_scan((32, 32, 32), 10, seed=1, preset="easy")])
    torch.manual_seed(0)
    src = save_weights(build_network(), tmp_path / "src.pt", dict(DEFAULT_CONFIG), {"seed": 7})
    first = export_weights(src, tmp_path / "first.pt", inference_diameter_vox=20,
                           command="ps3d export src.pt first.pt --note 'a b'")
    _, config, meta = load_weights(first)
    assert meta["export_command"] == "ps3d export src.pt first.pt --note 'a b'"
    assert config["inference_diameter_vox"] == 20.0
    assert 0 < config["core_threshold"] < 1 and meta["seed"] == 7
    # re-exporting keeps the diameter unless told otherwise, and the earlier export command
    second = export_weights(first, tmp_path / "second.pt")
    _, config, meta = load_weights(second)
    assert config["inference_diameter_vox"] == 20.0
    assert len(meta["export_history"]) == 1
    with pytest.raises(ValueError, match="inference_diameter_vox"):
        export_weights(src, tmp_path / "bad.pt", inference_diameter_vox=-1)
    # a threshold chosen elsewhere is kept, and the validation scans are scored at it
    third = export_weights(second, tmp_path / "third.pt", core_threshold=0.77)
    _, config, meta = load_weights(third)
    assert config["core_threshold"] == 0.77 and list(meta["core_threshold_scores"]) == ["0.77"]
    assert len(meta["export_history"]) == 2
    with pytest.raises(ValueError, match="core_threshold"):
        export_weights(src, tmp_path / "bad.pt", core_threshold=1.5)


def test_prepare_volume_draws_particles_at_the_training_diameter():
    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation.foreground import mean_particle_diameter_mm
    from ps3d_toolkit.training.volumes import prepare_volume

    scan = generate_scan((48, 64, 64), 16, seed=2, preset="easy")
    network = dict(DEFAULT_CONFIG, train_diameter_vox=8.0)
    image, targets = prepare_volume(scan.image, scan.labels, scan.spacing, scan.particle_size_mm, network)
    zoom = 8.0 / scan.mean_diameter_vox
    assert image.shape == targets.shape == tuple(round(n * zoom) for n in scan.image.shape)
    assert image.dtype == np.float32
    # the particles' foreground keeps its share of the volume on the smaller grid
    assert np.mean(targets > 0) == pytest.approx(np.mean(scan.labels > 0), abs=0.03)
    # a size given 2x too large draws the scan at half that zoom
    assert prepare_volume(scan.image, scan.labels, scan.spacing, scan.particle_size_mm, network,
                          size_error=2.0)[0].shape == tuple(round(n * zoom / 2) for n in scan.image.shape)
    assert mean_particle_diameter_mm(scan.labels, spacing=scan.spacing) == pytest.approx(scan.particle_size_mm)


def test_training_config_refuses_an_unknown_network_key(tmp_path):
    with pytest.raises(ValueError, match="target_diameter_vox"):
        train(TrainingConfig(output_dir=str(tmp_path / "x"), network={"target_diameter_vox": 20.0}),
              progress=False)


@pytest.mark.parametrize("setting", [{"learning_rate": -1.0}, {"learning_rate": float("nan")},
                                     {"synthetic_fraction": 2.0}, {"stress_fraction": -0.1},
                                     {"preset_weights": (0, 0, 0)}, {"preset_weights": (1, -1, 1)}])
def test_training_refuses_bad_settings_before_any_work(tmp_path, setting):
    from ps3d_toolkit.core.errors import InputError

    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=1, **setting)
    with pytest.raises(InputError, match=next(iter(setting))):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_masked_loss_is_monai_dice_ce_on_the_kept_voxels():
    from monai.losses import DiceCELoss

    from ps3d_toolkit.training.targets import IGNORE, masked_dice_ce

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8, generator=generator)
    target = torch.randint(0, 3, (2, 1, 8, 8, 8), generator=generator)
    every = torch.ones_like(target, dtype=torch.bool)
    assert masked_dice_ce(logits, target, every) == pytest.approx(
        float(DiceCELoss(to_onehot_y=True, softmax=True)(logits, target)), rel=1e-6)
    # what the left-out voxels hold, and what the network says there, changes nothing
    keep = torch.rand(target.shape, generator=generator) < 0.5
    other_target = torch.where(keep, target, torch.full_like(target, IGNORE))
    other_logits = torch.where(keep, logits, torch.randn(logits.shape, generator=generator))
    assert masked_dice_ce(other_logits, other_target, keep) == pytest.approx(
        float(masked_dice_ce(logits, target, keep)), rel=1e-6)
    assert masked_dice_ce(logits, target, keep) != pytest.approx(float(masked_dice_ce(logits, target, every)))


def test_training_on_given_volumes_with_ignored_voxels(tmp_path):
    from ps3d_toolkit.core.progress import Stages
    from ps3d_toolkit.training.targets import IGNORE

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, (40, 40, 40)).astype(np.uint8)
    targets[:20] = IGNORE
    image = targets.astype(np.float32) + rng.normal(0, 0.1, targets.shape).astype(np.float32)

    class Given:
        draws = 0

        def draw(self):
            Given.draws += 1
            return image, targets

    stages = Stages("test", enabled=False)
    stages.start("training", steps=3)
    config = TrainingConfig(output_dir=str(tmp_path / "run"), steps=3, batch_size=1, patch_size=32, pool_size=2,
                            refresh_every=100, val_every=0, seed=1, threads=1, warmup_steps=1)
    final = train(config, progress=stages, volumes=Given())
    stages.close()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert Given.draws == 2 and len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    assert load_weights(final)[2]["step"] == 3
    with pytest.raises(ValueError, match="warmup_steps"):
        train(TrainingConfig(output_dir=str(tmp_path / "x"), warmup_steps=0), progress=False)
