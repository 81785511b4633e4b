"""Fuzz test: small odd volumes through the public API.

Each call either returns a valid result or raises the toolkit's own error
(:class:`~ps3d_toolkit.core.errors.Ps3dError`), never anything else, and no
call leaves a file behind. Hypothesis draws dtypes, shapes, NaNs, constant
regions and tiny or huge particle sizes and spacings; the number of examples
is bounded so that the whole file runs in well under a minute.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ps3d_toolkit.analysis.evaluate import evaluate_instances
from ps3d_toolkit.core.errors import Ps3dError
from ps3d_toolkit.io import load_labels, load_scan, save_labels, save_scan
from ps3d_toolkit.measurement import measure
from ps3d_toolkit.segmentation import segment

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = st.sampled_from(["uint8", "uint16", "int16", "float32", "float64", "bool", "complex64", "int64"])
SHAPES = st.tuples(*[st.integers(1, 14)] * 3) | st.tuples(st.integers(1, 6), st.integers(1, 6))
LENGTHS = st.sampled_from([1e-300, 1e-9, 1e-3, 0.01, 0.2, 1.0, 1e3, 1e300, 0.0, -1.0, float("nan"), float("inf")])


@st.composite
def volumes(draw):
    """A small array: random values, maybe with constant blocks, NaNs and infinities."""
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["noise", "constant", "blobs", "zeros"]))
    image = rng.normal(100, 30, shape)
    if kind == "constant":
        image[...] = 7
    elif kind == "zeros":
        image[...] = 0
    elif kind == "blobs" and len(shape) == 3:
        image[...] = 10
        image[tuple(slice(s // 4, 3 * s // 4 + 1) for s in shape)] = 200
    if dtype.kind in "fc" and draw(st.booleans()):
        image.flat[rng.integers(0, image.size)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype.kind == "b":
        return image > 100
    if dtype.kind in "ui":
        image = np.clip(np.nan_to_num(image), np.iinfo(dtype).min, np.iinfo(dtype).max)
    return image.astype(dtype)


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _calls_ok(call):
    """Run ``call``; return its result, or None when it raised the toolkit's own error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return call()
        except Ps3dError:
            return None


@FUZZ
@given(image=volumes(), spacing=LENGTHS, size=LENGTHS | st.none())
def test_segment_and_measure_return_labels_or_raise_the_toolkits_error(image, spacing, size):
    labels = _calls_ok(lambda: segment(image, spacing=spacing, particle_size_mm=size,
                                       method="otsu-watershed", progress=False))
    if labels is None:
        return
    assert labels.dtype == np.uint32 and labels.shape == image.shape
    table = _calls_ok(lambda: measure(labels, image=image, spacing=spacing, progress=False))
    if table is not None:
        assert len(table) == len(np.unique(labels[labels > 0]))


@FUZZ
@given(image=volumes(), spacing=LENGTHS, size=LENGTHS | st.none())
def test_the_model_returns_labels_or_raises_the_toolkits_error(image, spacing, size, untrained_weights):
    labels = _calls_ok(lambda: segment(image, spacing=spacing, particle_size_mm=size, method="model",
                                       weights=untrained_weights, progress=False))
    if labels is not None:
        assert labels.dtype == np.uint32 and labels.shape == image.shape


@FUZZ
@given(image=volumes(), spacing=LENGTHS, extension=st.sampled_from([".tif", ".zarr", ".npy", ".nii.gz"]))
def test_writers_and_readers_round_trip_or_raise_and_leave_nothing(image, spacing, extension, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    target = folder / f"out{extension}"
    written = _calls_ok(lambda: save_scan(image, target, spacing=spacing))
    if written is None:
        assert _files(folder) == []
        return
    scan = _calls_ok(lambda: load_scan(written))
    if scan is not None:
        back = np.asarray(scan.image)
        assert back.shape == image.shape
        np.testing.assert_array_equal(back, image.astype(np.uint8) if image.dtype == bool else image)
    labels_target = folder / f"labels{extension}"
    saved = _calls_ok(lambda: save_labels(image, labels_target, spacing=spacing))
    if saved is None:
        assert not labels_target.exists()
    else:
        assert load_labels(saved).dtype == np.uint32
    assert not [p for p in _files(folder) if ".tmp-" in str(p)]


@FUZZ
@given(truth=volumes(), prediction=volumes())
def test_evaluate_scores_or_raises_the_toolkits_error(truth, prediction):
    scores = _calls_ok(lambda: evaluate_instances(truth, prediction))
    if scores is not None:
        assert 0 <= scores["f1_50"] <= 1 and 0 <= scores["pq"] <= 1


@pytest.mark.parametrize("bad", [None, "scan", [[1, 2], [3, 4]], np.zeros((0, 3, 3))])
def test_non_arrays_raise_the_toolkits_error(bad):
    with pytest.raises(Ps3dError):
        segment(bad, spacing=0.01, method="otsu-watershed", progress=False)
