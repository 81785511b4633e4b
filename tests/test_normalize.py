"""Tests of intensity and particle-size normalisation (the network's grid)."""

import numpy as np
import pytest

from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.segmentation.normalize import (normalize_intensity, resample_image, resample_labels,
                                                 resample_to_shape, to_network_grid, zoom_factors)


def test_normalize_intensity_is_scale_free():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 20, 20)).astype(np.float32)
    a = normalize_intensity(image, intensity_percentiles=(0.5, 99.9))
    b = normalize_intensity(image * 300 + 7000, intensity_percentiles=(0.5, 99.9))
    assert np.allclose(a, b, atol=1e-4)
    assert np.percentile(a, 0.5) == pytest.approx(0, abs=0.02)
    assert np.percentile(a, 99.9) == pytest.approx(1, abs=0.02)


def test_zoom_factors():
    assert zoom_factors(0.01, 0.24, 18) == pytest.approx((0.75, 0.75, 0.75))
    # anisotropic voxels become isotropic: z voxels are twice as long
    z, y, x = zoom_factors((0.02, 0.01, 0.01), 0.24, 18)
    assert z == pytest.approx(2 * y) and y == pytest.approx(x)
    with pytest.raises(ValueError, match="particle_size_mm"):
        zoom_factors(0.01, 0, 18)
    with pytest.raises(ValueError, match="spacing"):
        zoom_factors((0.01, -1, 0.01), 0.2, 18)


def test_size_normalisation_round_trip():
    """Down to the model's scale and back: particles keep their shape."""
    scan = generate_scan((48, 72, 72), mean_diameter_vox=24, seed=1, preset="easy")
    zoom = zoom_factors(scan.spacing, scan.particle_size_mm, 18)
    small = resample_labels(scan.labels, zoom)
    assert small.shape == tuple(round(n * z) for n, z in zip(scan.labels.shape, zoom))
    # resampled labels keep their ids (exact nearest neighbour)
    assert set(np.unique(small)) <= set(np.unique(scan.labels))
    # going back via one-hot probabilities (as inference does) recovers the labels
    one_hot = np.stack([(small == 0), (small > 0)]).astype(np.float32)
    back = resample_to_shape(one_hot, scan.labels.shape)
    foreground = back.argmax(0) == 1
    agreement = np.mean(foreground == (scan.labels > 0))
    assert agreement > 0.97
    image_small = resample_image(scan.image, zoom)
    assert image_small.shape == small.shape


def test_resample_labels_keeps_large_ids():
    labels = np.full((4, 4, 4), 2**31 + 5, dtype=np.uint32)
    out = resample_labels(labels, (2, 2, 2))
    assert out.shape == (8, 8, 8) and np.all(out == 2**31 + 5)


def test_normalize_intensity_maps_the_percentiles_to_0_and_1():
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    out = normalize_intensity(image, intensity_percentiles=(10, 90))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.percentile(out, 10) == pytest.approx(0, abs=1e-5)
    assert np.percentile(out, 90) == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match="intensity_percentiles"):
        normalize_intensity(image, intensity_percentiles=(90, 10))


def test_non_finite_grey_values_are_refused_not_spread():
    # one NaN would make both percentiles, and so every normalised value, NaN
    image = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    image[5, 5, 5] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite grey value"):
        normalize_intensity(image, intensity_percentiles=(0.5, 99.9))
    with pytest.raises(ValueError, match="1 NaN or infinite grey value"):
        to_network_grid(image, spacing=1.0, particle_size_mm=5, network_diameter_vox=5, intensity_percentiles=(0.5, 99.9))


def test_to_network_grid_draws_the_mean_particle_at_the_given_diameter():
    scan = generate_scan((40, 48, 48), mean_diameter_vox=12, seed=3, preset="easy",
                         spacing=(0.02, 0.01, 0.01))
    grid, zoom = to_network_grid(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                                 network_diameter_vox=6, intensity_percentiles=(0.5, 99.9))
    # 6 of the finest voxels' worth per particle: half the x/y resolution, z kept
    assert zoom == pytest.approx(tuple(s * 6 / scan.particle_size_mm for s in scan.spacing))
    assert grid.shape == tuple(round(n * z) for n, z in zip(scan.image.shape, zoom))
    assert grid.dtype == np.float32
    assert np.percentile(grid, 99.9) == pytest.approx(1, abs=0.1)
    with pytest.raises(ValueError, match="network_diameter_vox"):
        to_network_grid(scan.image, spacing=scan.spacing, particle_size_mm=0.1, network_diameter_vox=0,
                        intensity_percentiles=(0.5, 99.9))
