"""Tests for OME formats: OME-Zarr (ps3d_toolkit.io.ome_zarr), ImageJ TIFFs Fiji reads, OME-TIFF PhysicalSize."""

from __future__ import annotations

import importlib
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from ps3d_toolkit.core.errors import InputError, OutputError
from ps3d_toolkit.io import load_labels, load_scan, save_labels, save_scan
from ps3d_toolkit.io import ome_zarr as ome
from ps3d_toolkit.io.ome_zarr import add_labels, label_paths, ngff_attributes, save_ome_zarr, write_pyramid

SPACING = (0.3, 0.2, 0.1)  # (z, y, x) in mm, anisotropic so that an axis mix-up shows


def _labels(shape=(70, 66, 80)):
    # every voxel its own value, some above 65535: a subsample that picks the wrong voxel shows
    return (np.arange(np.prod(shape), dtype=np.uint32).reshape(shape) * 7919) % 300_000


class _TrackedVolume:
    """A lazy volume (shape, dtype, slicing) that records the voxels of the largest read."""

    def __init__(self, values):
        self.values, self.shape, self.dtype, self.largest = values, values.shape, values.dtype, 0

    def __getitem__(self, box):
        block = self.values[box]
        self.largest = max(self.largest, block.size)
        return block


# --------------------------------------------------------------------------- OME-Zarr read by ome-zarr


@pytest.mark.parametrize("zarr_format, version", [(2, "0.4"), (3, "0.5")])
def test_ome_zarr_package_reads_axes_units_scales_and_exact_label_levels(tmp_path, zarr_format, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    labels = _labels()
    path = save_ome_zarr(labels, tmp_path / "labels.ome.zarr", spacing=SPACING, labels=True,
                         zarr_format=zarr_format, chunks=32)
    location = parse_url(str(path))
    assert location.version == version
    models = importlib.import_module(f"ome_zarr_models.v0{version[-1]}")  # the spec's own validation
    validated = models.Image.from_zarr(zarr.open_group(str(path), mode="r"))
    assert (validated.ome_zarr_version, len(validated.ome_attributes.multiscales[0].datasets)) == (version, 2)
    node = next(iter(Reader(location)()))
    axes = node.metadata["axes"]
    assert [(a["name"], a["type"], a["unit"]) for a in axes] == [(n, "space", "millimeter") for n in "zyx"]
    # smallest axis 66 >= 64 gives a level below it; 33 < 64 ends the pyramid
    assert len(node.data) == 2
    for level, (data, transforms) in enumerate(zip(node.data, node.metadata["coordinateTransformations"])):
        scale = next(t["scale"] for t in transforms if t["type"] == "scale")
        assert scale == pytest.approx([s * 2**level for s in SPACING])
        assert not any(t["type"] == "translation" for t in transforms)  # the kept voxel is not moved
        np.testing.assert_array_equal(np.asarray(data), labels[::2**level, ::2**level, ::2**level])


def test_v3_store_keeps_ngff_under_ome_and_the_toolkit_mark(tmp_path):
    path = save_ome_zarr(_labels((8, 9, 10)), tmp_path / "s.ome.zarr", spacing=SPACING, zarr_format=3)
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    assert attrs["ome"]["version"] == "0.5" and "multiscales" not in attrs
    assert attrs["written_by"].startswith("ps3d_toolkit ")


def test_label_pyramid_levels_are_exact_subsamples_at_every_level(tmp_path):
    labels = _labels((21, 18, 27))  # odd sizes: the last block of an axis is partial
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=labels.shape, chunks=(4, 4, 4), dtype=labels.dtype)[:] = labels
    assert write_pyramid(group, n_levels=4, labels=True, block=4) == 4
    for level in range(1, 4):
        step = 2**level
        np.testing.assert_array_equal(group[str(level)][:], labels[::step, ::step, ::step])
        assert group[str(level)].chunks == tuple(min(4, n) for n in group[str(level)].shape)


