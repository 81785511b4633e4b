"""The label-free quality estimate: its signals on shapes with known answers, its report, its calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ball
from ps3d_toolkit.core.errors import CorruptDataError, InputError, MissingInputError
from ps3d_toolkit.segmentation.quality import (
    VARIANTS,
    QualityReport,
    estimate_quality,
    load_calibration,
    measure_signals,
    quality_features,
)
from ps3d_toolkit.segmentation.quality.calibration import apply_map
from ps3d_toolkit.segmentation.quality.signals import best_iou, core_counts, particle_ids, solidity


def test_best_iou_of_known_boxes():
    a = np.zeros((10, 10, 10), np.uint32)
    b = np.zeros_like(a)
    a[0:4, 0:4, 0:4] = 1  # 64 voxels
    a[6:9, 6:9, 6:9] = 2  # 27 voxels, no partner
    b[0:4, 0:4, 2:6] = 5  # half of particle 1 overlaps: IoU 32 / 96
    assert best_iou(a, b, np.array([1, 2])) == pytest.approx([32 / 96, 0.0])


def test_two_merged_balls_have_two_cores_and_a_lower_solidity():
    shape = (24, 24, 40)
    merged = (ball(shape, (12, 12, 12), 7) | ball(shape, (12, 12, 25), 7)).astype(np.uint32)
    single = ball(shape, (12, 12, 20), 8).astype(np.uint32)
    ids = np.array([1])
    assert core_counts(merged, ids, (1.0, 1.0, 1.0)).tolist() == [2]
    assert core_counts(single, ids, (1.0, 1.0, 1.0)).tolist() == [1]
    assert solidity(single, ids)[0] > 0.9
    assert solidity(merged, ids)[0] < solidity(single, ids)[0] - 0.03


def test_every_variant_maps_its_labels_back_exactly():
    labels = np.arange(4 * 5 * 6, dtype=np.uint32).reshape(4, 5, 6)
    for variant in VARIANTS:
        assert np.array_equal(variant.back(variant.orient(labels)), labels)
        moved, spacing = variant.forward(labels.astype(np.float32), (1.0, 2.0, 3.0), 0.0, 0)
        assert moved.shape == variant.orient(labels).shape
        assert spacing == ((1.0, 3.0, 2.0) if variant.turn else (1.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def small_scan():
    from ps3d_toolkit.data.synthetic import generate_scan

    # touching grains: passed 2x too large, the model merges them (true F1@0.5 0.91 at the size, 0.66 at 2x)
    return generate_scan((56, 64, 64), 12, seed=5, preset="medium")


def test_report_has_an_estimate_and_a_confidence_per_particle(small_scan):
    from ps3d_toolkit.segmentation import segment

    labels = segment(small_scan.image, spacing=small_scan.spacing, particle_size_mm=small_scan.particle_size_mm,
                     method="otsu-watershed", progress=False)
    report = estimate_quality(small_scan.image, labels, spacing=small_scan.spacing,
                              particle_size_mm=small_scan.particle_size_mm, method="otsu-watershed", variants=1)
    assert isinstance(report, QualityReport)
    assert 0.0 <= report.estimated_f1 <= 1.0
    ids = np.unique(labels[labels > 0])
    assert report.confidence.index.tolist() == ids.tolist()
    assert report.confidence.between(0, 1).all()
    assert report.n_variants == 1 and report.particles.index.equals(report.confidence.index)
    record = json.loads(json.dumps(report.record()))
    assert record["estimated_f1"] == pytest.approx(report.estimated_f1, abs=1e-4)
    assert record["n_particles"] == ids.size and record["variants"] == [VARIANTS[0].name]
    assert "stable_share" in record["signals"] and "benchmarks/quality.py" in record["calibration"]


@pytest.mark.slow
def test_a_particle_size_passed_2x_too_large_reads_as_worse(small_scan):
    from ps3d_toolkit.segmentation import segment

    estimates = {}
    for factor in (1.0, 2.0):
        size = small_scan.particle_size_mm * factor
        labels = segment(small_scan.image, spacing=small_scan.spacing, particle_size_mm=size, method="model",
                         progress=False)
        estimates[factor] = estimate_quality(small_scan.image, labels, spacing=small_scan.spacing,
                                             particle_size_mm=size, method="model")
    assert estimates[2.0].estimated_f1 < estimates[1.0].estimated_f1 - 0.05
    assert any("particle size looks wrong" in w for w in estimates[2.0].warnings)
    assert not any("particle size" in w for w in estimates[1.0].warnings)
    assert estimates[2.0].confidence.mean() < estimates[1.0].confidence.mean()


def test_the_shipped_calibration_loads_and_records_its_command():
    calibration = load_calibration()
    assert "benchmarks/quality.py" in calibration["command"]
    assert 0 <= calibration["default_variants"] <= len(VARIANTS)
    assert set(calibration["maps"]) == {str(n) for n in range(len(VARIANTS) + 1)}
    for n, maps in calibration["maps"].items():
        assert maps["particle"]["link"] == "logistic" and maps["scan"]["link"] == "identity"
        if n == "0":
            assert not {"stable_fraction", "mean_iou"} & set(maps["particle"]["coef"])


def test_every_calibrated_feature_is_measured(two_balls):
    image, labels = two_balls
    measured = measure_signals(image, labels, spacing=1.0, particle_size_mm=10.0, variants=0)
    measured.variant_iou = np.ones((2, len(VARIANTS)))  # stands in for the variants' runs
    for n, maps in load_calibration()["maps"].items():
        measured_n = measured.__class__(**{**measured.__dict__, "variant_iou": measured.variant_iou[:, :int(n)]})
        particle, scan = quality_features(measured_n, maps["particle"])
        assert set(maps["particle"]["coef"]) <= set(particle)
        assert set(maps["scan"]["coef"]) <= set(scan)


def test_size_signals_of_two_balls(two_balls):
    image, labels = two_balls
    measured = measure_signals(image, labels, spacing=1.0, particle_size_mm=20.0, variants=0)
    # two balls of radius 5: equivalent diameter ~10 voxels against the 20 given
    assert measured.scan["found_over_given"] == pytest.approx(0.5, abs=0.05)
    assert measured.scan["volume_agreement"] == pytest.approx(1.0, abs=0.15)
    assert particle_ids(labels)[0].tolist() == [1, 2]


def test_bad_arguments_are_refused(two_balls, tmp_path):
    image, labels = two_balls
    with pytest.raises(InputError, match="variants"):
        estimate_quality(image, labels, spacing=1.0, particle_size_mm=10.0, variants=len(VARIANTS) + 1)
    with pytest.raises(InputError, match="labels"):
        estimate_quality(image, labels[:-1], spacing=1.0, particle_size_mm=10.0, variants=0)
    with pytest.raises(InputError, match="mask"):
        estimate_quality(image, labels, spacing=1.0, particle_size_mm=10.0, variants=0, mask="auto")
    with pytest.raises(MissingInputError, match="benchmarks/quality.py"):
        estimate_quality(image, labels, spacing=1.0, variants=0, calibration=tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CorruptDataError):
        load_calibration(tmp_path / "bad.json")


def test_a_map_clips_to_the_unit_interval():
    spec = {"link": "identity", "intercept": 0.5, "coef": {"a": 1.0}, "center": {"a": 0.0}, "scale": {"a": 1.0}}
    assert apply_map(spec, {"a": np.array([-5.0, 0.2, 5.0, np.nan])}).tolist() == [0.0, 0.7, 1.0, 0.5]
    with pytest.raises(CorruptDataError, match="unknown features"):
        apply_map(spec, {"b": 1.0})


def test_labels_without_particles_read_as_nothing_found(two_balls):
    image, labels = two_balls
    report = estimate_quality(image, np.zeros_like(labels), spacing=1.0, particle_size_mm=10.0, variants=0)
    assert report.estimated_f1 == 0.0 and report.confidence.empty
    assert report.warnings == ["no particles to assess"]
    json.dumps(report.record())


def test_darker_grains_read_as_the_same_scan_turned_round():
    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation import segment

    scan = generate_scan((40, 48, 48), 10, seed=3, preset="easy")
    reports = []
    for image, grains in ((scan.image, "brighter"), (-scan.image, "darker")):
        options = dict(spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, method="otsu-watershed",
                       grains=grains)
        labels = segment(image, progress=False, **options)
        reports.append(estimate_quality(image, labels, variants=0, **options))
    assert reports[0].signals["volume_agreement"] == pytest.approx(reports[1].signals["volume_agreement"])
    assert reports[0].estimated_f1 == pytest.approx(reports[1].estimated_f1, abs=1e-6)
