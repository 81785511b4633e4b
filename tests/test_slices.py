"""Slice rendering shared by the viewers and the report (ps3d_toolkit.viz.slices)."""

from __future__ import annotations

import numpy as np
import pytest

from ps3d_toolkit.viz.slices import HIGHLIGHT_RGB, default_window, label_colors, overlay_labels, window_image


def test_window_image_maps_the_window_linearly_to_8_bits():
    grey = window_image(np.array([[-10.0, 0.0, 20.0, 100.0, 300.0]]), 0, 100)
    assert grey.dtype == np.uint8
    assert grey.tolist() == [[0, 0, 51, 255, 255]]
    with pytest.raises(ValueError, match="low < high"):
        window_image(np.zeros(3), 5, 5)


def test_default_window_uses_percentiles_and_widens_a_constant_image():
    values = np.arange(1001, dtype=float)
    assert default_window(values, percentiles=(10, 90)) == pytest.approx((100.0, 900.0))
    low, high = default_window(np.full((4, 4, 4), 7.0))
    assert low < 7.0 < high
    with pytest.raises(ValueError, match="percentiles"):
        default_window(values, percentiles=(90, 10))


def test_label_colors_are_fixed_distinct_and_black_for_background():
    colors = label_colors(np.arange(0, 60))
    assert colors.dtype == np.uint8 and colors.shape == (60, 3)
    assert colors[0].tolist() == [0, 0, 0]
    assert len({tuple(c) for c in colors[1:]}) == 59
    np.testing.assert_array_equal(label_colors([7, 3]), colors[[7, 3]])
    # Neighbouring ids (neighbouring grains) differ clearly.
    assert np.abs(colors[1:-1].astype(int) - colors[2:].astype(int)).sum(axis=1).min() > 60


def test_overlay_opacity_blends_particle_colour_over_grey():
    grey = np.full((2, 2), 100, np.uint8)
    labels = np.array([[0, 5], [5, 0]])
    colour = label_colors([5])[0].astype(float)
    np.testing.assert_array_equal(overlay_labels(grey, labels, opacity=0.0), np.full((2, 2, 3), 100))
    full = overlay_labels(grey, labels, opacity=1.0)
    assert full[0, 1].tolist() == colour.tolist() and full[0, 0].tolist() == [100, 100, 100]
    half = overlay_labels(grey, labels, opacity=0.5)
    np.testing.assert_array_equal(half[1, 0], np.round(0.5 * 100 + 0.5 * colour))
    with pytest.raises(ValueError, match="opacity"):
        overlay_labels(grey, labels, opacity=1.5)
    with pytest.raises(ValueError, match="same shape|one shape"):
        overlay_labels(grey, labels[:1])


def test_overlay_highlight_and_outline():
    grey = np.zeros((5, 5), np.uint8)
    labels = np.zeros((5, 5), int)
    labels[1:4, 1:4] = 2
    labels[0, 4] = 3
    out = overlay_labels(grey, labels, opacity=0.2, highlight=[2])
    np.testing.assert_array_equal(out[2, 2], np.round(0.7 * np.array(HIGHLIGHT_RGB)))
    np.testing.assert_array_equal(out[0, 4], np.round(0.2 * label_colors([3])[0]))
    outlined = overlay_labels(grey, labels, opacity=0.2, outline=True)
    assert outlined[1, 1].tolist() == label_colors([2])[0].tolist()   # boundary: full colour
    np.testing.assert_array_equal(outlined[2, 2], np.round(0.2 * label_colors([2])[0]))  # inside