def test_image_pyramid_is_the_block_mean_with_the_half_voxel_translation(tmp_path):
    image = np.arange(5 * 4 * 3, dtype=np.uint16).reshape(5, 4, 3) * 10
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=3)
    group.create_array("0", shape=image.shape, chunks=(2, 2, 2), dtype=image.dtype)[:] = image
    assert write_pyramid(group, n_levels=2, labels=False) == 2
    expected = np.empty((3, 2, 2))
    for index in np.ndindex(expected.shape):
        z, y, x = (2 * i for i in index)
        expected[index] = image[z:z + 2, y:y + 2, x:x + 2].mean()  # 1 or 2 voxels deep at an odd edge
    np.testing.assert_array_equal(group["1"][:], np.rint(expected).astype(np.uint16))
    datasets = ngff_attributes(SPACING, n_levels=3, zarr_format=3)["ome"]["multiscales"][0]["datasets"]
    translations = [[t for t in d["coordinateTransformations"] if t["type"] == "translation"] for d in datasets]
    assert translations[0] == []
    assert translations[1][0]["translation"] == pytest.approx([s / 2 for s in SPACING])
    assert translations[2][0]["translation"] == pytest.approx([1.5 * s for s in SPACING])


def test_default_levels_stop_when_the_smallest_axis_is_under_64(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(130, 300, 200), chunks=(64, 64, 64), dtype="uint8")
    assert write_pyramid(group, labels=False) == 3  # 130 -> 65 -> 33
    assert group["2"].shape == (33, 75, 50)
    thin = zarr.open_group(str(tmp_path / "thin.zarr"), mode="w", zarr_format=2)
    thin.create_array("0", shape=(10, 300, 300), chunks=(10, 64, 64), dtype="uint8")
    assert write_pyramid(thin) == 1 and "1" not in thin
    assert write_pyramid(group, n_levels=2) == 2 and "2" not in group  # the deeper level is gone


# --------------------------------------------------------------------------- bounded memory


def test_write_pyramid_reads_one_block_at_a_time(tmp_path, monkeypatch):
    base = np.random.default_rng(0).integers(0, 1000, (64, 64, 64), dtype=np.uint16)
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=base.shape, chunks=(8, 8, 8), dtype=base.dtype)[:] = base
    reads = []
    real_getitem = zarr.Array.__getitem__

    def tracked(self, selection):
        values = real_getitem(self, selection)
        reads.append(np.asarray(values).size)
        return values

    monkeypatch.setattr(zarr.Array, "__getitem__", tracked)
    write_pyramid(group, n_levels=3, labels=False, block=8)
    assert max(reads) == 16**3  # an 8^3 block of level 1 reads 16^3 voxels of level 0
    reads.clear()
    monkeypatch.setattr(ome, "_BLOCK_BYTES", 2**16)  # the default block: what the budget allows
    write_pyramid(group, n_levels=2, labels=False)
    assert 0 < max(reads) * base.itemsize <= 2**16 < base.nbytes


def test_save_ome_zarr_copies_a_lazy_volume_block_by_block_in_bounded_memory(tmp_path, monkeypatch):
    values = np.random.default_rng(1).integers(0, 2**16, (128, 128, 128), dtype=np.uint16)
    volume = _TrackedVolume(values)
    monkeypatch.setattr(ome, "_BLOCK_BYTES", 2**16)
    save_ome_zarr(values[:70, :70, :70], tmp_path / "warm.ome.zarr", spacing=SPACING)  # imports and caches
    tracemalloc.start()
    try:
        path = save_ome_zarr(volume, tmp_path / "s.ome.zarr", spacing=SPACING, chunks=(16, 16, 32))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert volume.largest * values.itemsize <= 2**16
    assert peak < values.nbytes / 4  # a 4 MiB scan, and its pyramid, never held whole
    np.testing.assert_array_equal(np.asarray(load_scan(path).image), values)


