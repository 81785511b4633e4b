"""napari layer data (to_napari), the plugin manifest, its reader and its widget's work, without a display."""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import ball

from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.io import Scan, load_scan, save_labels, save_scan, save_table
from ps3d_toolkit.measurement import measure
from ps3d_toolkit.viz import to_napari
from ps3d_toolkit.viz.napari import (
    Progress,
    label_features,
    napari_get_reader,
    read_layers,
    run_on_layer,
    sample_layers,
    segment_and_measure_layer,
    segment_and_measure_steps,
    segment_widget,
)

MANIFEST = Path(__file__).resolve().parents[1] / "ps3d_toolkit" / "napari.yaml"
SPACING = (0.02, 0.01, 0.01)


@pytest.fixture
def grains():
    """Balls labelled 2, 5 and 7 (ids with gaps, int64) in a 20 x 24 x 36 volume, their scan and table."""
    labels = np.zeros((20, 24, 36), np.int64)
    for label, centre in ((2, (10, 12, 6)), (5, (10, 12, 18)), (7, (10, 12, 30))):
        labels[ball(labels.shape, centre, 3 + label % 3)] = label
    image = np.where(labels > 0, 200.0, 100.0).astype(np.float32)
    table = measure(labels, image, spacing=SPACING, progress=False)
    return image, labels, table


def _by_kind(layers):
    return {kind: (data, kwargs) for data, kwargs, kind in layers}


def test_to_napari_layers_scale_dtype_and_features(grains):
    image, labels, table = grains
    layers = to_napari(image, labels, table, spacing=SPACING, name="grains")
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    (img, img_kw), (lab, lab_kw) = _by_kind(layers)["image"], _by_kind(layers)["labels"]
    assert img is image and img_kw["scale"] == SPACING and lab_kw["scale"] == SPACING
    assert img_kw["name"] == "grains" and lab_kw["name"] == "grains labels"
    assert img_kw["colormap"] == "gray" and 0 < lab_kw["opacity"] < 1
    low, high = img_kw["contrast_limits"]
    assert 100 <= low < high <= 200
    assert lab.dtype == np.uint32 and np.array_equal(lab, labels)
    features = lab_kw["features"]
    # napari reads features row i as label value i, row 0 the background
    assert len(features) == labels.max() + 1
    assert np.array_equal(features["label"], np.arange(labels.max() + 1))
    for value in range(labels.max() + 1):
        count = int((labels == value).sum())
        if value in (2, 5, 7):
            assert features.loc[value, "voxel_count"] == count
            assert features.loc[value, "volume_mm3"] == pytest.approx(count * np.prod(SPACING))
        else:
            assert np.isnan(features.loc[value, "voxel_count"])  # background and missing ids: no particle
    assert "index" not in features.columns
    assert lab_kw["metadata"]["n_particles"] == 3


def test_to_napari_takes_a_scan_and_warns_when_spacing_overrides(grains):
    image, labels, _ = grains
    scan = Scan(image=image, spacing=SPACING, name="sample", particle_size_mm=0.1)
    image_layer, labels_layer = to_napari(scan, labels)
    assert image_layer[1]["scale"] == SPACING and image_layer[1]["name"] == "sample"
    assert image_layer[1]["metadata"]["particle_size_mm"] == 0.1
    assert labels_layer[1]["scale"] == SPACING and "features" not in labels_layer[1]
    with pytest.warns(UserWarning, match="overrides"):
        layers = to_napari(scan, spacing=0.5)
    assert layers[0][1]["scale"] == (0.5, 0.5, 0.5) and len(layers) == 1
    only_labels = to_napari(None, labels, spacing=0.1)
    assert [kind for _, _, kind in only_labels] == ["labels"]


