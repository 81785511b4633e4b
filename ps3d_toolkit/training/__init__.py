"""Training the border-core U-Net and exporting its weights.

It sits above ``segmentation`` and ``analysis``: a training run scores itself
with the same ``segment_with_model`` and ``evaluate_instances`` that users call.

Modules
-------
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

from ps3d_toolkit.training.loop import TrainingConfig, train
from ps3d_toolkit.training.volumes import load_label_set

__all__ = ["TrainingConfig", "load_label_set", "train"]
