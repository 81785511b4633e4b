"""The network's windows: placed and blended as MONAI's sliding-window inferer does, in memory and in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ps3d_toolkit.segmentation.model.network import build_network
from ps3d_toolkit.segmentation.model.windows import (
    NetworkGrid,
    WindowStore,
    blend_probabilities,
    importance_map,
    predict_probabilities,
    predict_windows,
    resample_region,
    window_inputs,
)


def _torch_resample(volume: np.ndarray, shape: tuple) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=shape, mode="trilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("source_shape, target_shape", [((40, 50, 30), (33, 61, 30)), ((21, 17, 64), (40, 9, 20))])
def test_a_resampled_region_is_the_crop_of_the_resampled_whole(source_shape, target_shape):
    volume = np.random.default_rng(0).normal(size=source_shape).astype(np.float32)
    whole = _torch_resample(volume, target_shape)
    for target in [(slice(0, 7), slice(5, 30), slice(0, 9)), (slice(3, 33), slice(0, 9), slice(11, 20)),
                   tuple(slice(0, n) for n in target_shape)]:
        target = tuple(slice(s.start, min(s.stop, n)) for s, n in zip(target, target_shape))
        # the grid box a scan region reads, here with the roles of scan and grid swapped
        source = NetworkGrid(target_shape, source_shape, (16, 16, 16), 0.25, ((),)).grid_extent(target)
        crop = resample_region(volume[source], source, target, source_shape, target_shape)
        np.testing.assert_allclose(crop, whole[target], atol=1e-4)  # float32 coordinates in torch


@pytest.fixture(scope="module")
def small_network():
    torch.manual_seed(0)
    return build_network({"channels": (4, 8, 8, 8)}).eval()


@pytest.mark.parametrize("grid_shape, tta", [((40, 56, 33), False), ((40, 20, 33), True)])
def test_blending_every_window_over_a_box_gives_the_in_memory_probabilities(tmp_path, small_network, grid_shape,
                                                                            tta):
    """MONAI's own sliding window on the whole grid against windows run one at a time (with padding and flips)."""
    scan_shape = tuple(int(n * 1.3) for n in grid_shape)
    image = np.random.default_rng(1).normal(size=scan_shape).astype(np.float32)
    whole_grid = _torch_resample(image, grid_shape)
    device = torch.device("cpu")
    expected = _monai_probabilities(whole_grid, small_network, window=24, tta=tta)
    grid = NetworkGrid.for_scan(scan_shape, grid_shape, window_size=24, overlap=0.25, tta=tta)
    assert grid.window == (24, 24, 24) and len(grid.flips) == (8 if tta else 1)
    store = WindowStore(tmp_path, grid)
    for window in grid.windows():
        logits = predict_windows(small_network, window_inputs(image, [window], grid, lambda c: c, device), device)[0]
        flip = grid.flips[window[0]]
        store.save(window, logits.flip([a + 1 for a in flip]) if flip else logits)
    weight = importance_map(grid.window)
    for box in [tuple(slice(0, n) for n in grid_shape), (slice(5, 30), slice(0, 17), slice(20, 33))]:
        probs = blend_probabilities(store, box, weight)
        np.testing.assert_allclose(probs, expected[(slice(None), *box)], atol=2e-5)
    # in memory: the same windows blended as they come, on the grid image itself
    np.testing.assert_allclose(predict_probabilities(whole_grid, small_network, window_size=24, overlap=0.25,
                                                     batch_size=2, tta=tta), expected, atol=2e-5)


def _monai_probabilities(grid_image: np.ndarray, model, *, window: int, tta: bool) -> np.ndarray:
    """MONAI's public sliding-window inferer on a whole grid: Gaussian blend, softmax, mirrorings averaged."""
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(grid_image)[None, None]
    flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)] if tta else [()]
    total = 0
    with torch.inference_mode():
        for dims in flips:
            logits = sliding_window_inference(x.flip(dims) if dims else x, roi_size=(window,) * 3, sw_batch_size=2,
                                              predictor=model, overlap=0.25, mode="gaussian")
            probs = torch.softmax(logits, dim=1)
            total = total + (probs.flip(dims) if dims else probs)
    return (total / len(flips))[0].numpy()


def test_windows_cover_the_grid_and_a_box_sees_only_the_windows_over_it():
    grid = NetworkGrid.for_scan((300, 300, 300), (200, 100, 96), window_size=96, overlap=0.25, tta=False)
    starts = {corner for _, corner in grid.windows()}
    # as MONAI places them: ceil((n - 96) / 72) + 1 windows an axis, the last one flush with the far edge
    assert sorted({c[0] for c in starts}) == [0, 72, 104] and sorted({c[1] for c in starts}) == [0, 4]
    box = (slice(0, 3), slice(0, 3), slice(0, 3))
    assert grid.overlapping(box) == [(0, (0, 0, 0))]
