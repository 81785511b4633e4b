"""Plotly figures of the particle table: size distributions, sphericity, the Zingg diagram, liberation.

The numbers come from :mod:`ps3d_toolkit.analysis.stats`; this module only draws
them. Every function takes the table from :func:`ps3d_toolkit.measurement.measure`
first and returns a :class:`plotly.graph_objects.Figure`. Scatter plots of up to
:data:`SVG_MAX_POINTS` particles are drawn in SVG, which every browser, print and
PDF shows as soon as it is drawn; larger ones in WebGL, which stays fast.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.analysis.stats import (
    ZINGG_BOUNDARY,
    Weight,
    cumulative_distribution,
    liberation_table,
    percentiles,
    phase_labels,
    select_particles,
    size_distribution,
    zingg_class,
)
from ps3d_toolkit.core.checks import check_table

__all__ = ["SVG_MAX_POINTS", "fig_cumulative_psd", "fig_liberation", "fig_size_histogram", "fig_sphericity_vs_size",
           "fig_zingg"]

#: Scatter plots of up to this many particles are drawn in SVG, larger ones in WebGL.
SVG_MAX_POINTS = 5000
#: A colour per liberation class, barren to liberated: grey, then light to dark.
_LIBERATION_COLOURS = ("#bdbdbd", "#9ecae1", "#4292c6", "#08519c")


def _scatter(n_points: int):
    """The plotly scatter trace for ``n_points`` markers: SVG up to :data:`SVG_MAX_POINTS`, else WebGL."""
    import plotly.graph_objects as go

    return go.Scatter if n_points <= SVG_MAX_POINTS else go.Scattergl


def _size_label(size: str) -> str:
    names = {"eq_diameter_mm": "equivalent diameter", "feret_max_mm": "max Feret diameter",
             "feret_min_mm": "min Feret diameter",
             "axis_major_mm": "major axis", "axis_intermediate_mm": "intermediate axis",
             "axis_minor_mm": "minor axis"}
    return f"{names.get(size, size.removesuffix('_mm'))} (mm)"


def fig_size_histogram(table, weight: Weight = "number", bins=30, *, size: str = "eq_diameter_mm",
                       include_cut: bool = False):
    """Histogram of particle sizes on a log axis (number or volume share per class).

    Particles cut by the scan border are left out unless ``include_cut``
    (:func:`ps3d_toolkit.analysis.stats.select_particles`); so in every figure here.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = select_particles(table, include_cut=include_cut)
    dist = size_distribution(table, weight=weight, bins=bins, size=size, include_cut=True)
    fig = go.Figure(go.Bar(
        x=dist["size_mid_mm"], y=100 * dist["fraction"], width=dist["size_high_mm"] - dist["size_low_mm"],
        customdata=np.stack([dist["size_low_mm"], dist["size_high_mm"], dist["count"]], axis=1),
        hovertemplate="%{customdata[0]:.3g}-%{customdata[1]:.3g} mm<br>%{y:.2f} %<br>%{customdata[2]} particles"
                      "<extra></extra>",
        marker_line_width=0.5, name=f"by {weight}",
    ))
    fig.update_layout(
        title=f"Particle-size distribution by {weight} ({len(table)} particles)",
        xaxis_title=_size_label(size), yaxis_title=f"{weight} share (%)", bargap=0.0, template="plotly_white",
    )
    if len(dist) and np.all(dist["size_low_mm"] > 0):
        fig.update_xaxes(type="log")
    return fig