# --------------------------------------------------------------------------- save/load round trips


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_labels_and_scans_round_trip_through_ome_zarr(tmp_path, zarr_format):
    labels = _labels((9, 10, 11))
    path = save_labels(labels, tmp_path / "labels.ome.zarr", spacing=SPACING, zarr_format=zarr_format)
    np.testing.assert_array_equal(load_labels(path), labels)
    assert load_scan(path).spacing == pytest.approx(SPACING)
    image = np.linspace(0, 1, 9 * 10 * 11, dtype=np.float32).reshape(9, 10, 11)
    path = save_scan(image, tmp_path / "scan.ome.zarr", spacing=SPACING, particle_size_mm=0.7,
                     zarr_format=zarr_format)
    scan = load_scan(path)
    assert not isinstance(scan.image, np.ndarray)  # level 0, read lazily
    np.testing.assert_array_equal(np.asarray(scan.image), image)
    assert (scan.spacing, scan.particle_size_mm, scan.name) == (pytest.approx(SPACING), 0.7, "scan")


def test_ome_zarr_needs_a_spacing_and_refuses_bad_labels_leaving_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ome, "_BLOCK_BYTES", 4 * 8**3)  # one 8^3 chunk at a time
    with pytest.raises(InputError, match="spacing"):
        save_labels(_labels((4, 4, 4)), tmp_path / "l.ome.zarr")
    bad = np.zeros((40, 8, 8), np.int32)
    bad[39, 7, 7] = -1
    with pytest.raises(InputError, match=r"non-negative.*\[32:40"):
        save_ome_zarr(bad, tmp_path / "l.ome.zarr", spacing=1, labels=True, chunks=8)
    with pytest.raises(TypeError, match="integers"):
        save_ome_zarr(bad.astype(float), tmp_path / "l.ome.zarr", spacing=1, labels=True)
    with pytest.raises(InputError, match="multiscales"):
        save_ome_zarr(bad, tmp_path / "l.ome.zarr", spacing=1, attributes={"multiscales": []})
    assert list(tmp_path.iterdir()) == []


