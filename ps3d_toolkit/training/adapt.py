"""Self-training on the user's own unlabelled scan: ``adapt()`` and ``ps3d adapt``.

The shipped (or given) weights are fine-tuned on the scan itself, without labels:

1. **first pass**: the scan is segmented and scored without labels (a
   per-particle confidence and an estimated F1@0.5; see
   :func:`~ps3d_toolkit.training.pseudo.quality_score`);
2. **targets**: phantoms generated to look like the scan, with exact labels
   (:mod:`~ps3d_toolkit.training.matched`), and on request pseudo-labels from the
   confident particles, the uncertain voxels left out of the loss
   (:mod:`~ps3d_toolkit.training.pseudo`);
3. **training**: :func:`~ps3d_toolkit.training.loop.train` from the current
   weights on a pool of both, within the time budget;
4. **second pass**: the scan segmented and scored again with the new weights;
   with several rounds, its confident particles are the next round's targets
   (as Biomedisa's self-validated learning repeats);
5. **decision**: the adapted weights are kept only when the label-free estimate
   says they are better than the starting ones; otherwise the starting weights
   are written. Either way the file's metadata says what was done and decided.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.checks import check_positive, check_spacing, check_volume
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.progress import Stages
from ps3d_toolkit.segmentation.model.network import load_weights, resolve_inference_diameter_vox, save_weights
from ps3d_toolkit.training.loop import TrainingConfig, train
from ps3d_toolkit.training.matched import matched_phantom, matched_settings
from ps3d_toolkit.training.pseudo import Score, flip_stability, pseudo_label_volume, quality_score

__all__ = ["TARGET_KINDS", "AdaptResult", "adapt"]

logger = logging.getLogger(__name__)

#: The kinds of training targets: pseudo-labels of the scan, scan-matched phantoms.
TARGET_KINDS = ("pseudo", "matched")
# Block edge (training-grid voxels) of a large scan's sample, and how many blocks at most.
_BLOCK_EDGE = 96


@dataclass
class AdaptResult:
    """What :func:`adapt` did and decided.

    Attributes
    ----------
    kept : bool
        Whether the adapted weights were kept (the estimate rose by more than the margin).
    estimate_before, estimate_after : float
        The label-free estimate of F1@0.5 with the starting and the adapted weights.
    weights : Path or None
        The file written (``output``): the adapted weights when kept, else the starting ones.
    steps : int
        Optimiser steps over all rounds.
    labels : np.ndarray
        The scan's particles with the weights kept.
    first_pass_labels : np.ndarray
        The scan's particles with the starting weights.
    candidate_labels : np.ndarray
        The scan's particles with the best-scoring adapted weights, kept or not.
    message : str
        One line saying what was decided, for a user.
    record : dict
        Everything the weights' metadata records under ``"adapt"``.
    """

    kept: bool
    estimate_before: float
    estimate_after: float
    weights: Path | None
    steps: int
    labels: np.ndarray
    first_pass_labels: np.ndarray
    candidate_labels: np.ndarray
    message: str
    record: dict = field(default_factory=dict)


class _Pool:
    """Training volumes handed out in turn (the loop's pool takes them all once)."""

    def __init__(self, volumes: list):
        self._volumes, self._next = volumes, 0

    def draw(self):
        volume = self._volumes[self._next % len(self._volumes)]
        self._next += 1
        return volume

    def __len__(self) -> int:
        return len(self._volumes)


def _check_arguments(image, spacing, particle_size_mm, minutes, targets, rounds, max_steps) -> tuple:
    image = check_volume(image, "image")
    spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm")
    minutes = check_positive(minutes, "minutes")
    targets = tuple(targets)
    unknown = [kind for kind in targets if kind not in TARGET_KINDS]
    if not targets or unknown:
        raise InputError(f"targets must be a non-empty choice of {list(TARGET_KINDS)}, got {list(targets)}")
    for name, value in (("rounds", rounds), ("max_steps", max_steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{name} must be a whole number >= 1, got {value!r}")
    return np.asarray(image), spacing, particle_size_mm, minutes, targets


def adapt(image, *, spacing, particle_size_mm, minutes: float = 6.0, weights=None, output=None,
          progress=True, seed: int = 0, targets=("matched",), rounds: int = 1, max_steps: int | None = None,
          scorer=None, min_confidence: float = 0.8, margin: float = 0.01, phantoms: int = 4,
          learning_rate: float = 1e-4, threads: int | None = None, max_blocks: int = 8,
          scan_name: str | None = None, command: str | None = None) -> AdaptResult:
    """Fine-tune the model on one unlabelled scan; keep the result only if it scores better.

    Parameters
    ----------
    image : array_like
        The grey-value scan (z, y, x), grains brighter than their matrix.
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float
        Rough mean particle diameter in mm.
    minutes : float
        Training time over all rounds (the passes over the scan come on top).
    weights : str or Path, optional
        Starting weights (default: the shipped model).
    output : str or Path, optional
        Weight file to write (atomically): the adapted weights when kept, the
        starting ones otherwise, with what was done in its metadata.
    progress : bool or Stages
        Show the named stages (first pass, targets, training, second pass, decision).
    seed : int
        Seed of every random draw.
    targets : sequence of {"pseudo", "matched"}
        Scan-matched phantoms (the default), pseudo-labels of the scan's confident
        particles, or both. Pseudo-labels lowered the accuracy where they were
        measured (docs/adapt.md): a grain the first pass merges or misses the same
        way every time is confidently wrong, and training on it teaches the error.
    rounds : int
        Rounds of targets, training and second pass (each round re-measures the
        scan with the newest weights).
    max_steps : int, optional
        Stop after this many optimiser steps over all rounds (whichever of it and
        ``minutes`` comes first); for tests and reproducible runs.
    scorer : callable, optional
        ``scorer(image, labels, *, spacing, particle_size_mm, weights) -> Score``
        (:class:`~ps3d_toolkit.training.pseudo.Score`): the label-free estimate that
        picks confident particles and decides; default
        :func:`~ps3d_toolkit.training.pseudo.quality_score`.
    min_confidence : float
        Particles at or above this confidence are pseudo-label targets.
    margin : float
        Keep the adapted weights only when their estimate exceeds the starting one by more
        than this (0.01: about the estimate's error on held-out scans, so that a rise within
        its noise does not count).
    phantoms : int
        Scan-matched phantoms generated for the pool.
    learning_rate : float
        Peak learning rate of the fine-tuning (a tenth of ``ps3d train``'s: tens of
        steps at 5e-4 moved the model by more than they taught it).
    threads : int, optional
        torch CPU threads.
    max_blocks : int
        On a large scan, train on at most this many blocks of it (96 voxels a side on the training grid).
    scan_name, command : str, optional
        Recorded in the metadata.

    Returns
    -------
    AdaptResult

    Raises
    ------
    InputError
        If an argument is invalid.
    """
    image, spacing, particle_size_mm, minutes, targets = _check_arguments(
        image, spacing, particle_size_mm, minutes, targets, rounds, max_steps)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    scorer = scorer or quality_score
    stages = progress if isinstance(progress, Stages) else Stages("adapt", enabled=bool(progress))
    scan = dict(image=image, spacing=spacing, particle_size_mm=particle_size_mm)
    settings = dict(targets=targets, rounds=int(rounds), max_steps=max_steps, minutes=minutes, seed=int(seed),
                    min_confidence=float(min_confidence), phantoms=int(phantoms), learning_rate=float(learning_rate),
                    max_blocks=int(max_blocks))
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="ps3d-adapt-") as work:
            outcome = _rounds(scan, weights, scorer, settings, stages, Path(work))
            stages.start("decision")
            return _decide(outcome, weights, output, margin, scan_name, command, settings, stages,
                           time.perf_counter() - start)
    finally:
        if stages is not progress:
            stages.close()


def _segment_and_score(scan: dict, weights, scorer, stages, name: str) -> tuple[np.ndarray, Score]:
    from ps3d_toolkit.segmentation import segment

    stages.start(name)
    labels = segment(scan["image"], spacing=scan["spacing"], particle_size_mm=scan["particle_size_mm"],
                     method="model", weights=weights, progress=False)
    score = scorer(scan["image"], labels, spacing=scan["spacing"], particle_size_mm=scan["particle_size_mm"],
                   weights=weights)
    logger.info("%s: %d particles, estimated F1@0.5 %.3f (%s)", name, int(labels.max()), score.estimated_f1,
                score.source)
    return labels, score


def _rounds(scan: dict, weights, scorer, settings: dict, stages, work: Path) -> dict:
    """First pass, then each round's targets, training and second pass."""
    labels, score = _segment_and_score(scan, weights, scorer, stages, "first pass")
    if scorer is quality_score and score.source == "flip stability":
        scorer = flip_stability  # the first pass fell back: every later score the same way
    outcome = {"before": score, "current": weights, "steps": 0, "rounds": [], "matched": None,
               "first_labels": labels, "best": (score, weights, labels, 0)}
    phantoms, rounds = [], settings["rounds"]
    for r in range(rounds):
        stages.start(f"targets (round {r + 1}/{rounds})")
        network = _grid_config(load_weights(outcome["current"] or _default_weights())[1])
        if "matched" in settings["targets"] and not phantoms:
            outcome["matched"], phantoms = _matched(scan, labels, network, settings)
        pool, counts = _pool(scan, labels, score, network, phantoms, settings)
        path, steps = _train_round(pool, outcome, settings, r, stages, work)
        outcome["steps"] += steps
        labels, score = _segment_and_score(scan, str(path), scorer, stages, f"second pass (round {r + 1}/{rounds})")
        outcome["current"] = str(path)
        if r == 0 or score.estimated_f1 > outcome["best"][0].estimated_f1:
            # the best-scoring round is the candidate (the first round's even when it scores below the start)
            outcome["best"] = (score, str(path), labels, r + 1)
        outcome["rounds"].append({"steps": steps, "pseudo": counts, "estimated_f1": round(score.estimated_f1, 4)})
        if settings["max_steps"] is not None and outcome["steps"] >= settings["max_steps"]:
            break
    return outcome


def _grid_config(config: dict) -> dict:
    """The weights' config with the training grid at the inference grid's grain diameter.

    The scan is segmented at ``inference_diameter_vox`` (20 voxels for the shipped model,
    trained around 18): adapting to one scan trains on the view of it the network will have.
    """
    return {**config, "train_diameter_vox": resolve_inference_diameter_vox(config)}


def _default_weights() -> Path:
    from ps3d_toolkit.segmentation.model import DEFAULT_WEIGHTS

    return DEFAULT_WEIGHTS


def _matched(scan: dict, labels, network: dict, settings: dict) -> tuple[dict, list]:
    """The scan-matched generator settings and ``settings['phantoms']`` phantoms on the training grid."""
    rng = np.random.default_rng(settings["seed"])
    matched = matched_settings(scan["image"], labels, particle_size_mm=scan["particle_size_mm"],
                               spacing=scan["spacing"], network=network, seed=int(rng.integers(2**31)))
    phantoms = [matched_phantom(matched, network, seed=int(rng.integers(2**31)))
                for _ in range(settings["phantoms"])]
    return matched, phantoms


def _pool(scan: dict, labels, score: Score, network: dict, phantoms: list, settings: dict) -> tuple[_Pool, dict]:
    """The round's training volumes: blocks of the pseudo-labelled scan and the phantoms, in equal shares."""
    blocks, counts = [], {}
    if "pseudo" in settings["targets"]:
        grid, targets, counts = pseudo_label_volume(
            scan["image"], labels, score, spacing=scan["spacing"], particle_size_mm=scan["particle_size_mm"],
            network=network, min_confidence=settings["min_confidence"])
        blocks = _sample_blocks(grid, targets, settings["max_blocks"], np.random.default_rng(settings["seed"]))
        counts["blocks"] = len(blocks)
    if blocks and phantoms:
        # equal shares of patches from the scan and from the phantoms, whatever their counts
        n = len(blocks) * len(phantoms)
        volumes = blocks * (n // len(blocks)) + phantoms * (n // len(phantoms))
    else:
        volumes = blocks or phantoms
    if not volumes:
        raise InputError("adapt found no training targets: no confident particle and no phantom; "
                         "check --particle-size, or use targets=['matched']")
    return _Pool(volumes), counts


def _sample_blocks(grid: np.ndarray, targets: np.ndarray, max_blocks: int, rng) -> list:
    """The whole volume when it is small, else up to ``max_blocks`` blocks with the most usable voxels."""
    from ps3d_toolkit.training.targets import IGNORE

    if grid.size <= max_blocks * _BLOCK_EDGE ** 3:
        return [(grid, targets)]
    starts = [range(0, max(1, n - _BLOCK_EDGE + 1), _BLOCK_EDGE) for n in grid.shape]
    boxes = [tuple(slice(s, s + _BLOCK_EDGE) for s in (z, y, x)) for z in starts[0] for y in starts[1]
             for x in starts[2]]
    usable = np.array([np.count_nonzero((targets[box] > 0) & (targets[box] != IGNORE)) for box in boxes], float)
    order = np.lexsort((rng.random(len(boxes)), -usable))[:max_blocks]
    return [(np.ascontiguousarray(grid[boxes[i]]), np.ascontiguousarray(targets[boxes[i]])) for i in order]


def _train_round(pool: _Pool, outcome: dict, settings: dict, r: int, stages, work: Path) -> tuple[Path, int]:
    """One round of fine-tuning from the current weights; the weights file and the steps taken."""
    rounds, max_steps = settings["rounds"], settings["max_steps"]
    steps = 10**6 if max_steps is None else max(1, (max_steps - outcome["steps"]) // (rounds - r))
    config = TrainingConfig(
        output_dir=str(work / f"round{r + 1}"), steps=steps, batch_size=2, patch_size=64,
        learning_rate=settings["learning_rate"], seed=settings["seed"] + r, pool_size=len(pool),
        refresh_every=10**9, val_every=0, checkpoint_every=10**9,
        init_weights=str(outcome["current"]) if outcome["current"] else "default",
        time_limit_s=60.0 * settings["minutes"] / rounds, warmup_steps=10)
    stages.start(f"training (round {r + 1}/{rounds})", steps=min(steps, 10**4))
    path = train(config, progress=stages if stages else False, volumes=pool)
    history = load_weights(path)[2]
    return path, int(history.get("step", 0))


def _decide(outcome: dict, weights, output, margin: float, scan_name, command, settings: dict, stages,
            seconds: float) -> AdaptResult:
    """Keep the adapted weights only when the estimate rose; write ``output`` with the record."""
    best, candidate, labels, best_round = outcome["best"]
    before, after = outcome["before"].estimated_f1, best.estimated_f1
    kept = after > before + margin
    record = {"scan": scan_name, "command": command, "kept": bool(kept),
              "estimate_before": round(float(before), 4), "estimate_after": round(float(after), 4),
              "estimate_source": best.source, "steps": int(outcome["steps"]), "best_round": best_round,
              "rounds": outcome["rounds"], "targets": list(settings["targets"]), "settings": settings,
              "matched": _plain_matched(outcome["matched"]), "seconds": round(seconds, 1),
              "stage_seconds": {k: round(v, 1) for k, v in stages.seconds.items()},
              "started_from": str(weights) if weights else "shipped"}
    verdict = ("kept the adapted weights" if kept
               else "kept the starting weights (the adapted ones did not score better)")
    message = (f"estimated F1@0.5 {before:.3f} before, {after:.3f} after {record['steps']} steps: {verdict}")
    # the result carries the message; ps3d adapt prints it as its one line
    logger.debug("%s", message)
    written = None
    if output is not None:
        source = candidate if kept else (weights or _default_weights())
        model, config, metadata = load_weights(source)
        written = save_weights(model, output, config, {**metadata, "adapt": record})
    return AdaptResult(kept=bool(kept), estimate_before=float(before), estimate_after=float(after), weights=written,
                       steps=int(outcome["steps"]), labels=labels if kept else outcome["first_labels"],
                       first_pass_labels=outcome["first_labels"], candidate_labels=labels, message=message,
                       record=record)


def _plain_matched(matched: dict | None) -> dict | None:
    if matched is None:
        return None
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in matched.items()}
