"""Tests of ps3d_toolkit.viz.figures: each figure shows the numbers of analysis.stats."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from analytic_shapes import sphere_table
from ps3d_toolkit.analysis import stats
from ps3d_toolkit.viz import figures

FIGURES = (figures.fig_size_histogram, figures.fig_cumulative_psd, figures.fig_sphericity_vs_size, figures.fig_zingg)


@pytest.fixture
def random_table():
    rng = np.random.default_rng(2)
    n = 50
    return sphere_table(rng.lognormal(0, 0.4, n), sphericity=rng.uniform(0.6, 1, n),
                        elongation=rng.uniform(0.2, 1, n), flatness=rng.uniform(0.2, 1, n))


def test_size_histograms_hold_every_particle_and_all_the_weight(random_table):
    by_number = figures.fig_size_histogram(random_table)
    assert sum(row[2] for row in by_number.data[0].customdata) == len(random_table)
    assert sum(by_number.data[0].y) == pytest.approx(100)
    by_volume = figures.fig_size_histogram(random_table, weight="volume", bins=[0.1, 1.0, 10.0])
    below = random_table.volume_mm3[random_table.eq_diameter_mm < 1.0].sum() / random_table.volume_mm3.sum()
    assert list(by_volume.data[0].y) == pytest.approx([100 * below, 100 * (1 - below)])
    assert by_volume.layout.xaxis.type == "log"
    with pytest.raises(ValueError, match="weight"):
        figures.fig_size_histogram(random_table, weight="mass")


def test_cumulative_psd_by_hand_with_d_values_marked():
    table = sphere_table([1.0, 2.0, 3.0])
    fig = figures.fig_cumulative_psd(table)
    curves = {t.name: t for t in fig.data if t.mode == "lines"}
    assert list(curves["by volume"].x) == [1.0, 2.0, 3.0]
    assert list(curves["by volume"].y) == pytest.approx([100 / 36, 100 / 4, 100])
    assert list(curves["by number"].y) == pytest.approx([100 / 3, 200 / 3, 100])
    marks = {t.text[0]: (t.x[0], t.y[0]) for t in fig.data if t.mode == "markers+text"}
    assert marks["d50"] == (pytest.approx(7 / 3), 50)
    assert marks["d10"][0] == pytest.approx(stats.percentiles(table)["d10_mm"])


def test_zingg_diagram_shows_each_particle_once_in_its_class(random_table):
    zingg = figures.fig_zingg(random_table)
    shown = np.concatenate([np.asarray(t.customdata) for t in zingg.data])
    assert sorted(shown) == list(range(1, len(random_table) + 1))
    classes = np.asarray(stats.zingg_class(random_table).astype(str))
    for trace in zingg.data:
        assert set(classes[np.asarray(trace.customdata) - 1]) <= {trace.name}
    assert {s.x0 for s in zingg.layout.shapes if s.x0 is not None} >= {2 / 3}


def test_sphericity_against_size_plots_the_columns(random_table):
    fig = figures.fig_sphericity_vs_size(random_table)
    assert list(fig.data[0].x) == list(random_table.eq_diameter_mm)
    assert list(fig.data[0].y) == list(random_table.sphericity)
    assert fig.layout.xaxis.title.text == "equivalent diameter (mm)"
    with pytest.raises(ValueError, match="sphericity"):
        figures.fig_sphericity_vs_size(random_table.drop(columns="sphericity"))


def test_figures_accept_an_empty_table():
    empty = sphere_table([], sphericity=[], elongation=[], flatness=[])
    for make in FIGURES:
        assert isinstance(make(empty), go.Figure)
