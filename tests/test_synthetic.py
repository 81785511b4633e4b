"""Tests of the synthetic phantom generator: exact labels, contacts, phases, seeding."""

import numpy as np
import pytest

from ps3d_toolkit.data.synthetic import PRESETS, generate_scan, random_params


@pytest.fixture(scope="module")
def hard_scan():
    return generate_scan((64, 96, 96), mean_diameter_vox=16, seed=7, preset="hard")


def _touching_pairs(labels):
    pairs = set()
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)[:-1].ravel()
        b = np.moveaxis(labels, axis, 0)[1:].ravel()
        sel = (a > 0) & (b > 0) & (a != b)
        pairs |= set(zip(np.minimum(a[sel], b[sel]).tolist(), np.maximum(a[sel], b[sel]).tolist()))
    return pairs


def test_types_and_shapes(hard_scan):
    assert hard_scan.image.shape == hard_scan.labels.shape == hard_scan.phases.shape == (64, 96, 96)
    assert hard_scan.image.dtype == np.float32
    assert hard_scan.labels.dtype == np.uint32
    assert hard_scan.phases.dtype == np.uint8


def test_labels_are_consecutive_and_connected(hard_scan):
    import cc3d

    ids = np.unique(hard_scan.labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))
    assert hard_scan.params["n_particles"] == ids.size - 1 > 20
    # each label is a single 6-connected piece
    pieces = cc3d.connected_components(hard_scan.labels, connectivity=6)
    assert pieces.max() == hard_scan.labels.max()


def test_particles_touch(hard_scan):
    assert len(_touching_pairs(hard_scan.labels)) >= 10


def test_phases_present_and_multiphase_grains(hard_scan):
    labels, phases = hard_scan.labels, hard_scan.phases
    assert np.array_equal(phases > 0, labels > 0)
    assert len(np.unique(phases[phases > 0])) >= 2
    pairs = np.unique(np.stack([labels[labels > 0], phases[labels > 0]]), axis=1)
    ids, counts = np.unique(pairs[0], return_counts=True)
    assert (counts > 1).sum() >= 3, "some grains must contain more than one phase"


def test_labels_are_exact_without_scanner_effects():
    """With blur, noise and artefacts off, grey values follow the labels' phases exactly."""
    scan = generate_scan((48, 64, 64), mean_diameter_vox=12, seed=3, preset="easy",
                         blur_sigma=0.0, noise=0.0, cupping=0.0, ring_strength=0.0,
                         crack_fraction=0.0, bubble_fraction=0.0, n_phases=2)
    image = scan.image
    values = scan.params["phase_values"]
    # Every grain voxel is brighter than every non-grain voxel.
    assert image[scan.labels > 0].min() > image[scan.labels == 0].max()
    # Voxels of one phase share one grey value.
    for phase in (1, 2):
        v = image[scan.phases == phase]
        if v.size:
            assert np.ptp(v) < 1e-3 * abs(v.mean())
    assert len(values) == 4  # air, epoxy, 2 phases


def test_seeded_reproducible_and_seed_dependent():
    a = generate_scan((40, 48, 48), 10, seed=11)
    b = generate_scan((40, 48, 48), 10, seed=11)
    c = generate_scan((40, 48, 48), 10, seed=12)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_particle_size_reported_matches_labels(hard_scan):
    counts = np.bincount(hard_scan.labels.ravel())[1:]
    eq = np.cbrt(6 * counts / np.pi).mean() * hard_scan.spacing[0]
    assert hard_scan.particle_size_mm == pytest.approx(eq)
    assert 8 < hard_scan.mean_diameter_vox < 20


def test_epoxy_cylinder_in_air():
    scan = generate_scan((32, 96, 96), 12, seed=5, preset="easy", noise=0.0, blur_sigma=0.0,
                         cupping=0.0, ring_strength=0.0, bubble_fraction=0.0,
                         cylinder_radius_fraction=0.4)
    corner = scan.image[:, :5, :5]
    centre_epoxy = scan.image[scan.labels == 0][scan.image[scan.labels == 0] > corner.max()]
    assert np.ptp(corner) < 1e-3 * max(1.0, abs(corner.mean()))  # air is uniform
    assert centre_epoxy.size > 0  # epoxy is brighter than air
    # no grain lies outside the cylinder
    zz, yy, xx = np.nonzero(scan.labels)
    r = np.hypot(yy - 47.5, xx - 47.5)
    assert r.max() <= 0.4 * 96 + 1


def test_presets_and_errors():
    rng = np.random.default_rng(0)
    for name in PRESETS:
        params = random_params(rng, name)
        assert params["packing"] > 0
    with pytest.raises(ValueError, match="preset"):
        random_params(rng, "impossible")
    with pytest.raises(ValueError, match="unknown phantom parameter"):
        generate_scan((32, 32, 32), 8, wobble=3)
    with pytest.raises(ValueError, match="shape"):
        generate_scan((32, 32), 8)
    with pytest.raises(ValueError, match="mean_diameter_vox"):
        generate_scan((32, 32, 32), -1)


def test_sample_wider_than_the_field_of_view_with_bubbles():
    # A holder wider than the field of view (local tomography): bubble centres may
    # fall outside the volume, which once crashed the generator.
    for seed in (6, 7):  # seed 7 crashed
        scan = generate_scan((32, 64, 64), 16, seed=seed, preset="hard",
                             cylinder_radius_fraction=0.66, bubble_fraction=0.02)
        assert scan.labels.max() > 0
        assert not (scan.image.min() < scan.image[scan.labels == 0].min() - 1)  # no air column
