"""Turn a training run's weights into the shipped model file.

Export does two things training does not: it chooses the core-probability
threshold of the instance step on the validation scans (never on test scans)
and stores it in the weight file's config, and it records the provenance
(every command of the run) in the metadata that the model card quotes.

Run: ``ps3d export SRC DST [--note TEXT]``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation.model.network import load_weights, save_weights

__all__ = ["choose_core_threshold", "export_weights"]

logger = logging.getLogger(__name__)

_CORE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def choose_core_threshold(model, config, scans, thresholds=_CORE_THRESHOLDS) -> tuple[float, dict]:
    """The core threshold with the best mean F1@0.5 + F1@0.75 on ``scans``.

    Returns
    -------
    threshold, scores
        ``scores`` maps each threshold to its mean F1@0.5 and F1@0.75.
    """
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.methods.model import segment_with_model

    scores = {}
    for threshold in thresholds:
        f1 = [evaluate_instances(scan.labels, segment_with_model(
            scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
            weights=(model, config), device="cpu", core_threshold=threshold, progress=False))
            for scan in scans]
        scores[threshold] = {"val_f1_50": float(np.mean([m["f1_50"] for m in f1])),
                             "val_f1_75": float(np.mean([m["f1_75"] for m in f1]))}
        logger.info("core threshold %s: F1@0.5 %.3f F1@0.75 %.3f", threshold,
                    scores[threshold]["val_f1_50"], scores[threshold]["val_f1_75"])
    best = max(scores, key=lambda t: scores[t]["val_f1_50"] + scores[t]["val_f1_75"])
    return best, scores


def export_weights(src, dst, *, note: str | None = None,
                   inference_diameter_vox: float | None = None,
                   core_threshold: float | None = None, command: str | None = None) -> Path:
    """Choose the core threshold on the validation scans and write ``dst``.

    ``inference_diameter_vox`` sets the particle diameter on the network's grid
    at inference (default: keep the source's); the threshold is chosen there.
    ``core_threshold`` sets the threshold instead of choosing it (e.g. one
    chosen on a larger development set, ``benchmarks/dev_core_threshold.py``);
    the validation scans are then scored at it. ``command`` (the command line
    that ran the export, e.g. ``ps3d export ...``) is stored as ``export_command``;
    a source that was itself exported keeps its export commands in ``export_history``.
    """
    from ps3d_toolkit.training.volumes import validation_scans

    model, config, metadata = load_weights(src)
    if inference_diameter_vox is not None:
        if not inference_diameter_vox > 0:
            raise InputError(f"inference_diameter_vox must be > 0, got {inference_diameter_vox!r}")
        config = {**config, "inference_diameter_vox": float(inference_diameter_vox)}
    thresholds = _CORE_THRESHOLDS
    if core_threshold is not None:
        if not 0 < core_threshold < 1:
            raise InputError(f"core_threshold must be in (0, 1), got {core_threshold!r}")
        thresholds = (float(core_threshold),)
    threshold, scores = choose_core_threshold(model, config, validation_scans(), thresholds)
    config = {**config, "core_threshold": threshold}
    if "export_command" in metadata:
        metadata = {**metadata, "export_history": [*metadata.get("export_history", []),
                                                   metadata["export_command"]]}
    metadata = {**metadata, "exported_from": str(src),
                "export_command": command,
                "core_threshold_scores": {str(k): v for k, v in scores.items()},
                "validation_scores": scores[threshold]}
    if note:
        metadata["note"] = note
    return save_weights(model, dst, config, metadata)

