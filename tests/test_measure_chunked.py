"""Chunked measurement: block by block, the same table as in memory (ps3d_toolkit.measurement.chunked)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import zarr

from conftest import ball
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.io import CheckedZarrArray
from ps3d_toolkit.measurement import measure, propose_phase_thresholds
from ps3d_toolkit.measurement.chunked import find_particles, is_lazy, propose_phase_thresholds_chunked

# The Feret diameter is computed on particles stacked in batches; a particle's place in
# its batch changes the last bits of its vertex coordinates (measured: <= 3e-15 relative).
FLOAT_ORDER_COLUMNS = ("feret_max_mm", "feret_ratio")


def to_zarr(array, path, chunks=(32, 32, 32)):
    """``array`` written to a zarr store with small chunks, opened lazily."""
    stored = zarr.create_array(store=str(path), shape=array.shape, chunks=chunks, dtype=array.dtype)
    stored[...] = array
    return zarr.open_array(str(path), mode="r")


def assert_same_table(chunked: pd.DataFrame, in_memory: pd.DataFrame):
    """Same columns, rows, dtypes and attrs; every value identical but the float-order columns."""
    assert list(chunked.columns) == list(in_memory.columns)
    assert chunked.attrs == in_memory.attrs
    exact = [c for c in in_memory.columns if c not in FLOAT_ORDER_COLUMNS]
    pd.testing.assert_frame_equal(chunked[exact], in_memory[exact], check_exact=True)
    loose = [c for c in FLOAT_ORDER_COLUMNS if c in in_memory.columns]
    pd.testing.assert_frame_equal(chunked[loose], in_memory[loose], check_exact=False, rtol=1e-12, atol=0)


def corner_scene() -> np.ndarray:
    """80^3 labels for 40-voxel blocks: a ball on the corner of 8 blocks, one wider than a block, small ones, an empty block."""
    labels = np.zeros((80, 80, 80), np.uint32)
    labels[ball(labels.shape, (40, 40, 40), 14)] = 7
    labels[ball(labels.shape, (54, 24, 52), 21) & (labels == 0)] = 3
    labels[2:6, 2:6, 2:6] = 100_000
    labels[0:3, 70:80, 75:80] = 12
    labels[60:62, 5:9, 30:31] = 5
    labels[:40, 40:, :40][ball((40, 40, 40), (20, 20, 20), 40)] = 0  # block (0, 1, 0) stays empty
    return labels


@pytest.mark.slow
def test_the_sample_measures_the_same_from_small_zarr_chunks(sample, tmp_path):
    scan, truth = sample
    image = np.asarray(scan.image if hasattr(scan, "image") else scan)
    lazy_labels = to_zarr(truth, tmp_path / "labels.zarr")
    lazy_image = CheckedZarrArray(to_zarr(image, tmp_path / "image.zarr"), str(tmp_path / "image.zarr"))
    spacing = (0.02, 0.01, 0.015)
    expected = measure(truth, image, spacing=spacing, progress=False)
    assert_same_table(measure(lazy_labels, lazy_image, spacing=spacing, chunk_size=40, progress=False), expected)
    assert {"intensity_mean", "intensity_p90"} <= set(expected.columns)


def test_automatic_phases_are_the_in_memory_ones(sample, tmp_path):
    scan, truth = sample
    image = np.asarray(scan.image if hasattr(scan, "image") else scan)
    lazy_labels, lazy_image = to_zarr(truth, tmp_path / "l.zarr"), to_zarr(image, tmp_path / "i.zarr")
    expected = measure(truth, image, phases="auto", shape=False, progress=False)
    chunked = measure(lazy_labels, lazy_image, phases="auto", shape=False, chunk_size=48, progress=False)
    assert_same_table(chunked, expected)
    assert "liberation_phase_1" in chunked and chunked.attrs["phases"] == expected.attrs["phases"]
    # a sample smaller than the particle voxels is drawn in block order: close, not equal
    few = {"max_samples": 20_000, "n_phases": 3}
    in_memory = propose_phase_thresholds(image, truth, **few)
    sampled = propose_phase_thresholds_chunked(lazy_image, lazy_labels, 48, **few)
    assert list(sampled) == list(in_memory)
    step = (float(image[truth != 0].max()) - float(image[truth != 0].min())) / 256
    for name in list(in_memory)[1:]:
        assert abs(sampled[name][0] - in_memory[name][0]) < 8 * step


def test_a_generated_scan_with_every_optional_volume_measures_the_same(tmp_path):
    synthetic = generate_scan((72, 64, 80), mean_diameter_vox=14, seed=3, spacing=(0.03, 0.01, 0.02))
    labels, image = synthetic.labels, synthetic.image
    fov = np.ones(labels.shape, bool)
    fov[:, :, :4] = False
    confidence = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    phase_ids = {f"p{i}": i for i in np.unique(synthetic.phases) if i}
    kwargs = {"spacing": synthetic.spacing, "phase_map": synthetic.phases, "phases": phase_ids, "mask": fov,
              "confidence": confidence, "progress": False}
    expected = measure(labels, image, **kwargs)
    lazy = {k: to_zarr(v, tmp_path / f"{k}.zarr") for k, v in
            (("phase_map", synthetic.phases), ("mask", fov), ("confidence", confidence))}
    chunked = measure(to_zarr(labels, tmp_path / "l.zarr"), to_zarr(image, tmp_path / "i.zarr"),
                      **{**kwargs, **lazy}, chunk_size=24)
    assert len(expected) > 20 and expected["touches_border"].any()
    assert_same_table(chunked, expected)


def test_particles_across_blocks_and_an_empty_block_measure_the_same(tmp_path):
    labels = corner_scene()
    ids, boxes = find_particles(labels, 40)
    assert ids.tolist() == [3, 5, 7, 12, 100_000]
    assert boxes[ids.tolist().index(7)].tolist() == [26, 26, 26, 55, 55, 55]  # in all 8 blocks
    assert not labels[:40, 40:, :40].any()
    image = np.random.default_rng(0).normal(100, 20, labels.shape).astype(np.float32)
    expected = measure(labels, image, spacing=(0.5, 0.2, 0.3), progress=False)
    chunked = measure(to_zarr(labels, tmp_path / "l.zarr"), to_zarr(image, tmp_path / "i.zarr"),
                      spacing=(0.5, 0.2, 0.3), chunk_size=40, progress=False)
    assert_same_table(chunked, expected)
    assert chunked.set_index("label")["touches_border"].to_dict() == {3: False, 5: False, 7: False, 12: True,
                                                                      100_000: False}


@pytest.mark.parametrize("chunk_size", [1, 7, 128])
def test_any_block_size_down_to_one_voxel_gives_the_same_table(chunk_size):
    labels = corner_scene()[20:40, 20:50, 30:60]  # smaller than a block of 128
    assert_same_table(measure(labels, spacing=0.1, chunk_size=chunk_size, progress=False),
                      measure(labels, spacing=0.1, progress=False))


@pytest.mark.parametrize("in_memory_voxels", [0, 10**9])
def test_lazy_inputs_of_every_kind_give_the_same_table(tmp_path, monkeypatch, in_memory_voxels):
    import ps3d_toolkit.measurement.chunked as chunked

    dask_array = pytest.importorskip("dask.array")
    labels = corner_scene()
    mapped = np.lib.format.open_memmap(tmp_path / "l.npy", mode="w+", dtype=labels.dtype, shape=labels.shape)
    mapped[...] = labels
    assert is_lazy(mapped) and is_lazy(dask_array.from_array(labels)) and not is_lazy(labels)
    expected = measure(labels, spacing=0.1, shape=False, progress=False)
    # above the in-memory limit lazy inputs go block by block, below it they are read whole
    monkeypatch.setattr(chunked, "IN_MEMORY_VOXELS", in_memory_voxels)
    calls = []
    real = chunked.measure_chunked
    monkeypatch.setattr(chunked, "measure_chunked", lambda *a, **k: calls.append(1) or real(*a, **k))
    for lazy in (mapped, dask_array.from_array(labels, chunks=32)):
        assert_same_table(measure(lazy, spacing=0.1, shape=False, progress=False), expected)
    assert len(calls) == (2 if in_memory_voxels == 0 else 0)


def test_a_label_image_without_particles_gives_the_same_empty_table(tmp_path):
    labels = np.zeros((30, 20, 10), np.uint16)
    image = np.ones(labels.shape, np.float32)
    expected = measure(labels, image, spacing=0.1, phases={"bright": (0.5, 2.0)}, progress=False)
    chunked = measure(to_zarr(labels, tmp_path / "l.zarr"), image, spacing=0.1, phases={"bright": (0.5, 2.0)},
                      chunk_size=8, progress=False)
    assert len(expected) == 0
    assert_same_table(chunked, expected)
    assert (chunked.dtypes == expected.dtypes).all()


def test_measure_and_measure_chunked_give_the_same_liberation_classes_by_default():
    from ps3d_toolkit.measurement import LIBERATION_THRESHOLDS, MIN_PHASE_FRACTION
    from ps3d_toolkit.measurement.chunked import measure_chunked

    # cubes of 1000 voxels holding 1 % to 100 % of phase B: every class boundary crossed, 92 % between
    # the two liberated_from values (0.9, 0.95) that the two paths once defaulted to
    shares = (10, 20, 100, 299, 300, 500, 920, 949, 950, 1000)
    labels = np.zeros((12, 12, 12 * len(shares)), np.uint32)
    phase_map = np.ones(labels.shape, np.uint8)
    for i, n_b in enumerate(shares):
        labels[1:11, 1:11, 12 * i + 1:12 * i + 11] = i + 1
        flat = np.ones(1000, np.uint8)
        flat[:n_b] = 2
        phase_map[1:11, 1:11, 12 * i + 1:12 * i + 11] = flat.reshape(10, 10, 10)
    options = {"phases": {"A": 1, "B": 2}, "phase_map": phase_map, "shape": False, "progress": False}
    in_memory = measure(labels, **options)
    chunked = measure_chunked(labels, chunk_size=24, **options)
    assert_same_table(chunked, in_memory)
    assert in_memory.attrs["liberation_thresholds"] == LIBERATION_THRESHOLDS
    assert in_memory.attrs["min_phase_fraction"] == MIN_PHASE_FRACTION
    assert list(chunked.liberation_B.astype(str)) == (
        ["barren", "locked", "locked", "locked", "middling", "middling", "middling", "middling", "liberated",
         "liberated"])


def test_measure_chunked_takes_every_argument_of_measure_with_the_same_default():
    import inspect

    from ps3d_toolkit.measurement.chunked import measure_chunked

    ours = inspect.signature(measure_chunked).parameters
    for name, parameter in inspect.signature(measure).parameters.items():
        assert name in ours and ours[name].default == parameter.default, name


def test_a_sample_region_and_named_automatic_phases_measure_the_same_in_blocks(tmp_path):
    synthetic = generate_scan((48, 56, 64), mean_diameter_vox=12, seed=5, spacing=0.02)
    labels, image = synthetic.labels, synthetic.image
    mask = np.zeros(labels.shape, bool)
    mask[:, 6:50, 4:60] = True
    options = {"spacing": 0.02, "roi": "4:44,:,:", "mask": mask, "phases": "auto",
               "phase_names": "dark,mid,bright", "progress": False}
    expected = measure(labels, image, **options)
    chunked = measure(to_zarr(labels, tmp_path / "l.zarr"), to_zarr(image, tmp_path / "i.zarr"),
                      **{**options, "mask": to_zarr(mask, tmp_path / "m.zarr")}, chunk_size=16)
    assert_same_table(chunked, expected)
    assert list(expected.attrs["phases"]) == ["dark", "mid", "bright"]
    assert expected.attrs["sample_region"].startswith("roi 4:44,0:56,0:64")
    whole = measure(labels, image, spacing=0.02, progress=False)
    assert expected["touches_border"].sum() > 0 and expected["voxel_count"].sum() < whole["voxel_count"].sum()


def test_the_chunked_path_refuses_what_it_cannot_do_in_one_line(tmp_path):
    labels = to_zarr(corner_scene(), tmp_path / "l.zarr")
    with pytest.raises(InputError, match="chunk_size"):
        measure(labels, chunk_size=0, progress=False)
    with pytest.raises(InputError, match="phases='auto' needs the image"):
        measure(labels, phases="auto", progress=False)
    with pytest.raises(InputError, match="same shape"):
        measure(labels, np.ones((3, 3, 3)), progress=False)
    fractional = to_zarr(np.full((4, 4, 4), 1.5, np.float32), tmp_path / "f.zarr")
    with pytest.raises(InputTypeError, match="integer label image"):
        measure(fractional, progress=False)


# Peak memory from /proc: ru_maxrss of a child process starts at its parent's size (Linux carries
# it across fork and exec), so the peak of this process's own memory (VmHWM) is read instead, after
# resetting it (clear_refs "5") once the imports and zarr's buffers are in place.
_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, zarr
    from ps3d_toolkit.measurement import measure

    def status_kib(field):
        line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
        return int(line.split()[1])

    measure(np.ones((4, 4, 4), np.uint32), spacing=1.0, progress=False)  # imports and first calls
    labels = zarr.open_array(sys.argv[1], mode="r")
    np.asarray(labels[:80, :80, :80])  # zarr's own thread pools and buffers, in both runs alike
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")
    before = status_kib("VmRSS")
    if sys.argv[2] == "memory":
        table = measure(np.asarray(labels), spacing=1.0, shape=False, progress=False)
    else:
        table = measure(labels, spacing=1.0, shape=False, chunk_size=64, progress=False)
    growth = status_kib("VmHWM") - before
    print(json.dumps({"growth_kib": growth, "rows": len(table), "volume": float(table.volume_mm3.sum())}))
""")


@pytest.mark.slow
def test_chunked_memory_is_bounded_by_the_block_not_the_scan(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the peak memory from /proc")
    labels = np.zeros((256, 256, 256), np.uint32)
    centres = np.stack(np.meshgrid(*[np.arange(8, 256, 16)] * 3, indexing="ij"), -1).reshape(-1, 3)
    small = ball((11, 11, 11), (5, 5, 5), 5)
    for label, (z, y, x) in enumerate(centres, start=1):
        labels[z - 5:z + 6, y - 5:y + 6, x - 5:x + 6][small] = label
    to_zarr(labels, tmp_path / "l.zarr", chunks=(64, 64, 64))
    del labels
    runs = {}
    for mode in ("memory", "chunked"):
        done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "l.zarr"), mode],
                              capture_output=True, text=True, timeout=120, check=True)
        runs[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    print(runs)
    assert runs["chunked"]["rows"] == runs["memory"]["rows"] == len(centres)
    assert runs["chunked"]["volume"] == runs["memory"]["volume"]
    # the whole uint32 label image is 64 MiB; the chunked run holds a group's crop at a time
    assert runs["memory"]["growth_kib"] > 64 * 1024
    assert runs["chunked"]["growth_kib"] < runs["memory"]["growth_kib"] / 3
