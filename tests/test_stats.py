"""Tests of ps3d_toolkit.analysis.stats on tables whose distributions are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analytic_shapes import sphere_table as table_of
from ps3d_toolkit.analysis import stats
from ps3d_toolkit.measurement import liberation_class, measure


# --------------------------------------------------------------------------- percentiles


def test_volume_weighted_d50_of_three_particles_by_hand():
    # volumes 1 : 8 : 27 -> cumulative 1/36, 9/36, 36/36; 50 % is a third of the way from 25 % to 100 %
    values = stats.percentiles(table_of([1.0, 2.0, 3.0]), weight="volume")
    assert values["d50_mm"] == pytest.approx(2 + (0.5 - 9 / 36) / (1 - 9 / 36))
    assert values["d50_mm"] == pytest.approx(7 / 3)
    # 10 % lies between 1/36 and 9/36
    assert values["d10_mm"] == pytest.approx(1 + (0.1 - 1 / 36) / (8 / 36))
    assert values["d90_mm"] == pytest.approx(2 + (0.9 - 0.25) / 0.75)


def test_number_weighted_percentiles_and_order_independence():
    table = table_of([3.0, 1.0, 2.0])  # unsorted on purpose
    values = stats.percentiles(table, weight="number")
    assert values == pytest.approx({"d10_mm": 1.0, "d50_mm": 1.5, "d90_mm": 2 + (0.9 - 2 / 3) * 3})
    with pytest.raises(TypeError):  # one name per idea: no "weighting" alias
        stats.percentiles(table, weighting="number")
    assert list(stats.percentiles(table, points=(25, 75))) == ["d25_mm", "d75_mm"]


def test_volume_weighting_shifts_d50_up_for_a_broad_distribution():
    rng = np.random.default_rng(0)
    table = table_of(rng.lognormal(0.0, 0.5, 4000))
    by_number = stats.percentiles(table, weight="number")["d50_mm"]
    by_volume = stats.percentiles(table, weight="volume")["d50_mm"]
    # lognormal(mu, s): number median e^mu, volume median e^(mu + 3 s^2)
    assert by_number == pytest.approx(1.0, rel=0.05)
    assert by_volume == pytest.approx(np.exp(3 * 0.25), rel=0.06)


def test_percentiles_of_an_empty_table_are_nan_and_errors():
    assert all(np.isnan(v) for v in stats.percentiles(table_of([])).values())
    with pytest.raises(ValueError, match="weight"):
        stats.percentiles(table_of([1.0]), weight="mass")
    with pytest.raises(ValueError, match="column"):
        stats.percentiles(pd.DataFrame({"x": [1]}))
    with pytest.raises(TypeError, match="DataFrame"):
        stats.percentiles([1, 2, 3])


# --------------------------------------------------------------------------- distributions


def test_size_distribution_counts_and_fractions():
    table = table_of([1.0, 1.5, 2.5, 3.5, 3.9])
    dist = stats.size_distribution(table, weight="number", bins=[1, 2, 3, 4])
    assert list(dist["count"]) == [2, 1, 2]
    assert dist["fraction"].to_numpy() == pytest.approx([0.4, 0.2, 0.4])
    assert dist["cumulative_fraction"].iloc[-1] == pytest.approx(1.0)
    by_volume = stats.size_distribution(table, weight="volume", bins=[1, 2, 3, 4])
    volumes = np.pi / 6 * np.array([1.0, 1.5, 2.5, 3.5, 3.9]) ** 3
    assert by_volume["fraction"].to_numpy() == pytest.approx(
        [volumes[:2].sum(), volumes[2], volumes[3:].sum()] / volumes.sum())
    log_bins = stats.size_distribution(table, bins=4)
    assert log_bins["size_low_mm"].iloc[0] == pytest.approx(1.0)
    assert log_bins["size_high_mm"].iloc[-1] == pytest.approx(3.9)
    assert np.allclose(np.diff(np.log(log_bins["size_low_mm"])), np.log(3.9) / 4)
    assert log_bins["count"].sum() == 5
    with pytest.raises(ValueError, match="bins"):
        stats.size_distribution(table, bins=[3, 2, 1])


def test_sieve_curve_percent_passing():
    table = table_of([1.0, 2.0, 3.0])
    curve = stats.sieve_curve(table, sizes_mm=[0.5, 1.0, 2.5, 4.0], weight="number")
    assert curve["percent_passing"].to_numpy() == pytest.approx([0, 100 / 3, 200 / 3, 100])
    assert curve["percent_retained"].sum() == pytest.approx(100)
    by_volume = stats.sieve_curve(table, sizes_mm=[2.0])
    assert by_volume["percent_passing"].iloc[0] == pytest.approx(100 * 9 / 36)
    default = stats.sieve_curve(table)
    ratios = default["size_mm"].to_numpy()[1:] / default["size_mm"].to_numpy()[:-1]
    assert ratios == pytest.approx(np.sqrt(2))
    assert default["percent_passing"].iloc[0] == 0 and default["percent_passing"].iloc[-1] == pytest.approx(100)
    with pytest.raises(ValueError, match="sizes_mm"):
        stats.sieve_curve(table, sizes_mm=[-1])


# --------------------------------------------------------------------------- shapes and phases


def test_zingg_classes_on_the_2_3_boundaries():
    table = pd.DataFrame({"label": [1, 2, 3, 4, 5], "elongation": [0.9, 0.9, 0.3, 0.3, np.nan],
                          "flatness": [0.9, 0.3, 0.9, 0.3, 0.5]})
    classes = stats.zingg_class(table)
    assert list(classes[:4]) == ["spheroid", "disc", "rod", "blade"]
    assert pd.isna(classes[4])
    edge = pd.DataFrame({"elongation": [2 / 3], "flatness": [2 / 3 - 1e-9]})
    assert list(stats.zingg_class(edge)) == ["disc"]


def test_shape_summary_from_measured_shapes():
    labels = np.zeros((30, 30, 60), np.uint32)
    labels[2:12, 2:12, 2:12] = 1  # cube: spheroid class
    labels[15:18, 2:14, 2:26] = 2  # 3 x 12 x 24 plate: elongation 0.5, flatness 0.25 -> blade
    labels[2:6, 16:20, 20:58] = 3  # 4 x 4 x 38 rod
    table = measure(labels, spacing=1.0, progress=False)
    summary = stats.shape_summary(table)
    assert summary.loc["zingg_spheroid", "count"] == 1
    assert summary.loc["zingg_blade", "count"] == 1
    assert summary.loc["zingg_rod", "count"] == 1
    assert summary.loc["zingg_disc", "count"] == 0
    assert summary.loc["sphericity", "count"] == 3
    assert summary.loc["elongation", "median"] == pytest.approx(np.median(table.elongation))


def test_phase_summary_volumes_and_liberation():
    table = pd.DataFrame({
        "label": [1, 2, 3], "volume_mm3": [1.0, 2.0, 7.0],
        "phase_fraction_ore": [1.0, 0.5, 0.1], "phase_fraction_gangue": [0.0, 0.5, 0.9],
    })
    table["liberation_class"] = liberation_class(table["phase_fraction_ore"])
    table.attrs["liberation_phase"] = "ore"
    summary = stats.phase_summary(table)
    assert summary.loc["ore", "volume_mm3"] == pytest.approx(1.0 + 1.0 + 0.7)
    assert summary.loc["gangue", "volume_fraction"] == pytest.approx(7.3 / 10)
    assert summary.loc["ore", "particles_with_phase"] == 3
    assert summary.loc["gangue", "particles_with_phase"] == 2
    assert summary.loc["ore", "n_liberated"] == 1 and summary.loc["ore", "n_locked"] == 1
    assert summary.loc["ore", "phase_volume_fraction_liberated"] == pytest.approx(1.0 / 2.7)
    assert summary.loc["ore", "phase_volume_fraction_locked"] == pytest.approx(0.7 / 2.7)
    with pytest.raises(ValueError, match="phase_fraction"):
        stats.phase_summary(table_of([1.0]))


# --------------------------------------------------------------------------- cumulative distribution


def test_cumulative_distribution_by_hand():
    table = table_of([3.0, 1.0, 2.0, np.nan])
    by_volume = stats.cumulative_distribution(table)
    assert by_volume["size_mm"].tolist() == [1.0, 2.0, 3.0]  # sorted, NaN size left out
    assert by_volume["fraction_passing"].to_numpy() == pytest.approx([1 / 36, 9 / 36, 1.0])
    by_number = stats.cumulative_distribution(table, weight="number")
    assert by_number["fraction_passing"].to_numpy() == pytest.approx([1 / 3, 2 / 3, 1.0])
    empty = stats.cumulative_distribution(table_of([]))
    assert list(empty.columns) == ["size_mm", "fraction_passing"] and len(empty) == 0


# --------------------------------------------------------------------------- liberation


def test_liberation_table_by_hand():
    table = pd.DataFrame({"label": [1, 2, 3, 4], "volume_mm3": [1.0, 2.0, 3.0, 4.0],
                          "phase_fraction_ore": [0.95, 0.5, 0.1, 0.0]})
    frame = stats.liberation_table(table).set_index("liberation_class")
    # ore volumes 0.95, 1.0, 0.3, 0 of 2.25: liberated, middling, locked, locked
    assert frame["count"].to_dict() == {"locked": 2, "middling": 1, "liberated": 1}
    assert frame["particle_volume_share"].to_numpy() == pytest.approx([0.7, 0.2, 0.1])
    assert frame["phase_volume_share"].to_numpy() == pytest.approx([0.3 / 2.25, 1.0 / 2.25, 0.95 / 2.25])
    strict = stats.liberation_table(table, thresholds=(0.05, 0.99)).set_index("liberation_class")
    assert strict["count"].to_dict() == {"locked": 1, "middling": 3, "liberated": 0}
    with pytest.raises(ValueError, match="phase_fraction"):
        stats.liberation_table(table_of([1.0]))
