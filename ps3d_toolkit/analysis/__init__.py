"""Numbers from label images and particle tables: instance metrics and distributions.

Modules
-------
evaluate
    Instance F1 at IoU thresholds, panoptic quality, count error.
stats
    Size distributions, d10/d50/d90, sieve curves, shape and phase summaries.
"""

from __future__ import annotations

from ps3d_toolkit.analysis.evaluate import evaluate_instances, evaluate_many, match_instances

__all__ = ["evaluate_instances", "evaluate_many", "match_instances"]