def test_ome_zarr_replaces_only_its_own_store_and_only_when_asked(tmp_path):
    path = save_ome_zarr(_labels((4, 5, 6)), tmp_path / "l.ome.zarr", spacing=1, labels=True)
    with pytest.raises(OutputError, match="overwrite=True"):
        save_ome_zarr(np.zeros((4, 5, 6), np.uint8), path, spacing=1)
    save_ome_zarr(np.zeros((4, 5, 6), np.uint8), path, spacing=2, overwrite=True)
    assert load_scan(path).spacing == (2, 2, 2)
    foreign = tmp_path / "mine.ome.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="did not write"):
        save_ome_zarr(np.zeros((4, 5, 6), np.uint8), foreign, spacing=1, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.ome.zarr", "mine.ome.zarr"]


def test_ngff_attributes_check_their_arguments():
    with pytest.raises(InputError, match="n_levels"):
        ngff_attributes(SPACING, n_levels=0)
    with pytest.raises(InputError, match="zarr_format"):
        ngff_attributes(SPACING, n_levels=1, zarr_format=4)
    attrs = ngff_attributes(0.5, n_levels=2, name="grains", labels=True)
    assert attrs["multiscales"][0]["name"] == "grains" and attrs["multiscales"][0]["version"] == "0.4"


# --------------------------------------------------------------------------- NGFF labels beside the scan


def _scan_with_labels(tmp_path, zarr_format, shape=(70, 66, 80)):
    image = np.random.default_rng(2).integers(0, 4000, shape, dtype=np.uint16)
    labels = _labels(shape)
    path = save_ome_zarr(image, tmp_path / "scan.ome.zarr", spacing=SPACING, zarr_format=zarr_format, chunks=32,
                         label_images={"particles": labels}, attributes={"particle_size_mm": 0.7})
    return image, labels, path


@pytest.mark.parametrize("zarr_format, version", [(2, "0.4"), (3, "0.5")])
def test_scan_written_with_its_labels_follows_the_ngff_labels_layout(tmp_path, zarr_format, version):
    from ome_zarr.format import format_from_version
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Labels, Multiscales, Reader

    image, labels, path = _scan_with_labels(tmp_path, zarr_format)
    # the spec's own models: the image with its labels group, and the label image
    models = importlib.import_module(f"ome_zarr_models.v0{version[-1]}")
    root = zarr.open_group(str(path), mode="r")
    models.Image.from_zarr(root)  # also checks that the label image has the image's number of levels
    assert models.Labels.from_zarr(root["labels"]).attributes.model_dump(exclude_none=True) in (
        {"labels": ["particles"]}, {"ome": {"version": "0.5", "labels": ["particles"]}})
    image_label = models.ImageLabel.from_zarr(root["labels/particles"])
    attrs = image_label.attributes.model_dump(exclude_none=True)
    attrs = attrs.get("ome", attrs)
    assert attrs["image_label" if "image_label" in attrs else "image-label"]["source"] == {"image": "../../"}
    # ome-zarr's own reader finds the labels beside the image, with their axes, units and scales
    nodes = list(Reader(parse_url(str(path), fmt=format_from_version(version)))())
    kinds = {Path(str(node.zarr.path)).name: node for node in nodes}
    assert any(isinstance(spec, Labels) for spec in kinds["labels"].specs)
    label = kinds["particles"]
    assert {type(spec) for spec in label.specs} >= {Label, Multiscales}
    assert [(a["name"], a["unit"]) for a in label.metadata["axes"]] == [(n, "millimeter") for n in "zyx"]
    for level, (data, transforms) in enumerate(zip(label.data, label.metadata["coordinateTransformations"])):
        assert transforms == [{"type": "scale", "scale": pytest.approx([s * 2**level for s in SPACING])}]
        np.testing.assert_array_equal(np.asarray(data), labels[::2**level, ::2**level, ::2**level])
    assert len(label.data) == len(kinds["scan.ome.zarr"].data) == 2
    # our reader: the scan as before, and the labels bit for bit, with the spacing
    scan = load_scan(path)
    np.testing.assert_array_equal(np.asarray(scan.image), image)
    assert (scan.spacing, scan.particle_size_mm) == (pytest.approx(SPACING), 0.7)
    (name, where), = label_paths(path).items()
    assert name == "particles" and where == path / "labels" / "particles"
    back = load_scan(where)
    assert back.spacing == pytest.approx(SPACING)
    assert back.dtype == np.uint32 and np.array_equal(np.asarray(back.image), labels)
    np.testing.assert_array_equal(load_labels(where), labels)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_labels_added_to_a_written_scan_are_listed_once_and_replaced_only_when_asked(tmp_path, zarr_format):
    image, labels, path = _scan_with_labels(tmp_path, zarr_format, shape=(9, 10, 11))
    grains = (labels % 2).astype(np.uint8)
    assert add_labels(path, grains, name="grains") == path / "labels" / "grains"
    assert list(label_paths(path)) == ["particles", "grains"]
    with pytest.raises(OutputError, match="overwrite=True"):
        add_labels(path, grains, name="grains")
    add_labels(path, 1 - grains, name="grains", overwrite=True)
    assert list(label_paths(path)) == ["particles", "grains"]  # replaced, not listed twice
    np.testing.assert_array_equal(load_labels(label_paths(path)["grains"]), 1 - grains)
    np.testing.assert_array_equal(load_labels(label_paths(path)["particles"]), labels)
    assert sorted(p.name for p in (path / "labels").iterdir() if not p.name.startswith((".z", "zarr"))) == \
        ["grains", "particles"]  # no temporary folder left


def test_bad_label_images_are_refused_before_anything_is_written(tmp_path):
    image = np.zeros((4, 5, 6), np.uint8)
    target = tmp_path / "scan.ome.zarr"
    for label_images, error, match in [
        ({"particles": np.zeros((4, 5, 7), np.uint32)}, InputError, "shape"),
        ({"../up": np.zeros((4, 5, 6), np.uint32)}, InputError, "name"),
        ({".hidden": np.zeros((4, 5, 6), np.uint32)}, InputError, "name"),
        ({"particles": np.zeros((4, 5, 6))}, TypeError, "integers"),
        ([np.zeros((4, 5, 6), np.uint32)], TypeError, "dict"),
    ]:
        with pytest.raises(error, match=match):
            save_ome_zarr(image, target, spacing=1, label_images=label_images)
    with pytest.raises(InputError, match="label image has none"):
        save_ome_zarr(image.astype(np.uint32), target, spacing=1, labels=True, label_images={"a": image})
    negative = np.zeros((4, 5, 6), np.int32)
    negative[3, 4, 5] = -2
    with pytest.raises(InputError, match="non-negative"):
        save_ome_zarr(image, target, spacing=1, label_images={"particles": negative})
    assert list(tmp_path.iterdir()) == []  # the scan is not written without its labels
    path = save_ome_zarr(image, target, spacing=1)
    with pytest.raises(InputError, match="non-negative"):
        add_labels(path, negative)
    assert label_paths(path) == {} and not (path / "labels").exists()  # nothing left of the failed write
    with pytest.raises(InputError, match="OME-Zarr multiscale image"):
        add_labels(save_labels(image, tmp_path / "plain.zarr", spacing=1), image)
    assert label_paths(tmp_path / "plain.zarr") == {} and label_paths(tmp_path / "missing.tif") == {}


# --------------------------------------------------------------------------- NGFF units read


def _ngff_store(path, unit, zarr_format=2, scale=(3.0, 2.0, 1.0)):
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("0", shape=(2, 3, 4), dtype="uint8")[:] = 1
    axis = {"type": "space"} if unit is None else {"type": "space", "unit": unit}
    multiscale = {"axes": [{"name": n, **axis} for n in "zyx"],
                  "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]}]}
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path


@pytest.mark.parametrize("unit, mm", [("millimeter", 1.0), ("micrometer", 1e-3), ("nanometer", 1e-6),
                                      ("centimeter", 10.0), ("meter", 1e3), ("angstrom", 1e-7)])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ngff_scale_is_converted_from_its_axis_unit(tmp_path, unit, mm, zarr_format):
    path = _ngff_store(tmp_path / "s.zarr", unit, zarr_format)
    assert load_scan(path).spacing == pytest.approx((3 * mm, 2 * mm, mm))


def test_ngff_without_unit_is_read_as_micrometres_and_says_so(tmp_path, caplog):
    path = _ngff_store(tmp_path / "s.zarr", None)
    with caplog.at_level(logging.INFO, logger="ps3d_toolkit"):
        assert load_scan(path).spacing == pytest.approx((3e-3, 2e-3, 1e-3))
    assert "micrometer" in caplog.text


def test_ngff_unknown_unit_is_named_and_not_guessed(tmp_path):
    path = _ngff_store(tmp_path / "s.zarr", "parsec")
    with pytest.warns(UserWarning, match="'parsec'"), pytest.raises(InputError, match="spacing is not stored"):
        load_scan(path)


# --------------------------------------------------------------------------- ImageJ and OME TIFF


def test_labels_tiff_is_an_imagej_hyperstack_with_the_voxel_size(tmp_path):
    labels = _labels((5, 6, 7)) % 60_000
    path = save_labels(labels, tmp_path / "labels.tif", spacing=SPACING)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].dtype == np.uint16
        assert tif.imagej_metadata["spacing"] == pytest.approx(SPACING[0])
        assert tif.imagej_metadata["unit"] == "mm"
        x_res, y_res = tif.pages[0].resolution  # pixels per mm
    assert (x_res, y_res) == pytest.approx((1 / SPACING[2], 1 / SPACING[1]))
    back = load_labels(path)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    assert load_scan(path).spacing == pytest.approx(SPACING)


@pytest.mark.parametrize("dtype, imagej", [(np.uint8, True), (np.int16, True), (np.float32, True),
                                           (np.float64, False), (np.int32, False)])
def test_scan_tiff_is_imagej_where_imagej_holds_the_type(tmp_path, dtype, imagej):
    image = np.arange(4 * 5 * 6).reshape(4, 5, 6).astype(dtype)
    path = save_scan(image, tmp_path / "s.tif", spacing=SPACING, particle_size_mm=0.4)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej == imagej
    scan = load_scan(path)
    assert scan.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(scan.image), image)
    assert (scan.spacing, scan.particle_size_mm) == (pytest.approx(SPACING), 0.4)


