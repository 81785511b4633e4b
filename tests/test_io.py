"""Tests for ps3d_toolkit.io: readers, writers, spacing, metadata, errors, atomicity."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr

from ps3d_toolkit import io
from ps3d_toolkit.core import errors as io_errors
from ps3d_toolkit.io import (
    SUPPORTED_FORMATS,
    Scan,
    check_output_path,
    convert,
    load_labels,
    load_scan,
    read_metadata,
    read_table,
    save_labels,
    save_scan,
    save_table,
    write_metadata,
)

SHAPE = (5, 7, 9)  # non-cubic, so that any axis mix-up changes the shape
SPACING = (0.3, 0.2, 0.1)  # anisotropic, (z, y, x) in mm
EXTENSIONS = [".tif", ".tiff", ".zarr", ".nii", ".nii.gz", ".npy"]


def _grey(dtype=np.uint16):
    return np.arange(np.prod(SHAPE)).reshape(SHAPE).astype(dtype)


def _labels():
    # values above 65535 must survive every format
    return (np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) * 100_003) % 4_000_000_000


def _no_temp_left(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_scan_round_trip_keeps_values_dtype_and_spacing(tmp_path, ext, dtype):
    image = _grey(dtype)
    path = save_scan(image, tmp_path / f"scan{ext}", spacing=SPACING)
    assert path == tmp_path / f"scan{ext}"
    scan = load_scan(path)
    assert scan.shape == SHAPE
    assert scan.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(scan.image), image)
    assert scan.spacing == pytest.approx(SPACING, rel=1e-6)
    assert scan.name == "scan"
    assert scan.path == path
    assert _no_temp_left(tmp_path) == []


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_labels_round_trip_uint32_above_65535(tmp_path, ext):
    labels = _labels()
    assert labels.max() > 65535
    if ext in (".tif", ".tiff"):
        with pytest.warns(UserWarning, match="above 65535 do not fit an ImageJ TIFF"):
            path = save_labels(labels, tmp_path / f"labels{ext}", spacing=SPACING)
    else:
        path = save_labels(labels, tmp_path / f"labels{ext}", spacing=SPACING)
    back = load_labels(path)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    assert load_scan(path).spacing == pytest.approx(SPACING, rel=1e-6)


def test_save_labels_casts_small_int_and_bool_to_uint32(tmp_path):
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[1:3, 2:4, 3:5] = 7
    back = load_labels(save_labels(labels, tmp_path / "l.npy"))
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    back = load_labels(save_labels(labels > 0, tmp_path / "b.tif"))
    np.testing.assert_array_equal(back, (labels > 0).astype(np.uint32))


def test_save_labels_rejects_bad_labels_before_writing(tmp_path):
    with pytest.raises(ValueError, match="uint32"):
        save_labels(np.full(SHAPE, 2**32, dtype=np.int64), tmp_path / "big.npy")
    with pytest.raises(ValueError, match="non-negative"):
        save_labels(np.full(SHAPE, -1, dtype=np.int32), tmp_path / "neg.npy")
    with pytest.raises(TypeError, match="integer"):
        save_labels(np.full(SHAPE, 0.5), tmp_path / "float.npy")
    with pytest.raises(ValueError, match="3D"):
        save_labels(np.zeros((4, 4), np.uint32), tmp_path / "flat.npy")
    assert list(tmp_path.iterdir()) == []


def test_multipage_tiff_written_page_by_page_is_a_volume(tmp_path):
    path = tmp_path / "pages.tif"
    image = _grey()
    with tifffile.TiffWriter(path) as writer:
        for page in image:
            writer.write(page)  # each page becomes its own series
    scan = load_scan(path, spacing=0.5)
    np.testing.assert_array_equal(scan.image, image)
    assert scan.spacing == (0.5, 0.5, 0.5)


def test_imagej_tiff_spacing_converted_from_microns(tmp_path):
    path = tmp_path / "fiji.tif"
    image = _grey()
    # ImageJ resolution is pixels per unit in (x, y); z spacing in the metadata
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / 2.0, 1 / 3.0),
                     metadata={"spacing": 5.0, "unit": "um", "axes": "ZYX"})
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.image, image)
    assert scan.spacing == pytest.approx((0.005, 0.003, 0.002))


def test_tiff_written_by_us_carries_particle_size_and_resolution_tags(tmp_path):
    path = save_scan(_grey(), tmp_path / "s.tif", spacing=SPACING, particle_size_mm=1.5)
    assert load_scan(path).particle_size_mm == 1.5
    with tifffile.TiffFile(path) as tif:
        x_res, y_res = tif.pages[0].resolution  # pixels per ImageJ unit, here mm
        assert tif.imagej_metadata["unit"] == "mm"
    assert (1 / x_res, 1 / y_res) == pytest.approx((SPACING[2], SPACING[1]))


def test_tiff_with_3_or_4_columns_is_not_mistaken_for_colour(tmp_path):
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    scan = load_scan(save_scan(image, tmp_path / "narrow.tif", spacing=SPACING))
    np.testing.assert_array_equal(scan.image, image)


def test_tiff_folder_natural_sort_and_folder_metadata(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in [10, 2, 1, 11, 3]:
        tifffile.imwrite(folder / f"slice{z}.tif", np.full((7, 9), z, dtype=np.uint16))
    (folder / "notes.txt").write_text("not a slice")
    write_metadata(folder, spacing=SPACING, particle_size_mm=0.8)
    assert (folder / "metadata.json").is_file()
    scan = load_scan(folder)
    assert scan.shape == (5, 7, 9)
    assert scan.image[:, 0, 0].tolist() == [1, 2, 3, 10, 11]
    assert scan.spacing == SPACING
    assert scan.particle_size_mm == 0.8
    assert scan.name == "slices"


def test_tiff_folder_with_mismatched_slices_raises(tmp_path):
    tifffile.imwrite(tmp_path / "a1.tif", np.zeros((7, 9), np.uint8))
    tifffile.imwrite(tmp_path / "a2.tif", np.zeros((7, 8), np.uint8))
    with pytest.raises(ValueError, match="a2.tif"):
        load_scan(tmp_path, spacing=1)


# --------------------------------------------------------------------------- zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_root_array_is_lazy_and_reads_attrs(tmp_path, zarr_format):
    path = tmp_path / f"v{zarr_format}.zarr"
    array = zarr.open_array(str(path), mode="w", shape=SHAPE, chunks=(2, 7, 9),
                            dtype="uint16", zarr_format=zarr_format)
    array[:] = _grey()
    array.attrs.update(spacing=list(SPACING), particle_size_mm=0.4)
    scan = load_scan(path)
    assert not isinstance(scan.image, np.ndarray)
    assert isinstance(scan.image, io.CheckedZarrArray)
    assert isinstance(scan.image.zarr_array, zarr.Array)
    assert scan.image.attrs["particle_size_mm"] == 0.4  # other attributes are the zarr array's
    assert scan.shape == SHAPE
    np.testing.assert_array_equal(scan.image[:], _grey())
    assert scan.spacing == SPACING
    assert scan.particle_size_mm == 0.4


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("array_name", ["image", "0", "volume"])
def test_zarr_group_picks_the_image_array(tmp_path, zarr_format, array_name):
    path = tmp_path / "group.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs["spacing"] = list(SPACING)
    group.create_array(array_name, shape=SHAPE, dtype="float32")[:] = _grey(np.float32)
    if array_name != "volume":
        group.create_array("other", shape=(2, 2, 2), dtype="uint8")
    scan = load_scan(path)
    assert isinstance(scan.image.zarr_array, zarr.Array)
    np.testing.assert_array_equal(np.asarray(scan.image), _grey(np.float32))
    assert scan.spacing == SPACING


def test_zarr_group_with_ambiguous_arrays_raises(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", shape=SHAPE, dtype="uint8")
    group.create_array("b", shape=SHAPE, dtype="uint8")
    with pytest.raises(ValueError, match="'image' or '0'"):
        load_scan(tmp_path / "g.zarr", spacing=1)


def test_ome_zarr_5d_singletons_squeezed_lazily_with_micrometre_scale(tmp_path):
    path = tmp_path / "ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(1, 1) + SHAPE, dtype="uint16")[:] = _grey()[None, None]
    group.attrs["multiscales"] = [{
        "axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}]
        + [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 30, 20, 10]}]}],
    }]
    scan = load_scan(path)
    assert not isinstance(scan.image, np.ndarray)
    assert scan.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(scan.image), _grey())
    assert scan.spacing == pytest.approx((0.03, 0.02, 0.01))


@pytest.mark.parametrize("zarr_format, marker", [(None, "zarr.json"), (2, ".zarray"), (3, "zarr.json")])
def test_plain_zarr_keeps_its_default_format_and_takes_another_by_option(tmp_path, zarr_format, marker):
    path = save_scan(_grey(), tmp_path / "s.zarr", spacing=SPACING, zarr_format=zarr_format)
    assert (path / marker).is_file()
    assert load_scan(path).spacing == SPACING
    with pytest.raises(ValueError, match="zarr_format"):
        save_labels(_labels(), tmp_path / "l.zarr", zarr_format=4)


def test_save_scan_zarr_uses_64_chunks(tmp_path):
    image = np.zeros((70, 3, 80), np.uint8)
    image[65:, :, 70:] = 1
    path = save_scan(image, tmp_path / "big.zarr", spacing=1)
    array = zarr.open_array(str(path), mode="r")
    assert array.chunks == (64, 3, 64)
    np.testing.assert_array_equal(array[:], image)


# --------------------------------------------------------------------------- NIfTI


def test_nifti_axis_order_and_micron_units(tmp_path):
    image = _grey()
    data_xyz = image.transpose(2, 1, 0)  # NIfTI stores (x, y, z)
    nii = nib.Nifti1Image(data_xyz, np.diag([10.0, 20.0, 30.0, 1.0]))
    nii.header.set_xyzt_units("micron")
    nib.save(nii, str(tmp_path / "ext.nii.gz"))
    scan = load_scan(tmp_path / "ext.nii.gz")
    np.testing.assert_array_equal(scan.image, image)
    assert scan.spacing == pytest.approx((0.03, 0.02, 0.01))
    assert scan.name == "ext"


def test_nifti_4d_with_singleton_time_is_squeezed_and_metres_converted(tmp_path):
    image = _grey()
    nii = nib.Nifti1Image(image.transpose(2, 1, 0)[..., None], np.diag([1e-4, 2e-4, 3e-4, 1.0]))
    nii.header.set_xyzt_units("meter")
    nib.save(nii, str(tmp_path / "t.nii"))
    scan = load_scan(tmp_path / "t.nii")
    np.testing.assert_array_equal(scan.image, image)
    assert scan.spacing == pytest.approx(SPACING)


def test_nifti_saved_without_spacing_asks_for_it(tmp_path):
    path = save_scan(_grey(), tmp_path / "nospacing.nii.gz")
    with pytest.raises(ValueError, match="spacing is not stored"):
        load_scan(path)
    assert load_scan(path, spacing=SPACING).spacing == SPACING


# --------------------------------------------------------------------------- spacing & metadata


def test_spacing_argument_overrides_stored_with_warning(tmp_path):
    path = save_scan(_grey(), tmp_path / "s.zarr", spacing=SPACING)
    with pytest.warns(UserWarning, match="overrides"):
        scan = load_scan(path, spacing=0.05)
    assert scan.spacing == (0.05, 0.05, 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_scan(path, spacing=SPACING).spacing == SPACING


def test_npy_sidecar_stem_json_then_metadata_json(tmp_path):
    np.save(tmp_path / "a.npy", _grey())
    np.save(tmp_path / "b.npy", _grey())
    (tmp_path / "metadata.json").write_text(json.dumps({"spacing": 0.5}))
    (tmp_path / "a.json").write_text(json.dumps({"spacing": list(SPACING), "particle_size_mm": 2.0}))
    a = load_scan(tmp_path / "a.npy")
    assert a.spacing == SPACING and a.particle_size_mm == 2.0
    b = load_scan(tmp_path / "b.npy")
    assert b.spacing == (0.5, 0.5, 0.5) and b.particle_size_mm is None


def test_save_scan_npy_writes_sidecar_that_load_reads(tmp_path):
    path = save_scan(_grey(), tmp_path / "x.npy", spacing=SPACING, particle_size_mm=0.7)
    meta = read_metadata(path)
    assert meta["spacing"] == SPACING and meta["particle_size_mm"] == 0.7
    assert meta["_path"] == str(tmp_path / "x.json")
    scan = load_scan(path)
    assert scan.spacing == SPACING and scan.particle_size_mm == 0.7


def test_file_spacing_beats_sidecar(tmp_path):
    path = save_scan(_grey(), tmp_path / "s.tif", spacing=SPACING)
    write_metadata(path, spacing=1.0, particle_size_mm=3.0)
    scan = load_scan(path)
    assert scan.spacing == SPACING
    assert scan.particle_size_mm == 3.0  # the TIFF holds none, the sidecar does


def test_write_metadata_merges_and_validates(tmp_path):
    target = write_metadata(tmp_path / "scan.nii.gz", spacing=SPACING)
    assert target == tmp_path / "scan.json"
    write_metadata(tmp_path / "scan.nii.gz", particle_size_mm=0.25, operator="me")
    meta = read_metadata(target)
    assert meta["spacing"] == SPACING
    assert meta["particle_size_mm"] == 0.25 and meta["operator"] == "me"
    with pytest.raises(ValueError, match="spacing"):
        write_metadata(target, spacing=(0, 1, 1))
    assert read_metadata(tmp_path / "missing.npy") == {}
    assert _no_temp_left(tmp_path) == []


def test_bad_sidecar_is_reported(tmp_path):
    np.save(tmp_path / "a.npy", _grey())
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="a.json"):
        load_scan(tmp_path / "a.npy")


# --------------------------------------------------------------------------- errors


def test_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.tif"):
        load_scan(tmp_path / "nothere.tif")
    with pytest.raises(FileNotFoundError, match="nothere.npy"):
        load_labels(tmp_path / "nothere.npy")


def test_unknown_extension_lists_formats(tmp_path):
    (tmp_path / "scan.raw").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"\.nii\.gz") as info:
        load_scan(tmp_path / "scan.raw", spacing=1)
    assert all(ext in str(info.value) for ext in SUPPORTED_FORMATS)
    for save in (save_scan, save_labels):
        with pytest.raises(ValueError, match=r"\.zarr"):
            save(np.zeros(SHAPE, np.uint8), tmp_path / "out.png")
    with pytest.raises(ValueError, match="supported"):
        convert(tmp_path / "scan.raw", tmp_path / "out.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.raw"]


def test_2d_tiff_is_not_a_scan(tmp_path):
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((7, 9), np.uint8))
    with pytest.raises(ValueError, match=r"\(7, 9\)"):
        load_scan(tmp_path / "flat.tif", spacing=1)


def test_rgb_tiff_is_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((7, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match="colour"):
        load_scan(tmp_path / "rgb.tif", spacing=1)


def test_4d_without_singleton_axis_names_shape(tmp_path):
    np.save(tmp_path / "four.npy", np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        load_scan(tmp_path / "four.npy", spacing=1)
    np.save(tmp_path / "chan.npy", np.zeros(SHAPE + (1,), np.uint8))
    assert load_scan(tmp_path / "chan.npy", spacing=1).shape == SHAPE


def test_no_spacing_anywhere_raises(tmp_path):
    np.save(tmp_path / "a.npy", _grey())
    with pytest.raises(ValueError, match=r"spacing is not stored in .*a\.npy; pass spacing=\.\.\. in mm"):
        load_scan(tmp_path / "a.npy")
    tifffile.imwrite(tmp_path / "plain.tif", _grey())
    with pytest.raises(ValueError, match="plain.tif"):
        load_scan(tmp_path / "plain.tif")


@pytest.mark.parametrize("name", ["bad.tif", "bad.nii.gz", "bad.nii", "bad.npy"])
def test_corrupt_file_names_file_and_reason(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an image file at all" * 4)
    with pytest.raises(ValueError, match=rf"cannot read .*{name}: \w+"):
        load_scan(tmp_path / name, spacing=1)


def test_corrupt_zarr_and_empty_folder(tmp_path):
    store = tmp_path / "bad.zarr"
    store.mkdir()
    (store / "zarr.json").write_text("{broken")
    with pytest.raises(ValueError, match="bad.zarr"):
        load_scan(store, spacing=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .tif"):
        load_scan(empty, spacing=1)


# --------------------------------------------------------------------------- atomicity


@pytest.mark.filterwarnings("ignore:.*above 65535 do not fit an ImageJ TIFF")
def test_failed_tiff_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = save_labels(_labels(), tmp_path / "labels.tif", spacing=SPACING)
    before = path.read_bytes()

    def broken_imwrite(file, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"II*\0half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(OSError, match="disk full"):
        save_labels(np.zeros(SHAPE, np.uint32), path, spacing=SPACING)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]


def test_failed_zarr_write_midway_keeps_old_store(tmp_path, monkeypatch):
    image = np.ones((130, 3, 4), np.uint8)
    path = save_scan(image, tmp_path / "s.zarr", spacing=SPACING)
    real_slabs = io.writers._slabs

    def failing_slabs(*args, **kwargs):
        for count, item in enumerate(real_slabs(*args, **kwargs)):
            if count == 1:
                raise RuntimeError("interrupted")
            yield item

    monkeypatch.setattr(io.writers, "_slabs", failing_slabs)
    with pytest.raises(RuntimeError, match="interrupted"):
        save_scan(image * 2, path, spacing=SPACING)
    np.testing.assert_array_equal(np.asarray(load_scan(path).image), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


# --------------------------------------------------------------------------- convert & Scan


@pytest.mark.parametrize("dst_ext", [".zarr", ".tif", ".npy", ".nii.gz"])
def test_convert_lazy_zarr_keeps_data_spacing_and_particle_size(tmp_path, dst_ext):
    image = (np.arange(130 * 3 * 4).reshape(130, 3, 4) % 251).astype(np.uint8)
    src = save_scan(image, tmp_path / "src.zarr", spacing=SPACING, particle_size_mm=0.9)
    dst = convert(src, tmp_path / f"dst{dst_ext}", progress=False)
    scan = load_scan(dst)
    np.testing.assert_array_equal(np.asarray(scan.image), image)
    assert scan.dtype == np.uint8
    assert scan.spacing == pytest.approx(SPACING, rel=1e-6)
    assert scan.particle_size_mm == 0.9


def test_convert_needs_spacing_when_source_has_none(tmp_path):
    np.save(tmp_path / "a.npy", _grey())
    with pytest.raises(ValueError, match="spacing is not stored"):
        convert(tmp_path / "a.npy", tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr").exists()
    convert(tmp_path / "a.npy", tmp_path / "a.zarr", spacing=SPACING, progress=False)
    assert load_scan(tmp_path / "a.zarr").spacing == SPACING


def test_scan_unpacks_and_has_short_repr():
    scan = Scan(image=_grey(), spacing=0.5, name="demo")
    image, spacing = scan
    assert image is scan.image
    assert spacing == (0.5, 0.5, 0.5)
    assert scan.shape == SHAPE and scan.dtype == np.uint16
    assert "demo" in repr(scan) and "array" not in repr(scan)
    with pytest.raises(ValueError, match="spacing"):
        Scan(image=_grey(), spacing=(1, -1, 1))


# --------------------------------------------------------------------------- particle tables


def _particle_table():
    return pd.DataFrame({"label": [3, 9], "volume_mm3": [0.064, 1.5], "eq_diameter_mm": [0.4966, 1.4205],
                         "touches_border": [False, True]})


def test_save_table_and_read_table_round_trip(tmp_path):
    table = _particle_table()
    csv = save_table(table, tmp_path / "out" / "particles.csv")
    assert csv == tmp_path / "out" / "particles.csv"
    assert csv.read_text().splitlines()[0] == "label,volume_mm3,eq_diameter_mm,touches_border"
    pd.testing.assert_frame_equal(read_table(csv), table)
    parquet = save_table(table, tmp_path / "particles.parquet")
    pd.testing.assert_frame_equal(read_table(parquet), table)
    assert _no_temp_left(tmp_path) == [] and _no_temp_left(tmp_path / "out") == []


def test_table_errors_name_the_problem(tmp_path):
    table = _particle_table()
    with pytest.raises(ValueError, match=r"\.csv, \.parquet"):
        save_table(table, tmp_path / "particles.xlsx")
    with pytest.raises(TypeError, match="DataFrame"):
        save_table({"a": 1}, tmp_path / "x.csv")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="unknown table format"):
        read_table(tmp_path / "particles.xlsx")
    with pytest.raises(FileNotFoundError, match="particles.csv"):
        read_table(tmp_path / "particles.csv")
    save_table(table.drop(columns="volume_mm3"), tmp_path / "other.csv")
    with pytest.raises(ValueError, match="not a particle table"):
        read_table(tmp_path / "other.csv")


# --------------------------------------------------------------------------- readers that never truncate


def test_tiff_folder_of_mixed_types_is_promoted_with_a_warning(tmp_path):
    tifffile.imwrite(tmp_path / "s1.tif", np.full((7, 9), 200, np.uint8))
    for z in (2, 3):
        tifffile.imwrite(tmp_path / f"s{z}.tif", np.full((7, 9), 1000 * z, np.uint16))
    with pytest.warns(UserWarning, match=r"uint8: 1 slice\(s\), first s1\.tif.*uint16: 2 slice\(s\), first s2\.tif"
                                         r".*read them all as uint16"):
        scan = load_scan(tmp_path, spacing=1)
    assert scan.dtype == np.uint16
    assert scan.image[:, 0, 0].tolist() == [200, 2000, 3000]  # nothing cut at 255


@pytest.mark.parametrize("first, second", [(np.int64, np.float32), (np.float32, np.complex64)])
def test_tiff_folder_without_an_exact_common_type_is_refused(tmp_path, first, second):
    tifffile.imwrite(tmp_path / "s1.tif", np.ones((7, 9), first))
    tifffile.imwrite(tmp_path / "s2.tif", np.ones((7, 9), second))
    tifffile.imwrite(tmp_path / "s3.tif", np.ones((7, 9), first))
    with pytest.raises(io_errors.InputError, match=r"slice .*s2\.tif is .* convert the slices to one type"):
        load_scan(tmp_path, spacing=1)


def _zarr_with_chunks(path, zarr_format, **kwargs):
    """A 10^3 store in chunks of 4 (27 chunks), values 1..1000, so that a fill value of 0 stands out."""
    array = zarr.create_array(store=str(path), shape=(10, 10, 10), chunks=(4, 4, 4), dtype="uint16",
                              zarr_format=zarr_format, attributes={"spacing": [0.1, 0.1, 0.1]}, **kwargs)
    array[:] = np.arange(1, 1001, dtype=np.uint16).reshape(10, 10, 10)
    return path, ("0.1.2" if zarr_format == 2 else "c/0/1/2")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_with_a_missing_chunk_is_refused_naming_it(tmp_path, zarr_format):
    store, key = _zarr_with_chunks(tmp_path / "gap.zarr", zarr_format)
    (store / key).unlink()
    with pytest.raises(io_errors.CorruptDataError, match=r"gap\.zarr is missing 1 of 27 chunks "
                                                         r"\(chunk indices \(0, 1, 2\)\).*missing_chunks=\"fill\""):
        load_scan(store)
    with pytest.raises(io_errors.CorruptDataError, match="missing 1 of 27"):
        load_labels(store)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_missing_chunks_read_as_fill_value_when_asked(tmp_path, zarr_format):
    store, key = _zarr_with_chunks(tmp_path / "gap.zarr", zarr_format)
    (store / key).unlink()
    with pytest.warns(UserWarning, match=r"1 of 27 chunks of .*gap\.zarr are not stored \(\(0, 1, 2\)\).*fill value 0"):
        scan = load_scan(store, missing_chunks="fill")
    image = np.asarray(scan.image)
    assert (image[0:4, 4:8, 8:10] == 0).all()
    assert (image > 0).sum() == 1000 - 4 * 4 * 2
    with pytest.raises(io_errors.InputError, match="missing_chunks must be one of"):
        load_scan(store, missing_chunks="zeros")


def test_zarr_missing_shard_is_found(tmp_path):
    store, _ = _zarr_with_chunks(tmp_path / "sharded.zarr", 3, shards=(8, 8, 8))
    (store / "c/0/1/1").unlink()  # the shard of chunks (0..1, 2..3, 2)
    with pytest.raises(io_errors.CorruptDataError, match=r"missing 1 of 8 chunks \(chunk indices \(0, 1, 1\)\)"):
        load_scan(store)


def test_zarr_written_by_the_toolkit_stores_empty_chunks_and_its_mark(tmp_path):
    path = save_scan(np.zeros((70, 3, 80), np.uint8), tmp_path / "empty.zarr", spacing=1)
    array = zarr.open_array(str(path), mode="r")
    assert array.attrs["written_by"].startswith("ps3d_toolkit ")
    assert array.nchunks_initialized == array.nchunks == 4
    assert np.asarray(load_scan(path).image).sum() == 0  # and so no chunk is "missing"


@pytest.mark.parametrize("zarr_format, sharded", [(2, False), (3, False), (3, True)])
def test_corrupt_zarr_chunk_is_named_when_read(tmp_path, zarr_format, sharded):
    store, key = _zarr_with_chunks(tmp_path / "bad.zarr", zarr_format,
                                   **({"shards": (4, 8, 12)} if sharded else {}))
    if sharded:
        key = "c/0/0/0"
    data = (store / key).read_bytes()
    (store / key).write_bytes(data[: len(data) // 2])  # a truncated chunk file
    scan = load_scan(store)  # lazy: nothing decoded yet
    chunk = r"\(0, 1, 2\)" if not sharded else r"\(0, \d, \d\)"
    pattern = rf"cannot read chunk {chunk} \(key '{key}'\) of .*bad\.zarr: .*restore it"
    with pytest.raises(io_errors.CorruptDataError, match=pattern):
        np.asarray(scan.image)
    with pytest.raises(io_errors.CorruptDataError, match=pattern):
        scan.image[2, 4:8]
    np.testing.assert_array_equal(scan.image[8:, 8:, 0:4], np.arange(1, 1001).reshape(10, 10, 10)[8:, 8:, 0:4])
    with pytest.raises(IndexError):
        scan.image[20]  # a bad index stays an IndexError


def test_corrupt_chunk_named_through_dropped_singleton_axes(tmp_path):
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    array = group.create_array("0", shape=(1, 10, 10, 10), chunks=(1, 4, 4, 4), dtype="uint16")
    array[:] = 1
    (tmp_path / "ome.zarr" / "0" / "c" / "0" / "2" / "0" / "0").write_bytes(b"junk")
    scan = load_scan(tmp_path / "ome.zarr", spacing=1)
    assert scan.shape == (10, 10, 10)
    with pytest.raises(io_errors.CorruptDataError, match=r"chunk \(0, 2, 0, 0\) \(key 'c/0/2/0/0'\) of .*ome\.zarr/0"):
        np.asarray(scan.image)
    assert int(scan.image[:8].sum()) == 8 * 100  # the rest still reads


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_is_corrupt_data_and_tifffile_stays_quiet(tmp_path, capfd, caplog, compression):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(20 * 64 * 64, dtype=np.uint16).reshape(20, 64, 64), compression=compression)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    handlers = list(logging.getLogger("tifffile").handlers)
    with pytest.raises(io_errors.CorruptDataError,
                       match=r"cannot read .*cut\.tif: the file is truncated or damaged \(.+\)"):
        load_scan(path, spacing=1)
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records if r.name == "tifffile"]
    assert logging.getLogger("tifffile").handlers == handlers and logging.getLogger("tifffile").propagate


# --------------------------------------------------------------------------- writers that never lose data


def test_npy_writer_does_not_memory_map(tmp_path, monkeypatch):
    def no_memmap(*args, **kwargs):
        raise AssertionError("the .npy writer must not memory-map its output")

    monkeypatch.setattr(np.lib.format, "open_memmap", no_memmap)
    image = (np.arange(130 * 3 * 4).reshape(130, 3, 4) % 251).astype(np.uint8)
    lazy = zarr.open_array(str(save_scan(image, tmp_path / "src.zarr", spacing=SPACING)), mode="r")
    for source, name in ((image, "a.npy"), (lazy, "b.npy"), (_grey(np.float32).astype(">f4"), "c.npy")):
        back = np.load(save_scan(source, tmp_path / name, spacing=SPACING))
        np.testing.assert_array_equal(back, np.asarray(source))
    assert np.load(tmp_path / "c.npy").dtype == np.dtype(">f4")


def _too_little_space(monkeypatch, free=1000):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))


@pytest.mark.parametrize("name", ["labels.npy", "labels.nii"])
def test_uncompressed_output_without_room_is_refused_before_writing(tmp_path, monkeypatch, name):
    _too_little_space(monkeypatch)
    with pytest.raises(io_errors.OutputError, match=rf"not enough space to write .*{name}: it needs "
                                                    r"2,\d{3} bytes \(2\.\d KiB\) but .* has 1,000 bytes free"):
        save_labels(np.zeros((5, 10, 10), np.uint32), tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    save_labels(np.zeros((5, 10, 10), np.uint32), tmp_path / "labels.tif")  # compressed: no bound, written


def test_full_disk_while_writing_npy_is_an_output_error_and_leaves_no_temp(tmp_path, monkeypatch):
    old = save_scan(_grey(), tmp_path / "scan.npy")

    class FullDisk:
        def __init__(self, path, mode):
            self.handle = open(path, mode)  # noqa: SIM115

        def write(self, data):
            if self.handle.tell() > 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.handle.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(io.writers, "open", FullDisk, raising=False)
    with pytest.raises(io_errors.OutputError, match=r"cannot write .*scan\.npy: No space left on device \(.* free\); "
                                                    "free some space"):
        save_scan(_grey() * 2, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.npy"]
    np.testing.assert_array_equal(np.load(old), _grey())


def test_writing_onto_a_directory_the_toolkit_did_not_write_is_refused(tmp_path):
    results = tmp_path / "results.tif"
    results.mkdir()
    (results / "notes.txt").write_text("mine")
    foreign = tmp_path / "foreign.zarr"
    zarr.create_array(store=str(foreign), shape=(2, 2, 2), dtype="uint8")[:] = 1
    for target in (results, foreign):
        with pytest.raises(io_errors.OutputError, match=rf"{target.name} is an existing directory that "
                                                        "ps3d_toolkit did not write; choose another output"):
            save_labels(np.ones((2, 2, 2), np.uint32), target)
    assert (results / "notes.txt").read_text() == "mine"
    assert np.asarray(zarr.open_array(str(foreign), mode="r")).sum() == 8
    ours = save_labels(np.ones((2, 2, 2), np.uint32), tmp_path / "ours.zarr")
    save_labels(np.full((2, 2, 2), 3, np.uint32), ours)  # a store the toolkit wrote is replaced
    assert load_labels(ours).sum() == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.zarr", "ours.zarr", "results.tif"]


def test_atomic_path_restores_the_sigterm_handler(tmp_path):
    from ps3d_toolkit.core.atomic import atomic_path

    before = signal.getsignal(signal.SIGTERM)
    with atomic_path(tmp_path / "a.txt") as tmp:
        assert signal.getsignal(signal.SIGTERM) is not before
        tmp.write_text("x")
    assert signal.getsignal(signal.SIGTERM) is before
    assert (tmp_path / "a.txt").read_text() == "x"


# --------------------------------------------------------------------------- check_output_path


def test_output_that_is_an_input_is_refused(tmp_path):
    scan_tif = save_scan(_grey(), tmp_path / "scan.tif", spacing=SPACING)
    store = save_scan(_grey(), tmp_path / "scan.zarr", spacing=SPACING)
    cases = [(scan_tif, scan_tif, "is the input"), (tmp_path / "." / "scan.tif", scan_tif, "is the input"),
             (store, store, "is the input"), (store / "labels.tif", store, "lies inside the input"),
             (tmp_path, store, "contains the input")]
    for output, source, what in cases:
        with pytest.raises(io_errors.OutputError, match=f"{what} .*; choose another output"):
            check_output_path(output, inputs=[None, source], overwrite=True)
    link = tmp_path / "link.tif"
    link.symlink_to(scan_tif)
    with pytest.raises(io_errors.OutputError, match="is the input"):
        check_output_path(link, inputs=[scan_tif], overwrite=True)
    os.link(scan_tif, tmp_path / "hard.tif")
    with pytest.raises(io_errors.OutputError, match="is the input"):
        check_output_path(tmp_path / "hard.tif", inputs=[scan_tif], overwrite=True)


def test_existing_output_needs_overwrite_and_foreign_directories_never_pass(tmp_path):
    existing = save_labels(np.ones((2, 2, 2), np.uint32), tmp_path / "labels.tif")
    with pytest.raises(io_errors.OutputError, match=r"labels\.tif exists; pass --overwrite \(overwrite=True\)"):
        check_output_path(existing)
    assert check_output_path(existing, overwrite=True) == existing
    ours = save_labels(np.ones((2, 2, 2), np.uint32), tmp_path / "labels.zarr")
    assert check_output_path(ours, overwrite=True) == ours
    (tmp_path / "folder.tif").mkdir()
    (tmp_path / "plain.zarr").mkdir()
    for directory in ("folder.tif", "plain.zarr"):
        with pytest.raises(io_errors.OutputError, match="did not write; choose another output or remove it yourself"):
            check_output_path(tmp_path / directory, overwrite=True)


def test_output_in_a_new_folder_is_probed_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    target = check_output_path("~/new/deeper/labels.tif")
    assert target == tmp_path / "new" / "deeper" / "labels.tif"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(io_errors.OutputError, match=r"cannot write to the folder .*file/sub"):
        check_output_path(tmp_path / "file" / "sub" / "labels.tif")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores file permissions (the tmpfs test below covers a read-only folder)")
def test_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for target in (locked / "labels.tif", locked / "new" / "labels.tif"):
            with pytest.raises(io_errors.OutputError, match="cannot write to the folder"):
                check_output_path(target)
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_output_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    _too_little_space(monkeypatch, free=10**6)
    with pytest.raises(io_errors.OutputError, match=r"needs 8,000,000 bytes \(7\.6 MiB\) but .* has "
                                                    r"1,000,000 bytes \(976\.6 KiB\) free"):
        check_output_path(tmp_path / "labels.npy", expected_bytes=8_000_000)
    assert check_output_path(tmp_path / "labels.npy", expected_bytes=999_999) == tmp_path / "labels.npy"
