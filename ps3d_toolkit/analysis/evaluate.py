"""Instance-segmentation metrics: F1 at IoU thresholds, panoptic quality, count error.

A predicted particle *matches* a ground-truth particle when their intersection over
union (IoU) is strictly greater than a threshold of at least 0.5. At such thresholds
every particle has at most one partner, so matching needs no assignment algorithm
(see :func:`match_instances`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ps3d_toolkit.core.checks import check_labels, check_same_shape
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.core.labels import compact_ids
from ps3d_toolkit.measurement.table import refuse_grey_values

__all__ = ["evaluate_instances", "evaluate_many", "match_instances"]


def _overlaps(gt: np.ndarray, pred: np.ndarray):
    """Sizes of every particle and IoU of every overlapping (gt, pred) pair.

    Returns ``(gt_ids, pred_ids, gt_sizes, pred_sizes, pair_g, pair_p, pair_iou)`` where
    ``pair_g``/``pair_p`` index into the id arrays. Only voxels where one of the two
    images is foreground are visited, and the contingency table is built with one
    bincount/unique over the pairs encoded as ``g * n_pred + p`` in int64.
    """
    fg = (gt != 0) | (pred != 0)
    g_vals = gt[fg]
    p_vals = pred[fg]
    # Background (0) takes part in the compaction so that the encoding stays dense;
    # its row and column are dropped afterwards.
    g_ids, g = compact_ids(g_vals)
    p_ids, p = compact_ids(p_vals)
    g_size = np.bincount(g, minlength=g_ids.size).astype(np.int64)
    p_size = np.bincount(p, minlength=p_ids.size).astype(np.int64)
    both = (g_vals != 0) & (p_vals != 0)
    n_p = max(p_ids.size, 1)
    codes = g[both] * n_p + p[both]
    if g_ids.size * n_p <= 4 * max(codes.size, 1):
        counts = np.bincount(codes, minlength=g_ids.size * n_p)
        pairs = np.flatnonzero(counts)
        inter = counts[pairs]
    else:
        pairs, inter = np.unique(codes, return_counts=True)
    pair_g = pairs // n_p
    pair_p = pairs % n_p
    union = g_size[pair_g] + p_size[pair_p] - inter
    iou = inter / union

    g_fg = g_ids != 0
    p_fg = p_ids != 0
    # Re-index so that positions refer to foreground particles only.
    g_pos = np.cumsum(g_fg) - 1
    p_pos = np.cumsum(p_fg) - 1
    return (
        g_ids[g_fg],
        p_ids[p_fg],
        g_size[g_fg],
        p_size[p_fg],
        g_pos[pair_g],
        p_pos[pair_p],
        iou,
    )


def _check_threshold(value, name: str = "iou_threshold") -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a number in [0.5, 1), got {value!r}") from None
    if not 0.5 <= threshold < 1.0:
        raise InputError(
            f"{name} must be in [0.5, 1) so that matches are unique, got {value!r}"
        )
    return threshold


def match_instances(gt, pred, *, iou_threshold: float = 0.5) -> pd.DataFrame:
    """Pair ground-truth and predicted particles whose IoU exceeds a threshold.

    Parameters
    ----------
    gt, pred : ndarray of int, shape (z, y, x)
        Label images, 0 = background. Ids need not be consecutive.
    iou_threshold : float
        A pair matches when its IoU is strictly greater than this; must be in [0.5, 1).

    Returns
    -------
    pandas.DataFrame
        One row per match with columns ``gt_label``, ``pred_label``, ``iou``,
        sorted by ``gt_label``.

    Raises
    ------
    ValueError
        If the images differ in shape or the threshold is outside [0.5, 1).

    Notes
    -----
    No Hungarian algorithm is needed: if a ground-truth particle G matched two
    predictions P1 and P2 with IoU > 0.5, then ``|G ∩ Pi| > |G ∪ Pi| / 2 >= |G| / 2``
    for both, and since P1 and P2 are disjoint (one label per voxel),
    ``|G ∩ P1| + |G ∩ P2| > |G|``, which is impossible. The same holds with the roles
    swapped, so every particle has at most one partner above 0.5 and the set of
    pairs above the threshold is already the optimal one-to-one matching.
    """
    gt = check_labels(gt, "gt")
    pred = check_labels(pred, "pred")
    check_same_shape(gt, pred, "gt", "pred")
    threshold = _check_threshold(iou_threshold)
    g_ids, p_ids, _, _, pair_g, pair_p, iou = _overlaps(gt, pred)
    keep = iou > threshold
    table = pd.DataFrame(
        {
            "gt_label": g_ids[pair_g[keep]],
            "pred_label": p_ids[pair_p[keep]],
            "iou": iou[keep],
        }
    )
    return table.sort_values("gt_label", ignore_index=True)


def _f1_triplet(tp: int, n_gt: int, n_pred: int) -> tuple[float, float, float]:
    """(F1, precision, recall); 1 when both sets are empty, 0 when only one is."""
    if n_gt == 0 and n_pred == 0:
        return 1.0, 1.0, 1.0
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gt if n_gt else 0.0
    f1 = 2 * tp / (n_gt + n_pred)
    return f1, precision, recall


def _suffix(threshold: float) -> str:
    return f"{round(threshold * 100):d}"


def evaluate_instances(gt, pred, *, iou_thresholds=(0.5, 0.75), force: bool = False) -> dict:
    """Score a predicted particle label image against the ground truth.

    Parameters
    ----------
    gt : ndarray of int, shape (z, y, x)
        Ground-truth label image, 0 = background. Ids need not be consecutive.
    pred : ndarray of int, shape (z, y, x)
        Predicted label image, same shape.
    iou_thresholds : sequence of float
        IoU thresholds (each in [0.5, 1)) at which F1, precision and recall are
        reported; a match needs IoU strictly greater than the threshold.
    force : bool
        Score images even when one looks like a grey-value scan rather than a
        label image (see :func:`ps3d_toolkit.measurement.table.grey_value_reason`);
        a warning says so.

    Returns
    -------
    dict
        For each threshold ``t`` (as a percentage, e.g. ``50``): ``f1_t``,
        ``precision_t``, ``recall_t``. Always:

        - ``pq``, ``sq``, ``rq``: panoptic quality at IoU > 0.5, ``pq = sq * rq``
          where ``rq`` is the F1 score and ``sq`` the mean IoU of the matches;
        - ``mean_matched_iou``: mean IoU of the matches at IoU > 0.5 (equal to
          ``sq``, but NaN instead of 0 when there is no match);
        - ``n_gt``, ``n_pred``, ``n_matched`` (at 0.5);
        - ``count_error`` = ``n_pred - n_gt`` and ``relative_count_error`` =
          ``count_error / n_gt`` (0 when both are empty, ``inf`` when only the
          ground truth is).

        When both images are empty every score is 1; when only one is, F1,
        precision, recall, PQ, SQ and RQ are 0.

    Raises
    ------
    ValueError
        If the images differ in shape, are not 3D, hold negative labels, a
        threshold lies outside [0.5, 1), or an image looks like grey values and
        ``force`` is False.
    TypeError
        If an image does not hold integer labels.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 8, 8), np.uint32); gt[1:4, 1:4, 1:4] = 1
    >>> evaluate_instances(gt, gt * 7)["f1_50"]
    1.0
    """
    gt = check_labels(gt, "gt")
    pred = check_labels(pred, "pred")
    check_same_shape(gt, pred, "gt", "pred")
    if isinstance(iou_thresholds, (int, float)):
        iou_thresholds = (iou_thresholds,)
    thresholds = [_check_threshold(t, "iou_thresholds") for t in iou_thresholds]
    refuse_grey_values(gt, "gt", force=force)
    refuse_grey_values(pred, "pred", force=force)

    g_ids, p_ids, _, _, _, _, iou = _overlaps(gt, pred)
    n_gt, n_pred = int(g_ids.size), int(p_ids.size)

    result: dict = {}
    for t in thresholds:
        tp = int(np.count_nonzero(iou > t))
        f1, precision, recall = _f1_triplet(tp, n_gt, n_pred)
        key = _suffix(t)
        result[f"f1_{key}"] = f1
        result[f"precision_{key}"] = precision
        result[f"recall_{key}"] = recall

    matched = iou[iou > 0.5]
    tp = int(matched.size)
    rq = _f1_triplet(tp, n_gt, n_pred)[0]
    if tp:
        sq = float(matched.mean())
    else:
        sq = 1.0 if n_gt == 0 and n_pred == 0 else 0.0
    result.update(
        pq=sq * rq,
        sq=sq,
        rq=rq,
        mean_matched_iou=float(matched.mean()) if tp else math.nan,
        n_gt=n_gt,
        n_pred=n_pred,
        n_matched=tp,
        count_error=n_pred - n_gt,
        relative_count_error=(
            (n_pred - n_gt) / n_gt if n_gt else (0.0 if n_pred == 0 else math.inf)
        ),
    )
    return result


def evaluate_many(pairs, *, iou_thresholds=(0.5, 0.75), force: bool = False,
                  progress: bool = True) -> pd.DataFrame:
    """Evaluate several (ground truth, prediction) pairs into one table.

    Parameters
    ----------
    pairs : mapping of name -> (gt, pred), or iterable of (gt, pred)
        The label-image pairs; with a plain iterable the rows are numbered.
    iou_thresholds : sequence of float
        Passed to :func:`evaluate_instances`.
    force : bool
        Passed to :func:`evaluate_instances`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per pair (index = name or position), one column per metric.

    Raises
    ------
    TypeError
        If an item is not a (gt, pred) pair.
    """
    items: Iterable = pairs.items() if isinstance(pairs, Mapping) else enumerate(pairs)
    rows, index = [], []
    for name, pair in tqdm(list(items), desc="evaluate", disable=not progress):
        try:
            gt, pred = pair
        except (TypeError, ValueError):
            raise InputTypeError(f"pairs must hold (gt, pred) tuples, got {type(pair).__name__} for {name!r}") from None
        rows.append(evaluate_instances(gt, pred, iou_thresholds=iou_thresholds, force=force))
        index.append(name)
    return pd.DataFrame(rows, index=pd.Index(index, name="name"))
