"""Per-particle grey levels of several registered images at once (measure(..., extra_images=...))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from ps3d_toolkit import cli
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.io import save_labels, save_scan
from ps3d_toolkit.measurement import measure
from ps3d_toolkit.measurement.intensity import PERCENTILES

STATS = ("mean", "std", "min", "max", *(f"p{q}" for q in PERCENTILES))


@pytest.fixture(scope="module")
def scene():
    """Labels 1..3 (two boxes and a rod) and a noisy float64 grey image."""
    labels = np.zeros((20, 24, 28), np.uint32)
    labels[2:8, 3:12, 4:15] = 1
    labels[10:18, 14:22, 16:26] = 2
    labels[12:19, 3, 5] = 3
    image = np.random.default_rng(0).normal(1000.0, 50.0, labels.shape)
    return labels, image


def columns(name):
    return [f"intensity_{name}_{stat}" for stat in STATS]


def test_a_linear_map_of_the_image_gives_the_mapped_statistics(scene):
    labels, image = scene
    table = measure(labels, image, progress=False, extra_images={"neutron": 2.0 * image + 5.0})
    for stat in ("mean", "min", "max", *(f"p{q}" for q in PERCENTILES)):
        np.testing.assert_allclose(table[f"intensity_neutron_{stat}"], 2.0 * table[f"intensity_{stat}"] + 5.0,
                                   rtol=1e-12)
    np.testing.assert_allclose(table["intensity_neutron_std"], 2.0 * table["intensity_std"], rtol=1e-9)


def test_a_constant_per_particle_is_read_back_exactly(scene):
    labels, _ = scene
    constant = np.where(labels > 0, 10.0 * labels + 0.5, -1.0).astype(np.float32)
    table = measure(labels, progress=False, extra_images={"xray_high": constant})
    expected = 10.0 * table["label"].to_numpy() + 0.5
    for stat in ("mean", "min", "max", "p10", "p50", "p90"):
        np.testing.assert_array_equal(table[f"intensity_xray_high_{stat}"].to_numpy(), expected)
    assert (table["intensity_xray_high_std"] == 0).all()
    # no main image: no intensity_* columns of its own
    assert "intensity_mean" not in table.columns


def test_each_image_gets_its_group_after_the_main_one_in_the_order_given(scene):
    labels, image = scene
    table = measure(labels, image, progress=False, extra_images={"b": image + 1, "a": image - 1})
    names = list(table.columns)
    start = names.index("intensity_p90") + 1
    assert names[start:start + 2 * len(STATS)] == columns("b") + columns("a")
    np.testing.assert_allclose(table["intensity_b_mean"] - table["intensity_a_mean"], 2.0, rtol=1e-12)
    # the main image's columns are untouched by the extra ones
    alone = measure(labels, image, progress=False)
    pd.testing.assert_frame_equal(table[alone.columns], alone)


def test_an_image_of_another_shape_is_named_in_the_error(scene):
    labels, image = scene
    with pytest.raises(InputError, match=r"extra_images\['neutron'\]"):
        measure(labels, image, progress=False, extra_images={"neutron": image[:, :, :-1]})
    with pytest.raises(InputError, match=r"extra_images\['neutron'\]"):
        measure(labels, image, progress=False, extra_images={"neutron": image[0]})


@pytest.mark.parametrize("bad, error, match", [
    ({"": "IMAGE"}, InputError, "names"),
    ({"two words": "IMAGE"}, InputError, "two words"),
    ({"1st": "IMAGE"}, InputError, "1st"),
    ({3: "IMAGE"}, InputError, "3"),
    ([("a", "IMAGE")], InputTypeError, "dict"),
    ({"neutron": None}, InputError, "neutron"),
])
def test_bad_extra_images_are_refused(scene, bad, error, match):
    labels, image = scene
    if isinstance(bad, dict):
        bad = {k: image if isinstance(v, str) else v for k, v in bad.items()}
    with pytest.raises(error, match=match):
        measure(labels, image, progress=False, extra_images=bad)


def test_non_finite_values_are_refused_or_masked_as_in_the_main_image(scene):
    labels, image = scene
    extra = image.copy()
    extra[2, 3, 4] = np.nan         # one voxel of particle 1
    extra[12:19, 3, 5] = np.inf     # all of particle 3
    with pytest.raises(InputError, match=r"extra_images\['neutron'\] holds 8 NaN"):
        measure(labels, image, progress=False, extra_images={"neutron": extra})
    table = measure(labels, image, progress=False, non_finite="mask", extra_images={"neutron": extra})
    row = table.set_index("label")
    finite = (labels == 1) & np.isfinite(extra)
    assert row.loc[1, "intensity_neutron_mean"] == pytest.approx(image[finite].mean(), rel=1e-12)
    assert row.loc[1, "intensity_neutron_min"] == image[finite].min()
    assert row.loc[2, "intensity_neutron_mean"] == row.loc[2, "intensity_mean"]
    assert row.loc[3, columns("neutron")].isna().all()
    assert not np.isnan(row.loc[3, "intensity_mean"])


def test_the_chunked_path_gives_the_same_columns(scene, tmp_path):
    labels, image = scene
    extra = {"neutron": np.sqrt(image), "dual": image[::-1].copy()}
    in_memory = measure(labels, image, progress=False, extra_images=extra)
    chunked = measure(labels, image, progress=False, extra_images=extra, chunk_size=8)
    names = columns("neutron") + columns("dual")
    pd.testing.assert_frame_equal(chunked[names], in_memory[names], check_exact=True)
    # lazy (zarr) extra images are read a crop at a time
    stored = zarr.create_array(store=str(tmp_path / "n.zarr"), shape=image.shape, chunks=(8, 8, 8),
                               dtype=image.dtype)
    stored[...] = extra["neutron"]
    lazy = measure(labels, image, progress=False, chunk_size=8,
                   extra_images={"neutron": zarr.open_array(str(tmp_path / "n.zarr"), mode="r"),
                                 "dual": extra["dual"]})
    pd.testing.assert_frame_equal(lazy[names], in_memory[names], check_exact=True)
    with pytest.raises(InputError, match=r"extra_images\['neutron'\]"):
        measure(labels, image, progress=False, chunk_size=8, extra_images={"neutron": image[1:]})


def test_the_command_line_takes_named_extra_images(scene, tmp_path, capsys):
    labels, image = scene
    paths = {"labels": save_labels(labels, tmp_path / "labels.tif", spacing=0.01),
             "xray": save_scan(image.astype(np.float32), tmp_path / "xray.tif", spacing=0.01),
             "neutron": save_scan((3.0 * image + 1).astype(np.float32), tmp_path / "neutron.tif", spacing=0.01)}
    out = tmp_path / "table.csv"
    code = cli.main(["measure", str(paths["labels"]), "--image", str(paths["xray"]), "--extra-image",
                     f"neutron={paths['neutron']}", "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["intensity_neutron_mean"], 3.0 * table["intensity_mean"] + 1, rtol=1e-5)
    for bad in ("neutron", f"={paths['neutron']}"):
        code = cli.main(["measure", str(paths["labels"]), "--extra-image", bad, "-o", str(tmp_path / "t.csv")])
        err = capsys.readouterr().err
        assert code == 2 and "--extra-image" in err and "NAME=PATH" in err
