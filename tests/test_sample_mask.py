"""Tests of the automatic sample mask: the holder's inside, without its wall and the outside air."""

import hashlib

import numpy as np
import pytest

import ps3d_toolkit.segmentation.sample_mask as sample_mask_module
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.data.synthetic import generate_scan, holder_inside
from ps3d_toolkit.segmentation.sample_mask import SampleMask, sample_mask

SHAPE = (32, 128, 128)


def _radius_map(scan):
    """Distance of every voxel from the cylinder's axis, and the cylinder's radius (voxels)."""
    _, ny, nx = scan.image.shape
    yy, xx = np.ogrid[:ny, :nx]
    r = np.broadcast_to(np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2), scan.image.shape)
    return r, scan.params["cylinder_radius_fraction"] * min(ny, nx)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def _dark_grains(scan):
    """The scan with grey values mirrored inside the holder only: dark grains in a bright matrix, air stays darkest."""
    inside = holder_inside(scan.image.shape, scan.params)
    values = scan.image[inside]
    image = scan.image.copy()
    image[inside] = values.max() + np.percentile(values, 1) - values
    return image


@pytest.fixture(scope="module", params=[0.5, 3.0], ids=["plastic", "glass"])
def tube_scan(request):
    """Grains in epoxy in a 5-voxel tube (darker than the epoxy, or brighter than the grains), air outside."""
    return generate_scan(SHAPE, mean_diameter_vox=16, seed=2, preset="medium", wall_thickness_vox=5,
                         wall_value=request.param, cylinder_radius_fraction=0.42)


@pytest.fixture(scope="module")
def plain_scan():
    return generate_scan(SHAPE, mean_diameter_vox=16, seed=2, preset="hard", cylinder_radius_fraction=0.42)


def test_no_particle_in_the_wall_or_the_air(tube_scan):
    mask = sample_mask(tube_scan.image)
    full = mask.full()
    r, radius = _radius_map(tube_scan)
    wall = (r > radius) & (r <= radius + 5)
    air = r > radius + 5
    assert full.shape == tube_scan.image.shape and full.dtype == bool
    assert not (full & wall).any()
    assert not (full & air).any()
    # particles left out only within 2 voxels of the wall
    particles_out = (tube_scan.labels > 0) & ~full
    assert not (particles_out & (r < radius - 2)).any()
    assert _iou(full, holder_inside(SHAPE, tube_scan.params)) >= 0.95
    assert mask.kind == "cylinder"
    assert 4 <= mask.wall_thickness_vox <= 6.5
    assert mask.fraction == pytest.approx(full.mean())
    assert str(mask).startswith("sample mask: cylinder, wall ")


def test_without_a_wall(plain_scan):
    mask = sample_mask(plain_scan.image)
    full = mask.full()
    r, radius = _radius_map(plain_scan)
    assert mask.kind == "cylinder" and mask.wall_thickness_vox == 0
    assert "no wall" in str(mask)
    assert _iou(full, holder_inside(SHAPE, plain_scan.params)) >= 0.95
    assert not ((plain_scan.labels > 0) & ~full & (r < radius - 2)).any()
    # the air far from the epoxy is out (grains poking out of the epoxy are kept, and the air beside them)
    far_air = (r > radius + 3) & (plain_scan.labels == 0)
    assert (full & far_air).sum() <= 0.01 * full.sum()


def test_dark_grains_in_a_bright_matrix_give_the_same_mask(plain_scan):
    tube = generate_scan(SHAPE, mean_diameter_vox=16, seed=2, preset="medium", wall_thickness_vox=5,
                         wall_value=0.5, cylinder_radius_fraction=0.42)
    for scan in (plain_scan, tube):
        bright = sample_mask(scan.image)
        dark = sample_mask(_dark_grains(scan))
        assert dark.wall_thickness_vox == pytest.approx(bright.wall_thickness_vox, abs=1.0)
        assert _iou(dark.full(), bright.full()) >= 0.97
    r, radius = _radius_map(tube)
    assert not (dark.full() & (r > radius)).any()


