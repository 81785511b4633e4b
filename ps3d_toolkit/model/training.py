"""Training the border-core U-Net: synthetic data drawn fresh, user label sets, checkpoints.

Training volumes go through exactly the preprocessing that inference applies
(intensity normalisation, then size normalisation to the target diameter), with
a random error in the particle size (+-25 %) so that the model tolerates a
rough size given by a user or estimated from the scan. A pool of volumes is kept
in memory and refreshed with newly generated ones as training goes on, so the
model never sees the same scan for long.

Everything is seeded; a run can be stopped and resumed from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path
from ..preprocess import (mean_particle_diameter_mm, normalize_intensity, resample_image,
                          resample_labels, zoom_factors)
from ..synthetic import generate_scan
from .augment import augment_batch
from .network import DEFAULT_CONFIG, build_network, load_weights, save_weights
from .targets import border_core_targets

__all__ = ["TrainingConfig", "train", "load_label_set", "make_training_volume",
           "stress_overrides", "validation_scans"]


@dataclass
class TrainingConfig:
    """Every setting of a training run (stored in checkpoints and weight files).

    Attributes
    ----------
    output_dir : str
        Folder for checkpoints, the log and the final weights.
    steps : int
        Optimiser steps.
    batch_size, patch_size : int
        Patches per step and their edge length in (size-normalised) voxels.
    learning_rate : float
        Peak AdamW learning rate (linear warm-up, cosine decay).
    seed : int
        Seed of every random draw.
    pool_size : int
        Training volumes held in memory.
    refresh_every : int
        Replace one pool volume with a fresh one every this many steps.
    val_every, checkpoint_every : int
        Validation and checkpoint intervals in steps.
    data_dirs : list of str
        User label sets (see :func:`load_label_set`).
    synthetic_fraction : float
        Share of the pool that is synthetic when user data are given.
    init_weights : str or None
        Start from these weights ("default" = the shipped model), e.g. to fine-tune.
    network : dict
        Network and preprocessing configuration (defaults: ``DEFAULT_CONFIG``).
    threads : int or None
        torch CPU threads.
    device : str
        "auto", "cpu", "cuda" or "mps".
    preset_weights : tuple of 3 float
        How often synthetic scans are drawn from the easy, medium and hard presets.
    stress_fraction : float
        Share of synthetic scans drawn as "stress" scans: the hard preset with
        contrast, noise, rings, cupping, cylinder width and grain shapes pushed
        past its ranges (see :func:`stress_overrides`).
    """

    output_dir: str = "runs/default"
    steps: int = 3000
    batch_size: int = 2
    patch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    pool_size: int = 24
    refresh_every: int = 6
    val_every: int = 250
    checkpoint_every: int = 50
    data_dirs: list = field(default_factory=list)
    synthetic_fraction: float = 1.0
    init_weights: str | None = None
    network: dict = field(default_factory=dict)
    threads: int | None = None
    device: str = "auto"
    preset_weights: tuple = (0.2, 0.4, 0.4)
    stress_fraction: float = 0.0


# --------------------------------------------------------------------------- data


def _prepare(image, labels, spacing, particle_size_mm, network, size_error=1.0):
    """Intensity- and size-normalise one labelled scan like inference does."""
    low, high = network["intensity_percentiles"]
    normalized = normalize_intensity(image, low_percentile=low, high_percentile=high)
    zoom = zoom_factors(spacing, particle_size_mm * size_error, network["target_diameter_vox"])
    small = resample_image(normalized, zoom)
    small_labels = resample_labels(labels, shape=small.shape)
    targets = border_core_targets(small_labels, border_vox=network["border_vox"])
    return small.astype(np.float32), targets


def stress_overrides(rng: np.random.Generator) -> dict:
    """Draw phantom settings beyond the hard preset's ranges.

    Real scans come with lower contrast, stronger rings and cupping, wider
    sample holders and grain populations of a single awkward shape more often
    than the presets draw them. Each setting is pushed only with probability
    one half, so that a stress scan is hard in a few ways at once, not all.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    dict
        Keyword overrides for :func:`ps3d_toolkit.synthetic.generate_scan`
        (used with ``preset="hard"``).
    """
    draws = dict(
        contrast=lambda: float(rng.uniform(0.08, 0.3)),
        noise=lambda: float(rng.uniform(0.1, 0.25)),
        ring_strength=lambda: float(rng.uniform(0.06, 0.14)),
        cupping=lambda: float(rng.uniform(0.2, 0.4)),
        cylinder_radius_fraction=lambda: float(rng.uniform(0.55, 0.66)),
        shape_weights=lambda: {str(rng.choice(["angular", "flaky", "irregular"])): 1.0,
                               str(rng.choice(["angular", "flaky"])): 1.0},
    )
    return {key: draw() for key, draw in draws.items() if rng.random() < 0.5}


def make_training_volume(rng: np.random.Generator, network: dict,
                         preset_weights=(0.2, 0.4, 0.4),
                         stress_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic scan and bring it to the model's scale.

    Half the scans are generated near the target size, half at a native size
    of 12-48 voxels and downsampled, as users' scans will be. The difficulty
    preset is drawn with ``preset_weights`` (easy, medium, hard); a share
    ``stress_fraction`` of the scans are hard scans with :func:`stress_overrides`.
    """
    target = network["target_diameter_vox"]
    weights = np.asarray(preset_weights, dtype=float)
    if weights.shape != (3,) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"preset_weights must be 3 non-negative numbers (easy, medium, hard), got {preset_weights!r}")
    if not 0.0 <= stress_fraction <= 1.0:
        raise ValueError(f"stress_fraction must lie in [0, 1], got {stress_fraction!r}")
    preset = str(rng.choice(["easy", "medium", "hard"], p=weights / weights.sum()))
    overrides = {}
    if stress_fraction and rng.random() < stress_fraction:
        preset, overrides = "hard", stress_overrides(rng)
    if rng.random() < 0.5:
        diameter = float(target * rng.uniform(0.8, 1.4))
    else:
        diameter = float(rng.uniform(12, 48))
    # Edge chosen so the size-normalised volume is >= ~80 voxels, capped for speed.
    edge = int(np.clip(diameter / target * 96, 80, 176))
    shape = (int(rng.integers(max(64, edge * 3 // 4), edge + 1)), edge, edge)
    scan = generate_scan(shape, diameter, seed=int(rng.integers(2**31)), preset=preset, **overrides)
    return _prepare(scan.image, scan.labels, scan.spacing, scan.particle_size_mm, network,
                    size_error=float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))


def load_label_set(folder) -> list[dict]:
    """Read a user label set: one sub-folder per scan, or pairs in one folder.

    Each scan is ``<name>/scan.<ext>`` + ``<name>/labels.<ext>`` (+ optional
    ``metadata.json`` with ``spacing`` and ``particle_size_mm``), or
    ``<name>_scan.<ext>`` + ``<name>_labels.<ext>`` side by side, in any format
    :func:`ps3d_toolkit.io.load_scan` reads. Without a stored particle size, the
    mean equivalent diameter of the labelled particles is used.

    Returns
    -------
    list of dict
        ``{"name", "image", "labels", "spacing", "particle_size_mm"}`` per scan.
    """
    from ..io import load_labels, load_scan

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"label set folder not found: {folder}")
    pairs = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.suffix == ".zarr"):
        scans = [p for p in sub.iterdir() if p.name.split(".")[0] == "scan"]
        labels = [p for p in sub.iterdir() if p.name.split(".")[0] == "labels"]
        if scans and labels:
            pairs.append((sub.name, scans[0], labels[0]))
    for scan_path in sorted(folder.glob("*_scan.*")):
        name = scan_path.name.split("_scan.")[0]
        labels = sorted(folder.glob(f"{name}_labels.*"))
        if labels:
            pairs.append((name, scan_path, labels[0]))
    if not pairs:
        raise ValueError(f"no scan/labels pairs found in {folder} (expected <name>/scan.* + "
                         "<name>/labels.* or <name>_scan.* + <name>_labels.*)")
    samples = []
    for name, scan_path, label_path in pairs:
        scan = load_scan(scan_path)
        labels = load_labels(label_path)
        image = np.asarray(scan.image)
        if labels.shape != image.shape:
            raise ValueError(f"{label_path} has shape {labels.shape} but {scan_path} has {image.shape}")
        size = scan.particle_size_mm
        if size is None:
            size = mean_particle_diameter_mm(labels, spacing=scan.spacing)
            if size is None:
                raise ValueError(f"{label_path} holds no particles")
        samples.append(dict(name=name, image=image, labels=labels, spacing=scan.spacing,
                            particle_size_mm=size))
    return samples


def validation_scans(seed: int = 12345) -> list:
    """A fixed set of synthetic validation scans of every difficulty and size."""
    specs = [("easy", 16), ("medium", 24), ("hard", 20), ("hard", 34), ("medium", 14)]
    scans = []
    for i, (preset, diameter) in enumerate(specs):
        edge = int(np.clip(diameter * 5, 96, 144))
        scans.append(generate_scan((edge, edge, edge), diameter, seed=seed + i, preset=preset))
    return scans


def _random_patch(volume, targets, size, rng):
    """A random patch, padded with the volume's edge values when it is smaller."""
    pads = [(0, max(0, size - n)) for n in volume.shape]
    if any(p[1] for p in pads):
        volume = np.pad(volume, pads, mode="edge")
        targets = np.pad(targets, pads, mode="constant")
    start = [int(rng.integers(0, n - size + 1)) for n in volume.shape]
    box = tuple(slice(s, s + size) for s in start)
    return volume[box], targets[box]


# --------------------------------------------------------------------------- training


def _learning_rate(step: int, config: TrainingConfig) -> float:
    warmup = max(1, min(200, config.steps // 20))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _validate(model, network, scans, device) -> dict:
    from ..evaluate import evaluate_instances
    from ..inference import segment_with_model

    f1_50, f1_75 = [], []
    model.eval()
    for scan in scans:
        labels = segment_with_model(scan.image, spacing=scan.spacing,
                                    particle_size_mm=scan.particle_size_mm,
                                    weights=(model, network), device=device, progress=False)
        metrics = evaluate_instances(scan.labels, labels)
        f1_50.append(metrics["f1_50"])
        f1_75.append(metrics["f1_75"])
    model.train()
    return {"val_f1_50": float(np.mean(f1_50)), "val_f1_75": float(np.mean(f1_75)),
            "val_f1_50_each": [round(v, 4) for v in f1_50]}


def train(config: TrainingConfig | None = None, *, progress: bool = True,
          command: str | None = None) -> Path:
    """Train (or fine-tune) the border-core U-Net; resumes from ``last.pt`` if present.

    Parameters
    ----------
    config : TrainingConfig
        Run settings.
    progress : bool
        Show a progress bar with loss and validation F1.
    command : str, optional
        The command line that started the run, recorded in the weights' metadata.

    Returns
    -------
    Path
        The final weights file ``<output_dir>/model.pt`` (float16, loadable with
        ``torch.load(weights_only=True)``).
    """
    from tqdm.auto import tqdm

    from ..inference import select_device
    from . import DEFAULT_WEIGHTS

    config = config or TrainingConfig()
    if config.steps < 1 or config.batch_size < 1 or config.patch_size < 16:
        raise ValueError("steps and batch_size must be >= 1 and patch_size >= 16, got "
                         f"{config.steps}, {config.batch_size}, {config.patch_size}")
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(config.device)
    network = {**DEFAULT_CONFIG, **config.network}

    model = build_network(network)
    if config.init_weights:
        init = DEFAULT_WEIGHTS if config.init_weights == "default" else Path(config.init_weights)
        loaded, loaded_config, _ = load_weights(init)
        model.load_state_dict(loaded.state_dict())
        network = {**loaded_config, **config.network}
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    from monai.losses import DiceCELoss

    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    step, history, best = 0, [], -1.0
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    last = out / "last.pt"
    if last.is_file():
        state = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, best = state["step"], state["history"], state["best"]
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["torch_rng"])
        if progress:
            print(f"ps3d train: resumed from {last} at step {step}")

    user = []
    for folder in config.data_dirs:
        user.extend(load_label_set(folder))
    user_volumes = [_prepare(s["image"], s["labels"], s["spacing"], s["particle_size_mm"], network)
                    for s in user]
    synthetic_fraction = config.synthetic_fraction if user_volumes else 1.0

    def draw_volume():
        if user_volumes and rng.random() >= synthetic_fraction:
            sample = user[int(rng.integers(len(user)))]
            return _prepare(sample["image"], sample["labels"], sample["spacing"],
                            sample["particle_size_mm"], network,
                            size_error=float(np.exp(rng.uniform(np.log(0.85), np.log(1.18)))))
        return make_training_volume(rng, network, config.preset_weights, config.stress_fraction)

    pool_size = max(1, config.pool_size)
    pool = [draw_volume() for _ in tqdm(range(pool_size), desc="training pool", disable=not progress)]
    val_scans = validation_scans() if config.val_every else []

    log_path = out / "log.jsonl"
    bar = tqdm(total=config.steps, initial=step, desc="training", disable=not progress)
    t_start = time.time()
    while step < config.steps:
        if step and step % config.refresh_every == 0:
            pool[int(rng.integers(len(pool)))] = draw_volume()
        images, targets = [], []
        for _ in range(config.batch_size):
            volume, target = pool[int(rng.integers(len(pool)))]
            x, y = _random_patch(volume, target, config.patch_size, rng)
            images.append(torch.from_numpy(np.ascontiguousarray(x))[None])
            targets.append(torch.from_numpy(np.ascontiguousarray(y)).long()[None])
        x, y = augment_batch(torch.stack(images), torch.stack(targets), generator)
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x.to(device)), y.to(device))
        loss.backward()
        optimizer.step()
        step += 1
        record = {"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                  "elapsed_s": round(time.time() - t_start, 1)}
        if config.val_every and (step % config.val_every == 0 or step == config.steps):
            record.update(_validate(model, network, val_scans, device))
            if record["val_f1_50"] + record["val_f1_75"] > best:
                best = record["val_f1_50"] + record["val_f1_75"]
                save_weights(model, out / "best.pt", network, _metadata(config, step, record, command))
        history.append(record)
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}",
                        **({"val_f1": f"{record['val_f1_50']:.3f}"} if "val_f1_50" in record else {}))
        if step % config.checkpoint_every == 0 or step == config.steps:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "step": step, "history": history, "best": best,
                     "rng": rng.bit_generator.state, "torch_rng": generator.get_state(),
                     "config": asdict(config)}
            with atomic_path(last) as tmp:
                torch.save(state, tmp)
    bar.close()
    final = out / "model.pt"
    last_record = history[-1] if history else {}
    save_weights(model, final, network, _metadata(config, step, last_record, command))
    return final


def _metadata(config: TrainingConfig, step: int, record: dict, command: str | None) -> dict:
    return {"training_config": asdict(config), "step": step, "command": command,
            "scores": {k: v for k, v in record.items() if k.startswith("val_")},
            "torch": str(torch.__version__)}
