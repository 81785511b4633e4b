"""Tests of ps3d_toolkit.analysis.stats on tables whose distributions are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analytic_shapes import sphere_table as table_of

from ps3d_toolkit.analysis import stats
from ps3d_toolkit.measurement import measure

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
    # three particles: R20/3 would put 6 sieves across them (0.71 to 4 mm), so the finer R40/3 (ISO 565) series
    assert default["size_mm"].tolist() == [0.85, 1.0, 1.18, 1.4, 1.7, 2.0, 2.36, 2.8, 3.35]
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


def test_phase_summary_volumes_and_the_minimum_fraction():
    table = pd.DataFrame({
        "label": [1, 2, 3, 4], "volume_mm3": [1.0, 2.0, 7.0, 10.0],
        "phase_fraction_ore": [1.0, 0.5, 0.1, 0.01], "phase_fraction_gangue": [0.0, 0.5, 0.9, 0.99],
    })
    summary = stats.phase_summary(table)
    assert summary.loc["ore", "volume_mm3"] == pytest.approx(1.0 + 1.0 + 0.7 + 0.1)
    assert summary.loc["gangue", "volume_fraction"] == pytest.approx(17.2 / 20)
    # 1 % of ore is below the default minimum (2 %): particle 4 does not contain ore
    assert summary.loc["ore", "particles_with_phase"] == 3 and summary.attrs["min_phase_fraction"] == 0.02
    assert summary.loc["gangue", "particles_with_phase"] == 3
    assert stats.phase_summary(table, min_phase_fraction=0.0).loc["ore", "particles_with_phase"] == 4
    assert stats.phase_summary(table, min_phase_fraction=0.2).loc["ore", "particles_with_phase"] == 2
    table.attrs["min_phase_fraction"] = 0.005  # the table's own minimum, as measured
    assert stats.phase_summary(table).loc["ore", "particles_with_phase"] == 4
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
    # ore volumes 0.95, 1.0, 0.3, 0 of 2.25: liberated (>= 95 %), middling, locked, barren (< 2 %)
    assert frame["count"].to_dict() == {"barren": 1, "locked": 1, "middling": 1, "liberated": 1}
    assert frame["particle_volume_share"].to_numpy() == pytest.approx([0.4, 0.3, 0.2, 0.1])
    assert frame["phase_volume_share"].to_numpy() == pytest.approx([0, 0.3 / 2.25, 1.0 / 2.25, 0.95 / 2.25])
    assert frame.attrs["liberation_thresholds"] == (0.3, 0.95) and frame.attrs["min_phase_fraction"] == 0.02
    strict = stats.liberation_table(table, thresholds=(0.05, 0.99)).set_index("liberation_class")
    assert strict["count"].to_dict() == {"barren": 1, "locked": 0, "middling": 3, "liberated": 0}
    lenient = stats.liberation_table(table, min_phase_fraction=0.0).set_index("liberation_class")
    assert lenient["count"].to_dict() == {"barren": 0, "locked": 2, "middling": 1, "liberated": 1}
    with pytest.raises(ValueError, match="phase_fraction"):
        stats.liberation_table(table_of([1.0]))


# --------------------------------------------------------------------------- cut grains


def _with_cut(sizes, cut):
    table = table_of(sizes)
    table["touches_border"] = cut
    return table


def test_cut_particles_are_left_out_unless_included():
    table = _with_cut([1.0, 2.0, 3.0, 10.0], [False, False, False, True])
    assert stats.cut_particles(table).tolist() == [False, False, False, True]
    uncut = table_of([1.0, 2.0, 3.0])
    assert stats.percentiles(table) == pytest.approx(stats.percentiles(uncut))
    assert stats.percentiles(table, include_cut=True) != pytest.approx(stats.percentiles(uncut))
    assert stats.percentiles(table, weight="number")["d50_mm"] == pytest.approx(1.5)
    assert stats.percentiles(table, include_cut=True, weight="number")["d50_mm"] == pytest.approx(2.0)
    assert stats.size_distribution(table, bins=[0.5, 5, 20])["count"].tolist() == [3, 0]
    assert stats.size_distribution(table, bins=[0.5, 5, 20], include_cut=True)["count"].tolist() == [3, 1]
    assert stats.cumulative_distribution(table)["size_mm"].tolist() == [1.0, 2.0, 3.0]
    assert stats.sieve_curve(table, [2.5], weight="number")["percent_passing"].iloc[0] == pytest.approx(200 / 3)
    assert stats.sieve_curve(table, [2.5], weight="number",
                             include_cut=True)["percent_passing"].iloc[0] == pytest.approx(50)
    kept = stats.select_particles(table)
    assert len(kept) == 3 and kept.attrs["n_cut_left_out"] == 1 and not kept.attrs["include_cut"]
    everything = stats.select_particles(table, include_cut=True)
    assert len(everything) == 4 and everything.attrs["n_cut_left_out"] == 0
    # a table without the flag has nothing cut
    assert stats.select_particles(uncut).attrs["n_cut_left_out"] == 0


def test_shape_phase_and_liberation_statistics_follow_the_cut_policy():
    table = pd.DataFrame({
        "label": [1, 2, 3], "volume_mm3": [1.0, 1.0, 2.0], "touches_border": [False, True, False],
        "sphericity": [0.9, 0.1, 0.8], "elongation": [0.9, 0.2, 0.9], "flatness": [0.9, 0.2, 0.9],
        "axis_major_mm": [1.0, 5.0, 1.0], "axis_minor_mm": [0.9, 1.0, 0.9],
        "phase_fraction_ore": [1.0, 0.5, 0.0],
    })
    assert stats.shape_summary(table).loc["sphericity", "count"] == 2
    assert stats.shape_summary(table, include_cut=True).loc["sphericity", "count"] == 3
    assert stats.shape_summary(table).loc["zingg_blade", "count"] == 0
    assert stats.phase_summary(table).loc["ore", "particles_with_phase"] == 1
    assert stats.phase_summary(table, include_cut=True).loc["ore", "particles_with_phase"] == 2
    lib = stats.liberation_table(table).set_index("liberation_class")["count"].to_dict()
    assert lib == {"barren": 1, "locked": 0, "middling": 0, "liberated": 1}
    assert stats.liberation_table(table).attrs["n_cut_left_out"] == 1
    lib_all = stats.liberation_table(table, include_cut=True).set_index("liberation_class")["count"].to_dict()
    assert lib_all["middling"] == 1


def test_sieve_apertures_are_the_iso_565_series():
    r20 = stats.sieve_apertures([0.05, 0.6], "R20/3")
    assert r20.tolist() == [0.045, 0.063, 0.09, 0.125, 0.18, 0.25, 0.355, 0.5, 0.71]
    assert stats.sieve_apertures([0.1, 0.3], "R40/3").tolist() == [0.09, 0.106, 0.125, 0.15, 0.18, 0.212, 0.25,
                                                                   0.3]
    assert stats.sieve_apertures([1.5, 30.0], "R20/3").tolist() == [1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0,
                                                                    22.4, 31.5]
    # auto: the principal series when it gives 8 sieves or more
    assert stats.sieve_apertures([0.05, 0.6]).tolist() == r20.tolist()
    assert len(stats.sieve_apertures([0.1, 0.3])) == 8
    with pytest.raises(ValueError, match="series"):
        stats.sieve_apertures([1.0], "R10")
