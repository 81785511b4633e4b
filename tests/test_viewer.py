"""The slice viewer (ps3d_toolkit.viz.viewer): what each slider and click computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ps3d_toolkit.viz.slices import label_colors
from ps3d_toolkit.viz.viewer import SliceViewer, orthogonal_slices, particle_at, particle_row, plane_to_voxel


def test_orthogonal_slices_and_plane_to_voxel_agree():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    planes = orthogonal_slices(volume, (1, 2, 3))
    assert [p.shape for p in planes] == [(5, 6), (4, 6), (4, 5)]
    np.testing.assert_array_equal(planes[0], volume[1])
    np.testing.assert_array_equal(planes[1], volume[:, 2])
    np.testing.assert_array_equal(planes[2], volume[:, :, 3])
    for name, plane, index in zip("zyx", planes, (1, 2, 3)):
        for row, col in [(0, 0), (3, 4), (plane.shape[0] - 1, plane.shape[1] - 1)]:
            assert volume[plane_to_voxel(name, index, row, col)] == plane[row, col]


def test_orthogonal_slices_rejects_bad_positions():
    volume = np.zeros((4, 5, 6))
    with pytest.raises(ValueError, match="position"):
        orthogonal_slices(volume, (4, 0, 0))
    with pytest.raises(TypeError, match="position"):
        orthogonal_slices(volume, None)
    with pytest.raises(ValueError, match="3D"):
        orthogonal_slices(np.zeros((4, 5)), (0, 0, 0))
    with pytest.raises(ValueError, match="plane"):
        plane_to_voxel("w", 0, 0, 0)


def test_particle_at_and_its_row(two_balls, two_balls_table):
    _, labels = two_balls
    table = two_balls_table
    assert particle_at(labels, (12, 16, 10)) == 1
    assert particle_at(labels, (0, 0, 0)) == 0
    assert particle_row(table, 2)["label"].tolist() == [2]
    assert particle_row(table, 0).empty
    with pytest.raises(ValueError, match="label"):
        particle_row(pd.DataFrame({"x": [1]}), 1)


def test_slice_viewer_controls_change_what_is_drawn(two_balls, two_balls_table):
    image, labels = two_balls
    viewer = SliceViewer(image, labels, spacing=(2.0, 1.0, 1.0), table=two_balls_table,
                         window=(100, 200), opacity=1.0)
    assert viewer.position == (12, 16, 20)
    z_plane = viewer.render()[0]
    assert z_plane.shape == (32, 40, 3)
    assert z_plane[16, 10].tolist() == label_colors([1])[0].tolist()   # ball 1, flat colour
    viewer.set_opacity(0.0)
    assert viewer.render()[0][16, 10].tolist() == [255, 255, 255]       # grain at the window's top
    viewer.set_window(0, 510)
    assert viewer.render()[0][16, 10].tolist() == [100, 100, 100]
    viewer.set_position(z=0)
    assert viewer.position == (0, 16, 20) and viewer.render()[0].max() == 50   # epoxy only
    with pytest.raises(ValueError, match="opacity"):
        viewer.set_opacity(2)


def test_slice_viewer_click_selects_particle_moves_planes_and_shows_row(two_balls, two_balls_table):
    image, labels = two_balls
    viewer = SliceViewer(image, labels, spacing=1.0, table=two_balls_table)
    # The y plane (z down, x across) at y = 16: pixel (12, 28) is the centre of ball 2.
    assert viewer.click("y", 12, 28) == 2
    assert viewer.position == (12, 16, 28)
    assert viewer.selected_row()["label"].tolist() == [2]
    assert "particle</b> 2" in viewer.info_html() and "voxel_count" in viewer.info_html()
    assert viewer.click("z", 0, 0) == 0
    assert "none" in viewer.info_html()


def test_slice_viewer_widget_sliders_drive_the_figure(two_balls):
    image, labels = two_balls
    viewer = SliceViewer(image, labels, spacing=1.0)
    widget = viewer.widget
    assert len(viewer.figure.data) == 3 and viewer.figure.data[0].type == "image"
    before = viewer.figure.data[0].source
    z_slider = viewer._sliders[0]
    z_slider.value = 2                                 # what dragging the z slider does
    assert viewer.position[0] == 2
    assert viewer.figure.data[0].source != before       # z plane redrawn
    assert viewer.figure.layout.annotations[0].text == "z = 2"
    viewer.click("x", 12, 16)                          # the sliders follow a click
    assert [s.value for s in viewer._sliders] == [12, 16, viewer.position[2]]
    assert widget.children[-1].value == viewer.info_html()


def test_slice_viewer_validates_input(two_balls):
    image, labels = two_balls
    with pytest.raises(ValueError, match="same shape"):
        SliceViewer(image, labels[:-1])
    with pytest.raises(ValueError, match="spacing"):
        SliceViewer(image, spacing=0)
    with pytest.raises(ValueError, match="low < high"):
        SliceViewer(image, window=(5, 1))
