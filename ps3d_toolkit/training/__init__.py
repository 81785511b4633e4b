"""Training the border-core U-Net and exporting its weights.

It sits above ``segmentation`` and ``analysis``: a training run scores itself
with the same ``segment_with_model`` and ``evaluate_instances`` that users call.
"""

from __future__ import annotations

from ps3d_toolkit.training.loop import TrainingConfig, train

__all__ = ["TrainingConfig", "train"]
