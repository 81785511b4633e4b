"""Training the border-core U-Net and exporting its weights.

It sits above ``segmentation`` and ``analysis``: a training run scores itself
with the same ``segment_with_model`` and ``evaluate_instances`` that users call.

Modules
-------
adapt
    ``adapt()``: self-training on one unlabelled scan (``ps3d adapt``).
pseudo
    Pseudo-labels from a first pass's confident particles; the label-free score.
matched
    Phantoms generated to look like a given scan.
loop
    ``train()`` and its ``TrainingConfig``: pool, steps, validation, checkpoints.
volumes
    Training volumes: synthetic scans (in worker processes), user label sets.
targets
    Border-core targets from instance labels.
augment
    Patch augmentation.
export
    Core-threshold choice and the shipped weight file.
"""

from __future__ import annotations

from ps3d_toolkit.training.adapt import AdaptResult, adapt
from ps3d_toolkit.training.loop import TrainingConfig, train
from ps3d_toolkit.training.volumes import load_label_set

__all__ = ["AdaptResult", "TrainingConfig", "adapt", "load_label_set", "train"]