def test_to_napari_keeps_lazy_data_lazy(tmp_path, grains):
    image, labels, _ = grains
    scan = load_scan(save_scan(image, tmp_path / "scan.zarr", spacing=SPACING))
    lazy_labels = load_scan(save_labels(labels, tmp_path / "labels.zarr", spacing=SPACING)).image
    (img, img_kw, _), (lab, _, _) = to_napari(scan, lazy_labels)
    assert type(img).__module__.startswith("dask") and type(lab).__module__.startswith("dask")
    assert "contrast_limits" not in img_kw  # napari samples a lazy image itself
    assert lab.dtype == np.uint32 and np.array_equal(np.asarray(lab), labels)
    assert np.array_equal(np.asarray(img[5]), image[5]) and img_kw["scale"] == SPACING


def test_label_features_of_sparse_ids_name_their_label():
    table = pd.DataFrame({"label": [10**7, 3, 123_456], "volume_mm3": [1.0, 2.0, 3.0],
                          "touches_border": [True, False, True]})
    features = label_features(table)
    # one row per particle after the background; napari maps label -> row through "index"
    assert len(features) == 4 and list(features["index"]) == [0, 3, 123_456, 10**7]
    row_of = {label: row for row, label in enumerate(features["index"])}
    assert features.loc[row_of[10**7], "volume_mm3"] == 1.0 and features.loc[row_of[3], "volume_mm3"] == 2.0
    assert np.isnan(features.loc[row_of[0], "volume_mm3"])
    dense = label_features(table.iloc[1:2])
    assert len(dense) == 4 and dense.loc[3, "volume_mm3"] == 2.0 and not dense.loc[3, "touches_border"]


@pytest.mark.parametrize("call, match", [
    (lambda image, labels: to_napari(None, None, spacing=1), "neither"),
    (lambda image, labels: to_napari(image, None, pd.DataFrame({"label": [1]}), spacing=1), "table needs labels"),
    (lambda image, labels: to_napari(image, labels), "spacing must be given"),
    (lambda image, labels: to_napari(None, labels), "spacing must be given"),
    (lambda image, labels: to_napari(image, labels, spacing=(1, 0, 1)), "spacing"),
    (lambda image, labels: to_napari(image, labels, pd.DataFrame({"label": [1, 1]}), spacing=1), "once"),
    (lambda image, labels: to_napari(image, labels, pd.DataFrame({"label": [0, 1]}), spacing=1), "background"),
    (lambda image, labels: to_napari(image, labels, pd.DataFrame({"label": [1.5]}), spacing=1), "integer label"),
    (lambda image, labels: to_napari(image, labels, pd.DataFrame({"volume": [1.0]}), spacing=1), "label"),
], ids=["nothing", "table-alone", "no-spacing", "labels-no-spacing", "bad-spacing", "repeated-ids", "label-0",
        "float-ids", "no-label-column"])
def test_to_napari_refuses_bad_input(grains, call, match):
    image, labels, _ = grains
    with pytest.raises(InputError, match=match):
        call(image, labels)


def test_to_napari_refuses_mismatched_shapes_and_bad_types(grains):
    image, labels, table = grains
    with pytest.raises(InputError, match="shape"):
        to_napari(image, labels[:-1], spacing=1)
    with pytest.raises(InputError, match="non-negative"):
        to_napari(image, -labels, spacing=1)
    with pytest.raises(InputTypeError, match="DataFrame"):
        to_napari(image, labels, table.to_dict(), spacing=1)
    with pytest.raises(InputTypeError, match="integer"):
        to_napari(image, labels + 0.5, spacing=1)


def _manifest():
    npe2 = pytest.importorskip("npe2")
    return npe2.PluginManifest.from_file(MANIFEST)