def test_box_holder():
    """A square box with a 5-voxel wall darker than the sample's two phases, in air."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    image = np.zeros((24, 96, 96), np.float32)
    image[:, 20:76, 16:80] = 0.6
    inside = np.zeros(image.shape, bool)
    inside[:, 25:71, 21:75] = True
    blobs = ndimage.gaussian_filter(rng.normal(size=image.shape), 3) > 0.02
    image[inside] = np.where(blobs[inside], 2.0, 1.0)
    image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, 0.05, image.shape).astype(np.float32)
    mask = sample_mask(image)
    full = mask.full()
    assert mask.kind == "box" and 4 <= mask.wall_thickness_vox <= 6.5
    assert not (full & ~inside).any()
    assert _iou(full, inside) >= 0.9


def test_a_sample_filling_the_field_gives_everything():
    scan = generate_scan((24, 48, 48), mean_diameter_vox=8, seed=2, cylinder_radius_fraction=0.75)
    for image in (scan.image, scan.image.max() + scan.image.min() - scan.image):
        mask = sample_mask(image)
        assert mask.kind == "field" and mask.fraction == 1.0 and mask.wall_thickness_vox == 0
        assert mask.full().all() and mask.full().shape == image.shape
        assert "fills the field" in str(mask)
    # noise alone has no outside air either
    assert sample_mask(np.random.default_rng(0).normal(size=(16, 32, 32))).kind == "field"


def test_region_is_the_full_mask_of_a_block(tube_scan, monkeypatch):
    # a coarse mask too: 2 x 2 x 2 blocks, kept on the coarse grid
    monkeypatch.setattr(sample_mask_module, "_TARGET_YX", 64)
    monkeypatch.setattr(sample_mask_module, "_TARGET_Z", 16)
    monkeypatch.setattr(sample_mask_module, "_FULL_RES_FOOTPRINT", 0)
    coarse = sample_mask(tube_scan.image)
    assert coarse.mask.shape == (1, 64, 64) and coarse.factor == (32, 2, 2)
    monkeypatch.undo()
    fine = sample_mask(tube_scan.image)
    rng = np.random.default_rng(0)
    for mask in (coarse, fine):
        full = mask.full()
        assert full.shape == SHAPE
        for _ in range(5):
            starts = [int(rng.integers(0, n - 1)) for n in SHAPE]
            block = tuple(slice(s, int(rng.integers(s + 1, n + 1))) for s, n in zip(starts, SHAPE))
            assert np.array_equal(mask.region(block), full[block])
        assert np.array_equal(mask.region((slice(None), slice(5, 9), slice(100, None))), full[:, 5:9, 100:])
    assert _iou(coarse.full(), fine.full()) >= 0.9
    with pytest.raises(InputError, match="slices"):
        fine.region((slice(0, 4), slice(0, 4)))
    with pytest.raises(InputError, match="step 1"):
        fine.region((slice(0, 4, 2), slice(0, 4), slice(0, 4)))


def test_reduced_grid_finds_a_thick_wall(monkeypatch):
    monkeypatch.setattr(sample_mask_module, "_TARGET_YX", 64)
    monkeypatch.setattr(sample_mask_module, "_TARGET_Z", 16)
    scan = generate_scan(SHAPE, mean_diameter_vox=16, seed=2, preset="medium", wall_thickness_vox=8,
                         wall_value=0.5, cylinder_radius_fraction=0.40)
    mask = sample_mask(scan.image)
    full = mask.full()
    r, radius = _radius_map(scan)
    assert mask.wall_thickness_vox > 6
    assert not (full & (r > radius)).any()
    assert _iou(full, holder_inside(SHAPE, scan.params)) >= 0.9


def test_zarr_array_gives_the_same_mask(tube_scan, tmp_path):
    zarr = pytest.importorskip("zarr")
    array = zarr.open_array(str(tmp_path / "scan.zarr"), mode="w", shape=SHAPE, chunks=(8, 64, 64), dtype="float32")
    array[:] = tube_scan.image
    from_zarr = sample_mask(array)
    from_numpy = sample_mask(tube_scan.image)
    assert np.array_equal(from_zarr.mask, from_numpy.mask)
    assert (from_zarr.kind, from_zarr.factor) == (from_numpy.kind, from_numpy.factor)
    assert from_zarr.wall_thickness_vox == pytest.approx(from_numpy.wall_thickness_vox)


def test_non_finite_corners_count_as_outside(tube_scan):
    image = tube_scan.image.copy()
    r, _ = _radius_map(tube_scan)
    image[r > 62] = np.nan
    assert _iou(sample_mask(image).full(), sample_mask(tube_scan.image).full()) >= 0.99


def test_bad_input():
    with pytest.raises(InputError, match="3D"):
        sample_mask(np.zeros((32, 32)))
    with pytest.raises(InputError, match="finite"):
        sample_mask(np.full((8, 16, 16), np.nan))
    with pytest.raises(InputError, match="wall_margin_vox"):
        sample_mask(np.zeros((8, 16, 16)), wall_margin_vox=-1)
    with pytest.raises(InputError, match="spacing"):
        sample_mask(np.zeros((8, 16, 16)), spacing=(0, 1, 1))


def test_sample_mask_is_a_small_dataclass():
    mask = sample_mask(np.zeros((8, 16, 16)))
    assert isinstance(mask, SampleMask)
    assert mask.shape == (8, 16, 16) and mask.full().all()


# --------------------------------------------------------------------------- the phantom's tube option

# sha256 of generate_scan((32, 32, 32), seed=3) before the tube option was added
_SEED3_SHA256 = {
    "image": "10623f0d45d77244ecae110d57f6269efb949e77a7a4afdf55b2bd46232bf14e",
    "labels": "ea87430e778da752856380ea5c79b8ea629c7c96fa76a9deeb72cd8898e02104",
    "phases": "e42facf2908fc530d5a151641182fa9cf08087bd5f753ed66af754215a3be9ba",
}


def test_phantom_without_tube_is_unchanged():
    scan = generate_scan((32, 32, 32), seed=3)
    for name, digest in _SEED3_SHA256.items():
        assert hashlib.sha256(np.ascontiguousarray(getattr(scan, name)).tobytes()).hexdigest() == digest, name
    assert "wall_thickness_vox" not in scan.params


def test_phantom_tube_cuts_grains_and_keeps_the_seed():
    plain = generate_scan((24, 64, 64), mean_diameter_vox=10, seed=4, cylinder_radius_fraction=0.4)
    tube = generate_scan((24, 64, 64), mean_diameter_vox=10, seed=4, cylinder_radius_fraction=0.4,
                         wall_thickness_vox=4, wall_value=2.0)
    inside = holder_inside(tube.image.shape, tube.params)
    assert not (tube.labels[~inside] > 0).any()
    assert (plain.labels[~inside] > 0).any()   # without a tube, grains poke out of the epoxy
    assert tube.params["phase_values"] == plain.params["phase_values"]
    assert tube.params["wall_thickness_vox"] == 4 and tube.params["wall_value"] == 2.0
    # the tube is brighter than the air beyond it and than the epoxy inside it
    r, radius = _radius_map(tube)
    ring = (r > radius + 1) & (r < radius + 3)
    beyond = r > radius + 6
    assert np.median(tube.image[ring]) > np.median(tube.image[beyond])
    assert np.median(tube.image[ring]) > np.median(tube.image[inside & (tube.labels == 0)])
    with pytest.raises(InputError, match="wall_thickness_vox"):
        generate_scan((16, 16, 16), wall_thickness_vox=-1)
    with pytest.raises(InputError, match="wall_value"):
        generate_scan((16, 16, 16), wall_value=0)
