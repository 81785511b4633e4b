"""Segmentation methods as objects: the registry, the defaults of the protocol, and a method written
outside the package, registered only by an entry point, run in memory, in blocks and on Dask."""

from __future__ import annotations


import numpy as np
import pytest
from conftest import ball

from ps3d_toolkit.analysis.evaluate import evaluate_instances
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation import methods, segment
from ps3d_toolkit.segmentation.chunked import segment_chunked
from ps3d_toolkit.segmentation.methods.base import SegmentationMethod, as_method

# A lab's own recipe, as a user writes it in a package of their own.
OUTSIDE_METHOD = '''
import numpy as np
from scipy import ndimage


class Threshold:
    """Halfway between the epoxy and the grains, then connected components."""

    name = "lab-threshold"

    def plan(self, sample, *, spacing, particle_size_vox):
        low, high = np.percentile(sample, [5, 99.5])
        return {"threshold": float((low + high) / 2)}

    def segment_block(self, block, *, plan, spacing, particle_size_vox):
        return ndimage.label(block > plan["threshold"])[0].astype(np.uint32)


method = Threshold()
'''


@pytest.fixture
def outside_method(tmp_path, monkeypatch):
    """The package ``labthresh`` installed into a folder on sys.path, with its dist-info and entry point."""
    site = tmp_path / "site"
    (site / "labthresh").mkdir(parents=True)
    (site / "labthresh" / "__init__.py").write_text(OUTSIDE_METHOD)
    info = site / "labthresh-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labthresh\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ps3d_toolkit.methods]\nlab-threshold = labthresh:method\n")
    monkeypatch.syspath_prepend(str(site))
    return "lab-threshold"


@pytest.fixture(scope="module")
def separate_balls():
    """Eight balls of radius 6 apart from each other in epoxy, with a little noise: (image, truth)."""
    shape = (64, 64, 64)
    truth = np.zeros(shape, np.uint32)
    for i, centre in enumerate([(z, y, x) for z in (16, 46) for y in (14, 47) for x in (17, 45)], start=1):
        truth[ball(shape, centre, 6)] = i
    image = np.where(truth > 0, 1.0, 0.3) + np.random.default_rng(0).normal(0, 0.02, shape)
    return image.astype(np.float32), truth


def test_an_outside_method_runs_in_memory_in_blocks_and_on_dask_with_the_same_particles(outside_method,
                                                                                       separate_balls):
    distributed = pytest.importorskip("distributed")
    image, truth = separate_balls
    common = dict(spacing=0.01, particle_size_mm=0.12, method=outside_method, progress=False)
    assert outside_method in methods.method_names() and outside_method in methods.available_methods()
    in_memory = segment(image, **common)
    assert in_memory.dtype == np.uint32 and evaluate_instances(truth, in_memory)["f1_75"] == 1.0
    in_blocks = segment_chunked(image, chunk_size=24, **common)  # the balls cross block faces
    assert int(in_blocks.max()) == 8 and evaluate_instances(in_memory, in_blocks)["mean_matched_iou"] == 1.0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        on_dask = segment_chunked(image, chunk_size=24, scheduler=client, **common)
    assert np.array_equal(on_dask, in_blocks)


def test_an_outside_method_is_offered_by_ps3d_segment_and_the_tuner(outside_method, ps3d):
    from ps3d_toolkit.viz.tuner.parameters import PARAMETERS, available_methods

    code, out, _ = ps3d("segment", "--help")
    assert code == 0 and outside_method in out
    assert outside_method in available_methods() and outside_method in PARAMETERS
    assert set(PARAMETERS[outside_method]) == {"grains"}  # it declares no controls of its own


def test_an_unknown_method_fails_listing_the_methods_there_are(outside_method):
    with pytest.raises(InputError, match="lab-threshold") as error:
        segment(np.zeros((16, 16, 16)), spacing=1.0, method="threshold")
    assert "otsu-watershed" in str(error.value)


def test_an_object_without_segment_block_is_not_a_method():
    class Nameless:
        name = "x"

    with pytest.raises(TypeError, match="segment_block"):
        as_method(Nameless())


def test_an_outside_method_gets_every_default_of_the_protocol(outside_method):
    found = methods.get_method(outside_method)
    base = SegmentationMethod()
    assert (found.halo_diameters, found.bytes_per_voxel, dict(found.defaults)) == (
        base.halo_diameters, base.bytes_per_voxel, {})
    with pytest.raises(TypeError, match="unexpected option"):
        found.configure(sigma=1)


def test_labels_of_the_wrong_shape_are_refused_naming_the_method(tmp_path, monkeypatch):
    class Broken:
        name = "broken"

        def segment_block(self, block, *, plan, spacing, particle_size_vox):
            return np.zeros((2, 2, 2), np.uint32)

    with pytest.raises(InputError, match="'broken' returned"):
        as_method(Broken()).segment_block(np.zeros((4, 4, 4)), plan={}, spacing=(1, 1, 1), particle_size_vox=3)


@pytest.mark.parametrize("name", ["model", "otsu-watershed", "snow"])
def test_every_built_in_method_holds_its_options_halo_memory_and_controls(name):
    method = methods.get_method(name)
    assert method.name == name and method.halo_diameters > 0 and method.bytes_per_voxel > 0
    assert set(method.controls) <= set(method.defaults)