def test_older_tiff_with_a_json_description_still_reads(tmp_path):
    path = tmp_path / "old.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint16), photometric="minisblack",
                     metadata={"spacing": [3, 2, 1], "unit": "um", "particle_size_mm": 0.2})
    scan = load_scan(path)
    assert (scan.spacing, scan.particle_size_mm) == (pytest.approx((3e-3, 2e-3, 1e-3)), 0.2)


def test_imagej_tiff_with_unit_but_no_z_step_uses_imagej_default_of_one_unit(tmp_path):
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint8), imagej=True, resolution=(1 / 2.0, 1 / 4.0),
                     metadata={"unit": "micron", "axes": "ZYX"})
    assert load_scan(path).spacing == pytest.approx((1e-3, 4e-3, 2e-3))


def test_imagej_tiff_in_pixels_has_no_spacing_and_an_unknown_unit_is_named(tmp_path):
    pixels, furlongs = tmp_path / "pixels.tif", tmp_path / "furlongs.tif"
    tifffile.imwrite(pixels, np.zeros((3, 4, 5), np.uint8), imagej=True, metadata={"unit": "pixel"})
    with pytest.raises(InputError, match="spacing is not stored"):
        load_scan(pixels)
    tifffile.imwrite(furlongs, np.zeros((3, 4, 5), np.uint8), imagej=True, resolution=(1.0, 1.0),
                     metadata={"spacing": 2.0, "unit": "furlong"})
    with pytest.warns(UserWarning, match="'furlong'"):
        assert load_scan(furlongs, spacing=0.1).spacing == (0.1, 0.1, 0.1)


