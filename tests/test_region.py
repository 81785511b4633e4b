"""Grain polarity, region of interest and sample mask at the door of ``segment()`` (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from ps3d_toolkit.analysis.evaluate import evaluate_instances
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.labels import drop_small_labels
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.segmentation import segment
from ps3d_toolkit.segmentation.region import PreparedScan, SampleRegion, parse_roi, prepare_scan, resolve_region


@pytest.fixture(scope="module")
def scan():
    return generate_scan((48, 72, 72), mean_diameter_vox=12, seed=2)


def _options(scan, **more):
    return dict(spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, method="otsu-watershed",
                progress=False, **more)


def inverted(image):
    return image.max() + image.min() - image


def test_roi_text_and_slices():
    assert parse_roi("10:20,:,5:", (64, 64, 64)) == (slice(10, 20), slice(0, 64), slice(5, 64))
    assert parse_roi([(1, 3), slice(None, 4), slice(2, None)], (8, 8, 8)) == (slice(1, 3), slice(0, 4),
                                                                              slice(2, 8))


@pytest.mark.parametrize("roi, words", [("10:20,:", "three ranges"), ("a:5,:,:", "whole number"),
                                        ("5:5,:,:", "empty"), ("0:80,:,:", "outside"), ("-3:5,:,:", "non-negative"),
                                        ([slice(0, 4, 2), slice(None), slice(None)], "step")])
def test_a_bad_roi_is_refused_naming_it(roi, words):
    with pytest.raises(InputError, match=words):
        parse_roi(roi, (64, 64, 64))


def test_an_unknown_grain_polarity_is_refused(scan):
    with pytest.raises(InputError, match="grains must be one of"):
        segment(scan.image, **_options(scan, grains="dark"))


def test_darker_grains_turned_round_give_the_particles_of_the_original(scan):
    original = segment(scan.image, **_options(scan))
    darker = segment(inverted(scan.image), **_options(scan, grains="darker"))
    assert original.max() > 20
    assert evaluate_instances(darker, original)["f1_50"] >= 0.99


def test_a_roi_gives_the_labels_of_the_whole_run_inside_it(scan):
    whole = segment(scan.image, **_options(scan))
    box = parse_roi("8:40,10:60,20:70", scan.image.shape)
    part = segment(scan.image, **_options(scan, roi="8:40,10:60,20:70"))
    outside = np.ones(scan.image.shape, bool)
    outside[box] = False
    assert not part[outside].any() and part.max() > 10
    assert np.array_equal(np.unique(part), np.arange(part.max() + 1))
    assert evaluate_instances(part[box], drop_small_labels(whole[box]))["f1_50"] >= 0.99


def test_a_mask_leaves_its_outside_background_in_memory_and_in_blocks(scan):
    mask = np.zeros(scan.image.shape, bool)
    mask[:, 10:62, 10:62] = True
    in_memory = segment(scan.image, **_options(scan, mask=mask))
    blocks = segment(scan.image, **_options(scan, mask=mask, chunk_size=32))
    for labels in (in_memory, blocks):
        assert not labels[~mask].any() and labels.max() > 10
    assert evaluate_instances(blocks, in_memory)["f1_50"] >= 0.98


def test_a_mask_of_the_wrong_shape_or_an_empty_region_is_refused(scan):
    with pytest.raises(InputError, match="mask has shape"):
        segment(scan.image, **_options(scan, mask=np.ones((4, 4, 4), bool)))
    with pytest.raises(InputError, match="empty"):
        segment(scan.image, **_options(scan, mask=np.zeros(scan.image.shape, bool)))


def test_a_mask_file_is_read(scan, tmp_path):
    from ps3d_toolkit.io import save_labels

    mask = np.zeros(scan.image.shape, np.uint8)
    mask[:, 10:62, 10:62] = 1
    path = save_labels(mask.astype(np.uint32), tmp_path / "mask.tif")
    region = resolve_region(scan.image, mask=path)
    assert np.array_equal(region.full(), mask > 0) and "mask.tif" in str(region)


def test_prepared_scan_reads_turned_round_and_filled_values_lazily():
    image = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    mask = np.zeros(image.shape, bool)
    mask[:, 1:5, 2:7] = True
    region = SampleRegion(image.shape, parse_roi(":,:,:", image.shape), mask, "test")
    prepared, grains, reason = prepare_scan(image, grains="darker", region=region)
    assert isinstance(prepared, PreparedScan) and grains == "darker" and reason == "given"
    values = prepared[1:3, ::2, 1:]
    expected = -image[1:3, ::2, 1:]
    inside = mask[1:3, ::2, 1:]
    assert np.array_equal(values[inside], expected[inside])
    assert np.all(values[~inside] == prepared.fill)
    turned = -image[mask]                               # the matrix's value: the median of the lower Otsu class
    assert turned.min() <= prepared.fill < np.median(turned)
    assert np.array_equal(np.asarray(prepared)[1:3, ::2, 1:], values)
    untouched, grains, _ = prepare_scan(image, grains="brighter")
    assert untouched is image and grains == "brighter"


def test_region_at_upsamples_a_low_resolution_mask():
    class LowRes:
        low_res = np.array([[[True, False], [False, True]]] * 2)
        factor = (2, 3, 4)

    region = SampleRegion((4, 6, 8), parse_roi(":,:,:", (4, 6, 8)), LowRes(), "low")
    full = region.full()
    expected = np.repeat(np.repeat(np.repeat(LowRes.low_res, 2, 0), 3, 1), 4, 2)
    assert np.array_equal(full, expected)
    assert np.array_equal(region.at((slice(1, 4), slice(0, 6, 2), slice(3, 8))), expected[1:4, 0:6:2, 3:8])


def test_the_region_edge_is_drawn_in_the_viewer_and_the_report(scan, tmp_path):
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.report import write_report
    from ps3d_toolkit.viz import SliceViewer
    from ps3d_toolkit.viz.slices import draw_region_edge

    plane = np.zeros((6, 7), bool)
    plane[1:5, 2:6] = True
    edge = draw_region_edge(np.zeros((6, 7, 3), np.uint8), plane)[..., 2] > 0
    assert edge[1, 2:6].all() and edge[4, 2:6].all() and not edge[2:4, 3:5].any() and not edge[~plane].any()
    full = np.ones((6, 7), bool)
    assert not draw_region_edge(np.zeros((6, 7, 3), np.uint8), full).any()   # the scan's own border is no edge

    mask = np.zeros(scan.image.shape, bool)
    mask[:, 10:62, 10:62] = True
    labels = segment(scan.image, **_options(scan, mask=mask))
    viewer = SliceViewer(scan.image, labels, spacing=scan.spacing, sample_region=mask)
    z_plane = viewer.render()[0]
    assert (z_plane[10, 10:62] == (60, 170, 255)).all()
    table = measure(labels, scan.image, spacing=scan.spacing, mask=mask, progress=False)
    whole = measure(labels, scan.image, spacing=scan.spacing, progress=False)
    assert table["touches_border"].sum() > whole["touches_border"].sum()
    path = write_report(table, tmp_path / "r.html", labels=labels, mask=mask)
    text = path.read_text()
    assert "sample region" in text and "the sample region&#x27;s edge in blue" in text.replace("'", "&#x27;")


@pytest.mark.slow
def test_cli_the_sample_turned_round_gives_its_particles_with_grains_darker_and_auto(tmp_path, capsys):
    from ps3d_toolkit.cli import main
    from ps3d_toolkit.data import load_sample
    from ps3d_toolkit.io import load_labels, save_scan

    scan, _ = load_sample()
    save_scan(np.asarray(scan.image), tmp_path / "scan.tif", spacing=scan.spacing)
    save_scan(inverted(np.asarray(scan.image, np.float32)), tmp_path / "inverted.tif", spacing=scan.spacing)
    common = ["--method", "otsu-watershed", "--particle-size", str(scan.particle_size_mm), "-q"]
    assert main(["segment", str(tmp_path / "scan.tif"), "-o", str(tmp_path / "original.tif"), *common]) == 0
    original = load_labels(tmp_path / "original.tif")
    for grains in ("darker", "auto"):
        out = tmp_path / f"{grains}.tif"
        assert main(["segment", str(tmp_path / "inverted.tif"), "--grains", grains, "-o", str(out), *common]) == 0
        assert evaluate_instances(load_labels(out), original)["f1_50"] >= 0.99, grains
    assert main(["segment", str(tmp_path / "inverted.tif"), "-o", str(tmp_path / "brighter.tif"), *common]) == 0
    assert evaluate_instances(load_labels(tmp_path / "brighter.tif"), original)["f1_50"] < 0.5


def test_cli_measure_and_report_inside_a_roi_flag_what_it_cuts(scan, tmp_path, capsys):
    from ps3d_toolkit.cli import main
    from ps3d_toolkit.io import read_table, save_labels, save_scan

    labels = segment(scan.image, **_options(scan))
    save_scan(scan.image, tmp_path / "scan.tif", spacing=scan.spacing)
    save_labels(labels, tmp_path / "labels.tif", spacing=scan.spacing)
    common = [str(tmp_path / "labels.tif"), "--image", str(tmp_path / "scan.tif"), "-q"]
    assert main(["measure", *common, "-o", str(tmp_path / "all.csv")]) == 0
    assert main(["measure", *common, "--roi", "8:40,10:60,20:70", "-o", str(tmp_path / "roi.csv")]) == 0
    whole, part = read_table(tmp_path / "all.csv"), read_table(tmp_path / "roi.csv")
    box = parse_roi("8:40,10:60,20:70", labels.shape)
    assert len(part) == len(np.unique(labels[box])) - (0 in labels[box])
    assert part["touches_border"].sum() > 0 and (part["volume_mm3"].sum() < whole["volume_mm3"].sum())
    assert main(["report", *common, "--roi", "8:40,10:60,20:70", "-o", str(tmp_path / "r.html")]) == 0
    assert "cut by the edge of the scan or of the sample region" in (tmp_path / "r.html").read_text()
    code = main(["measure", *common, "--roi", "8:99,:,:", "-o", str(tmp_path / "bad.csv")])
    assert code == 2 and "--roi" in capsys.readouterr().err and not (tmp_path / "bad.csv").exists()


@pytest.fixture(scope="module")
def tube():
    """Grains in epoxy in a glass tube (wall brighter than the epoxy), air around it, all in view."""
    from ps3d_toolkit.data.synthetic import holder_inside

    scan = generate_scan((40, 96, 96), mean_diameter_vox=11, seed=5, cylinder_radius_fraction=0.38,
                         wall_thickness_vox=5, wall_value=3.0)
    return scan, holder_inside(scan.image.shape, scan.params)


def _outside(labels, inside) -> int:
    return int(np.unique(labels[(labels > 0) & ~inside]).size)


def test_the_automatic_mask_leaves_no_particle_in_the_wall_or_the_air(tube):
    scan, inside = tube
    plain = segment(scan.image, **_options(scan))
    masked = segment(scan.image, **_options(scan, mask="auto"))
    assert _outside(plain, inside) > 0                      # the bright glass wall is taken for grains
    assert _outside(masked, inside) == 0
    assert evaluate_instances(scan.labels, masked)["f1_50"] >= evaluate_instances(scan.labels, plain)["f1_50"]
    blocks = segment(scan.image, **_options(scan, mask="auto", chunk_size=48))
    assert _outside(blocks, inside) == 0 and evaluate_instances(blocks, masked)["f1_50"] >= 0.97


def test_an_inverted_phantom_in_a_tube_with_grains_and_mask_auto(tube, tmp_path, capsys):
    """Dark grains in a bright matrix inside a tube, air (darkest) around: the neutron-CT case."""
    from ps3d_toolkit.cli import main
    from ps3d_toolkit.io import load_labels, read_table, save_scan

    scan, inside = tube
    image = scan.image.copy()
    image[inside] = inverted(scan.image)[inside]          # only the sample turned round: the air stays dark
    save_scan(image, tmp_path / "dark.tif", spacing=scan.spacing)
    common = ["--method", "otsu-watershed", "--particle-size", str(scan.particle_size_mm)]
    assert main(["segment", str(tmp_path / "dark.tif"), "--grains", "auto", "--mask", "auto",
                 "-o", str(tmp_path / "labels.tif"), *common]) == 0
    said = "".join(capsys.readouterr())
    assert "grains darker (auto:" in said and "sample mask: cylinder" in said
    labels = load_labels(tmp_path / "labels.tif")
    original = segment(scan.image, **_options(scan, mask="auto"))
    assert _outside(labels, inside) == 0
    # as good as on the X-ray original (the two automatic masks differ by a few edge voxels)
    assert evaluate_instances(scan.labels, labels)["f1_50"] >= evaluate_instances(scan.labels, original)["f1_50"] - 0.05
    record = (tmp_path / "labels.tif.ps3d.json").read_text()
    assert '"grains": "darker"' in record and '"mask": "auto"' in record
    # measure and report find the recorded region by themselves: the grains the mask cuts are flagged
    assert main(["report", str(tmp_path / "labels.tif"), "--image", str(tmp_path / "dark.tif"), "--csv",
                 str(tmp_path / "t.csv"), "-o", str(tmp_path / "r.html"), "-q"]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "darker than their matrix (auto:" in text and "cut by the edge of the scan or of the sample region" in text
    flagged = read_table(tmp_path / "t.csv")["touches_border"].sum()
    plain = main(["measure", str(tmp_path / "labels.tif"), "--mask", str(tmp_path / "labels.tif"), "-o",
                  str(tmp_path / "m.csv"), "-q"])
    assert plain == 0 and flagged > 0
