"""grain_polarity: bright or dark grains, decided from the phases' geometry, not their volume fractions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.data.synthetic import _CylinderGeometry, generate_scan
from ps3d_toolkit.segmentation import polarity
from ps3d_toolkit.segmentation.polarity import MIN_SCORE, PolarityDecision, grain_polarity

SHAPE = (64, 64, 64)


def _inside(scan) -> np.ndarray:
    """The epoxy cylinder of a phantom (radial distance <= radius), as a 3D mask."""
    cylinder = _CylinderGeometry(scan.labels.shape, scan.params["cylinder_radius_fraction"])
    return np.broadcast_to(cylinder.radial_distance() <= cylinder.radius, scan.labels.shape)


def _render(grains, inside, grain_value, matrix_value, *, air=0.0, blur=0.8, noise=0.08, seed=0):
    """Grey image: grains and matrix inside the sample, ``air`` outside; blur and Gaussian noise."""
    rng = np.random.default_rng(seed)
    image = np.where(inside, np.where(grains, grain_value, matrix_value), air).astype(np.float32)
    image = ndimage.gaussian_filter(image, blur)
    return image + rng.normal(0.0, noise, image.shape).astype(np.float32)


@pytest.fixture(scope="module")
def dilute():
    """Grains of ~12 voxels filling ~10 % of the cylinder."""
    scan = generate_scan(SHAPE, 12, 3, preset="easy", packing=0.1)
    return scan.labels > 0, _inside(scan)


@pytest.fixture(scope="module")
def dense():
    """Grains grown into their matrix until they fill ~60 % of the cylinder, 1-voxel gaps between them."""
    from skimage.segmentation import expand_labels, find_boundaries

    scan = generate_scan(SHAPE, 12, 4, preset="medium", packing=0.6)
    inside = _inside(scan)
    labels = np.where(inside, expand_labels(scan.labels, 3), 0)
    return (labels > 0) & ~find_boundaries(labels, mode="inner"), inside


@pytest.mark.parametrize("packing", ["dilute", "dense"])
@pytest.mark.parametrize("grains", ["brighter", "darker"])
@pytest.mark.parametrize("with_mask", [True, False])
def test_either_polarity_at_any_packing(packing, grains, with_mask, request):
    phase, inside = request.getfixturevalue(packing)
    share = phase[inside].mean()
    assert share < 0.15 if packing == "dilute" else share > 0.5  # the phantom is what it claims
    values = (1.0, 0.45) if grains == "brighter" else (0.45, 1.0)  # concrete-like: dark grains, bright cement
    decision = grain_polarity(_render(phase, inside, *values), mask=inside if with_mask else None)
    assert isinstance(decision, PolarityDecision)
    assert decision.grains == grains
    assert abs(decision.score) >= MIN_SCORE
    assert np.sign(decision.score) == (1 if grains == "brighter" else -1)
    assert decision.reason.startswith(f"grains are {grains}")
    assert f"{decision.score:+.2f}" in decision.reason


@pytest.mark.parametrize("grains", ["brighter", "darker"])
def test_a_crop_without_air(dense, grains):
    phase, inside = dense
    values = (1.0, 0.45) if grains == "brighter" else (0.45, 1.0)
    crop = np.ascontiguousarray(_render(phase, inside, *values)[:, 16:48, 16:48])  # all sample, no air
    assert grain_polarity(crop).grains == grains


@pytest.mark.parametrize("with_mask", [True, False])
def test_flaky_xray_phantom_and_its_inversion(with_mask):
    scan = generate_scan(SHAPE, 14, 5, preset="hard", packing=0.5)
    mask = _inside(scan) if with_mask else None
    assert grain_polarity(scan.image, mask=mask).grains == "brighter"
    inverted = scan.image.max() + scan.image.min() - scan.image  # air becomes the brightest
    assert grain_polarity(inverted, mask=mask).grains == "darker"


def test_pores_are_darker(dilute):
    phase, inside = dilute
    # air-filled pores: the grey value of the air outside
    assert grain_polarity(_render(phase, inside, 0.0, 1.0)).grains == "darker"


def test_the_mask_keeps_the_outside_from_deciding(dilute):
    phase, inside = dilute
    image = _render(phase, inside, 0.45, 1.0)
    # outside the sample: a holder full of bright beads in a grey wall, the opposite polarity
    beads = np.zeros(SHAPE, bool)
    beads[3::8, 3::8, 3::8] = True
    beads = ndimage.binary_dilation(beads, iterations=3) & ~inside
    image[~inside] = 0.3
    image[beads] = 1.5
    assert grain_polarity(image, mask=~inside).grains == "brighter"  # the holder alone decides the other way
    assert grain_polarity(image, mask=inside).grains == "darker"


@pytest.fixture(scope="module")
def sample():
    from ps3d_toolkit.data.sample import SAMPLE_PARAMS, load_sample, sample_path

    scan, _ = load_sample()
    folder = sample_path()
    if folder is None:
        fraction = generate_scan(**SAMPLE_PARAMS).params["cylinder_radius_fraction"]  # a wheel: regenerate
    else:
        fraction = json.loads((folder / "metadata.json").read_text())["generator_params"]["cylinder_radius_fraction"]
    cylinder = _CylinderGeometry(scan.image.shape, fraction)
    return scan.image, np.broadcast_to(cylinder.radial_distance() <= cylinder.radius, scan.image.shape)


@pytest.mark.parametrize("with_mask", [True, False])
def test_bundled_sample_and_inverted(sample, with_mask):
    image, inside = sample
    mask = inside if with_mask else None
    original = grain_polarity(image, mask=mask)
    assert original.grains == "brighter"
    inverted = (int(image.max()) + int(image.min()) - image.astype(np.int64)).astype(image.dtype)
    flipped = grain_polarity(inverted, mask=mask)
    assert flipped.grains == "darker"
    assert flipped.score < -MIN_SCORE < MIN_SCORE < original.score


def test_lazy_zarr_input_gives_the_same_decision(dilute, tmp_path):
    zarr = pytest.importorskip("zarr")
    phase, inside = dilute
    image = _render(phase, inside, 0.45, 1.0)
    stored = zarr.open_array(str(tmp_path / "scan.zarr"), mode="w", shape=image.shape, chunks=(16, 32, 32),
                             dtype=image.dtype)
    stored[:] = image
    mask = zarr.open_array(str(tmp_path / "mask.zarr"), mode="w", shape=image.shape, chunks=(16, 32, 32),
                           dtype=bool)
    mask[:] = inside
    assert grain_polarity(stored) == grain_polarity(image)
    assert grain_polarity(stored, mask=mask) == grain_polarity(image, mask=inside)


class _Recording:
    """A lazy array that records the index of every read."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.array[index]