def fig_cumulative_psd(table, *, size: str = "eq_diameter_mm", include_cut: bool = False):
    """Cumulative size distributions (percent passing) by number and by volume, with d10/d50/d90.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = select_particles(table, include_cut=include_cut)
    fig = go.Figure()
    for weight, dash in (("number", "dot"), ("volume", "solid")):
        curve = cumulative_distribution(table, weight=weight, size=size, include_cut=True)
        fig.add_trace(go.Scatter(x=curve["size_mm"].to_numpy(), y=100 * curve["fraction_passing"].to_numpy(),
                                 mode="lines", line_shape="hv", line_dash=dash,
                                 name=f"by {weight}",
                                 hovertemplate="%{x:.3g} mm: %{y:.1f} % passing<extra>" + weight + "</extra>"))
    marks = percentiles(table, weight="volume", size=size, include_cut=True)
    for (name, value), pct in zip(marks.items(), (10, 50, 90)):
        if np.isfinite(value):
            fig.add_trace(go.Scatter(x=[value], y=[pct], mode="markers+text", text=[name.removesuffix("_mm")],
                                     textposition="middle right", marker_size=8, showlegend=False,
                                     hovertemplate=f"{name.removesuffix('_mm')} (volume) = %{{x:.3g}} mm<extra></extra>"))
    fig.update_layout(title="Cumulative particle-size distribution", xaxis_title=_size_label(size),
                      yaxis_title="cumulative % passing", yaxis_range=[0, 102], template="plotly_white")
    return _log_sizes(fig, table, size)


def fig_sphericity_vs_size(table, *, size: str = "eq_diameter_mm", include_cut: bool = False):
    """Sphericity against size, one marker per particle (hover shows the label).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = select_particles(check_table(table, [size, "sphericity", "label"]), include_cut=include_cut)
    fig = go.Figure(_scatter(len(table))(
        x=table[size], y=table["sphericity"], mode="markers", marker=dict(size=5, opacity=0.6),
        customdata=table["label"], hovertemplate="label %{customdata}<br>%{x:.3g} mm<br>sphericity %{y:.3f}"
                                                 "<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    fig.update_layout(title="Sphericity against size", xaxis_title=_size_label(size),
                      yaxis_title="sphericity (Wadell)", template="plotly_white")
    return _log_sizes(fig, table, size)


def fig_zingg(table, *, include_cut: bool = False):
    """Zingg diagram: flatness (S/I) against elongation (I/L), with the 2/3 class boundaries.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = select_particles(check_table(table, ["elongation", "flatness", "label"]), include_cut=include_cut)
    classes = zingg_class(table)
    fig = go.Figure()
    scatter = _scatter(len(table))
    for name in classes.categories:
        inside = np.asarray(classes == name)
        fig.add_trace(scatter(
            x=table["elongation"][inside], y=table["flatness"][inside], mode="markers", name=name,
            marker=dict(size=5, opacity=0.7), customdata=table["label"][inside],
            hovertemplate="label %{customdata}<br>I/L %{x:.2f}, S/I %{y:.2f}<extra>" + name + "</extra>",
        ))
    b = ZINGG_BOUNDARY
    fig.add_vline(x=b, line_color="grey", line_dash="dash")
    fig.add_hline(y=b, line_color="grey", line_dash="dash")
    # the classic quadrant names, at the centre of each quadrant
    for x, y, text in ((b / 2, b / 2, "blade"), (b / 2, (1 + b) / 2, "rod"),
                       ((1 + b) / 2, b / 2, "disc"), ((1 + b) / 2, (1 + b) / 2, "spheroid")):
        fig.add_annotation(x=x, y=y, text=text, showarrow=False, font=dict(color="grey", size=14), opacity=0.6)
    fig.update_layout(title="Zingg diagram", xaxis_title="elongation I/L (intermediate / major)",
                      yaxis_title="flatness S/I (minor / intermediate)", xaxis_range=[0, 1.02],
                      yaxis_range=[0, 1.02], template="plotly_white")
    return fig


def fig_liberation(table, *, include_cut: bool = False):
    """Liberation of every phase: the share of the particles, and of the phase's volume, in each class.

    All four classes of :func:`ps3d_toolkit.analysis.stats.liberation_table`
    are drawn, barren included: on the left as a share of the particles (a
    phase is absent from its barren particles), on the right as a share of the
    phase's volume (barren particles hold only traces of it, below the minimum
    phase fraction). Phases are named by
    :func:`~ps3d_toolkit.analysis.stats.phase_labels`.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ps3d_toolkit.measurement.intensity import LIBERATION_CLASSES

    frame = liberation_table(table, include_cut=include_cut)
    frame["phase"] = frame["phase"].map(phase_labels(table))
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("share of the particles (%)", "share of the phase's volume (%)"))
    for cls, colour in zip(LIBERATION_CLASSES, _LIBERATION_COLOURS):
        rows = frame[frame["liberation_class"] == cls]
        for col, (column, what) in enumerate((("count_share", "of the particles"),
                                              ("phase_volume_share", "of the phase's volume")), start=1):
            fig.add_trace(go.Bar(x=100 * rows[column].fillna(0.0), y=rows["phase"], orientation="h", name=cls,
                                 marker_color=colour, legendgroup=cls, showlegend=col == 1,
                                 hovertemplate="%{y}: %{x:.1f} % " + what + "<extra>" + cls + "</extra>"),
                          row=1, col=col)
    fig.update_xaxes(range=[0, 100])
    fig.update_layout(barmode="stack", title="Liberation: particles and phase volume by class",
                      template="plotly_white", legend_traceorder="normal",
                      height=max(280, 140 + 60 * frame["phase"].nunique()))
    return fig


def _log_sizes(fig, table, size: str):
    """Put the size axis on a log scale when every size is positive."""
    if len(table) and np.nanmin(table[size].to_numpy(dtype=float)) > 0:
        fig.update_xaxes(type="log")
    return fig