def _ome_tiff(path, **physical):
    tifffile.imwrite(path, np.zeros((3, 4, 5), np.uint16), ome=True, metadata={"axes": "ZYX", **physical})
    return path


def test_ome_tiff_physical_size_gives_the_spacing_in_mm(tmp_path):
    path = _ome_tiff(tmp_path / "s.ome.tif", PhysicalSizeX=2.0, PhysicalSizeY=3.0, PhysicalSizeZ=500.0,
                     PhysicalSizeZUnit="nm")  # X and Y in the schema's default, micrometres
    scan = load_scan(path)
    assert scan.spacing == pytest.approx((5e-4, 3e-3, 2e-3))
    assert scan.name == "s"


def test_ome_tiff_without_z_size_or_with_an_unknown_unit_gives_no_spacing(tmp_path):
    flat = _ome_tiff(tmp_path / "flat.ome.tif", PhysicalSizeX=2.0, PhysicalSizeY=3.0)
    with pytest.raises(InputError, match="spacing is not stored"):
        load_scan(flat)
    odd = _ome_tiff(tmp_path / "odd.ome.tif", PhysicalSizeX=1.0, PhysicalSizeY=1.0, PhysicalSizeZ=1.0,
                    PhysicalSizeXUnit="pixel")
    with pytest.warns(UserWarning, match="'pixel'"):
        assert load_scan(odd, spacing=0.5).spacing == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", ["labels.ome.tif", "labels.ome.tiff"])
def test_ome_tiff_written_for_an_ome_tif_name_keeps_uint32_labels_and_the_spacing(tmp_path, name):
    labels = _labels((4, 5, 6))
    assert labels.max() > 65535
    path = save_labels(labels, tmp_path / name, spacing=SPACING)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej and tif.series[0].dtype == np.uint32
        assert 'PhysicalSizeZ="0.3"' in tif.ome_metadata and 'PhysicalSizeZUnit="mm"' in tif.ome_metadata
    np.testing.assert_array_equal(load_labels(path), labels)
    scan = load_scan(save_scan(labels.astype(np.float64), tmp_path / "s.ome.tif", spacing=SPACING,
                               particle_size_mm=0.6))
    assert (scan.spacing, scan.particle_size_mm, scan.name) == (pytest.approx(SPACING), 0.6, "s")
