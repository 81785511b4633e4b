"""Training the border-core U-Net: the loop, its checkpoints and its validation.

Training volumes (see :mod:`ps3d_toolkit.training.volumes`) are kept in a pool
in memory that is refreshed with newly generated ones as training goes on, so
the model never sees the same scan for long. Everything is seeded; a run can be
stopped and resumed from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.errors import CorruptDataError, InputError
from ps3d_toolkit.core.progress import Stages
from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network, load_weights, save_weights
from ps3d_toolkit.training.augment import augment_batch
from ps3d_toolkit.training.targets import IGNORE, masked_dice_ce
from ps3d_toolkit.training.volumes import TrainingVolumes, validation_scans

__all__ = ["TrainingConfig", "train"]

logger = logging.getLogger(__name__)


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
        User label sets (see :func:`ps3d_toolkit.training.volumes.load_label_set`).
    synthetic_fraction : float
        Share of the pool that is synthetic when user data are given.
    init_weights : str or None
        Start from these weights ("default" = the shipped model), e.g. to fine-tune.
    network : dict
        Network and preprocessing configuration: keys of ``DEFAULT_CONFIG``
        (e.g. ``train_diameter_vox``), overriding its values.
    threads : int or None
        torch CPU threads.
    device : str
        "auto", "cpu", "cuda" or "mps".
    preset_weights : tuple of 3 float
        How often synthetic scans are drawn from the easy, medium and hard presets.
    stress_fraction : float
        Share of synthetic scans drawn as "stress" scans: the hard preset with
        contrast, noise, rings, cupping, cylinder width and grain shapes pushed
        past its ranges (see :func:`ps3d_toolkit.training.volumes.stress_overrides`).
    workers : int
        Processes generating synthetic volumes ahead of the training loop
        (0 = generate them in the loop, between steps).
    time_limit_s : float or None
        Stop after this many seconds of training (over all resumes). The
        learning-rate schedule then runs on whichever of steps and time is
        further along, so a time-limited run still ends its cosine decay.
    warmup_steps : int or None
        Steps of linear learning-rate warm-up (default: a twentieth of the
        steps, at most 200; a short fine-tuning wants fewer).
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
    workers: int = 0
    time_limit_s: float | None = None
    warmup_steps: int | None = None


@dataclass
class _RunState:
    """What a checkpoint restores besides the model and the optimiser."""

    rng: np.random.Generator
    generator: torch.Generator
    step: int = 0
    history: list = field(default_factory=list)
    best: float = -1.0
    elapsed_before_s: float = 0.0
    started: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        """Seconds of training over all resumes."""
        return self.elapsed_before_s + time.time() - self.started


def train(config: TrainingConfig | None = None, *, progress: bool | Stages = True,
          command: str | None = None, volumes=None) -> Path:
    """Train (or fine-tune) the border-core U-Net; resumes from ``last.pt`` if present.

    Parameters
    ----------
    config : TrainingConfig
        Run settings.
    progress : bool or Stages
        Show a progress bar with loss and validation F1, or advance a caller's
        :class:`~ps3d_toolkit.core.progress.Stages` by one step an optimiser step.
    command : str, optional
        The command line that started the run, recorded in the weights' metadata.
    volumes : object, optional
        Where training volumes come from instead of ``config``'s synthetic scans
        and label sets: anything with ``draw() -> (image, targets)`` on the
        training grid (e.g. ``ps3d adapt``'s pseudo-labelled scan and matched
        phantoms). Targets may hold :data:`~ps3d_toolkit.training.targets.IGNORE`
        for voxels left out of the loss.

    Returns
    -------
    Path
        The final weights file ``<output_dir>/model.pt`` (float16, loadable with
        ``torch.load(weights_only=True)``).
    """
    from monai.losses import DiceCELoss
    from tqdm.auto import tqdm

    from ps3d_toolkit.segmentation.model.device import select_device

    config = config or TrainingConfig()
    _check_config(config)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(config.device)
    model, network = _initial_model(config, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    run = _resume(out / "last.pt", model, optimizer, config)
    stages = progress if isinstance(progress, Stages) else None
    bars = bool(progress) and stages is None
    # the generator processes (if any) are closed however training ends
    with (contextlib.nullcontext(volumes) if volumes is not None
          else TrainingVolumes(config, network, run.rng)) as volumes:
        pool = [volumes.draw() for _ in tqdm(range(max(1, config.pool_size)), desc="training pool",
                                             disable=not bars)]
        val_scans = validation_scans() if config.val_every else []
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        bar = tqdm(total=config.steps, initial=run.step, desc="training", disable=not bars)
        run.started = time.time()
        while run.step < config.steps and not _out_of_time(run, config):
            record = _train_step(model, optimizer, loss_fn, pool, volumes, run, config, device)
            finished = run.step == config.steps or _out_of_time(run, config)
            if config.val_every and (run.step % config.val_every == 0 or finished):
                _validate_and_keep_best(model, network, val_scans, device, record, run, config, out, command)
            _log(record, run, out / "log.jsonl", bar)
            if stages is not None:
                stages.advance()
            if run.step % config.checkpoint_every == 0 or finished:
                _save_checkpoint(out / "last.pt", model, optimizer, run, config)
    bar.close()
    final = out / "model.pt"
    save_weights(model, final, network, _metadata(config, run.step, run.history[-1] if run.history else {},
                                                  command))
    return final


def _check_config(config: TrainingConfig) -> None:
    if config.steps < 1 or config.batch_size < 1 or config.patch_size < 16:
        raise InputError("steps and batch_size must be >= 1 and patch_size >= 16, got "
                         f"{config.steps}, {config.batch_size}, {config.patch_size}")
    if config.workers < 0 or (config.time_limit_s is not None and config.time_limit_s <= 0):
        raise InputError(f"workers must be >= 0 and time_limit_s > 0, got {config.workers}, "
                         f"{config.time_limit_s}")
    if config.warmup_steps is not None and config.warmup_steps < 1:
        raise InputError(f"warmup_steps must be >= 1 or None, got {config.warmup_steps!r}")
    if not 0 < config.learning_rate < math.inf:
        raise InputError(f"learning_rate must be a positive number, got {config.learning_rate!r}")
    shares = {"synthetic_fraction": config.synthetic_fraction, "stress_fraction": config.stress_fraction}
    for name, share in shares.items():
        if not 0 <= share <= 1:
            raise InputError(f"{name} must be from 0 to 1, got {share!r}")
    if len(config.preset_weights) != 3 or min(config.preset_weights) < 0 or not sum(config.preset_weights) > 0:
        raise InputError("preset_weights must be 3 numbers >= 0 (easy, medium, hard) with a positive sum, "
                         f"got {config.preset_weights!r}")
    unknown = sorted(set(config.network) - set(DEFAULT_CONFIG))
    if unknown:
        raise InputError(f"network has unknown key(s) {unknown}; known: {sorted(DEFAULT_CONFIG)}")


def _initial_model(config: TrainingConfig, device) -> tuple[torch.nn.Module, dict]:
    """The network to train (fresh or from ``init_weights``) and its config."""
    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    network = {**DEFAULT_CONFIG, **config.network}
    torch.manual_seed(config.seed)  # before the network's random initial weights
    model = build_network(network)
    if config.init_weights:
        init = DEFAULT_WEIGHTS if config.init_weights == "default" else Path(config.init_weights)
        loaded, loaded_config, _ = load_weights(init)
        model.load_state_dict(loaded.state_dict())
        network = {**loaded_config, **config.network}
    return model.to(device).train(), network


def _resume(last: Path, model, optimizer, config: TrainingConfig) -> _RunState:
    """A fresh run state, or the one of the checkpoint ``last`` (model and optimiser too)."""
    run = _RunState(rng=np.random.default_rng(config.seed),
                    generator=torch.Generator().manual_seed(config.seed))
    if not last.is_file():
        return run
    state = _read_checkpoint(last)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    run.step, run.history, run.best = state["step"], state["history"], state["best"]
    run.elapsed_before_s = float(state.get("elapsed_s", 0.0))
    run.rng.bit_generator.state = state["rng"]
    run.generator.set_state(state["torch_rng"])
    logger.info("resumed from %s at step %d", last, run.step)
    return run


_CHECKPOINT_KEYS = ("model", "optimizer", "step", "history", "best", "rng", "torch_rng")


def _read_checkpoint(last: Path) -> dict:
    """The checkpoint's plain data: tensors, numbers, strings and containers only.

    ``weights_only=True`` refuses any other object, so a crafted ``last.pt``
    cannot run code when a run is resumed.
    """
    try:
        with warnings.catch_warnings():  # torch's note on an odd pickle protocol: the error says it
            warnings.simplefilter("ignore")
            state = torch.load(last, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise CorruptDataError(
            f"cannot resume from {last}: it is not a checkpoint this toolkit wrote "
            f"({type(error).__name__}: {' '.join(str(error).split())[:200]}); remove it or choose "
            "another --output") from None
    missing = [key for key in _CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptDataError(f"cannot resume from {last}: it lacks {missing}; remove it or choose "
                               "another --output")
    return state


def _out_of_time(run: _RunState, config: TrainingConfig) -> bool:
    return bool(config.time_limit_s) and run.elapsed() >= config.time_limit_s


def _train_step(model, optimizer, loss_fn, pool: list, volumes: TrainingVolumes, run: _RunState,
                config: TrainingConfig, device) -> dict:
    """Refresh the pool when due, then one optimiser step on a fresh batch; its log record."""
    t_data = time.time()
    if run.step and run.step % config.refresh_every == 0:
        pool[int(run.rng.integers(len(pool)))] = volumes.draw()
    data_s = time.time() - t_data
    images, targets = [], []
    for _ in range(config.batch_size):
        volume, target = pool[int(run.rng.integers(len(pool)))]
        x, y = _random_patch(volume, target, config.patch_size, run.rng)
        images.append(torch.from_numpy(np.ascontiguousarray(x))[None])
        targets.append(torch.from_numpy(np.ascontiguousarray(y)).long()[None])
    # augment where the network runs: on a GPU the blur and rotations are free there
    x, y = augment_batch(torch.stack(images).to(device), torch.stack(targets).to(device), run.generator)
    for group in optimizer.param_groups:
        group["lr"] = _learning_rate(run.step, config, run.elapsed())
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        prediction = model(x)
    # targets with voxels left out of the loss (pseudo-labels) take the masked loss
    ignored = y == IGNORE
    loss = masked_dice_ce(prediction.float(), y, ~ignored) if bool(ignored.any()) else loss_fn(prediction.float(), y)
    loss.backward()
    optimizer.step()
    run.step += 1
    return {"step": run.step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
            "elapsed_s": round(run.elapsed(), 1),
            # time spent waiting for a fresh volume: shows when the generator, not the
            # network, sets the pace (add --workers)
            "data_s": round(data_s, 3)}


def _random_patch(volume, targets, size, rng):
    """A random patch, padded with the volume's edge values when it is smaller."""
    pads = [(0, max(0, size - n)) for n in volume.shape]
    if any(p[1] for p in pads):
        volume = np.pad(volume, pads, mode="edge")
        targets = np.pad(targets, pads, mode="constant")
    start = [int(rng.integers(0, n - size + 1)) for n in volume.shape]
    box = tuple(slice(s, s + size) for s in start)
    return volume[box], targets[box]


