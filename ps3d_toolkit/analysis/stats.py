"""Distributions of the particle table: sizes, shapes, phases, and their figures.

Every function takes the table from :func:`ps3d_toolkit.measurement.measure` (or
any DataFrame with the same columns) first. Sizes default to the
volume-equivalent sphere diameter ``eq_diameter_mm``; any other length column
(``feret_max_mm``, ``axis_intermediate_mm`` -- the closest to what a sieve sees)
can be chosen with ``size=``.

Weighting: ``"number"`` counts particles, ``"volume"`` weighs each by its
``volume_mm3`` (a mass distribution for a single density), the usual basis of
sieve analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ZINGG_BOUNDARY",
    "fig_cumulative_psd",
    "fig_size_histogram",
    "fig_sphericity_vs_size",
    "fig_zingg",
    "percentiles",
    "phase_summary",
    "shape_summary",
    "sieve_curve",
    "size_distribution",
    "zingg_class",
]

#: Class boundary of the Zingg diagram on both ratios.
ZINGG_BOUNDARY = 2.0 / 3.0
_WEIGHTS = ("number", "volume")


# --------------------------------------------------------------------------- checks


def _check_table(table, columns=()) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame of particles, got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing}; expected the output of ps3d_toolkit.measurement()")
    return table


def _check_weight(weight, weighting=None) -> str:
    if weighting is not None:
        weight = weighting
    if weight not in _WEIGHTS:
        raise ValueError(f"weight must be 'number' or 'volume', got {weight!r}")
    return weight


def _sizes_and_weights(table, size, weight):
    """Finite sizes and their weights (sorted by size)."""
    columns = [size] + (["volume_mm3"] if weight == "volume" else [])
    table = _check_table(table, columns)
    sizes = table[size].to_numpy(dtype=float)
    weights = table["volume_mm3"].to_numpy(dtype=float) if weight == "volume" else np.ones(len(sizes))
    keep = np.isfinite(sizes) & np.isfinite(weights) & (weights >= 0)
    sizes, weights = sizes[keep], weights[keep]
    order = np.argsort(sizes, kind="stable")
    return sizes[order], weights[order]


# --------------------------------------------------------------------------- distributions


def size_distribution(table, weight: str = "number", bins=20, *, size: str = "eq_diameter_mm",
                      weighting: str | None = None) -> pd.DataFrame:
    """Particle-size distribution: the share of particles (or volume) per size class.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    weight : {"number", "volume"}
        Count particles, or weigh them by volume.
    bins : int or sequence of float
        Number of classes, geometrically spaced from the smallest to the largest
        size (size distributions are read on a log scale), or the class edges in mm.
    size : str
        Size column (mm).
    weighting : str, optional
        Alias of ``weight``.

    Returns
    -------
    pandas.DataFrame
        One row per class: ``size_low_mm``, ``size_high_mm``, ``size_mid_mm``
        (geometric mean of the edges), ``count`` (particles), ``fraction``
        (share of the weight, sums to 1), ``cumulative_fraction`` (share at or
        below ``size_high_mm``), ``density_per_mm`` (fraction / class width).
        Classes are ``[low, high)``, the last one closed.
    """
    weight = _check_weight(weight, weighting)
    sizes, weights = _sizes_and_weights(table, size, weight)
    edges = _edges(sizes, bins)
    count, _ = np.histogram(sizes, bins=edges)
    mass, _ = np.histogram(sizes, bins=edges, weights=weights)
    total = mass.sum()
    fraction = mass / total if total > 0 else np.zeros_like(mass, dtype=float)
    low, high = edges[:-1], edges[1:]
    return pd.DataFrame({
        "size_low_mm": low,
        "size_high_mm": high,
        "size_mid_mm": np.sqrt(low * high) if np.all(low > 0) else 0.5 * (low + high),
        "count": count.astype(np.int64),
        "fraction": fraction,
        "cumulative_fraction": np.cumsum(fraction),
        "density_per_mm": fraction / (high - low),
    })


def _edges(sizes: np.ndarray, bins) -> np.ndarray:
    if np.ndim(bins) == 0:
        if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
            raise ValueError(f"bins must be a positive integer or increasing edges in mm, got {bins!r}")
        if not len(sizes):
            return np.linspace(0.0, 1.0, int(bins) + 1)
        low, high = float(sizes.min()), float(sizes.max())
        if low > 0 and high > low:
            return np.geomspace(low, high, int(bins) + 1)
        if high > low:
            return np.linspace(low, high, int(bins) + 1)
        return np.linspace(low * 0.9 if low > 0 else low - 0.5, high * 1.1 if high > 0 else high + 0.5, int(bins) + 1)
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"bins must be a positive integer or increasing edges in mm, got {bins!r}")
    return edges


def percentiles(table, weight: str = "volume", *, size: str = "eq_diameter_mm", points=(10, 50, 90),
                weighting: str | None = None) -> dict:
    """Characteristic sizes d10, d50, d90 (mm) of the number or volume distribution.

    The cumulative distribution is the sieve curve through the particles: with the
    particles sorted by size, ``F_i`` = share of the weight of particles ``1..i``
    (the share "passing" size ``x_i``). ``dP`` is read off by linear interpolation
    between the points ``(x_i, F_i)``; below the first point it is the smallest size.

    Worked example: diameters 1, 2, 3 mm have volumes in the ratio 1 : 8 : 27, so
    ``F`` = 1/36, 9/36, 36/36 = 2.8 %, 25 %, 100 %, and the volume-weighted d50
    lies a third of the way from 2 to 3 mm (50 % is a third of the way from 25 %
    to 100 %): d50 = 2.333 mm. By number, ``F`` = 1/3, 2/3, 1 and d50 = 1.5 mm.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    weight : {"number", "volume"}
        Weighting; volume by default (the usual PSD).
    size : str
        Size column (mm).
    points : sequence of float
        Percentages to report.
    weighting : str, optional
        Alias of ``weight``.

    Returns
    -------
    dict
        ``{"d10_mm": ..., "d50_mm": ..., "d90_mm": ...}`` (NaN for an empty table).
    """
    weight = _check_weight(weight, weighting)
    sizes, weights = _sizes_and_weights(table, size, weight)
    points = [float(p) for p in np.atleast_1d(points)]
    if any(not 0 <= p <= 100 for p in points):
        raise ValueError(f"points must be percentages between 0 and 100, got {points}")
    names = [f"d{p:g}_mm" for p in points]
    total = weights.sum()
    if not len(sizes) or total <= 0:
        return dict.fromkeys(names, float("nan"))
    passing = np.cumsum(weights) / total
    return {name: float(np.interp(p / 100.0, passing, sizes)) for name, p in zip(names, points)}


def sieve_curve(table, sizes_mm=None, *, weight: str = "volume", size: str = "eq_diameter_mm",
                weighting: str | None = None) -> pd.DataFrame:
    """Cumulative percentage passing at a series of sieve sizes.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    sizes_mm : sequence of float, optional
        Sieve apertures in mm. Default: a sqrt(2) series (as ISO 565 R 20/3)
        through 1 mm spanning the particles, from the largest aperture that
        passes nothing to the smallest that passes everything.
    weight : {"number", "volume"}
        Percent of particles or of volume (mass for one density); volume by default.
    size : str
        Size column (mm) compared with the aperture.
    weighting : str, optional
        Alias of ``weight``.

    Returns
    -------
    pandas.DataFrame
        ``size_mm`` (increasing) and ``percent_passing``: the percentage of the
        weight in particles with ``size <= size_mm``; ``percent_retained`` on the
        sieve (between it and the next smaller one).
    """
    weight = _check_weight(weight, weighting)
    sizes, weights = _sizes_and_weights(table, size, weight)
    if sizes_mm is None:
        if not len(sizes) or sizes.max() <= 0:
            apertures = np.array([1.0])
        else:
            positive = sizes[sizes > 0]
            low = np.floor(2 * np.log2(positive.min())) - 1
            high = np.ceil(2 * np.log2(sizes.max()))
            apertures = 2.0 ** (np.arange(low, high + 1) / 2.0)
    else:
        apertures = np.sort(np.asarray(sizes_mm, dtype=float).reshape(-1))
        if not len(apertures) or np.any(apertures <= 0):
            raise ValueError(f"sizes_mm must be positive sieve apertures in mm, got {sizes_mm!r}")
    total = weights.sum()
    cumulative = np.concatenate(([0.0], np.cumsum(weights)))
    passing_weight = cumulative[np.searchsorted(sizes, apertures, side="right")]
    percent = 100.0 * passing_weight / total if total > 0 else np.zeros(len(apertures))
    return pd.DataFrame({
        "size_mm": apertures,
        "percent_passing": percent,
        "percent_retained": np.diff(np.concatenate(([0.0], percent))),
    })


def zingg_class(table) -> pd.Categorical:
    """Zingg shape class of each particle from ``elongation`` (I/L) and ``flatness`` (S/I).

    ``spheroid`` (both >= 2/3), ``disc`` (elongation >= 2/3, flatness < 2/3),
    ``rod`` (elongation < 2/3, flatness >= 2/3), ``blade`` (both < 2/3); NaN
    ratios give NaN.
    """
    table = _check_table(table, ["elongation", "flatness"])
    e = table["elongation"].to_numpy(dtype=float)
    f = table["flatness"].to_numpy(dtype=float)
    equant_e, equant_f = e >= ZINGG_BOUNDARY, f >= ZINGG_BOUNDARY
    codes = np.select(
        [equant_e & equant_f, equant_e & ~equant_f, ~equant_e & equant_f],
        [0, 1, 2], default=3,
    )
    codes[np.isnan(e) | np.isnan(f)] = -1
    return pd.Categorical.from_codes(codes, categories=["spheroid", "disc", "rod", "blade"])


def shape_summary(table) -> pd.DataFrame:
    """Statistics of the shape descriptors and the share of each Zingg class.

    Returns
    -------
    pandas.DataFrame
        Rows ``sphericity``, ``elongation``, ``flatness`` and
        ``aspect_ratio`` (minor / major axis) with columns ``count``, ``mean``,
        ``std``, ``p10``, ``median``, ``p90``; then rows ``zingg_<class>`` whose
        ``count`` is the number of particles in the class and ``mean`` their share.
    """
    table = _check_table(table, ["sphericity", "elongation", "flatness", "axis_major_mm", "axis_minor_mm"])
    with np.errstate(invalid="ignore", divide="ignore"):
        series = {
            "sphericity": table["sphericity"],
            "elongation": table["elongation"],
            "flatness": table["flatness"],
            "aspect_ratio": table["axis_minor_mm"] / table["axis_major_mm"],
        }
    rows = {}
    for name, values in series.items():
        v = values.to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            p10, median, p90 = np.percentile(v, [10, 50, 90])
            rows[name] = [len(v), v.mean(), v.std(ddof=1) if len(v) > 1 else 0.0, p10, median, p90]
        else:
            rows[name] = [0] + [np.nan] * 5
    classes = zingg_class(table)
    known = int(np.sum(classes.codes >= 0))
    counts = np.bincount(classes.codes[classes.codes >= 0], minlength=len(classes.categories))
    for name, count in zip(classes.categories, counts):
        rows[f"zingg_{name}"] = [int(count), count / known if known else np.nan] + [np.nan] * 4
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["count", "mean", "std", "p10", "median", "p90"])
    frame["count"] = frame["count"].astype(np.int64)
    return frame


def phase_summary(table) -> pd.DataFrame:
    """Volume of each mineral phase over all particles, and liberation by class.

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=`` (``phase_fraction_<name>``
        columns, optionally ``liberation_class``).

    Returns
    -------
    pandas.DataFrame
        One row per phase: ``volume_mm3`` (sum of fraction x particle volume),
        ``volume_fraction`` (of all particle volume), ``mean_particle_fraction``,
        ``particles_with_phase`` (fraction > 0); for the phase that set
        ``liberation_class`` (``table.attrs["liberation_phase"]``, else the first
        phase), also ``n_<class>`` and ``phase_volume_fraction_<class>``: how much
        of that phase sits in locked, middling and liberated particles.

    Raises
    ------
    ValueError
        If the table has no ``phase_fraction_*`` column.
    """
    table = _check_table(table, ["volume_mm3"])
    prefix = "phase_fraction_"
    names = [c[len(prefix):] for c in table.columns if c.startswith(prefix)]
    if not names:
        raise ValueError("table has no phase_fraction_<name> columns; measure it with phases=")
    volume = table["volume_mm3"].to_numpy(dtype=float)
    total = volume.sum()
    rows = []
    for name in names:
        fraction = table[prefix + name].to_numpy(dtype=float)
        phase_volume = np.nansum(fraction * volume)
        rows.append({
            "phase": name,
            "volume_mm3": phase_volume,
            "volume_fraction": phase_volume / total if total > 0 else np.nan,
            "mean_particle_fraction": float(np.nanmean(fraction)) if len(fraction) else np.nan,
            "particles_with_phase": int(np.sum(fraction > 0)),
        })
    frame = pd.DataFrame(rows).set_index("phase")
    if "liberation_class" in table.columns:
        from ps3d_toolkit.measurement import LIBERATION_CLASSES

        target = table.attrs.get("liberation_phase", names[0])
        if target in names:
            fraction = table[prefix + target].to_numpy(dtype=float)
            classes = table["liberation_class"].astype(str).to_numpy()
            phase_volume = np.nansum(fraction * volume)
            for cls in LIBERATION_CLASSES:
                inside = classes == cls
                frame.loc[target, f"n_{cls}"] = int(inside.sum())
                frame.loc[target, f"phase_volume_fraction_{cls}"] = (
                    np.nansum(fraction[inside] * volume[inside]) / phase_volume if phase_volume > 0 else np.nan
                )
    return frame


# --------------------------------------------------------------------------- figures


def _size_label(size: str) -> str:
    names = {"eq_diameter_mm": "equivalent diameter", "feret_max_mm": "max Feret diameter",
             "axis_major_mm": "major axis", "axis_intermediate_mm": "intermediate axis",
             "axis_minor_mm": "minor axis"}
    return f"{names.get(size, size.removesuffix('_mm'))} (mm)"


def fig_size_histogram(table, weight: str = "number", bins=30, *, size: str = "eq_diameter_mm",
                       weighting: str | None = None):
    """Histogram of particle sizes on a log axis (number or volume share per class).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    weight = _check_weight(weight, weighting)
    dist = size_distribution(table, weight=weight, bins=bins, size=size)
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


