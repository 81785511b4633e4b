"""Logic of the interactive views: what each slider, click and selection computes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ps3d_toolkit.viz import (
    HIGHLIGHT_RGB,
    LinkedExplorer,
    PARAMETERS,
    SegmentationTuner,
    SliceViewer,
    available_methods,
    default_window,
    fig_particles_3d,
    fig_scatter,
    label_colors,
    mesh_trace,
    orthogonal_slices,
    overlay_labels,
    particle_at,
    particle_row,
    plane_to_voxel,
    point_labels,
    preview_region,
    selection_mask,
    selection_to_labels,
    window_image,
)


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


@pytest.fixture
def two_balls():
    """Labels 1 and 2: two separate balls of radius 5 in a 24 x 32 x 40 volume; grey image to match."""
    labels = np.zeros((24, 32, 40), np.uint32)
    labels[ball(labels.shape, (12, 16, 10), 5)] = 1
    labels[ball(labels.shape, (12, 16, 28), 5)] = 2
    image = np.where(labels > 0, 200.0, 100.0).astype(np.float32)
    return image, labels


def small_table(labels, spacing=(1.0, 1.0, 1.0)):
    """A hand-made particle table (label, voxel_count, centroids, sizes) for ``labels``."""
    rows = []
    for label in np.unique(labels[labels > 0]):
        where = np.argwhere(labels == label)
        count = len(where)
        volume = count * float(np.prod(spacing))
        z, y, x = where.mean(axis=0)
        rows.append({"label": int(label), "voxel_count": count, "volume_mm3": volume,
                     "eq_diameter_mm": np.cbrt(6 * volume / np.pi), "sphericity": 0.9 + 0.01 * label,
                     "centroid_z": z, "centroid_y": y, "centroid_x": x})
    table = pd.DataFrame(rows)
    table.attrs["spacing_mm"] = tuple(spacing)
    return table


# --- viewer: slices, contrast, colours, clicks -------------------------------------------------


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


def test_particle_at_and_its_row(two_balls):
    _, labels = two_balls
    table = small_table(labels)
    assert particle_at(labels, (12, 16, 10)) == 1
    assert particle_at(labels, (0, 0, 0)) == 0
    assert particle_row(table, 2)["label"].tolist() == [2]
    assert particle_row(table, 0).empty
    with pytest.raises(ValueError, match="label"):
        particle_row(pd.DataFrame({"x": [1]}), 1)


def test_slice_viewer_controls_change_what_is_drawn(two_balls):
    image, labels = two_balls
    viewer = SliceViewer(image, labels, spacing=(2.0, 1.0, 1.0), table=small_table(labels),
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


def test_slice_viewer_click_selects_particle_moves_planes_and_shows_row(two_balls):
    image, labels = two_balls
    viewer = SliceViewer(image, labels, spacing=1.0, table=small_table(labels))
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


# --- 3D view -----------------------------------------------------------------------------------


def test_mesh_trace_maps_zyx_vertices_to_plotly_xyz():
    vertices = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], float)
    trace = mesh_trace(vertices, [[0, 1, 2]], color=(1, 2, 3), name="p")
    assert list(trace.x) == [2, 5, 8] and list(trace.z) == [0, 3, 6]
    assert trace.color == "rgb(1,2,3)"
    with pytest.raises(ValueError, match="index"):
        mesh_trace(vertices, [[0, 1, 3]])


def test_fig_particles_3d_draws_each_particle_to_scale(two_balls):
    _, labels = two_balls
    fig = fig_particles_3d(labels, [1, 2], spacing=(2.0, 1.0, 1.0))
    assert [t.name for t in fig.data] == ["particle 1", "particle 2"]
    first = fig.data[0]
    # Radius 5 voxels: ~10 mm across in x, ~20 mm in z (2 mm voxels along z).
    assert np.ptp(first.x) == pytest.approx(10, abs=2)
    assert np.ptp(first.z) == pytest.approx(20, abs=4)
    assert np.mean(fig.data[1].x) - np.mean(first.x) == pytest.approx(18, abs=1)
    assert fig.data[1].color == "rgb({},{},{})".format(*label_colors([2])[0])
    with pytest.raises(ValueError, match="at least one"):
        fig_particles_3d(labels, [])
    with pytest.raises(ValueError):
        fig_particles_3d(labels, [7])
    with pytest.raises(ValueError, match="at most"):
        fig_particles_3d(labels, range(1, 100))


# --- linked selection --------------------------------------------------------------------------


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


def test_point_labels_from_customdata_or_row_order(two_balls):
    _, labels = two_balls
    table = small_table(labels)
    fig = fig_scatter(table)
    assert point_labels(fig.data[0]).tolist() == [1, 2]
    import plotly.graph_objects as go

    assert point_labels(go.Scatter(x=[0, 1], customdata=[[5, "a"], [6, "b"]])).tolist() == [5, 6]
    assert point_labels(go.Scatter(x=[0, 1]), table).tolist() == [1, 2]
    with pytest.raises(ValueError, match="customdata"):
        point_labels(go.Scatter(x=[0, 1, 2]), table)
    with pytest.raises(ValueError, match="no column"):
        fig_scatter(table, y="flatness")


def test_linked_explorer_selection_highlights_grains_and_moves_the_viewer(two_balls):
    image, labels = two_balls
    table = small_table(labels)
    explorer = LinkedExplorer(image, labels, table)
    explorer.widget
    scatter = explorer.scatter
    assert scatter.layout.dragmode == "select"
    # What a box selection around the second point does (plotly calls this with the points).
    explorer._on_selection_factory(0)(scatter.data[0], FakePoints([1]), None)
    assert explorer.selected.tolist() == [2]
    assert explorer.viewer.highlight == {2}
    assert explorer.viewer.position == (12, 16, 28)          # ball 2's centroid
    assert "1</b> grain selected" in explorer._summary.value
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


# --- tuner -------------------------------------------------------------------------------------


def test_preview_region_is_a_central_slab_a_few_particles_thick():
    z, y, x = preview_region((200, 100, 120), 10)
    assert (z.stop - z.start, y.stop - y.start, x.stop - x.start) == (25, 100, 120)
    assert z.start == (200 - 25) // 2
    assert preview_region((10, 50, 50), 10)[0] == slice(0, 10)   # thinner than a slab
    z, y, x = preview_region((1000, 2000, 2000), 20, max_voxels=1_000_000)
    depth, side_y, side_x = z.stop - z.start, y.stop - y.start, x.stop - x.start
    assert depth == 50 and depth * side_y * side_x <= 1_000_000 and side_y == side_x > 100
    assert y.start == (2000 - side_y) // 2
    with pytest.raises(ValueError, match="particle_size_vox"):
        preview_region((10, 10, 10), 0)


@pytest.fixture
def grains_in_epoxy():
    """Air, an epoxy cylinder and 8 separate bright balls of radius 5: a scan with a known answer."""
    rng = np.random.default_rng(0)
    shape = (32, 64, 64)
    zz, yy, xx = np.indices(shape)
    image = np.full(shape, 20.0)
    image[(yy - 32) ** 2 + (xx - 32) ** 2 <= 30 ** 2] = 100.0
    truth = np.zeros(shape, np.uint32)
    k = 0
    for cz in (10, 22):
        for cy in (20, 44):
            for cx in (20, 44):
                k += 1
                truth[ball(shape, (cz, cy, cx), 5)] = k
    image[truth > 0] = 200.0
    image += rng.normal(0, 8, shape)
    return image.astype(np.float32), truth


def test_tuner_update_segments_the_preview_and_reports_counts_and_scores(grains_in_epoxy):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, truth=truth,
                              method="otsu-watershed", region=(slice(None),) * 3)
    assert tuner.crop.shape == (32, 64, 64)              # the whole (small) scan
    result = tuner.update()
    assert result["n_particles"] == 8
    assert result["scores"]["f1_50"] == pytest.approx(1.0)
    assert result["n_inside"] == 8
    assert result["d50_mm"] == pytest.approx(np.cbrt(6 * np.count_nonzero(truth == 1) / np.pi) * 0.01, rel=0.1)
    # Dropping every particle below 0.3 of the mean volume keeps all 8 equal balls.
    assert tuner.update(min_particle_fraction=0.3)["n_particles"] == 8
    assert tuner.params["min_particle_fraction"] == 0.3


def test_tuner_settings_and_code_follow_the_sliders(grains_in_epoxy):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=(0.02, 0.01, 0.01), particle_size_mm=0.11, method="otsu-watershed")
    tuner.params["min_distance_fraction"] = 0.8     # a slider moved with auto-update off
    settings = tuner.settings()
    assert settings == {"method": "otsu-watershed", "particle_size_mm": 0.11, "min_particle_fraction": 0.005,
                        "n_classes": None, "min_distance_fraction": 0.8}
    code = tuner.settings_code()
    assert "segment(scan.image, spacing=scan.spacing, method='otsu-watershed'" in code
    assert "min_distance_fraction=0.8" in code
    assert "ps3d segment SCAN --spacing 0.02,0.01,0.01 --particle-size 0.11 --method otsu-watershed" in code
    namespace = {}
    exec(code.split("\n\n")[0], namespace)             # the import line runs
    assert "segment" in namespace


def test_tuner_method_change_resets_options_and_checks_values(grains_in_epoxy):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="otsu-watershed")
    tuner.params["min_particle_fraction"] = 0.1
    with pytest.raises(ValueError, match="not a parameter"):
        tuner.update(sigma=1.0)
    with pytest.raises(ValueError, match=r"min_distance_fraction must be in"):
        tuner.update(min_distance_fraction=5)
    with pytest.raises(ValueError, match="n_classes must be one of"):
        tuner.update(n_classes=7)
    with pytest.raises(ValueError, match="method"):
        tuner.update(method="magic")
    assert "snow" in available_methods()
    tuner.update(method="snow")
    assert set(tuner.params) == {"method", "particle_size_mm", *PARAMETERS["snow"]}
    assert tuner.params["min_particle_fraction"] == 0.005 and tuner.params["particle_size_mm"] == 0.11


def test_tuner_widget_slider_runs_the_preview(grains_in_epoxy):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, truth=truth, method="otsu-watershed")
    tuner.widget
    slider = next(c for c in tuner._options_box.children if c.description == "min_distance_fraction")
    slider.value = 0.9                                  # what dragging the slider does
    assert tuner.params["min_distance_fraction"] == pytest.approx(0.9)
    assert tuner.result is not None and tuner.result["n_particles"] == 8
    assert "<b>8</b> particles" in tuner._summary.value
    assert "min_distance_fraction=0.9" in tuner._code.value
    assert len(tuner._figure.data[1].x) == 8            # the size histogram shows them
    tuner.set_preview_index(0)
    assert tuner.preview_rgb().shape == (64, 64, 3)


def test_tuner_controls_follow_updates_from_code_and_method_changes(grains_in_epoxy):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="otsu-watershed")
    tuner.widget
    controls = {c.description: c for c in tuner._options_box.children}
    assert controls["n_classes"].label == "auto"                     # None shows as "auto", not blank
    controls["n_classes"].value = controls["n_classes"].options[2][1]   # the user picks "3"
    assert tuner.params["n_classes"] == 3
    tuner.update(min_distance_fraction=1.1, particle_size_mm=0.12)
    assert controls["min_distance_fraction"].value == pytest.approx(1.1)
    assert tuner._controls["particle_size_mm"].value == pytest.approx(0.12, rel=0.05)
    tuner._controls["method"].value = "snow"                          # the method dropdown
    assert tuner.params["method"] == "snow" and tuner.result["n_particles"] == 8
    assert [c.description for c in tuner._options_box.children] == list(PARAMETERS["snow"])
    tuner.update(method="otsu-watershed")
    assert [c.description for c in tuner._options_box.children] == list(PARAMETERS["otsu-watershed"])


def test_tuner_model_options_reach_the_model(grains_in_epoxy, tmp_path):
    from ps3d_toolkit.segmentation.model.network import DEFAULT_CONFIG, build_network, save_weights

    image, truth = grains_in_epoxy
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    weights = save_weights(build_network(DEFAULT_CONFIG), tmp_path / "untrained.pt", dict(DEFAULT_CONFIG))
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="model", weights=weights)
    assert "model" in tuner.methods
    result = tuner.update(min_core_voxels=20, overlap=0.1, min_particle_fraction=0.01)
    assert result["labels"].shape == tuner.crop.shape and result["labels"].dtype == np.uint32
    assert tuner.update(target_diameter_vox=24)["labels"].shape == tuner.crop.shape
    assert "target_diameter_vox=24" in tuner.settings_code()
    assert tuner.update(core_threshold=0.6)["labels"].shape == tuner.crop.shape
    assert "core_threshold=0.6" in tuner.settings_code()
    assert tuner.settings()["weights"] == str(weights)
    assert f"weights={str(weights)!r}" in tuner.settings_code()