@pytest.mark.parametrize("particle_size_vox", [None, 12.0])
def test_a_scan_over_budget_is_read_as_a_central_crop_that_keeps_grains_wide(dense, monkeypatch,
                                                                             particle_size_vox):
    phase, inside = dense
    image = _render(phase, inside, 0.45, 1.0)
    # a budget that a stride of 2 would meet, but 12-voxel grains would be 6 voxels wide there
    monkeypatch.setattr(polarity, "_MAX_VOXELS", 120_000)
    lazy = _Recording(image)
    decision = grain_polarity(lazy, particle_size_vox=particle_size_vox)
    assert decision.grains == "darker"
    last = lazy.reads[-1]
    assert all(s.step == 1 for s in last)
    spans = [s.stop - s.start for s in last]
    assert np.prod(spans) <= 120_000
    assert all(abs(s.start - (n - span) // 2) <= 1 for s, n, span in zip(last, SHAPE, spans))


@pytest.mark.parametrize("case", ["noise", "constant", "two layers", "eight layers"])
@pytest.mark.parametrize("with_mask", [True, False])
def test_refuses_what_is_not_grains_in_a_matrix(case, with_mask, dilute):
    _, inside = dilute
    rng = np.random.default_rng(7)
    z = np.arange(SHAPE[0])[:, None, None]
    if case == "noise":
        image = rng.normal(100.0, 10.0, SHAPE)
    elif case == "constant":
        image = np.full(SHAPE, 3.0)
    else:
        layers = (z >= SHAPE[0] // 2) if case == "two layers" else (z // 8 % 2 == 1)
        image = _render(np.broadcast_to(layers, SHAPE), np.ones(SHAPE, bool), 1.0, 0.45, noise=0.1)
    with pytest.raises(InputError, match="pass grains='brighter' or grains='darker'"):
        grain_polarity(image.astype(np.float32), mask=inside if with_mask else None)


def test_bad_arguments_are_named():
    with pytest.raises(InputError, match="image"):
        grain_polarity(np.zeros((16, 16)))
    with pytest.raises(InputError, match="mask"):
        grain_polarity(np.zeros((16, 16, 16)), mask=np.ones((16, 16, 8), bool))
    with pytest.raises(InputError, match="particle_size_vox"):
        grain_polarity(np.zeros((16, 16, 16)), particle_size_vox=-3)


def test_decision_is_frozen():
    decision = PolarityDecision("darker", -0.4, "grains are darker")
    with pytest.raises(AttributeError):
        decision.grains = "brighter"
    assert str(decision) == "grains are darker"