def fig_cumulative_psd(table, *, size: str = "eq_diameter_mm"):
    """Cumulative size distributions (percent passing) by number and by volume, with d10/d50/d90.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for weight, dash in (("number", "dot"), ("volume", "solid")):
        sizes, weights = _sizes_and_weights(table, size, weight)
        total = weights.sum()
        passing = 100 * np.cumsum(weights) / total if total > 0 else np.zeros(len(sizes))
        fig.add_trace(go.Scatter(x=sizes, y=passing, mode="lines", line_shape="hv", line_dash=dash,
                                 name=f"by {weight}",
                                 hovertemplate="%{x:.3g} mm: %{y:.1f} % passing<extra>" + weight + "</extra>"))
    marks = percentiles(table, weight="volume", size=size)
    for (name, value), pct in zip(marks.items(), (10, 50, 90)):
        if np.isfinite(value):
            fig.add_trace(go.Scatter(x=[value], y=[pct], mode="markers+text", text=[name.removesuffix("_mm")],
                                     textposition="middle right", marker_size=8, showlegend=False,
                                     hovertemplate=f"{name.removesuffix('_mm')} (volume) = %{{x:.3g}} mm<extra></extra>"))
    fig.update_layout(title="Cumulative particle-size distribution", xaxis_title=_size_label(size),
                      yaxis_title="cumulative % passing", yaxis_range=[0, 102], template="plotly_white")
    if len(table) and np.nanmin(table[size].to_numpy(dtype=float)) > 0:
        fig.update_xaxes(type="log")
    return fig


def fig_sphericity_vs_size(table, *, size: str = "eq_diameter_mm"):
    """Sphericity against size, one marker per particle (hover shows the label).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = _check_table(table, [size, "sphericity", "label"])
    fig = go.Figure(go.Scattergl(
        x=table[size], y=table["sphericity"], mode="markers", marker=dict(size=5, opacity=0.6),
        customdata=table["label"], hovertemplate="label %{customdata}<br>%{x:.3g} mm<br>sphericity %{y:.3f}"
                                                 "<extra></extra>",
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey")
    fig.update_layout(title="Sphericity against size", xaxis_title=_size_label(size),
                      yaxis_title="sphericity (Wadell)", template="plotly_white")
    if len(table) and np.nanmin(table[size].to_numpy(dtype=float)) > 0:
        fig.update_xaxes(type="log")
    return fig


def fig_zingg(table):
    """Zingg diagram: flatness (S/I) against elongation (I/L), with the 2/3 class boundaries.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    table = _check_table(table, ["elongation", "flatness", "label"])
    classes = zingg_class(table)
    fig = go.Figure()
    for name in classes.categories:
        inside = np.asarray(classes == name)
        fig.add_trace(go.Scattergl(
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