def _learning_rate(step: int, config: TrainingConfig, elapsed_s: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 2 % over the steps or the time limit."""
    warmup = config.warmup_steps or max(1, min(200, config.steps // 20))
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    if config.time_limit_s:
        progress = max(progress, elapsed_s / config.time_limit_s)
    return config.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _validate(model, network, scans, device) -> dict:
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.methods.model import segment_with_model

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


def _validate_and_keep_best(model, network, val_scans, device, record: dict, run: _RunState,
                            config: TrainingConfig, out: Path, command) -> None:
    """Score the validation scans into ``record``; save ``best.pt`` when they improved."""
    record.update(_validate(model, network, val_scans, device))
    if record["val_f1_50"] + record["val_f1_75"] > run.best:
        run.best = record["val_f1_50"] + record["val_f1_75"]
        save_weights(model, out / "best.pt", network, _metadata(config, run.step, record, command))


def _log(record: dict, run: _RunState, log_path: Path, bar) -> None:
    run.history.append(record)
    with open(log_path, "a") as log:
        log.write(json.dumps(record) + "\n")
    bar.update(1)
    bar.set_postfix(loss=f"{record['loss']:.3f}",
                    **({"val_f1": f"{record['val_f1_50']:.3f}"} if "val_f1_50" in record else {}))


def _save_checkpoint(last: Path, model, optimizer, run: _RunState, config: TrainingConfig) -> None:
    # plain data only (no Path, no numpy scalars), so that weights_only loading accepts it
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "step": int(run.step), "history": _plain(run.history), "best": float(run.best),
             "elapsed_s": float(run.elapsed()), "rng": _plain(run.rng.bit_generator.state),
             "torch_rng": run.generator.get_state(), "config": _plain(asdict(config))}
    with atomic_path(last) as tmp:
        torch.save(state, tmp)


def _plain(value):
    """``value`` as JSON-like plain data (paths and other objects as text, numpy numbers as Python's)."""
    return json.loads(json.dumps(value, default=lambda item: item.item() if hasattr(item, "item") else str(item)))


def _metadata(config: TrainingConfig, step: int, record: dict, command: str | None) -> dict:
    return {"training_config": asdict(config), "step": step, "command": command,
            "scores": {k: v for k, v in record.items() if k.startswith("val_")},
            "torch": str(torch.__version__)}
