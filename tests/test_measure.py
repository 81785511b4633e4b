"""Tests of ps3d_toolkit.measurement on shapes whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analytic_shapes import box_labels, ellipsoid_area, ellipsoid_labels, feret_max, surface_area
from scipy.spatial.transform import Rotation

import ps3d_toolkit
from ps3d_toolkit.measurement import liberation_class, measure, particle_mesh, propose_phase_thresholds

CUBE_SPHERICITY = (np.pi / 6) ** (1 / 3)  # 0.806


# --------------------------------------------------------------------------- analytic shapes


def one_row(labels, **kwargs):
    table = measure(labels, progress=False, **kwargs)
    assert len(table) == 1
    return table.iloc[0]


def rel(measured, expected):
    return abs(measured / expected - 1)


# --------------------------------------------------------------------------- balls

BALLS = [  # (radius mm, spacing): 6 to 30 voxels, isotropic and anisotropic, made physically round
    (6.0, (1.0, 1.0, 1.0)),
    (1.0, (0.1, 0.1, 0.1)),
    (20.0, (1.0, 1.0, 1.0)),
    (0.3, (0.01, 0.01, 0.01)),
    (16.0, (2.0, 1.0, 1.0)),
    (9.0, (1.0, 0.6, 1.3)),
    (4.0, (0.5, 0.25, 0.25)),
]


@pytest.mark.parametrize("radius, spacing", BALLS)
def test_ball_volume_surface_sphericity(radius, spacing):
    rng = np.random.default_rng(int(radius * 1000))
    labels = ellipsoid_labels([radius] * 3, spacing, offset_vox=rng.uniform(-0.5, 0.5, 3))
    row = one_row(labels, spacing=spacing)
    volume = 4 / 3 * np.pi * radius**3
    assert rel(row.volume_mm3, volume) < 0.02
    assert rel(row.eq_diameter_mm, 2 * radius) < 0.01
    assert rel(row.surface_area_mm2, 4 * np.pi * radius**2) < 0.04
    assert abs(row.sphericity - 1) < 0.04
    for column in ("axis_major_mm", "axis_intermediate_mm", "axis_minor_mm"):
        assert rel(row[column], 2 * radius) < 0.04, column
    # a ball has a diameter in every direction, and the largest digitisation error
    # wins: about +0.4 voxel (documented in measure._surface)
    assert 0 < row.feret_max_mm / (2 * radius) - 1 < 0.05
    assert row.elongation > 0.95 and row.flatness > 0.95


def test_plain_marching_cubes_would_fail_the_ball():
    """The pitfall the flux estimate avoids: marching cubes on the binary ball is ~9 % over."""
    from skimage.measure import marching_cubes, mesh_surface_area

    labels = ellipsoid_labels([15.0] * 3, (1, 1, 1))
    vertices, faces, _, _ = marching_cubes(np.pad(labels, 1).astype(float), 0.5)
    plain = mesh_surface_area(vertices, faces)
    exact = 4 * np.pi * 15.0**2
    assert plain / exact - 1 > 0.05
    assert rel(surface_area(labels > 0, (1, 1, 1)), exact) < 0.02


# --------------------------------------------------------------------------- cubes and boxes


@pytest.mark.parametrize("side_vox, spacing", [
    (8, (1, 1, 1)), (12, (1, 1, 1)), (20, (1, 1, 1)), (40, (1, 1, 1)),
    (10, (0.05, 0.05, 0.05)), ((10, 20, 20), (2.0, 1.0, 1.0)), ((12, 20, 15), (1.0, 0.6, 0.8)),
])
def test_cube_sphericity_and_surface(side_vox, spacing):
    sides = np.broadcast_to(np.asarray(side_vox), 3)
    edge = sides * np.asarray(spacing)
    assert np.allclose(edge, edge[0])  # physically a cube
    row = one_row(box_labels(sides), spacing=spacing)
    assert row.volume_mm3 == pytest.approx(edge[0] ** 3)
    assert rel(row.surface_area_mm2, 6 * edge[0] ** 2) < 0.03
    assert rel(row.sphericity, CUBE_SPHERICITY) < 0.03
    # the inertia-equivalent ellipsoid of a cube of side a has axes a * sqrt(5/3)
    assert row.axis_major_mm == pytest.approx(edge[0] * np.sqrt(5 / 3), rel=1e-9)
    assert row.elongation == pytest.approx(1.0) and row.flatness == pytest.approx(1.0)


def test_box_axes_ratios_and_volume():
    row = one_row(box_labels((6, 12, 24)), spacing=0.5)
    assert row.volume_mm3 == pytest.approx(3 * 6 * 12)
    assert row.axis_major_mm == pytest.approx(12 * np.sqrt(5 / 3))
    assert row.axis_intermediate_mm == pytest.approx(6 * np.sqrt(5 / 3))
    assert row.axis_minor_mm == pytest.approx(3 * np.sqrt(5 / 3))
    assert row.elongation == pytest.approx(0.5) and row.flatness == pytest.approx(0.5)
    assert rel(row.surface_area_mm2, 2 * (3 * 6 + 6 * 12 + 3 * 12)) < 0.03


# --------------------------------------------------------------------------- ellipsoids


def check_ellipsoid_row(row, semi):
    """Volume within 2 %; axes, Feret diameter, surface area within 4 % of the ellipsoid ``semi`` (descending)."""
    a, b, c = semi
    assert rel(row.volume_mm3, 4 / 3 * np.pi * a * b * c) < 0.02
    assert rel(row.axis_major_mm, 2 * a) < 0.04
    assert rel(row.axis_intermediate_mm, 2 * b) < 0.04
    assert rel(row.axis_minor_mm, 2 * c) < 0.04
    assert rel(row.feret_max_mm, 2 * a) < 0.04
    assert rel(row.surface_area_mm2, ellipsoid_area(a, b, c)) < 0.04


@pytest.mark.parametrize("semi, spacing", [
    ((12.0, 8.0, 5.0), (1, 1, 1)),
    ((18.0, 9.0, 9.0), (1, 1, 1)),
    ((1.2, 0.6, 0.4), (0.1, 0.05, 0.05)),
    ((24.0, 12.0, 8.0), (2.0, 1.0, 1.0)),
])
def test_ellipsoid_axes_feret_surface(semi, spacing):
    labels = ellipsoid_labels(semi, spacing, offset_vox=(0.21, -0.13, 0.37))
    row = one_row(labels, spacing=spacing)
    check_ellipsoid_row(row, semi)
    a, b, c = semi
    assert rel(row.elongation, b / a) < 0.05 and rel(row.flatness, c / b) < 0.05


@pytest.mark.parametrize("seed", range(6))
def test_held_out_random_rotated_ellipsoids(seed):
    """Random semi-axes (5-16 voxels), orientation, offset and spacing, drawn with fixed seeds."""
    rng = np.random.default_rng(1000 + seed)
    spacing = [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (0.8, 0.5, 0.6)][seed % 3]
    semi = np.sort(rng.uniform(5, 16, 3))[::-1] * max(spacing)
    rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    labels = ellipsoid_labels(semi, spacing, rotation=rotation, offset_vox=rng.uniform(-0.5, 0.5, 3))
    row = one_row(labels, spacing=spacing)
    check_ellipsoid_row(row, semi)


def test_held_out_random_balls_and_rotated_cubes():
    rng = np.random.default_rng(7)
    for _ in range(4):
        spacing = tuple(rng.choice([0.5, 1.0, 2.0], 3))
        radius = rng.uniform(6, 20) * max(spacing)
        row = one_row(ellipsoid_labels([radius] * 3, spacing, offset_vox=rng.uniform(-0.5, 0.5, 3)),
                      spacing=spacing)
        assert rel(row.surface_area_mm2, 4 * np.pi * radius**2) < 0.04
        assert abs(row.sphericity - 1) < 0.04
        assert rel(row.volume_mm3, 4 / 3 * np.pi * radius**3) < 0.02
    for _ in range(3):
        side = rng.uniform(12, 24)
        rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
        half = int(np.ceil(side * 0.9)) + 2
        grid = np.arange(-half, half + 1.0)
        points = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1) @ rotation
        labels = np.all(np.abs(points) <= side / 2, axis=-1).astype(np.uint32)
        row = one_row(labels, spacing=1.0)
        assert rel(row.surface_area_mm2, 6 * side**2) < 0.05
        assert rel(row.sphericity, CUBE_SPHERICITY) < 0.05


# --------------------------------------------------------------------------- several particles at once


def test_many_particles_match_each_alone_and_ids_survive():
    rng = np.random.default_rng(3)
    labels = np.zeros((60, 60, 60), np.uint32)
    ids = [5, 17, 900, 2, 40000]
    centres = [(15, 15, 15), (15, 45, 40), (45, 15, 40), (45, 45, 15), (30, 30, 30)]
    for lab, c in zip(ids, centres):
        semi = rng.uniform(4, 8, 3)
        blob = ellipsoid_labels(semi, (1, 1, 1), Rotation.random(random_state=lab).as_matrix(), pad=0) > 0
        sl = tuple(slice(ci - s // 2, ci - s // 2 + s) for ci, s in zip(c, blob.shape))
        labels[sl][blob] = lab
    table = measure(labels, spacing=(1.5, 1.0, 1.0), progress=False)
    assert list(table.label) == sorted(ids)
    for _, row in table.iterrows():
        mask = labels == row.label
        assert row.voxel_count == mask.sum()
        z, y, x = np.nonzero(mask)
        assert row.centroid_z == pytest.approx(z.mean()) and row.centroid_x_mm == pytest.approx(x.mean())
        assert (row.bbox_z0, row.bbox_z1) == (z.min(), z.max() + 1)
        assert (row.bbox_y0, row.bbox_y1, row.bbox_x0, row.bbox_x1) == (y.min(), y.max() + 1, x.min(), x.max() + 1)
        crop = mask[z.min():z.max() + 1, y.min():y.max() + 1, x.min():x.max() + 1]
        assert row.surface_area_mm2 == pytest.approx(surface_area(crop, (1.5, 1.0, 1.0)), rel=1e-9)
        assert row.feret_max_mm == pytest.approx(feret_max(crop, (1.5, 1.0, 1.0)), rel=1e-9)


def test_touching_particles_are_measured_separately():
    labels = box_labels((10, 10, 20))
    labels[:, :, 13:] = np.where(labels[:, :, 13:] > 0, 2, 0)  # two 10x10x10 cubes sharing a face
    table = measure(labels, spacing=1.0, progress=False)
    assert list(table.voxel_count) == [1000, 1000]
    for _, row in table.iterrows():
        assert rel(row.sphericity, CUBE_SPHERICITY) < 0.03


def test_huge_sparse_label_ids_are_compacted_with_the_same_result():
    labels = np.zeros((30, 30, 30), np.uint32)
    labels[2:10, 2:10, 2:10] = 1
    labels[15:25, 12:20, 3:28] = 2
    small = measure(labels, spacing=0.5, progress=False)
    big = measure(np.where(labels == 2, 4_000_000_000, labels).astype(np.uint32), spacing=0.5, progress=False)
    assert list(big.label) == [1, 4_000_000_000]
    pd.testing.assert_frame_equal(small.drop(columns="label"), big.drop(columns="label"))


def test_empty_and_tiny_particles():
    empty = measure(np.zeros((5, 5, 5), np.uint8), image=np.ones((5, 5, 5)), progress=False)
    assert len(empty) == 0 and "surface_area_mm2" in empty and "intensity_mean" in empty
    labels = np.zeros((6, 6, 6), np.uint32)
    labels[2, 2, 2] = 1
    labels[4, 1:5, 1:5] = 2  # one voxel thick
    table = measure(labels, spacing=1.0, progress=False)
    assert table.surface_area_mm2.iloc[0] == pytest.approx(6.0)
    assert np.all(np.isfinite(table[["surface_area_mm2", "feret_max_mm", "axis_minor_mm"]].to_numpy()))
    assert table.feret_max_mm.iloc[1] > 3


def test_threads_and_confidence(monkeypatch):
    from ps3d_toolkit.measurement import surface as _surface

    monkeypatch.setattr(_surface, "_BATCH_VOXELS", 6000)  # several batches for the threads to share
    rng = np.random.default_rng(5)
    labels = np.zeros((40, 40, 40), np.uint32)
    for k in range(1, 28):
        z, y, x = (np.array(np.unravel_index(k - 1, (3, 3, 3))) * 13 + 2)
        labels[z:z + rng.integers(4, 11), y:y + rng.integers(4, 11), x:x + rng.integers(4, 11)] = k
    confidence = rng.random(labels.shape).astype(np.float32)
    one = measure(labels, spacing=(1.0, 0.5, 0.5), confidence=confidence, workers=1, progress=False)
    two = measure(labels, spacing=(1.0, 0.5, 0.5), confidence=confidence, workers=2, progress=False)
    pd.testing.assert_frame_equal(one, two)
    dims = one[["bbox_z1", "bbox_y1", "bbox_x1"]].to_numpy() - one[["bbox_z0", "bbox_y0", "bbox_x0"]].to_numpy()
    assert len(_surface._batches(dims)) > 3
    for _, row in one.iterrows():
        assert row.confidence == pytest.approx(confidence[labels == row.label].mean(), rel=1e-6)


def test_shape_false_skips_the_per_particle_loop():
    table = measure(box_labels((4, 4, 4)), spacing=1.0, shape=False, progress=False)
    assert np.isnan(table.surface_area_mm2.iloc[0]) and np.isnan(table.feret_max_mm.iloc[0])
    assert table.volume_mm3.iloc[0] == 64


# --------------------------------------------------------------------------- border flags


def test_touches_border_at_the_array_edge_and_outside_the_sample_region():
    labels = np.zeros((20, 40, 40), np.uint32)
    labels[0:4, 10:14, 10:14] = 1  # cut by the first slice
    labels[8:12, 18:22, 18:22] = 2  # in the middle
    labels[8:12, 18:22, 33:37] = 3  # inside the array, crosses the cylinder wall
    labels[8:12, 18:22, 29:32] = 4  # inside the cylinder, 2.5 voxels from its wall
    zz, yy, xx = np.indices(labels.shape)
    fov = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 <= 15.0**2
    plain = measure(labels, progress=False).set_index("label").touches_border
    assert plain.to_dict() == {1: True, 2: False, 3: False, 4: False}
    with_fov = measure(labels, mask=fov, progress=False).set_index("label").touches_border
    assert with_fov.to_dict() == {1: True, 2: False, 3: True, 4: False}
    # the old name still works for a release, and warns
    with pytest.warns(DeprecationWarning, match="fov_mask= is deprecated.*mask="):
        old = measure(labels, fov_mask=fov, progress=False).set_index("label").touches_border
    assert old.to_dict() == with_fov.to_dict()


def test_roi_and_mask_measure_the_sample_region_as_segment_takes_it(tmp_path):
    from ps3d_toolkit.io import save_scan
    from ps3d_toolkit.segmentation.region import resolve_region

    labels = np.zeros((20, 40, 40), np.uint32)
    labels[8:12, 18:22, 18:22] = 2   # inside the box
    labels[8:12, 18:22, 28:34] = 3   # crosses the box's x = 30 face
    labels[8:12, 18:22, 35:39] = 4   # outside the box
    box = measure(labels, spacing=0.1, roi="2:18,5:35,5:30", progress=False).set_index("label")
    # only the voxels inside the region are measured (segment leaves the others background)
    assert box.index.tolist() == [2, 3]
    assert box.voxel_count.to_dict() == {2: 64, 3: 32}
    assert box.touches_border.to_dict() == {2: False, 3: True}
    assert box.attrs["sample_region"] == "roi 2:18,5:35,5:30"
    slices = measure(labels, spacing=0.1, roi=(slice(2, 18), slice(5, 35), slice(5, 30)), progress=False)
    pd.testing.assert_frame_equal(slices, box.reset_index())
    # a mask array, a mask file and the same region resolved by segmentation's own resolver give one table
    inside = resolve_region(labels, roi="2:18,5:35,5:30").full()
    save_scan(inside.astype(np.uint8), tmp_path / "mask.tif", spacing=0.1)
    for mask in (inside, tmp_path / "mask.tif", str(tmp_path / "mask.tif")):
        table = measure(labels, spacing=0.1, mask=mask, progress=False).set_index("label")
        assert table.voxel_count.to_dict() == {2: 64, 3: 32} and table.touches_border.to_dict() == {2: False, 3: True}
    with pytest.raises(ValueError, match="mask='auto'.*image"):
        measure(labels, mask="auto", progress=False)
    with pytest.raises(ValueError, match="fov_mask= is its old name"), pytest.warns(DeprecationWarning):
        measure(labels, mask=inside, fov_mask=inside, progress=False)


# --------------------------------------------------------------------------- grey levels and phases


def test_intensity_statistics_match_numpy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (16, 16, 16)).astype(np.uint32)
    for dtype in (np.uint16, np.float32):
        image = (rng.normal(1000, 200, labels.shape)).astype(dtype)
        table = measure(labels, image, shape=False, progress=False).set_index("label")
        for lab in range(1, 6):
            values = image[labels == lab].astype(np.float64)
            row = table.loc[lab]
            assert row.intensity_mean == pytest.approx(values.mean())
            assert row.intensity_std == pytest.approx(values.std())
            assert row.intensity_min == values.min() and row.intensity_max == values.max()
            for q in (10, 50, 90):
                assert row[f"intensity_p{q}"] == pytest.approx(np.percentile(values, q))


def test_two_phase_grain_fractions_and_liberation():
    labels = np.zeros((12, 12, 40), np.uint32)
    labels[1:11, 1:11, 1:11] = 1  # half bright
    labels[1:11, 1:11, 14:24] = 2  # 95 % bright
    labels[1:11, 1:11, 27:37] = 3  # 10 % bright
    image = np.full(labels.shape, 50.0, np.float32)
    image[1:6, 1:11, 1:11] = 200
    image[:, :, 14:24] = 200
    image[1:6, 1:2, 14:24] = 50  # 5 % of grain 2
    image[1:2, 1:11, 27:37] = 200
    phases = {"ore": (120, 255), "gangue": (0, 120)}
    table = measure(labels, image, phases=phases, shape=False, progress=False).set_index("label")
    assert table.phase_fraction_ore.to_dict() == pytest.approx({1: 0.5, 2: 0.95, 3: 0.1})
    assert (table.phase_fraction_ore + table.phase_fraction_gangue).to_numpy() == pytest.approx(1.0)
    # one column per phase, named after it: ore 50, 95, 10 %; gangue 50, 5, 90 %
    assert list(table.liberation_ore.astype(str)) == ["middling", "liberated", "locked"]
    assert list(table.liberation_gangue.astype(str)) == ["middling", "locked", "middling"]
    assert "liberation_class" not in table
    assert table.attrs["liberation_thresholds"] == (0.3, 0.95) and table.attrs["min_phase_fraction"] == 0.02
    assert table.attrs["liberation_phases"] == ["ore", "gangue"]
    strict = measure(labels, image, phases=phases, liberation_thresholds=(0.2, 0.97), min_phase_fraction=0.06,
                     shape=False, progress=False).set_index("label")
    assert strict.attrs["liberation_thresholds"] == (0.2, 0.97) and strict.attrs["min_phase_fraction"] == 0.06
    assert list(strict.liberation_ore.astype(str)) == ["middling", "middling", "locked"]
    assert list(strict.liberation_gangue.astype(str)) == ["middling", "barren", "middling"]  # 5 % < 6 %
    # the same from a phase map, with one phase of interest
    phase_map = np.where(image > 120, 2, 1).astype(np.uint8)
    by_map = measure(labels, phases={"ore": 2, "gangue": 1}, phase_map=phase_map, liberation_phase="gangue",
                     shape=False, progress=False).set_index("label")
    assert by_map.phase_fraction_ore.to_dict() == pytest.approx({1: 0.5, 2: 0.95, 3: 0.1})
    assert list(by_map.liberation_gangue.astype(str)) == ["middling", "locked", "middling"]
    assert "liberation_ore" not in by_map
    auto = measure(labels, image, phases="auto", shape=False, progress=False).set_index("label")
    assert auto.phase_fraction_phase_2.to_dict() == pytest.approx({1: 0.5, 2: 0.95, 3: 0.1})
    named = measure(labels, image, phases="auto", phase_names="quartz,magnetite", liberation_phase="magnetite",
                    shape=False, progress=False).set_index("label")
    assert named.phase_fraction_magnetite.to_dict() == pytest.approx({1: 0.5, 2: 0.95, 3: 0.1})
    assert list(named.liberation_magnetite.astype(str)) == ["middling", "liberated", "locked"]
    assert list(named.attrs["phases"]) == ["quartz", "magnetite"] and named.attrs["liberation_phases"] == ["magnetite"]


# Per-grain truth of the two-phase phantom: voxels of phase B out of 1000 (10^3 cubes), and the
# class of the grain in A and in B (barren < 2 % <= locked < 30 % <= middling < 95 % <= liberated).
_PHANTOM = [
    (0, "liberated", "barren"),       # no voxel of B: barren in B
    (10, "liberated", "barren"),      # 1 % of B: below the minimum, B is absent
    (19, "liberated", "barren"),      # 1.9 %
    (20, "liberated", "locked"),      # 2 %: B is there
    (100, "middling", "locked"),      # 10 % B, 90 % A
    (299, "middling", "locked"),
    (300, "middling", "middling"),
    (500, "middling", "middling"),
    (949, "locked", "middling"),      # 5.1 % A, 94.9 % B
    (950, "locked", "liberated"),     # 95 % B, 5 % A
    (985, "barren", "liberated"),     # 1.5 % A: barren in A
    (1000, "barren", "liberated"),    # no voxel of A
]


def _two_phase_phantom():
    """10^3-voxel cubes with exact per-grain voxel counts of phases A (id 1) and B (id 2), and grey values."""
    n = len(_PHANTOM)
    labels = np.zeros((12, 12, 12 * n), np.uint32)
    phase_map = np.zeros(labels.shape, np.uint8)
    for i, (n_b, _, _) in enumerate(_PHANTOM):
        cube = (slice(1, 11), slice(1, 11), slice(12 * i + 1, 12 * i + 11))
        labels[cube] = i + 1
        flat = np.ones(1000, np.uint8)
        flat[:n_b] = 2
        phase_map[cube] = flat.reshape(10, 10, 10)
    image = np.choose(phase_map, [0.0, 100.0, 200.0]).astype(np.float32)
    return labels, phase_map, image


@pytest.mark.parametrize("by", ["phase map", "grey levels"])
def test_liberation_per_phase_matches_a_phantom_with_known_fractions(by):
    from ps3d_toolkit.analysis.stats import liberation_table, phase_summary

    labels, phase_map, image = _two_phase_phantom()
    if by == "phase map":
        table = measure(labels, phases={"A": 1, "B": 2}, phase_map=phase_map, spacing=0.1, shape=False,
                        progress=False)
    else:
        table = measure(labels, image, phases={"A": (50, 150), "B": (150, 250)}, spacing=0.1, shape=False,
                        progress=False)
    fraction_b = np.array([n_b / 1000 for n_b, _, _ in _PHANTOM])
    assert table.phase_fraction_B.to_numpy() == pytest.approx(fraction_b)
    assert table.phase_fraction_A.to_numpy() == pytest.approx(1 - fraction_b)
    assert list(table.liberation_A.astype(str)) == [a for _, a, _ in _PHANTOM]
    assert list(table.liberation_B.astype(str)) == [b for _, _, b in _PHANTOM]
    # a grain with no voxel of a phase is barren in it
    assert (table.liberation_B[fraction_b == 0] == "barren").all()
    assert (table.liberation_A[fraction_b == 1] == "barren").all()
    # no phase is "contained" in a grain where it is below the minimum fraction
    summary = phase_summary(table)
    for name, fraction in (("A", 1 - fraction_b), ("B", fraction_b)):
        assert summary.loc[name, "particles_with_phase"] == int(np.sum(fraction >= 0.02))
        assert summary.loc[name, "particles_with_phase"] == int(np.sum(table[f"liberation_{name}"] != "barren"))
    lib = liberation_table(table).set_index(["phase", "liberation_class"])["count"]
    for name, column in (("A", 1), ("B", 2)):
        truth = pd.Series([row[column] for row in _PHANTOM]).value_counts()
        for cls in ("barren", "locked", "middling", "liberated"):
            assert lib[(name, cls)] == truth.get(cls, 0), (name, cls)
    # the chunked path gives the same table
    chunked = measure(labels, phases={"A": 1, "B": 2}, phase_map=phase_map, spacing=0.1, shape=False,
                      progress=False, chunk_size=24)
    assert list(chunked.liberation_B.astype(str)) == [b for _, _, b in _PHANTOM]
    assert chunked.attrs["min_phase_fraction"] == 0.02 and chunked.attrs["liberation_thresholds"] == (0.3, 0.95)


def test_phase_names_rename_the_table_columns_and_attrs():
    from ps3d_toolkit.measurement.intensity import rename_phases

    labels, phase_map, _ = _two_phase_phantom()
    table = measure(labels, phases={"A": 1, "B": 2}, phase_map=phase_map, shape=False, progress=False)
    renamed = rename_phases(table, ["quartz", "magnetite"])
    assert {"phase_fraction_quartz", "liberation_magnetite"} <= set(renamed.columns)
    assert not any(c.endswith(("_A", "_B")) for c in renamed.columns)
    assert list(renamed.attrs["phases"]) == ["quartz", "magnetite"]
    assert renamed.attrs["liberation_phases"] == ["quartz", "magnetite"]
    assert renamed.phase_fraction_magnetite.equals(table.phase_fraction_B)
    assert list(rename_phases(table, {"B": "ore"}).columns[-2:]) == ["liberation_A", "liberation_ore"]
    with pytest.raises(ValueError, match="2 distinct phase names"):
        rename_phases(table, ["only_one"])
    with pytest.raises(ValueError, match="letters, digits"):
        rename_phases(table, ["quartz", "bad name"])
    with pytest.raises(ValueError, match="phase_names"):
        measure(labels, phases={"A": 1, "B": 2}, phase_map=phase_map, phase_names=["x", "y"], progress=False)


def test_liberation_class_boundaries():
    classes = liberation_class([0.0, 0.0199, 0.02, 0.299, 0.3, 0.949, 0.95, 1.0, np.nan])
    assert list(classes[:8]) == ["barren", "barren", "locked", "locked", "middling", "middling", "liberated",
                                 "liberated"]
    assert pd.isna(classes[8])
    assert list(classes.categories) == ["barren", "locked", "middling", "liberated"] and classes.ordered
    assert list(liberation_class([0.5, 0.85], thresholds=(0.2, 0.8)).astype(str)) == ["middling", "liberated"]
    assert list(liberation_class([0.0, 0.01], min_phase_fraction=0.0).astype(str)) == ["locked", "locked"]
    with pytest.raises(ValueError, match="thresholds"):
        liberation_class([0.5], thresholds=(0.9, 0.3))
    with pytest.raises(ValueError, match="min_phase_fraction"):
        liberation_class([0.5], min_phase_fraction=0.5)


def test_propose_phase_thresholds_splits_a_bimodal_histogram():
    rng = np.random.default_rng(1)
    labels = np.zeros((20, 20, 20), np.uint32)
    labels[2:18, 2:18, 2:18] = 1
    image = rng.normal(100, 5, labels.shape)
    image[10:18] = rng.normal(300, 5, (8, 20, 20))
    image[labels == 0] = 1000  # outside the particles: ignored
    phases = propose_phase_thresholds(image, labels)
    (low1, high1), (low2, high2) = phases["phase_1"], phases["phase_2"]
    assert low1 == -np.inf and high2 == np.inf and high1 == low2
    assert 130 < high1 < 270
    named = propose_phase_thresholds(image, labels, n_phases=3, names=["a", "b", "c"])
    assert list(named) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="n_phases"):
        propose_phase_thresholds(image, labels, n_phases=1)


# --------------------------------------------------------------------------- API, validation, files


def test_package_level_measure_is_callable_twice():
    labels = box_labels((3, 3, 3))
    first = ps3d_toolkit.measure(labels, progress=False)
    second = ps3d_toolkit.measure(labels, progress=False)
    pd.testing.assert_frame_equal(first, second)


def test_columns_and_attrs():
    image = np.full((10, 11, 12), 7.0, np.float32)
    table = measure(box_labels((4, 5, 6)), image, spacing=(1, 2, 3), progress=False)
    assert list(table.columns) == [
        "label", "voxel_count", "volume_mm3", "eq_diameter_mm", "centroid_z", "centroid_y", "centroid_x",
        "centroid_z_mm", "centroid_y_mm", "centroid_x_mm", "bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1",
        "bbox_y1", "bbox_x1", "surface_area_mm2", "sphericity", "axis_major_mm", "axis_intermediate_mm",
        "axis_minor_mm", "elongation", "flatness", "feret_max_mm", "feret_min_mm", "feret_ratio", "touches_border", "intensity_mean",
        "intensity_std", "intensity_min", "intensity_max", "intensity_p10", "intensity_p50", "intensity_p90"]
    row = table.iloc[0]
    # a 4 x 5 x 6 voxel box at offset 3 of voxels 1 x 2 x 3 mm: a 4 x 10 x 18 mm box
    assert (row.label, row.voxel_count, row.volume_mm3) == (1, 120, 720.0)
    assert row.eq_diameter_mm == pytest.approx((6 * 720 / np.pi) ** (1 / 3))
    assert (row.centroid_z, row.centroid_y, row.centroid_x) == (4.5, 5.0, 5.5)
    assert (row.centroid_z_mm, row.centroid_y_mm, row.centroid_x_mm) == (4.5, 10.0, 16.5)
    assert [row[f"bbox_{a}"] for a in ("z0", "y0", "x0", "z1", "y1", "x1")] == [3, 3, 3, 7, 8, 9]
    assert row.axis_major_mm == pytest.approx(18 * np.sqrt(5 / 3))
    assert row.axis_minor_mm == pytest.approx(4 * np.sqrt(5 / 3))
    assert row.intensity_mean == 7.0 and row.intensity_std == 0.0 and row.intensity_p90 == 7.0
    assert not row.touches_border
    assert table.attrs["spacing_mm"] == (1.0, 2.0, 3.0)
    assert table.touches_border.dtype == bool


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(spacing=(0, 1, 1)), ValueError, "spacing"),
    (dict(spacing="x"), TypeError, "spacing"),
    (dict(image=np.zeros((2, 2, 2))), ValueError, "same shape"),
    (dict(phases={"a": (0, 1)}), ValueError, "no image"),
    (dict(phases={"a": 3}), ValueError, "phase_map"),
    (dict(phases=[1, 2]), TypeError, "phases"),
    (dict(phases={"a": (5, 1)}, image=np.zeros((4, 4, 4))), ValueError, "low < high"),
    (dict(phases={"a": (0, 1)}, image=np.zeros((4, 4, 4)), liberation_phase="b"), ValueError, "liberation_phase"),
    (dict(mask=np.ones((3, 3, 3), bool)), ValueError, "mask has shape"),
    (dict(roi="0:9,:,:"), ValueError, "roi"),
    (dict(confidence=np.ones((3, 3, 3))), ValueError, "same shape"),
    (dict(workers=0), ValueError, "workers"),
    (dict(phases={"a": (0, 1)}, image=np.zeros((4, 4, 4)), liberation_thresholds=(0.9, 0.1)), ValueError,
     "thresholds"),
])
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        measure(np.ones((4, 4, 4), np.uint32), progress=False, **kwargs)


def test_invalid_labels():
    with pytest.raises(ValueError, match="labels"):
        measure(np.ones((4, 4), np.uint32))
    with pytest.raises(TypeError, match="labels"):
        measure(np.full((4, 4, 4), 0.5))


def test_particle_mesh_lies_on_the_ball():
    labels = np.zeros((40, 40, 40), np.uint32)
    ball = ellipsoid_labels([1.0] * 3, (0.1, 0.1, 0.1), pad=0)
    labels[5:5 + ball.shape[0], 8:8 + ball.shape[1], 3:3 + ball.shape[2]] = ball * 9
    vertices, faces = particle_mesh(labels, 9, spacing=0.1)
    centre = (np.array([5, 8, 3]) + 10) * 0.1
    radius = np.linalg.norm(vertices - centre, axis=1)
    assert faces.shape[1] == 3 and len(faces) > 100
    assert np.all(np.abs(radius - 1.0) < 0.1)
    with pytest.raises(ValueError, match="label 3"):
        particle_mesh(labels, 3, spacing=0.1)


# --------------------------------------------------------------------------- non-finite grey values, grey scans as labels


def _two_cubes_with_nan():
    labels = box_labels((4, 4, 4), pad=2)
    labels[1:3, 1:3, 1:3] = 2                       # a second particle, 8 voxels, all NaN below
    image = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    image[labels == 2] = np.nan
    image[3, 3, 3] = np.inf                         # one voxel of particle 1
    return labels, image


def test_non_finite_grey_values_are_refused_with_their_count():
    from ps3d_toolkit.core.errors import InputError

    labels, image = _two_cubes_with_nan()
    with pytest.raises(InputError, match="9 NaN or infinite grey values.*non_finite='mask'"):
        measure(labels, image, progress=False)
    with pytest.raises(InputError, match="non_finite"):
        measure(labels, image, non_finite="ignore", progress=False)


def test_masked_non_finite_values_leave_every_statistic_alike():
    labels, image = _two_cubes_with_nan()
    table = measure(labels, image, non_finite="mask", phases={"dark": (0, 300), "bright": (300, np.inf)},
                    shape=False, progress=False).set_index("label")
    finite = image[(labels == 1) & np.isfinite(image)].astype(np.float64)
    one = table.loc[1]
    assert one.intensity_min == finite.min() and one.intensity_max == finite.max()
    assert one.intensity_mean == pytest.approx(finite.mean()) and one.intensity_std == pytest.approx(finite.std())
    for q in (10, 50, 90):
        assert one[f"intensity_p{q}"] == pytest.approx(np.percentile(finite, q))
    assert one.phase_fraction_dark + one.phase_fraction_bright == pytest.approx(1.0)
    assert one.phase_fraction_dark == pytest.approx(np.mean(finite < 300))
    # a particle with no finite value: NaN in every grey-level column, not a finite minimum
    two = table.loc[2]
    assert two.voxel_count == 8
    grey = [c for c in table.columns if c.startswith(("intensity_", "phase_fraction_"))]
    assert two[grey].isna().all() and pd.isna(two.liberation_dark) and pd.isna(two.liberation_bright)


def test_complex_grey_values_are_refused():
    with pytest.raises(TypeError, match="real grey values"):
        measure(box_labels((3, 3, 3)), np.ones((9, 9, 9), np.complex64), progress=False)


def test_grey_value_test_never_fires_on_label_images_and_fires_on_scans(sample):
    from ps3d_toolkit.measurement.inputs import grey_value_reason

    scan, truth = sample
    assert grey_value_reason(truth) is None
    # 1,000,000 particles of 2 x 2 x 2 voxels filling 200^3: the smallest blobs still share half their neighbours
    z, y, x = np.indices((200, 200, 200), dtype=np.uint32) // 2
    assert grey_value_reason(z * 10_000 + y * 100 + x + 1) is None
    # few labels (fast to measure anyway) scattered at random: not judged
    assert grey_value_reason(np.random.default_rng(0).integers(0, 6, (16, 16, 16))) is None
    grey = np.asarray(scan.image)
    assert "0.0" in grey_value_reason(grey)
    assert grey_value_reason((grey // 256).astype(np.uint8)) is not None


def test_measure_refuses_a_grey_scan_as_labels_unless_forced(sample):
    from ps3d_toolkit.core.errors import InputError

    grey = np.asarray(sample[0].image)[:24, :24, :24]
    with pytest.raises(InputError, match="grey-value scan.*force=True"):
        measure(grey, progress=False)
    noise = np.random.default_rng(0).integers(1, 100, (12, 12, 12)).astype(np.uint8)
    with pytest.warns(UserWarning, match="grey-value scan"):
        table = measure(noise, shape=False, force=True, progress=False)
    assert len(table) == 99


def test_cli_measure_takes_the_sample_region_and_named_automatic_phases(ps3d, sample, tmp_path):
    from ps3d_toolkit.io import read_table, save_labels, save_scan

    scan, truth = sample
    image = save_scan(np.asarray(scan.image), tmp_path / "scan.tif", spacing=scan.spacing)
    labels = save_labels(truth, tmp_path / "labels.tif", spacing=scan.spacing)
    code, stdout, err = ps3d("measure", labels, "--image", image, "--roi", "8:120,:,:", "--auto-phases", "3",
                             "--phase-names", "epoxy_rim,quartz,magnetite", "-o", tmp_path / "p.parquet")
    assert code == 0, err
    assert "sample region: roi 8:120,0:128,0:128" in stdout
    table = read_table(tmp_path / "p.parquet")
    # the library's table for the same region and names
    expected = measure(truth, scan.image, spacing=scan.spacing, roi="8:120,:,:", phases="auto",
                       phase_names=["epoxy_rim", "quartz", "magnetite"], progress=False)
    pd.testing.assert_frame_equal(table[expected.columns], expected, check_dtype=False, check_categorical=False)
    assert {"liberation_epoxy_rim", "liberation_quartz", "liberation_magnetite"} <= set(table.columns)
    code, _, err = ps3d("measure", labels, "--image", image, "--auto-phases", "2", "--phase-names", "a,b,c",
                        "-o", tmp_path / "q.csv")
    assert code == 2 and "--phase-names: give 2 names for --auto-phases 2" in err
    code, _, err = ps3d("measure", labels, "--phase-names", "a,b", "-o", tmp_path / "q.csv")
    assert code == 2 and "--phase-names needs --auto-phases N" in err and "--table" not in err
