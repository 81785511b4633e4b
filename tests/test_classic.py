"""Tests for ps3d_toolkit.segmentation.classic (and its grain mask) on phantoms with known particles."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ps3d_toolkit.analysis.evaluate import match_instances
from ps3d_toolkit.segmentation.classic import BASELINES, otsu_watershed, snow
from ps3d_toolkit.segmentation.foreground import grain_mask

SHAPE = (40, 48, 56)
#: Each baseline by name; SNOW needs porespy (the optional extra 'classic').
BASELINE_NAMES = [pytest.param(m, marks=[pytest.mark.needs_porespy] if m == "snow" else []) for m in sorted(BASELINES)]
CENTRES = [(20, 24, 18), (20, 24, 37)]  # 19 voxels apart: radius-10 balls overlap by 2
RADIUS = 10


def two_touching_balls() -> np.ndarray:
    """Ground truth: two radius-10 balls whose overlap goes to the nearer centre."""
    grid = np.indices(SHAPE, dtype=np.float32)
    distances = np.stack([np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre))) for centre in CENTRES])
    labels = (np.argmin(distances, axis=0) + 1).astype(np.uint32)
    labels[distances.min(axis=0) > RADIUS] = 0
    return labels


def render(labels: np.ndarray, grain_values=(1.0, 1.0), *, epoxy: float | None = 0.4,
           noise: float = 0.08, seed: int = 0) -> np.ndarray:
    """Grey image: grains over epoxy in a cylinder standing in air (0), plus noise."""
    image = np.zeros(labels.shape, np.float32)
    if epoxy is not None:
        _, y, x = np.indices(labels.shape)
        inside = (y - SHAPE[1] / 2) ** 2 + (x - SHAPE[2] / 2) ** 2 < (0.48 * SHAPE[2]) ** 2
        image[inside] = epoxy
    for label, value in enumerate(grain_values, start=1):
        image[labels == label] = value
    return image + np.random.default_rng(seed).normal(0, noise, labels.shape).astype(np.float32)


def assert_finds_both_balls(gt, labels):
    assert labels.dtype == np.uint32
    assert labels.shape == gt.shape
    assert labels.max() == 2 and set(np.unique(labels)) == {0, 1, 2}
    matches = match_instances(gt, labels, iou_threshold=0.8)
    assert matches["gt_label"].tolist() == [1, 2], matches


@pytest.mark.parametrize("method", BASELINE_NAMES)
def test_two_touching_balls_in_epoxy_are_separated(method):
    gt = two_touching_balls()
    labels = BASELINES[method](render(gt), spacing=0.02, particle_size_mm=0.4, progress=False)
    assert_finds_both_balls(gt, labels)


@pytest.mark.parametrize("method", BASELINE_NAMES)
def test_particle_size_is_estimated_when_not_given(method):
    gt = two_touching_balls()
    labels = BASELINES[method](render(gt, seed=1), spacing=0.02, progress=False)
    assert_finds_both_balls(gt, labels)


def test_two_classes_for_a_dark_background_without_epoxy():
    gt = two_touching_balls()
    image = render(gt, epoxy=None, noise=0.15, seed=2)
    labels = otsu_watershed(image, spacing=(0.02, 0.02, 0.02), particle_size_mm=0.4, n_classes=2, progress=False)
    assert_finds_both_balls(gt, labels)


@pytest.mark.parametrize("noise", [0.0, 0.02, 0.08])
@pytest.mark.parametrize("grain_values", [(1.0, 1.0), (1.0, 2.0)])
def test_foreground_is_every_phase_above_the_epoxy(grain_values, noise):
    gt = two_touching_balls()
    # Air 0, epoxy 0.4, one grain phase or a dull (1.0) and a bright (2.0) one: the
    # automatic choice between 3 and 4 Otsu classes must cut between epoxy and grain.
    image = render(gt, grain_values=grain_values, noise=noise, seed=3)
    mask = grain_mask(image)
    for label in (1, 2):
        assert np.count_nonzero(mask & (gt == label)) > 0.99 * np.count_nonzero(gt == label)
    dice = 2 * np.count_nonzero(mask & (gt > 0)) / (np.count_nonzero(mask) + np.count_nonzero(gt))
    assert dice > 0.95


@pytest.mark.needs_porespy
def test_two_phase_grains_are_both_found():
    gt = two_touching_balls()
    image = render(gt, grain_values=(1.0, 2.0), noise=0.05, seed=3)
    assert_finds_both_balls(gt, snow(image, spacing=0.02, particle_size_mm=0.4, progress=False))
    assert_finds_both_balls(gt, otsu_watershed(image, spacing=0.02, particle_size_mm=0.4, n_classes=4, progress=False))


def test_small_debris_is_dropped():
    gt = two_touching_balls()
    image = render(gt, noise=0.02)
    # A 5^3 speck survives the opening and seeds a particle of ~2 % of the mean volume.
    image[3:8, 3:8, 25:30] = 1.0
    kept = otsu_watershed(image, spacing=0.02, particle_size_mm=0.4, min_particle_fraction=0.0, progress=False)
    dropped = otsu_watershed(image, spacing=0.02, particle_size_mm=0.4, min_particle_fraction=0.05, progress=False)
    assert kept.max() == 3
    assert dropped.max() == 2


@pytest.mark.needs_porespy
def test_blank_image_gives_no_particles():
    for method in BASELINES.values():
        labels = method(np.zeros((16, 16, 16), np.float32), spacing=0.1, progress=False)
        assert labels.dtype == np.uint32 and labels.shape == (16, 16, 16)
        assert not labels.any()


@pytest.mark.parametrize("method", BASELINE_NAMES)
def test_validation_errors_name_the_argument(method):
    segment = BASELINES[method]
    image = np.zeros((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="image"):
        segment(image[0], spacing=0.1, progress=False)
    with pytest.raises(ValueError, match="spacing"):
        segment(image, spacing=(0.1, 0, 0.1), progress=False)
    with pytest.raises(ValueError, match="particle_size_mm"):
        segment(image, spacing=0.1, particle_size_mm=-1, progress=False)
    with pytest.raises(ValueError, match="min_particle_fraction"):
        segment(image, spacing=0.1, min_particle_fraction=1.5, progress=False)
    with pytest.raises(ValueError, match="n_classes"):
        segment(image, spacing=0.1, n_classes=1, progress=False)
    with pytest.raises(TypeError, match="image"):
        segment(np.full((8, 8, 8), "a"), spacing=0.1, progress=False)


@pytest.mark.needs_porespy
def test_snow_rejects_a_bad_r_max():
    with pytest.raises(ValueError, match="r_max"):
        snow(np.zeros((8, 8, 8), np.float32), spacing=0.1, r_max=0, progress=False)


def test_each_public_function_runs_its_method_object_with_its_defaults():
    from ps3d_toolkit.segmentation import get_method

    assert get_method("otsu-watershed").defaults["min_distance_fraction"] == 0.6
    assert get_method("snow").defaults["sigma"] == 0.4
    with pytest.raises(TypeError, match="unexpected option"):
        otsu_watershed(np.zeros((8, 8, 8), np.float32), spacing=0.1, sigma=1.0, progress=False)
    with pytest.raises(ValueError, match="method must be one of"):
        get_method("watershed")


@pytest.fixture
def without_porespy(monkeypatch):
    """As if the optional extra 'classic' were not installed: ``import porespy`` fails."""
    monkeypatch.setitem(sys.modules, "porespy", None)


def test_snow_without_porespy_names_the_extra_and_the_other_methods_still_run(without_porespy, two_balls):
    from ps3d_toolkit.core.errors import MissingDependencyError
    from ps3d_toolkit.segmentation import segment
    from ps3d_toolkit.segmentation.classic import snow_available
    from ps3d_toolkit.viz.tuner.parameters import available_methods

    image, _ = two_balls
    assert not snow_available() and "snow" not in available_methods()
    for run in (lambda: segment(image, spacing=0.02, particle_size_mm=0.2, method="snow", progress=False),
                lambda: segment(image, spacing=0.02, particle_size_mm=0.2, method="snow", chunk_size=16,
                                progress=False),
                lambda: snow(image, spacing=0.02, particle_size_mm=0.2, progress=False)):
        with pytest.raises(MissingDependencyError, match=r"porespy.*ps3d_toolkit\[classic\]"):
            run()
    labels = segment(image, spacing=0.02, particle_size_mm=0.2, method="otsu-watershed", progress=False)
    assert len(np.unique(labels)) == 3


def test_cli_snow_without_porespy_is_one_line_naming_the_extra(without_porespy, tmp_path, capsys):
    from ps3d_toolkit.cli import main
    from ps3d_toolkit.io import save_scan

    save_scan(np.zeros((16, 16, 16), np.float32), tmp_path / "scan.npy", spacing=0.1)
    code = main(["segment", str(tmp_path / "scan.npy"), "-o", str(tmp_path / "labels.tif"), "--method", "snow",
                 "--particle-size", "0.5", "-q"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "classic" in err, err
    assert not (tmp_path / "labels.tif").exists()


def test_every_module_imports_without_porespy():
    import pkgutil

    import ps3d_toolkit

    names = [m.name for m in pkgutil.walk_packages(ps3d_toolkit.__path__, "ps3d_toolkit.")]
    code = ("import importlib, sys\nsys.modules['porespy'] = None\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\nprint(len({names!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == len(names) > 40
