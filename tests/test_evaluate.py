"""Tests for ps3d_toolkit.analysis.evaluate on label images with answers known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ps3d_toolkit.analysis.evaluate import evaluate_instances, evaluate_many, match_instances

SCORES = ("f1_50", "precision_50", "recall_50", "f1_75", "precision_75", "recall_75", "pq", "sq", "rq")


def four_cubes() -> np.ndarray:
    """Four separate 10^3 cubes labelled 1..4 in a 24 x 24 x 24 volume."""
    labels = np.zeros((24, 24, 24), np.uint32)
    for i, (z, y) in enumerate([(1, 1), (1, 13), (13, 1), (13, 13)], start=1):
        labels[z : z + 10, y : y + 10, 2:12] = i
    return labels


def test_identical_labels_score_one_everywhere():
    gt = four_cubes()
    result = evaluate_instances(gt, gt.copy())
    for key in SCORES:
        assert result[key] == 1.0, key
    assert result["mean_matched_iou"] == 1.0
    assert (result["n_gt"], result["n_pred"], result["n_matched"]) == (4, 4, 4)
    assert result["count_error"] == 0
    assert result["relative_count_error"] == 0.0


def test_permuted_and_sparse_label_ids_score_one():
    gt = four_cubes()
    # Large ids exercise the np.unique path, small ones the lookup-table path.
    lut = np.array([0, 2**32 - 1, 7, 2**31 + 5, 1_000_000], dtype=np.uint32)
    pred = lut[gt]
    result = evaluate_instances(gt, pred)
    for key in SCORES:
        assert result[key] == 1.0, key
    matches = match_instances(gt, pred)
    assert matches["gt_label"].tolist() == [1, 2, 3, 4]
    assert matches["pred_label"].tolist() == [2**32 - 1, 7, 2**31 + 5, 1_000_000]
    assert np.allclose(matches["iou"], 1.0)


def test_one_missing_particle_among_four():
    gt = four_cubes()
    pred = gt.copy()
    pred[pred == 3] = 0
    result = evaluate_instances(gt, pred)
    assert result["recall_50"] == 0.75
    assert result["precision_50"] == 1.0
    assert result["f1_50"] == pytest.approx(6 / 7)
    assert result["pq"] == pytest.approx(6 / 7)
    assert result["count_error"] == -1
    assert result["relative_count_error"] == -0.25


def test_split_into_halves_is_not_a_match():
    gt = np.zeros((12, 12, 40), np.uint32)
    gt[1:11, 1:11, 1:11] = 1
    gt[1:11, 1:11, 20:30] = 2
    pred = gt.copy()
    # Each half of particle 1 has IoU exactly 500 / 1000 = 0.5, which is not > 0.5.
    pred[1:11, 1:11, 1:6] = 5
    pred[1:11, 1:11, 6:11] = 6
    result = evaluate_instances(gt, pred)
    assert (result["n_gt"], result["n_pred"], result["n_matched"]) == (2, 3, 1)
    assert result["precision_50"] == pytest.approx(1 / 3)
    assert result["recall_50"] == 0.5
    assert result["f1_50"] == pytest.approx(2 * 1 / 5)
    assert result["count_error"] == 1
    assert result["relative_count_error"] == 0.5
    assert match_instances(gt, pred)["gt_label"].tolist() == [2]


def test_merge_keeps_only_the_dominant_particle():
    gt = np.zeros((12, 12, 20), np.uint32)
    gt[1:11, 1:11, 1:11] = 1  # 1000 voxels
    gt[1:11, 1:11, 11:15] = 2  # 400 voxels, touching particle 1
    pred = (gt > 0).astype(np.uint32) * 9  # one particle of 1400 voxels
    result = evaluate_instances(gt, pred)
    assert result["n_matched"] == 1
    assert result["precision_50"] == 1.0
    assert result["recall_50"] == 0.5
    assert result["f1_50"] == pytest.approx(2 / 3)
    assert result["sq"] == pytest.approx(1000 / 1400)
    assert result["pq"] == pytest.approx(1000 / 1400 * 2 / 3)
    assert result["f1_75"] == 0.0


def test_over_dilated_prediction_passes_050_but_not_075():
    gt = np.zeros((12, 24, 24), np.uint32)
    gt[1:11, 1:11, 1:11] = 1
    gt[1:11, 13:23, 1:11] = 2
    pred = gt.copy()
    pred[1:11, 13:23, 11:17] = 2  # particle 2 grows from 10x10x10 to 10x10x16: IoU 0.625
    result = evaluate_instances(gt, pred)
    assert result["f1_50"] == 1.0
    assert result["f1_75"] == pytest.approx(0.5)
    assert result["precision_75"] == pytest.approx(0.5)
    assert result["recall_75"] == pytest.approx(0.5)
    assert result["sq"] == pytest.approx((1.0 + 0.625) / 2)
    assert result["rq"] == 1.0
    assert result["pq"] == pytest.approx(0.8125)
    assert result["mean_matched_iou"] == pytest.approx(0.8125)


def test_custom_thresholds_make_their_own_keys():
    gt = four_cubes()
    result = evaluate_instances(gt, gt, iou_thresholds=(0.9,))
    assert result["f1_90"] == 1.0
    assert "f1_50" not in result and "pq" in result


def test_both_empty_scores_one():
    empty = np.zeros((5, 5, 5), np.uint16)
    result = evaluate_instances(empty, empty)
    for key in SCORES:
        assert result[key] == 1.0, key
    assert math.isnan(result["mean_matched_iou"])
    assert result["count_error"] == 0
    assert result["relative_count_error"] == 0.0


def test_empty_prediction_scores_zero():
    gt = four_cubes()
    result = evaluate_instances(gt, np.zeros_like(gt))
    for key in SCORES:
        assert result[key] == 0.0, key
    assert result["count_error"] == -4
    assert result["relative_count_error"] == -1.0


def test_empty_ground_truth_scores_zero():
    pred = four_cubes()
    result = evaluate_instances(np.zeros_like(pred), pred)
    for key in SCORES:
        assert result[key] == 0.0, key
    assert result["count_error"] == 4
    assert result["relative_count_error"] == math.inf


def brute_force_ious(gt, pred):
    ious = {}
    for g in np.unique(gt[gt > 0]):
        for p in np.unique(pred[pred > 0]):
            a, b = gt == g, pred == p
            inter = np.count_nonzero(a & b)
            if inter:
                ious[(int(g), int(p))] = inter / np.count_nonzero(a | b)
    return ious


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_brute_force_on_random_blocks(seed):
    rng = np.random.default_rng(seed)
    # Coarse random blocks, upsampled, so that particles overlap partially.
    gt = np.kron(rng.integers(0, 6, (3, 3, 3)), np.ones((4, 4, 4), int)).astype(np.uint32)
    shift = np.roll(gt, rng.integers(1, 3), axis=int(rng.integers(0, 3)))
    pred = np.where(rng.random(gt.shape) < 0.05, 0, shift * 3).astype(np.uint32)
    ious = brute_force_ious(gt, pred)
    result = evaluate_instances(gt, pred)
    matched = [v for v in ious.values() if v > 0.5]
    n_gt = len(np.unique(gt[gt > 0]))
    n_pred = len(np.unique(pred[pred > 0]))
    assert result["n_matched"] == len(matched)
    assert result["f1_50"] == pytest.approx(2 * len(matched) / (n_gt + n_pred))
    if matched:
        assert result["sq"] == pytest.approx(np.mean(matched))
    table = match_instances(gt, pred)
    assert {(g, p): v for g, p, v in table.itertuples(index=False)} == pytest.approx(
        {k: v for k, v in ious.items() if v > 0.5}
    )


def test_evaluate_many_returns_one_row_per_pair():
    gt = four_cubes()
    missing = gt.copy()
    missing[missing == 1] = 0
    table = evaluate_many({"same": (gt, gt), "missing": (gt, missing)}, progress=False)
    assert table.index.tolist() == ["same", "missing"]
    assert table.loc["same", "f1_50"] == 1.0
    assert table.loc["missing", "recall_50"] == 0.75
    numbered = evaluate_many([(gt, gt)], progress=False)
    assert numbered.index.tolist() == [0]
    with pytest.raises(TypeError, match="pairs"):
        evaluate_many([gt], progress=False)


def test_validation_errors_name_the_argument():
    gt = four_cubes()
    with pytest.raises(ValueError, match="gt and pred must have the same shape"):
        evaluate_instances(gt, gt[:-1])
    with pytest.raises(TypeError, match="pred"):
        evaluate_instances(gt, gt + 0.5)
    with pytest.raises(ValueError, match="gt"):
        evaluate_instances(gt[0], gt[0])
    with pytest.raises(ValueError, match="non-negative"):
        evaluate_instances(gt.astype(np.int32) - 1, gt)
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate_instances(gt, gt, iou_thresholds=(0.3,))
    with pytest.raises(ValueError, match="iou_threshold"):
        match_instances(gt, gt, iou_threshold=1.0)


def test_a_grey_value_scan_as_labels_is_refused_unless_forced():
    from ps3d_toolkit.core.errors import InputError

    gt = four_cubes()
    noise = np.random.default_rng(0).integers(1, 256, gt.shape).astype(np.uint32)
    with pytest.raises(InputError, match="pred looks like a grey-value scan.*force=True"):
        evaluate_instances(gt, noise)
    with pytest.raises(InputError, match="gt looks like a grey-value scan"):
        evaluate_many({"swapped": (noise, gt)}, progress=False)
    with pytest.warns(UserWarning, match="grey-value scan"):
        result = evaluate_instances(gt, noise, force=True)
    assert result["n_pred"] == 255 and result["f1_50"] == 0.0
