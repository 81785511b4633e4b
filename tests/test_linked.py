"""Linked scatter selection (ps3d_toolkit.viz.linked)."""

from __future__ import annotations

import numpy as np
import pytest

from ps3d_toolkit.viz.linked import LinkedExplorer, fig_scatter, point_labels, selection_mask, selection_to_labels
from ps3d_toolkit.viz.slices import HIGHLIGHT_RGB


class FakePoints:
    def __init__(self, point_inds):
        self.point_inds = point_inds


def test_selection_to_labels_maps_point_indices_to_ids():
    ids = np.array([7, 3, 9, 0])
    assert selection_to_labels([2, 0, 2], ids).tolist() == [7, 9]
    assert selection_to_labels(FakePoints([1]), ids).tolist() == [3]
    assert selection_to_labels({"points": [{"pointIndex": 0}, {"pointIndex": 3}]}, ids).tolist() == [7]
    assert selection_to_labels({"point_inds": []}, ids).size == 0
    assert selection_to_labels([], ids).dtype == np.uint32
    with pytest.raises(ValueError, match="indices"):
        selection_to_labels([4], ids)


def test_selection_mask_marks_the_selected_grains(two_balls):
    _, labels = two_balls
    mask = selection_mask(labels, [2, 0])
    np.testing.assert_array_equal(mask, labels == 2)
    assert not selection_mask(labels, []).any()


def test_point_labels_from_customdata_or_row_order(two_balls, two_balls_table):
    _, labels = two_balls
    table = two_balls_table
    fig = fig_scatter(table)
    assert point_labels(fig.data[0]).tolist() == [1, 2]
    import plotly.graph_objects as go

    assert point_labels(go.Scatter(x=[0, 1], customdata=[[5, "a"], [6, "b"]])).tolist() == [5, 6]
    assert point_labels(go.Scatter(x=[0, 1]), table).tolist() == [1, 2]
    with pytest.raises(ValueError, match="customdata"):
        point_labels(go.Scatter(x=[0, 1, 2]), table)
    with pytest.raises(ValueError, match="flatness"):
        fig_scatter(table, y="flatness")
    with pytest.raises(TypeError, match="DataFrame"):
        fig_scatter(table.to_dict())


def test_linked_explorer_selection_highlights_grains_and_moves_the_viewer(two_balls, two_balls_table, html_text):
    image, labels = two_balls
    table = two_balls_table
    explorer = LinkedExplorer(image, labels, table)
    explorer.widget
    scatter = explorer.scatter
    assert scatter.layout.dragmode == "select"
    # What a box selection around the second point does (plotly calls this with the points).
    explorer._on_selection_factory(0)(scatter.data[0], FakePoints([1]), None)
    assert explorer.selected.tolist() == [2]
    assert explorer.viewer.highlight == {2}
    assert explorer.viewer.position == (12, 16, 28)          # ball 2's centroid
    text, bold = html_text(explorer._summary.value)
    assert bold == ["1"] and text.startswith("1 grain selected")
    share = 100 * table["volume_mm3"][1] / table["volume_mm3"].sum()
    assert f"{share:.1f} % of the particle volume" in text and text.endswith("ids: 2")
    z_plane = explorer.viewer.render()[0]                    # grain grey 255 under the highlight
    np.testing.assert_allclose(z_plane[16, 28], 0.3 * 255 + 0.7 * np.array(HIGHLIGHT_RGB), atol=1)
    fig3d = explorer.fig_selection_3d()
    assert [t.name for t in fig3d.data] == ["particle 2"]
    assert explorer.viewer.selected == 2 and "voxel_count" in explorer.viewer.info_html()
    assert explorer.select([1, 2, 99]).tolist() == [1, 2]      # unknown ids are ignored
    assert list(scatter.data[0].selectedpoints) == [0, 1]      # a selection from code shows in the plot
    explorer.select([])
    assert explorer.viewer.highlight == set() and "No grains" in explorer.summary_html()
    assert scatter.data[0].selectedpoints is None
    with pytest.raises(ValueError, match="no grains"):
        explorer.fig_selection_3d()


def test_show_in_3d_without_a_selection_says_so_in_the_widget(two_balls, two_balls_table, html_text):
    image, labels = two_balls
    explorer = LinkedExplorer(image, labels, two_balls_table)
    explorer.widget
    explorer._show_3d()                                     # the "show in 3D" button, nothing selected
    text, _ = html_text(explorer._summary.value)
    assert "Select grains in the scatter first" in text
    assert explorer._output.outputs == ()
    explorer.select([1])                                    # a selection brings the summary back
    assert html_text(explorer._summary.value)[0].startswith("1 grain selected")
