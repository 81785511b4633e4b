"""The label-free quality estimate where users see it: segment(quality=), ps3d segment --quality, the
measurement's confidence column, the report's trust section and --min-confidence (issue 23)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error

from ps3d_toolkit import generate_scan, measure, segment
from ps3d_toolkit.analysis.stats import percentiles, select_particles
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.report import build_report
from ps3d_toolkit.segmentation.assess import SampledQualityReport, read_confidence, save_confidence
from ps3d_toolkit.segmentation.quality import QualityReport

SPACING = 0.01
SIZE_MM = 0.12  # the scan's mean diameter: 12 voxels
# one rescan stand-in keeps these tests fast; the estimate's own tests cover the choice of variants
QUICK = {"variants": 1}


@pytest.fixture(scope="module")
def scan():
    return generate_scan((48, 48, 48), mean_diameter_vox=12, seed=3, spacing=SPACING)


def _segment(image, **options):
    return segment(image, spacing=SPACING, method="otsu-watershed", progress=False, **options)


def test_segment_returns_labels_alone_without_quality(scan):
    labels = _segment(scan.image, particle_size_mm=SIZE_MM)
    assert isinstance(labels, np.ndarray) and labels.dtype == np.uint32


def test_segment_quality_in_memory_gives_the_record_and_the_confidence_column(scan):
    labels, report = _segment(scan.image, particle_size_mm=SIZE_MM, quality=QUICK)
    assert isinstance(report, QualityReport) and not isinstance(report, SampledQualityReport)
    np.testing.assert_array_equal(labels, _segment(scan.image, particle_size_mm=SIZE_MM))
    record = json.loads(json.dumps(report.record()))  # JSON-ready
    assert 0 <= record["estimated_f1"] <= 1 and record["n_variants"] == 1
    assert record["n_particles"] == len(np.unique(labels)) - 1
    table = measure(labels, spacing=SPACING, confidence=report, shape=False, progress=False)
    assert table["confidence"].between(0, 1).all()
    np.testing.assert_allclose(table.set_index("label")["confidence"], report.confidence.loc[table["label"]])


def test_segment_quality_in_blocks_samples_blocks_and_says_so(scan):
    labels, report = _segment(scan.image, particle_size_mm=SIZE_MM, chunk_size=24,
                              quality={**QUICK, "sampled_blocks": 2})
    assert isinstance(report, SampledQualityReport)
    record = report.record()
    assert record["sampled_blocks"] == 2 and record["of"] == 8
    assert 0 <= record["estimated_f1"] <= 1
    assessed = report.confidence
    assert 0 < len(assessed) < labels.max()  # only the particles whole in a sampled crop
    assert set(assessed.index) <= set(np.unique(labels[labels > 0]).tolist())
    table = measure(labels, spacing=SPACING, confidence=report, shape=False, progress=False, chunk_size=24)
    got = table.set_index("label")["confidence"]
    assert got.notna().sum() == len(assessed)
    np.testing.assert_allclose(got.loc[assessed.index], assessed)


def test_a_particle_size_twice_too_large_reads_lower(scan):
    _, right = _segment(scan.image, particle_size_mm=SIZE_MM, quality=QUICK)
    _, wrong = _segment(scan.image, particle_size_mm=2 * SIZE_MM, quality=QUICK)
    assert wrong.estimated_f1 < right.estimated_f1
    assert any("particle size looks wrong" in w for w in wrong.warnings)


def test_quality_argument_is_checked(scan):
    with pytest.raises(InputError, match="quality"):
        _segment(scan.image, particle_size_mm=SIZE_MM, quality="yes")
    with pytest.raises(InputError, match="sampled_blocks"):
        _segment(scan.image, particle_size_mm=SIZE_MM, chunk_size=24, quality={"sampled_blocks": 0})


def test_confidence_sidecar_round_trip(tmp_path):
    series = pd.Series([0.25, 0.9], index=pd.Index([3, 7], name="label"))
    path = save_confidence(series, tmp_path / "labels.tif")
    assert path.name == "labels.tif.quality.csv"
    pd.testing.assert_series_equal(read_confidence(tmp_path / "labels.tif"), series.rename("confidence"),
                                   check_index_type=False)
    assert read_confidence(tmp_path / "other.tif") is None


def test_measure_takes_a_mapping_and_refuses_values_outside_0_1(two_balls):
    _, labels = two_balls
    table = measure(labels, confidence={1: 0.2}, shape=False, progress=False)
    assert table["confidence"].iloc[0] == pytest.approx(0.2) and np.isnan(table["confidence"].iloc[1])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        measure(labels, confidence={1: 1.5}, shape=False, progress=False)


def test_min_confidence_leaves_particles_out_of_the_statistics(two_balls_table):
    table = two_balls_table.assign(confidence=[0.3, np.nan])
    kept = select_particles(table, min_confidence=0.5)
    assert len(kept) == 1 and kept.attrs["n_low_confidence_left_out"] == 1  # NaN: not assessed, kept
    sized = table.assign(eq_diameter_mm=[5.0, 10.0])
    assert percentiles(sized, weight="number", min_confidence=0.5)["d10_mm"] == pytest.approx(10.0)
    assert percentiles(sized, weight="number")["d10_mm"] < 10.0
    with pytest.raises(InputError, match="confidence column"):
        select_particles(two_balls_table, min_confidence=0.5)
    with pytest.raises(InputError, match="min_confidence"):
        select_particles(table, min_confidence=2)


def test_report_trust_section(two_balls_table, two_balls):
    _, labels = two_balls
    text = build_report(two_balls_table)
    assert "How far to trust these particles" in text and "ps3d segment --quality" in text
    table = two_balls_table.assign(confidence=[0.3, 0.95])
    record = {"estimated_f1": 0.61, "n_variants": 1, "warnings": ["the particle size looks wrong: test"]}
    text = build_report(table, labels=labels, quality=record, min_confidence=0.5)
    assert "0.61" in text and "the particle size looks wrong: test" in text
    assert "1 particles with a confidence under 0.5 are left out of the statistics" in text
    assert "in magenta" in text


@pytest.mark.slow
def test_cli_segment_quality_then_measure_and_report(scan, ps3d, tmp_path):
    np.save(tmp_path / "scan.npy", scan.image)
    labels = tmp_path / "labels.tif"
    code, out, _ = ps3d("segment", tmp_path / "scan.npy", "--spacing", SPACING, "--particle-size", SIZE_MM,
                        "--method", "otsu-watershed", "-o", labels, "--quality")
    assert code == 0
    assert "estimated F1@0.5" in out and "label-free" in out and "low confidence" in out
    record = json.loads((tmp_path / "labels.tif.ps3d.json").read_text())
    assert 0 <= record["quality"]["estimated_f1"] <= 1
    confidence = read_confidence(labels)
    assert len(confidence) == record["quality"]["n_particles"]

    code, _, _ = ps3d("measure", labels, "--spacing", SPACING, "-o", tmp_path / "t.csv", "--quiet")
    assert code == 0
    table = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_allclose(table.set_index("label")["confidence"], confidence.loc[table["label"]])

    threshold = float(np.median(confidence))
    code, out, _ = ps3d("report", labels, "--spacing", SPACING, "-o", tmp_path / "r.html",
                        "--min-confidence", threshold, "--csv", tmp_path / "r.csv")
    assert code == 0 and "left out of the statistics (--min-confidence)" in out
    text = (tmp_path / "r.html").read_text()
    assert "How far to trust these particles" in text and f"{record['quality']['estimated_f1']:.3g}" in text
    assert f"confidence under {threshold:g} are left out of the statistics" in text
    summary = pd.read_csv(tmp_path / "r_summary.csv").set_index("quantity")["value"]
    plain = pd.read_csv(tmp_path / "r.csv")
    assert int(summary["n_low_confidence_left_out"]) > 0
    assert int(summary["n_in_statistics"]) < len(plain)


@pytest.mark.slow
def test_cli_segment_quality_in_blocks(scan, ps3d, tmp_path):
    import zarr

    np.save(tmp_path / "scan.npy", scan.image)
    labels = tmp_path / "labels.zarr"
    code, out, _ = ps3d("segment", tmp_path / "scan.npy", "--spacing", SPACING, "--particle-size", SIZE_MM,
                        "--method", "otsu-watershed", "-o", labels, "--chunk-size", 24, "--quality")
    assert code == 0 and "blocks" in out and "estimated F1@0.5" in out
    record = json.loads((tmp_path / "labels.zarr.ps3d.json").read_text())["quality"]
    assert record["of"] == 8 and 1 <= record["sampled_blocks"] <= 8
    assert zarr.open_group(str(labels), mode="r").attrs["quality"] == record
    assert read_confidence(labels) is not None


def test_viewer_colours_particles_by_confidence(two_balls, two_balls_table):
    from ps3d_toolkit.viz.viewer import SliceViewer

    _, labels = two_balls
    image = (labels > 0).astype(np.float32)
    table = two_balls_table.assign(confidence=[0.05, 0.95])
    viewer = SliceViewer(image, labels, table=table, color_by="confidence", opacity=1.0)
    z_plane = viewer.render()[0]
    z = viewer.position[0]
    low, high = z_plane[labels[z] == 1], z_plane[labels[z] == 2]
    assert low.size and high.size
    assert low[:, 0].mean() > low[:, 1].mean()  # red: doubtful
    assert high[:, 1].mean() > high[:, 0].mean()  # green: trusted
    with pytest.raises(InputError, match="table"):
        SliceViewer(image, labels, color_by="confidence")


def test_tuner_shows_the_estimate_of_each_setting_tried(scan):
    from ps3d_toolkit.viz.tuner import SegmentationTuner

    tuner = SegmentationTuner(scan.image, spacing=SPACING, particle_size_mm=SIZE_MM, method="otsu-watershed",
                              region=(slice(0, 48), slice(0, 48), slice(0, 48)))
    plain = tuner.update()
    assert "quality" not in plain and np.isnan(tuner.tried[-1]["estimated_f1"])
    tuner.estimate_quality = True
    first = tuner.update()
    second = tuner.update(particle_size_mm=2 * SIZE_MM)
    assert 0 <= first["quality"]["estimated_f1"] <= 1
    assert second["quality"]["estimated_f1"] < first["quality"]["estimated_f1"]
    text = tuner.summary_html()
    assert "label-free estimate" in text and "estimated F1@0.5" in text
    assert [t["estimated_f1"] for t in tuner.tried[1:]] == [first["quality"]["estimated_f1"],
                                                            second["quality"]["estimated_f1"]]


def test_napari_features_carry_the_saved_confidence(tmp_path, two_balls, two_balls_table):
    from ps3d_toolkit.io import save_labels, save_table
    from ps3d_toolkit.viz.napari import read_layers

    _, labels = two_balls
    path = save_labels(labels.astype(np.uint32), tmp_path / "labels.tif", spacing=1.0)
    save_confidence(pd.Series([0.2, 0.9], index=[1, 2]), path)
    ((_, kwargs, kind),) = read_layers(path)  # no table: the confidences alone
    assert kind == "labels" and list(kwargs["features"].loc[[1, 2], "confidence"]) == [0.2, 0.9]
    save_table(two_balls_table, tmp_path / "labels.csv")
    ((_, kwargs, _),) = read_layers(path)
    features = kwargs["features"]
    assert list(features.loc[[1, 2], "confidence"]) == [0.2, 0.9] and "volume_mm3" in features


def test_cli_min_confidence_needs_confidences(ps3d, tmp_path, two_balls):
    from ps3d_toolkit.io import save_labels

    _, labels = two_balls
    path = save_labels(labels.astype(np.uint32), tmp_path / "labels.tif", spacing=1.0)
    code, _, err = ps3d("report", path, "-o", tmp_path / "r.html", "--min-confidence", 0.5, "--quiet")
    assert_one_line_error(code, err, "--min-confidence", "ps3d segment --quality")
    code, _, err = ps3d("report", path, "-o", tmp_path / "r.html", "--min-confidence", 1.5)
    assert code == 2 and "--min-confidence" in err