def _command(manifest, command_id):
    """The Python object a manifest command names (as napari resolves it)."""
    command = next(c for c in manifest.contributions.commands if c.id == command_id)
    module, _, attribute = command.python_name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def test_manifest_validates_and_its_commands_resolve():
    manifest = _manifest()
    assert manifest.name == "ps3d_toolkit"
    manifest.validate_imports()  # every python_name imports
    ids = {c.id for c in manifest.contributions.commands}
    (reader,) = manifest.contributions.readers
    (widget,) = manifest.contributions.widgets
    (sample,) = manifest.contributions.sample_data
    assert {reader.command, widget.command, sample.command} == ids
    # only the formats the toolkit writes (an .ome.zarr store is a *.zarr folder)
    assert reader.accepts_directories and sorted(reader.filename_patterns) == ["*.npy", "*.tif", "*.tiff", "*.zarr"]
    assert _command(manifest, reader.command) is napari_get_reader
    assert _command(manifest, widget.command) is segment_widget
    assert _command(manifest, sample.command) is sample_layers and sample.key == "sample"


def test_importing_the_plugin_needs_neither_napari_nor_qt():
    code = ("import sys, ps3d_toolkit.viz.napari as m; m.napari_get_reader('x.npy'); "
            "print(sorted(n for n in ('napari', 'magicgui', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reader_opens_what_the_toolkit_wrote(tmp_path, grains):
    image, labels, table = grains
    get_reader = _command(_manifest(), "ps3d_toolkit.get_reader")
    scans = [save_scan(image, tmp_path / "scan.zarr", spacing=SPACING),
             save_scan(image, tmp_path / "scan.ome.zarr", spacing=SPACING),
             save_scan(image.astype(np.uint16), tmp_path / "scan.tif", spacing=SPACING),  # integer, still a scan
             save_scan(image, tmp_path / "scan.npy", spacing=SPACING)]
    label_files = [save_labels(labels, tmp_path / "labels.tif", spacing=SPACING),  # uint16 TIFF: told by its name
                   save_labels(labels, tmp_path / "labels.ome.zarr", spacing=SPACING),
                   save_labels(labels, tmp_path / "seg.zarr", spacing=SPACING),  # uint32: told by its type
                   save_labels(labels, tmp_path / "labels.npy", spacing=SPACING)]
    save_table(table, tmp_path / "labels.csv")
    for path in scans + label_files:
        reader = get_reader(str(path))
        assert reader is not None, path
        ((data, kwargs, kind),) = reader(str(path))
        assert kwargs["scale"] == pytest.approx(SPACING), path
        if path in scans:
            assert kind == "image", path
            assert np.allclose(np.asarray(data), image), path
        else:
            assert kind == "labels", path
            assert data.dtype == np.uint32 and np.array_equal(np.asarray(data), labels), path
            if path.name.startswith("labels"):  # the table of the same name beside it
                features = kwargs["features"]
                assert list(features.loc[[2, 5, 7], "voxel_count"]) == [int((labels == k).sum()) for k in (2, 5, 7)]
            else:
                assert "features" not in kwargs
    both = get_reader([str(scans[0]), str(label_files[2])])([str(scans[0]), str(label_files[2])])
    assert [kind for _, _, kind in both] == ["image", "labels"]


def _not_scans(folder, image):
    """Files with the reader's names that are not 3D scans, and files of other kinds."""
    import tifffile
    import zarr

    tifffile.imwrite(folder / "slice.tif", image[0])  # one 2D image
    tifffile.imwrite(folder / "photo.tif", np.zeros((24, 36, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(folder / "movie.tiff", np.zeros((2, 3, 4, 5, 6), np.uint8), photometric="minisblack")  # t, c
    np.save(folder / "vector.npy", np.arange(10))
    np.save(folder / "plane.npy", image[0])
    np.save(folder / "names.npy", np.array([["a", "b"], ["c", "d"]] * 2).reshape(2, 2, 2))
    np.save(folder / "objects.npy", np.empty((2, 2, 2), dtype=object), allow_pickle=True)
    (folder / "notes.zarr").mkdir()  # a folder named like a store
    (folder / "notes.zarr" / "readme.txt").write_text("not zarr")
    two = zarr.open_group(str(folder / "two.zarr"), mode="w")  # a group of two unnamed arrays
    two.create_array("a", shape=(2, 2, 2), dtype="u1")
    two.create_array("b", shape=(2, 2, 2), dtype="u1")
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    (folder / "particles.csv").write_text("label,volume_mm3\n1,0.5\n")
    (folder / "folder").mkdir()
    return sorted(folder.iterdir()) + [folder / "missing.tif"]


def test_reader_returns_none_for_what_it_cannot_open(tmp_path, grains):
    image, labels, _ = grains
    others = _not_scans(tmp_path, image)
    for path in others:
        assert napari_get_reader(str(path)) is None, path.name
    scan = save_scan(image, tmp_path / "scan.tif", spacing=SPACING)
    assert napari_get_reader(str(scan)) is read_layers
    # a list is ours only when every path is
    assert napari_get_reader([str(scan), str(tmp_path / "slice.tif")]) is None
    assert napari_get_reader([]) is None


def test_reader_shows_unscaled_scans_in_voxels(tmp_path, grains):
    image, _, _ = grains
    np.save(tmp_path / "bare.npy", image)  # no spacing stored anywhere
    with pytest.warns(UserWarning, match="voxels"):
        ((_, kwargs, kind),) = read_layers(tmp_path / "bare.npy")
    assert kind == "image" and kwargs["scale"] == (1.0, 1.0, 1.0)


def test_reader_opens_an_ome_zarr_scan_with_its_ngff_labels(tmp_path, grains):
    from ps3d_toolkit.io import save_ome_zarr

    image, labels, _ = grains
    path = save_ome_zarr(image, tmp_path / "scan.ome.zarr", spacing=SPACING, zarr_format=3,
                         label_images={"particles": labels})
    assert napari_get_reader(str(path)) is read_layers
    (img, img_kw, img_kind), (lab, lab_kw, lab_kind) = read_layers(str(path))
    assert (img_kind, lab_kind) == ("image", "labels")
    assert img_kw["scale"] == pytest.approx(SPACING) and lab_kw["scale"] == pytest.approx(SPACING)
    assert lab_kw["name"] == "scan particles"
    assert np.array_equal(np.asarray(img), image)
    assert lab.dtype == np.uint32 and np.array_equal(np.asarray(lab), labels)
    # the label image opened on its own is labels too, told by its NGFF image-label attributes
    ((alone, alone_kw, alone_kind),) = read_layers(path / "labels" / "particles")
    assert alone_kind == "labels" and np.array_equal(np.asarray(alone), labels)


def test_sample_data_is_the_bundled_scan_and_its_truth_in_mm():
    from ps3d_toolkit.data.sample import load_sample

    scan, truth = load_sample()
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = sample_layers()
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image_kw["name"] == "sample" and labels_kw["name"] == "sample truth"
    assert image_kw["scale"] == labels_kw["scale"] == pytest.approx(scan.spacing) == (0.01, 0.01, 0.01)
    assert image_kw["metadata"]["spacing_mm"] == pytest.approx(scan.spacing)
    assert np.array_equal(image, np.asarray(scan.image)) and labels.dtype == np.uint32
    assert np.array_equal(labels, truth) and labels.max() > 10


def _run_in_a_thread(steps):
    """Drive a steps generator to its end in a new thread, as napari's worker does; (progress, layers, errors)."""
    seen, outcome = [], {}

    def drive():
        try:
            while True:
                seen.append(next(steps))
        except StopIteration as finished:
            outcome["layers"] = finished.value
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=drive)
    thread.start()
    thread.join()
    return seen, outcome.get("layers"), outcome.get("error")


def test_widget_work_runs_off_the_main_thread_and_reports_each_stage(monkeypatch):
    import ps3d_toolkit.measurement as measurement
    import ps3d_toolkit.segmentation as segmentation
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((40, 40, 40), mean_diameter_vox=12, seed=3, spacing=(0.02, 0.01, 0.01))
    threads = {}
    for module, name in ((segmentation, "segment"), (measurement, "measure")):
        def recorded(*args, _real=getattr(module, name), _name=name, **kwargs):
            threads[_name] = threading.current_thread()
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, recorded)
    steps = segment_and_measure_steps(scan.image, spacing=scan.spacing, method="otsu-watershed", name="phantom")
    assert not threads  # a generator: nothing runs until the worker drives it
    seen, layers, error = _run_in_a_thread(steps)
    assert error is None
    assert {threads["segment"], threads["measure"]}.isdisjoint({threading.main_thread()})
    # ours first and last; between them, whatever stages the method reports (the block engine's, the model's)
    stages = [step.stage for step in seen]
    assert stages[0] == "segment" and stages[-2:] == ["measure", "layers"] and stages.count("measure") == 1
    assert all(isinstance(step, Progress) and 0 <= step.done <= step.total for step in seen)
    assert [step.done for step in seen] == sorted(step.done for step in seen)
    ((labels, kwargs, kind),) = layers
    assert kind == "labels" and kwargs["scale"] == (0.02, 0.01, 0.01) and kwargs["name"] == "phantom labels"
    ((same, _, _),) = segment_and_measure_layer(scan.image, spacing=scan.spacing, method="otsu-watershed")
    assert np.array_equal(labels, same)  # the same work as the synchronous call


def test_widget_work_raises_its_errors_in_the_worker_and_stops_when_closed(monkeypatch):
    import ps3d_toolkit.measurement as measurement
    import ps3d_toolkit.segmentation as segmentation
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((32, 32, 32), mean_diameter_vox=10, seed=4)
    _, _, error = _run_in_a_thread(segment_and_measure_steps(scan.image, spacing=scan.spacing, method="nonsense"))
    assert isinstance(error, InputError) and "method" in str(error)
    # closed after its first step (napari's worker.quit()): the run ends before measuring
    release, measured = threading.Event(), []
    real_segment = segmentation.segment

    def held_segment(*args, **kwargs):
        release.wait()
        return real_segment(*args, **kwargs)

    monkeypatch.setattr(segmentation, "segment", held_segment)
    monkeypatch.setattr(measurement, "measure", lambda *args, **kwargs: measured.append(1))
    before = set(threading.enumerate())
    steps = segment_and_measure_steps(scan.image, spacing=scan.spacing, method="otsu-watershed")
    assert next(steps).stage == "segment"
    steps.close()
    release.set()
    for thread in set(threading.enumerate()) - before:
        thread.join()
    assert measured == []


def test_widget_work_on_an_anisotropic_layer_with_a_box_and_a_mask():
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((40, 40, 40), mean_diameter_vox=10, seed=5, spacing=(0.02, 0.01, 0.01))
    layer = SimpleNamespace(data=scan.image, scale=np.array(scan.spacing), translate=np.zeros(3), name="phantom",
                            multiscale=False)
    # spacing per axis: 0 keeps the layer's scale on that axis
    data, kwargs, _ = run_on_layer(layer, method="otsu-watershed", spacing_z_mm=0.03, particle_size_mm=0.12)
    assert kwargs["scale"] == (0.03, 0.01, 0.01) and data.max() > 0
    boxed, kwargs, _ = run_on_layer(layer, method="otsu-watershed", roi=" 0:20,:,: ")
    assert boxed[20:].max() == 0 and boxed[:20].max() > 0
    assert kwargs["features"]["touches_border"].any()  # the box cuts particles
    half = np.zeros(scan.image.shape, np.uint8)
    half[:, :, :20] = 1
    mask_layer = SimpleNamespace(data=half, multiscale=False)
    masked, _, _ = run_on_layer(layer, method="otsu-watershed", mask=mask_layer)
    assert masked[:, :, 20:].max() == 0 and masked[:, :, :20].max() > 0
    with pytest.raises(InputError, match="spacing"):
        run_on_layer(layer, spacing_y_mm=-1.0)


def test_widget_work_finds_an_automatic_sample_mask_once_for_segment_and_measure(monkeypatch):
    import ps3d_toolkit.segmentation.sample_mask as sample_mask
    from ps3d_toolkit.data.sample import load_sample
    from ps3d_toolkit.segmentation import segment

    scan, _ = load_sample()  # a holder around the grains: what mask="auto" finds
    expected = segment(scan.image, spacing=scan.spacing, method="otsu-watershed", mask="auto", progress=False)
    expected_table = measure(expected, scan.image, spacing=scan.spacing, mask="auto", progress=False)
    calls = []
    real = sample_mask.sample_mask
    monkeypatch.setattr(sample_mask, "sample_mask", lambda *a, **k: calls.append(1) or real(*a, **k))
    seen, layers, error = _run_in_a_thread(segment_and_measure_steps(scan.image, spacing=scan.spacing,
                                                                     method="otsu-watershed", mask="auto"))
    assert error is None and [step.stage for step in seen][:2] == ["sample mask", "segment"]
    assert len(calls) == 1  # found once; segment and measure were handed the mask itself
    ((labels, kwargs, _),) = layers
    assert np.array_equal(labels, expected)
    features = kwargs["features"].set_index("label").loc[expected_table["label"]]
    assert features["touches_border"].astype(bool).tolist() == expected_table["touches_border"].tolist()
    assert expected_table["touches_border"].any() and not expected_table["touches_border"].all()


def test_widget_compute_segments_and_measures_a_scan():
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((48, 48, 48), mean_diameter_vox=12, seed=1)
    ((labels, kwargs, kind),) = segment_and_measure_layer(scan.image, spacing=scan.spacing,
                                                          method="otsu-watershed", name="phantom")
    assert kind == "labels" and labels.dtype == np.uint32 and labels.shape == scan.image.shape
    assert kwargs["scale"] == scan.spacing and kwargs["name"] == "phantom labels"
    assert kwargs["metadata"]["method"] == "otsu-watershed"
    features = kwargs["features"]
    ids = np.unique(labels[labels > 0])
    assert len(ids) > 5 and len(features) == ids.max() + 1
    counts = np.bincount(labels.ravel())
    assert np.array_equal(features.loc[ids, "voxel_count"].to_numpy(), counts[ids])
    # the widget's button: a layer-like object, its scale and translation carried over
    layer = SimpleNamespace(data=scan.image, scale=np.array(scan.spacing), translate=np.array([0.0, 1.0, 2.0]),
                            name="phantom", multiscale=False)
    data, kwargs, kind = run_on_layer(layer, method="otsu-watershed")
    assert kind == "labels" and np.array_equal(data, labels)
    assert kwargs["scale"] == scan.spacing and kwargs["translate"] == (0.0, 1.0, 2.0)
    with pytest.raises(InputError, match="3D"):
        run_on_layer(SimpleNamespace(data=scan.image[0], scale=(1, 1), name="slice", multiscale=False))


def _status_at(viewer, layer, position_mm):
    """What napari's status bar shows with the cursor at ``position_mm`` (z on the slice shown)."""
    viewer.dims.set_point(0, position_mm[0])
    return layer.get_status(tuple(position_mm), world=True)["value"]


@pytest.mark.slow
def test_layers_in_a_headless_napari_viewer(tmp_path, grains):
    napari = pytest.importorskip("napari")
    from napari.components import ViewerModel
    from napari.layers import Layer

    image, labels, table = grains
    viewer = ViewerModel()
    for layer_data in to_napari(image, labels, table, spacing=SPACING, name="grains"):
        viewer.add_layer(Layer.create(*layer_data))
    image_layer, labels_layer = viewer.layers["grains"], viewer.layers["grains labels"]
    assert np.allclose(image_layer.scale, SPACING) and np.allclose(labels_layer.scale, SPACING)
    assert labels_layer.data.dtype == np.uint32
    for value in (2, 5, 7):  # the status bar shows the row of the label under the cursor
        voxel = np.argwhere(labels == value)
        voxel = voxel[len(voxel) // 2]
        status = _status_at(viewer, labels_layer, voxel * np.array(SPACING))
        assert status.startswith(f"{value}; label: {value},"), status
        assert f"voxel_count: {int((labels == value).sum())}" in status
    # sparse ids: one row per particle, napari finds it through the "index" column
    sparse = np.zeros((3, 4, 5), np.uint32)
    sparse[1, 2, 3] = 10**7
    features = label_features(pd.DataFrame({"label": [10**7, 4], "volume_mm3": [0.5, 0.25]}))
    sparse_viewer = ViewerModel()
    layer = sparse_viewer.add_layer(Layer.create(sparse, {"features": features}, "labels"))
    assert _status_at(sparse_viewer, layer, (1, 2, 3)) == f"{10**7}; label: {10**7}, volume_mm3: 0.5"
    # the reader's layers too, lazy ones included
    path = save_labels(labels, tmp_path / "labels.ome.zarr", spacing=SPACING)
    save_table(table, tmp_path / "labels.csv")
    for layer_data in read_layers(save_scan(image, tmp_path / "scan.zarr", spacing=SPACING)) + read_layers(path):
        viewer.add_layer(Layer.create(*layer_data))
    assert np.allclose(viewer.layers["labels labels"].scale, SPACING)
    assert viewer.layers["labels labels"].features.loc[5, "label"] == 5
    # the widget's function on a real image layer, its annotations resolvable for magicgui
    hints = typing.get_type_hints(run_on_layer, globalns={**vars(sys.modules[run_on_layer.__module__]),
                                                          "napari": napari})
    assert hints["image"] is napari.layers.Image and hints["return"] is napari.types.LayerDataTuple
    data, kwargs, kind = run_on_layer(image_layer, method="otsu-watershed", particle_size_mm=0.08)
    viewer.add_layer(Layer.create(data, kwargs, kind))
    assert viewer.layers["grains labels [1]"].data.max() >= 1


@pytest.mark.slow
def test_widget_runs_in_a_napari_worker_and_adds_the_labels(monkeypatch):
    pytest.importorskip("napari")
    pytest.importorskip("napari.qt.threading")  # napari's workers need a Qt binding
    from napari.components import ViewerModel
    from qtpy.QtWidgets import QApplication

    from ps3d_toolkit.data.synthetic import generate_scan
    from ps3d_toolkit.segmentation import available_methods

    if QApplication.instance() is None:
        monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([])
    viewer = ViewerModel()
    scan = generate_scan((40, 40, 40), mean_diameter_vox=12, seed=6, spacing=(0.02, 0.01, 0.01))
    image = viewer.add_image(scan.image, scale=scan.spacing, name="phantom")
    gui = segment_widget()
    assert list(gui.method.choices) == list(available_methods())  # outside methods appear by themselves
    gui.method.value = "otsu-watershed"
    bar = gui[-1]
    gui.show()  # offscreen: so that the bar's visibility is its own
    worker = gui(viewer=viewer, image=image)
    # the call returned at once: the work runs in the worker, the layer comes through the event loop
    assert "phantom labels" not in viewer.layers and not gui.call_button.enabled and bar.visible
    shown = []
    bar.changed.connect(lambda value: shown.append(value))
    hang_guard = time.monotonic() + 300  # not a timing check: only ends a hung run
    while (worker.is_running or not gui.call_button.enabled) and time.monotonic() < hang_guard:
        app.processEvents()
        time.sleep(0.01)
    app.processEvents()
    labels = viewer.layers["phantom labels"]
    assert np.allclose(labels.scale, scan.spacing) and labels.data.max() > 0 and not bar.visible
    assert shown and "voxel_count" in labels.features.columns
    expected = segment_and_measure_layer(scan.image, spacing=scan.spacing, method="otsu-watershed")[0][0]
    assert np.array_equal(labels.data, expected)
