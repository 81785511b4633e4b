"""Tests for the lazy readers (ps3d_toolkit.io._lazy and load_scan): blocks read on demand, equal to an eager read."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pytest
import tifffile

from ps3d_toolkit.core.errors import CorruptDataError
from ps3d_toolkit.io import load_labels, load_scan
from ps3d_toolkit.io._lazy import LazyVolume

# non-cubic and not a multiple of any chunk, so that an axis mix-up or an edge bug shows
GREY = (np.arange(21 * 34 * 27, dtype=np.uint16).reshape(21, 34, 27) * 7) % 60000
BLOCKS = [
    np.s_[...],
    np.s_[3:11, 5:30, 2:20],
    np.s_[::4, 1::3, ::-2],
    np.s_[-1],
    np.s_[2, :, 7],
    np.s_[..., 5],
    np.s_[-3:, 33, -5:-1],
    np.s_[4:4],  # empty
    np.s_[::-1, 30:2:-7, :],
]


def _tiff_folder(folder, image, dtypes=None):
    folder.mkdir()
    for z, page in enumerate(image):
        tifffile.imwrite(folder / f"slice{z}.tif", page if dtypes is None else page.astype(dtypes[z % len(dtypes)]))
    return folder


def _pages_one_by_one(path, image):
    with tifffile.TiffWriter(path) as tif:
        for page in image:
            tif.write(page, description=json.dumps({"note": "written page by page"}))
    return path


def _series_stacked(path):
    with tifffile.TiffFile(path) as tif:
        return np.stack([series.asarray() for series in tif.series])


def _nifti(path, image, trailing=False):
    data = image.transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(data[..., None] if trailing else data, np.eye(4)), str(path))
    return path


# Each case: (name, write(tmp_path) -> path, eager read of the same file in (z, y, x))
CASES = {
    "tiff": (lambda d: tifffile.imwrite(d / "s.tif", GREY) or d / "s.tif", lambda p: tifffile.imread(p)),
    "tiff_zlib": (lambda d: tifffile.imwrite(d / "s.tif", GREY, compression="zlib") or d / "s.tif",
                  lambda p: tifffile.imread(p)),
    "tiff_imagej": (lambda d: tifffile.imwrite(d / "s.tif", GREY, imagej=True) or d / "s.tif",
                    lambda p: tifffile.imread(p)),
    "tiff_pages": (lambda d: _pages_one_by_one(d / "s.tif", GREY),
                   lambda p: _series_stacked(p)),
    "tiff_folder": (lambda d: _tiff_folder(d / "slices", GREY),
                    lambda p: np.stack([tifffile.imread(f) for f in sorted(p.iterdir(), key=lambda f: int(f.stem[5:]))])),
    "npy": (lambda d: np.save(d / "s.npy", GREY) or d / "s.npy", lambda p: np.load(p)),
    "npy_fortran": (lambda d: np.save(d / "s.npy", np.asfortranarray(GREY)) or d / "s.npy", lambda p: np.load(p)),
    "npy_big_endian": (lambda d: np.save(d / "s.npy", GREY.astype(">u2")) or d / "s.npy", lambda p: np.load(p)),
    "npy_4d": (lambda d: np.save(d / "s.npy", GREY[None]) or d / "s.npy", lambda p: np.load(p)[0]),
    "nifti": (lambda d: _nifti(d / "s.nii", GREY.astype(np.int32)),
              lambda p: nib.load(str(p)).get_fdata().transpose(2, 1, 0)),
    "nifti_gz": (lambda d: _nifti(d / "s.nii.gz", GREY.astype(np.int32), trailing=True),
                 lambda p: nib.load(str(p)).get_fdata()[..., 0].transpose(2, 1, 0)),
}


@pytest.fixture(params=sorted(CASES))
def lazy_case(request, tmp_path):
    write, eager = CASES[request.param]
    path = write(tmp_path)
    return load_scan(path, spacing=0.1), eager(path)


def test_each_format_reads_lazily_and_every_block_equals_the_eager_read(lazy_case):
    scan, eager = lazy_case
    assert isinstance(scan.image, LazyVolume) and not isinstance(scan.image, np.ndarray)
    image = scan.image
    assert image.shape == GREY.shape == eager.shape and image.ndim == 3 and len(image) == GREY.shape[0]
    assert image.size == GREY.size and image.nbytes == GREY.size * image.dtype.itemsize
    for block in BLOCKS:
        got = image[block]
        assert isinstance(got, np.ndarray) and got.dtype == image.dtype
        np.testing.assert_array_equal(got, eager[block], err_msg=str(block))
    np.testing.assert_array_equal(np.asarray(image), eager)
    assert np.asarray(image, dtype=np.float32).dtype == np.float32
    assert image.min() == eager.min() and image.max() == eager.max()


def test_dask_wraps_each_lazy_format_and_threads_read_the_right_blocks(lazy_case):
    scan, eager = lazy_case
    whole = da.from_array(scan.image, chunks=scan.image.chunks)
    small = da.from_array(scan.image, chunks=(4, 16, 10))  # many blocks read at once by the threads
    with dask.config.set(scheduler="threads", num_workers=4):
        np.testing.assert_array_equal(whole.compute(), eager)
        np.testing.assert_array_equal(small[2:19, ::3, 5:].compute(), eager[2:19, ::3, 5:])
        assert int(small.sum().compute()) == int(eager.sum())


def test_chunks_are_whole_z_slabs_of_at_most_about_64_mib(tmp_path):
    np.save(tmp_path / "s.npy", GREY)
    image = load_scan(tmp_path / "s.npy", spacing=1).image
    assert image.chunks == GREY.shape  # a small scan is one chunk
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint16, shape=(100, 2048, 2048))
    del big
    image = load_scan(tmp_path / "big.npy", spacing=1).image
    assert image.chunks == (8, 2048, 2048)  # 8 slices of 8 MiB


def test_other_indexing_is_refused_with_what_to_do(tmp_path):
    np.save(tmp_path / "s.npy", GREY)
    image = load_scan(tmp_path / "s.npy", spacing=1).image
    with pytest.raises(TypeError, match="numpy.asarray"):
        image[[0, 2]]
    with pytest.raises(IndexError, match="out of bounds"):
        image[21]
    with pytest.raises(IndexError, match="too many indices"):
        image[0, 0, 0, 0]


def test_tiff_folder_promotes_each_slice_as_it_is_read(tmp_path):
    folder = _tiff_folder(tmp_path / "slices", GREY, dtypes=[np.uint8, np.uint16])
    with pytest.warns(UserWarning, match="different types"):
        image = load_scan(folder, spacing=1).image
    assert isinstance(image, LazyVolume) and image.dtype == np.uint16
    expected = np.stack([page.astype(np.uint8) if z % 2 == 0 else page for z, page in enumerate(GREY)])
    np.testing.assert_array_equal(image[3:6], expected[3:6])


def test_threads_reading_a_tiff_folder_leave_the_tifffile_logger_as_it_was(tmp_path):
    import logging

    log = logging.getLogger("tifffile")
    before = log.handlers[:], log.propagate, log.level
    image = load_scan(_tiff_folder(tmp_path / "slices", GREY), spacing=1).image
    with dask.config.set(scheduler="threads", num_workers=8):
        for _ in range(5):
            da.from_array(image, chunks=(1, 34, 27)).sum().compute()
    assert (log.handlers[:], log.propagate, log.level) == before


def test_tiff_folder_reads_only_the_slices_a_block_needs(tmp_path):
    folder = _tiff_folder(tmp_path / "slices", GREY)
    image = load_scan(folder, spacing=1).image
    (folder / "slice20.tif").write_bytes(b"gone")  # damaged after loading: only a block holding it fails
    np.testing.assert_array_equal(image[:20], GREY[:20])
    with pytest.raises(CorruptDataError, match="slice20.tif"):
        image[15:]


def test_a_cut_tiff_slice_in_a_folder_is_refused_at_load_time(tmp_path):
    folder = _tiff_folder(tmp_path / "slices", GREY)
    cut = folder / "slice7.tif"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size - 100])
    with pytest.raises(CorruptDataError, match="slice7.tif: the file is truncated or damaged"):
        load_scan(folder, spacing=1)


def test_a_cut_npy_is_refused_at_load_time_and_pickles_stay_refused(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, GREY)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CorruptDataError, match=r"cut\.npy: ValueError: the file is truncated"):
        load_scan(path, spacing=1)
    np.save(tmp_path / "objects.npy", np.array([[[None]]], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptDataError, match="Object arrays cannot be loaded"):
        load_scan(tmp_path / "objects.npy", spacing=1)


def test_a_cut_nifti_is_refused_at_load_time_and_a_cut_gzip_when_read(tmp_path):
    path = _nifti(tmp_path / "cut.nii", GREY.astype(np.int32))
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CorruptDataError, match=r"cut\.nii: ValueError: the file is truncated"):
        load_scan(path, spacing=1)
    gz = _nifti(tmp_path / "cut.nii.gz", GREY.astype(np.int32))
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    image = load_scan(gz, spacing=1).image  # gzip cannot be sized without decompressing it all
    with pytest.raises(CorruptDataError, match=r"cut\.nii\.gz"):
        np.asarray(image)


def test_nifti_scaling_is_applied_to_each_block(tmp_path):
    img = nib.Nifti1Image(GREY.astype(np.int16).transpose(2, 1, 0), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / "scaled.nii"))
    image = load_scan(tmp_path / "scaled.nii", spacing=1).image
    eager = nib.load(str(tmp_path / "scaled.nii")).get_fdata().transpose(2, 1, 0)
    assert image.dtype == np.float64
    np.testing.assert_array_equal(image[4:9, ::5], eager[4:9, ::5])


def test_labels_read_from_a_lazy_file_are_uint32_in_memory(tmp_path):
    np.save(tmp_path / "labels.npy", (GREY % 5).astype(np.uint16))
    labels = load_labels(tmp_path / "labels.npy")
    assert isinstance(labels, np.ndarray) and labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, GREY % 5)


# A 200 x 1024 x 1024 uint16 scan (400 MiB) is written by one process; another
# loads it and reads one 64^3 block, and reports how far its peak resident
# memory rose above what the interpreter and the imports held before loading.
_WRITE = """
import sys, numpy as np, tifffile
path, kind = sys.argv[1], sys.argv[2]
shape = (200, 1024, 1024)
if kind == "npy":
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=shape)
else:
    tifffile.imwrite(path, shape=shape, dtype=np.uint16)
    out = tifffile.memmap(path, mode="r+")
