"""Score a predicted label image against the ground truth (F1, PQ, count error).

Compare a predicted label image with a ground-truth one of the same shape.
A particle is found when a predicted particle overlaps it with IoU above the
threshold; prints F1/precision/recall per threshold, panoptic quality (PQ, SQ,
RQ at IoU > 0.5) and the count error. An image that looks like a grey-value
scan rather than labels is refused at once unless --force.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ps3d_toolkit.cli.args import add_allow_missing_chunks, add_force, iou_thresholds, missing_chunks

EXAMPLES = """
ps3d evaluate truth.tif labels.tif
ps3d evaluate truth.tif labels.tif --json
"""


def add_arguments(parser) -> None:
    parser.add_argument("gt", type=Path, metavar="GT", help="ground-truth label image")
    parser.add_argument("pred", type=Path, metavar="PRED", help="predicted label image")
    parser.add_argument("--iou", type=iou_thresholds, default=(0.5, 0.75), metavar="T[,T...]",
                        help="IoU thresholds in [0.5, 1)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    add_force(parser, "score")
    add_allow_missing_chunks(parser)


def run(args) -> int:
    """Run ``ps3d evaluate`` on parsed arguments."""
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.io import load_labels

    fill = missing_chunks(args)
    metrics = evaluate_instances(load_labels(args.gt, missing_chunks=fill), load_labels(args.pred, missing_chunks=fill),
                                 iou_thresholds=args.iou, force=args.force)
    if args.json:
        # NaN and infinity are not JSON: they become null
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        print(json.dumps(clean, allow_nan=False))
    else:
        width = max(len(k) for k in metrics)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    return 0
