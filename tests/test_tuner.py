"""The segmentation tuner (ps3d_toolkit.viz.tuner): parameters, preview runs, widget."""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest

from conftest import ball
from ps3d_toolkit.viz.tuner import PARAMETERS, SegmentationTuner, available_methods, preview_region


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


def test_tuner_settings_and_code_follow_the_sliders(grains_in_epoxy, monkeypatch):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=(0.02, 0.01, 0.01), particle_size_mm=0.11, method="otsu-watershed")
    tuner.params["min_distance_fraction"] = 0.8     # a slider moved with auto-update off
    settings = tuner.settings()
    assert settings == {"method": "otsu-watershed", "particle_size_mm": 0.11, "grains": "brighter",
                        "min_particle_fraction": 0.005, "n_classes": None, "min_distance_fraction": 0.8}
    code = tuner.settings_code()
    assert "segment(scan.image, spacing=scan.spacing, method='otsu-watershed'" in code
    assert "min_distance_fraction=0.8" in code
    assert "ps3d segment SCAN --spacing 0.02,0.01,0.01 --particle-size 0.11 --method otsu-watershed" in code
    # the Python snippet runs and hands segment() exactly the settings
    seen = {}
    import ps3d_toolkit.segmentation

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", lambda image, **kw: seen.update(kw) or "labels")
    scan = types.SimpleNamespace(image=image, spacing=(0.02, 0.01, 0.01))
    namespace = {"scan": scan}
    exec(code, namespace)
    assert namespace["labels"] == "labels"
    assert seen == {"spacing": (0.02, 0.01, 0.01), **settings}


@pytest.mark.needs_porespy
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


def test_tuner_widget_slider_runs_the_preview(grains_in_epoxy, html_text):
    image, truth = grains_in_epoxy
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, truth=truth, method="otsu-watershed")
    tuner.widget
    slider = next(c for c in tuner._options_box.children if c.description == "min_distance_fraction")
    slider.value = 0.9                                  # what dragging the slider does
    assert tuner.params["min_distance_fraction"] == pytest.approx(0.9)
    assert tuner.result is not None and tuner.result["n_particles"] == 8
    text, bold = html_text(tuner._summary.value)
    shape = "x".join(map(str, tuner.crop.shape))
    assert text.startswith(f"8 particles in the {shape} preview (8 not cut by its edge)")
    assert bold == ["8", "1.000"]                       # the count and F1@0.5
    assert "min_distance_fraction=0.9" in tuner._code.value
    assert len(tuner._figure.data[1].x) == 8            # the size histogram shows them
    tuner.set_preview_index(0)
    assert tuner.preview_rgb().shape == (64, 64, 3)


@pytest.mark.needs_porespy
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


def test_tuner_model_options_reach_the_model(grains_in_epoxy, untrained_weights, monkeypatch):
    import ps3d_toolkit.segmentation

    image, truth = grains_in_epoxy
    seen = []
    original = ps3d_toolkit.segmentation.segment

    def spy(image, **options):
        seen.append(options)
        return original(image, **options)

    monkeypatch.setattr(ps3d_toolkit.segmentation, "segment", spy)
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="model", weights=untrained_weights)
    assert "model" in tuner.methods
    result = tuner.update(min_core_voxels=20, overlap=0.1, min_particle_fraction=0.01)
    assert result["labels"].shape == tuner.crop.shape and result["labels"].dtype == np.uint32
    assert seen[-1]["min_core_voxels"] == 20 and seen[-1]["overlap"] == 0.1
    assert seen[-1]["weights"] == str(untrained_weights) and seen[-1]["tta"] is False
    tuner.update(inference_diameter_vox=24, core_threshold=0.6)
    assert seen[-1]["inference_diameter_vox"] == 24 and seen[-1]["core_threshold"] == 0.6
    code = tuner.settings_code()
    assert "inference_diameter_vox=24" in code and "core_threshold=0.6" in code
    assert f"weights={str(untrained_weights)!r}" in code
    with pytest.raises(ValueError, match="not a parameter"):
        tuner.update(target_diameter_vox=24)             # the old name is gone


def test_tuner_defaults_are_the_segmenters_own():
    from ps3d_toolkit.segmentation import get_method, segment

    common = inspect.signature(segment).parameters
    for method in ("otsu-watershed", "snow", "model"):
        defaults = get_method(method).defaults
        for name, spec in PARAMETERS[method].items():
            if (method, name) != ("model", "tta"):     # the tuner starts without mirroring (8x slower)
                assert spec.default == (defaults[name] if name in defaults else common[name].default), (method, name)
            if spec.kind == "choice":
                assert spec.default in spec.low
            elif spec.kind in ("log", "float", "int"):
                assert spec.low <= spec.default <= spec.high, (method, name)
    assert PARAMETERS["model"]["tta"].default is False


def test_tuner_auto_choices_show_the_weights_own_values(grains_in_epoxy, untrained_weights, tmp_path):
    from ps3d_toolkit.segmentation.model.network import load_weights, save_weights

    image, _ = grains_in_epoxy
    model, config, _ = load_weights(untrained_weights)
    chosen = save_weights(model, tmp_path / "chosen.pt", {**config, "inference_diameter_vox": 22.0,
                                                          "core_threshold": 0.85})
    tuner = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="model", weights=chosen)
    tuner.widget
    controls = {c.description: c for c in tuner._options_box.children}
    assert controls["inference_diameter_vox"].label == "auto (22)"
    assert controls["core_threshold"].label == "auto (0.85)"
    # weights that never chose a core threshold: "auto" names no number
    plain = SegmentationTuner(image, spacing=0.01, particle_size_mm=0.11, method="model", weights=untrained_weights)
    plain.widget
    controls = {c.description: c for c in plain._options_box.children}
    assert controls["core_threshold"].label == "auto"
    assert controls["inference_diameter_vox"].label == f"auto ({config['train_diameter_vox']:g})"


def test_tuner_grain_polarity_finds_dark_grains_and_reaches_the_code(grains_in_epoxy):
    image, truth = grains_in_epoxy
    dark = image.max() + image.min() - image            # dark balls in a bright matrix (bright air too)
    tuner = SegmentationTuner(dark, spacing=0.01, particle_size_mm=0.11, truth=truth, method="otsu-watershed",
                              region=(slice(None),) * 3)
    assert tuner.params["grains"] == "brighter"
    assert tuner.update()["scores"]["f1_50"] < 0.5       # the bright matrix is taken for the grains
    result = tuner.update(grains="darker")
    assert result["n_particles"] == 8 and result["scores"]["f1_50"] == pytest.approx(1.0)
    code = tuner.settings_code()
    assert "grains='darker'" in code and "--grains darker" in code
    with pytest.raises(ValueError, match="grains must be one of"):
        tuner.update(grains="dark")
