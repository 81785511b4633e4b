"""napari layer data (to_napari), the plugin manifest, its reader and its widget's work, without a display."""

from __future__ import annotations

import importlib
import subprocess
import sys
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
    label_features,
    napari_get_reader,
    read_layers,
    run_on_layer,
    segment_and_measure_layer,
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
    assert reader.command in ids and widget.command in ids and reader.accepts_directories
    assert set(reader.filename_patterns) == {"*.zarr", "*.ome.zarr", "*.tif", "*.tiff", "*.npy"}
    assert _command(manifest, reader.command) is napari_get_reader
    assert callable(_command(manifest, widget.command))


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


def test_reader_declines_other_files_and_shows_unscaled_ones_in_voxels(tmp_path, grains):
    image, _, table = grains
    save_table(table, tmp_path / "particles.csv")
    assert napari_get_reader(str(tmp_path / "particles.csv")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None
    assert napari_get_reader([]) is None
    np.save(tmp_path / "bare.npy", image)  # no spacing stored anywhere
    with pytest.warns(UserWarning, match="voxels"):
        ((_, kwargs, kind),) = read_layers(tmp_path / "bare.npy")
    assert kind == "image" and kwargs["scale"] == (1.0, 1.0, 1.0)


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
    data, kwargs, kind = run_on_layer(layer, method="otsu-watershed", spacing_mm=0.0)
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
