"""Tests of the border-core -> instance step (segmentation.instances) on constructed particles."""

import numpy as np
import pytest

from ps3d_toolkit.training.targets import border_core_targets
from conftest import ball

from ps3d_toolkit.segmentation.instances import border_core_to_instances


# ParticleSeg3D's instance settings: 8-voxel cores, particles below 0.5 % of the mean dropped
PS3D = dict(min_core_voxels=8, min_particle_fraction=0.005)


def _two_touching_balls():
    shape = (40, 40, 64)
    labels = np.zeros(shape, np.uint32)
    labels[ball(shape, (20, 20, 20), 10)] = 1
    # the second ball overlaps the first by 2 voxels: a real flat contact
    second = ball(shape, (20, 20, 38), 10) & (labels == 0)
    labels[second] = 2
    return labels


def test_two_touching_balls_give_two_labels():
    labels = _two_touching_balls()
    classes = border_core_targets(labels, border_vox=2)
    # the balls touch: one foreground component ...
    import cc3d
    assert cc3d.connected_components(labels > 0, connectivity=6).max() == 1
    instances = border_core_to_instances(classes, **PS3D)
    assert instances.dtype == np.uint32
    assert instances.max() == 2
    for original in (1, 2):
        ids, counts = np.unique(instances[labels == original], return_counts=True)
        # nearest-core growth is a Voronoi split of the contact: a few rim voxels may
        # change sides, never more than 1 %
        assert ids[0] > 0 and counts.max() / counts.sum() > 0.99
    assert np.array_equal(instances > 0, labels > 0)


def test_round_trip_recovers_many_packed_particles():
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((48, 80, 80), mean_diameter_vox=16, seed=2, preset="medium")
    classes = border_core_targets(scan.labels, border_vox=2)
    instances = border_core_to_instances(classes, **PS3D)
    metrics = evaluate_instances(scan.labels, instances)
    assert metrics["f1_50"] > 0.97
    assert metrics["mean_matched_iou"] > 0.9


def test_small_grains_keep_a_core():
    """A 7-voxel grain gets a thinner border, so it still has a core to seed it."""
    shape = (30, 30, 40)
    labels = np.zeros(shape, np.uint32)
    labels[ball(shape, (15, 15, 12), 10)] = 1
    labels[ball(shape, (15, 15, 25.5), 3.5) & (labels == 0)] = 2
    classes = border_core_targets(labels, border_vox=2)
    assert np.any(classes[labels == 2] == 1)
    instances = border_core_to_instances(classes, min_core_voxels=1, min_particle_fraction=0.005)
    assert instances.max() == 2


def test_component_without_core_becomes_a_particle():
    classes = np.zeros((10, 10, 30), np.uint8)
    classes[2:8, 2:8, 2:8] = 2        # a small grain that is all border
    classes[2:8, 2:8, 15:28] = 2
    classes[4:6, 4:6, 18:25] = 1      # a grain with a core
    instances = border_core_to_instances(classes, min_core_voxels=1, min_particle_fraction=0)
    assert instances.max() == 2
    assert len(np.unique(instances[2:8, 2:8, 2:8])) == 1


def test_core_does_not_grow_across_background():
    classes = np.zeros((5, 5, 20), np.uint8)
    classes[:, :, 1:6] = 1
    classes[:, :, 8:12] = 2           # separate component, nearest core is across a gap
    out = border_core_to_instances(classes, min_core_voxels=1, min_particle_fraction=0)
    assert out[2, 2, 3] != out[2, 2, 10]
    assert out[2, 2, 10] > 0


def test_arm_closer_to_a_core_across_a_gap_stays_with_its_own_grain():
    classes = np.zeros((3, 20, 30), np.uint8)
    classes[:, 0:5, 18:27] = 2        # grain B
    classes[:, 1:4, 20:25] = 1        # B's core
    classes[:, 6:16, 1:6] = 2         # grain A: a column ...
    classes[:, 12:15, 2:5] = 1        # ... with its core at the far end
    classes[:, 6, 1:29] = 2           # ... and an arm along B, across a one-voxel gap (row 5)
    out = border_core_to_instances(classes, min_core_voxels=1, min_particle_fraction=0)
    a, b = out[1, 13, 3], out[1, 2, 22]
    assert a > 0 and b > 0 and a != b
    # the arm's far end lies 2 voxels from B's core and ~20 from A's, yet stays A's
    assert set(np.unique(out[:, 6, 1:29])) == {a}
    assert np.array_equal(out > 0, classes > 0)


def test_tiny_cores_are_ignored_and_small_particles_dropped():
    classes = np.zeros((20, 20, 40), np.uint8)
    classes[2:18, 2:18, 2:18] = 2
    classes[5:15, 5:15, 5:15] = 1
    classes[10, 10, 25] = 1           # a 1-voxel core alone: noise
    out = border_core_to_instances(classes, **PS3D)
    assert out.max() == 1             # the speck is far below 0.5 % of the mean volume


def test_empty_input():
    out = border_core_to_instances(np.zeros((4, 4, 4), np.uint8), **PS3D)
    assert out.dtype == np.uint32 and out.max() == 0


def test_specks_without_core_cannot_lower_the_size_floor():
    # Two grains of ~4,000 voxels and 300 isolated 2-voxel specks of foreground
    # (as ring artefacts leave): the specks' own mean would put the 2 % floor at
    # ~1 voxel; the mean of the cored particles keeps it at ~80.
    classes = np.zeros((40, 80, 80), np.uint8)
    classes[5:21, 5:21, 5:21] = 2
    classes[7:19, 7:19, 7:19] = 1
    classes[5:21, 40:56, 40:56] = 2
    classes[7:19, 42:54, 42:54] = 1
    rng = np.random.default_rng(0)
    for z, y, x in zip(rng.integers(25, 39, 300), rng.integers(0, 78, 300), rng.integers(0, 78, 300)):
        classes[z, y, x:x + 2] = 2
    labels = border_core_to_instances(classes, min_core_voxels=8, min_particle_fraction=0.02)
    assert labels.max() == 2
    # a known particle volume sets the floor instead
    assert border_core_to_instances(classes, min_core_voxels=8, min_particle_fraction=0.02,
                                    expected_particle_voxels=50).max() > 2


def test_bad_settings_name_the_argument():
    classes = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="min_particle_fraction"):
        border_core_to_instances(classes, min_core_voxels=8, min_particle_fraction=1.5)
    with pytest.raises(ValueError, match="min_core_voxels"):
        border_core_to_instances(classes, min_core_voxels=-1, min_particle_fraction=0.005)
    with pytest.raises(ValueError, match="spacing"):
        border_core_to_instances(classes, spacing=0, **PS3D)