for z in range(0, shape[0], 20):  # a value per slab, so that the block read can be checked
    out[z:z + 20] = z
out.flush()
"""
_MEASURE = """
import resource, sys, numpy as np, tifffile, zarr
from ps3d_toolkit.io import load_scan
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scan = load_scan(sys.argv[1], spacing=0.01)
block = scan.image[100:164, 300:364, 500:564]
assert block.shape == (64, 64, 64) and type(scan.image).__name__ != "ndarray"
assert set(np.unique(block)) == {100, 120, 140, 160}, np.unique(block)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_reading_one_block_of_a_400_mib_scan_keeps_memory_low(tmp_path, suffix):
    path = tmp_path / f"big{suffix}"
    subprocess.run([sys.executable, "-c", _WRITE, str(path), suffix[1:]], check=True, timeout=120)
    assert path.stat().st_size >= 400 * 2**20
    try:
        run = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], check=True, timeout=120,
                             capture_output=True, text=True)
    finally:
        path.unlink()
    rise = int(run.stdout.split()[-1])
    assert rise < 150 * 2**20, f"reading one 64^3 block of a 400 MiB {suffix} raised peak memory by {rise / 2**20:.0f} MiB"


def test_lazy_reads_leave_no_warning(tmp_path):
    np.save(tmp_path / "s.npy", GREY)
    tifffile.imwrite(tmp_path / "s.tif", GREY)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("s.npy", "s.tif"):
            image = load_scan(tmp_path / name, spacing=1).image
            image[3:5]
            da.from_array(image).sum().compute()


def test_a_strided_sample_of_a_zarr_scan_is_read_a_row_of_chunks_at_a_time(tmp_path):
    """The same values as slicing numpy, without decoding the whole scan at once."""
    import zarr

    from ps3d_toolkit.core.arrays import strided_sample

    image = np.random.default_rng(0).integers(0, 1000, (70, 83, 91)).astype(np.uint16)
    store = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=image.shape, chunks=(16, 20, 32),
                              dtype=image.dtype)
    store[:] = image
    for max_values in (1_000, 20_000, 10_000_000):
        assert np.array_equal(strided_sample(store, max_values), strided_sample(image, max_values))
