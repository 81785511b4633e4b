"""Distributions of the particle table: sizes, shapes, phases (numbers; figures are in viz.figures).

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

from typing import Literal

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.core.errors import InputError

__all__ = [
    "ZINGG_BOUNDARY",
    "cumulative_distribution",
    "liberation_table",
    "percentiles",
    "phase_names",
    "phase_summary",
    "shape_summary",
    "sieve_curve",
    "size_distribution",
    "zingg_class",
]

#: Class boundary of the Zingg diagram on both ratios.
ZINGG_BOUNDARY = 2.0 / 3.0
#: How particles count in a distribution: one each, or by their volume.
Weight = Literal["number", "volume"]
_WEIGHTS = ("number", "volume")
_PHASE_PREFIX = "phase_fraction_"
#: measure()'s default classes: locked below 30 %, liberated from 90 % of the phase
_LIBERATION_THRESHOLDS = (0.3, 0.9)


def _sizes_and_weights(table, size: str, weight: Weight):
    """Check the table and ``weight``; return finite sizes and their weights, sorted by size."""
    if weight not in _WEIGHTS:
        raise InputError(f"weight must be 'number' or 'volume', got {weight!r}")
    columns = [size] + (["volume_mm3"] if weight == "volume" else [])
    table = check_table(table, columns)
    sizes = table[size].to_numpy(dtype=float)
    weights = table["volume_mm3"].to_numpy(dtype=float) if weight == "volume" else np.ones(len(sizes))
    keep = np.isfinite(sizes) & np.isfinite(weights) & (weights >= 0)
    sizes, weights = sizes[keep], weights[keep]
    order = np.argsort(sizes, kind="stable")
    return sizes[order], weights[order]


# --------------------------------------------------------------------------- distributions


def size_distribution(table, weight: Weight = "number", bins=20, *, size: str = "eq_diameter_mm") -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        One row per class: ``size_low_mm``, ``size_high_mm``, ``size_mid_mm``
        (geometric mean of the edges), ``count`` (particles), ``fraction``
        (share of the weight, sums to 1), ``cumulative_fraction`` (share at or
        below ``size_high_mm``), ``density_per_mm`` (fraction / class width).
        Classes are ``[low, high)``, the last one closed.
    """
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
            raise InputError(f"bins must be a positive integer or increasing edges in mm, got {bins!r}")
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
        raise InputError(f"bins must be a positive integer or increasing edges in mm, got {bins!r}")
    return edges


def cumulative_distribution(table, weight: Weight = "volume", *, size: str = "eq_diameter_mm") -> pd.DataFrame:
    """The cumulative size distribution through the particles (the sieve curve at their own sizes).

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    weight : {"number", "volume"}
        Count particles, or weigh them by volume (the default).
    size : str
        Size column (mm).

    Returns
    -------
    pandas.DataFrame
        One row per particle with a finite size, in increasing size:
        ``size_mm`` and ``fraction_passing``, the share of the weight in that
        particle and all smaller ones (0 throughout when the total weight is 0).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"eq_diameter_mm": [2.0, 1.0], "volume_mm3": [3.0, 1.0]})
    >>> cumulative_distribution(table)["fraction_passing"].tolist()
    [0.25, 1.0]
    """
    sizes, weights = _sizes_and_weights(table, size, weight)
    total = weights.sum()
    passing = np.cumsum(weights) / total if total > 0 else np.zeros(len(sizes))
    return pd.DataFrame({"size_mm": sizes, "fraction_passing": passing})


def percentiles(table, weight: Weight = "volume", *, size: str = "eq_diameter_mm", points=(10, 50, 90)) -> dict:
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

    Returns
    -------
    dict
        ``{"d10_mm": ..., "d50_mm": ..., "d90_mm": ...}`` (NaN for an empty table).
    """
    sizes, weights = _sizes_and_weights(table, size, weight)
    points = [float(p) for p in np.atleast_1d(points)]
    if any(not 0 <= p <= 100 for p in points):
        raise InputError(f"points must be percentages between 0 and 100, got {points}")
    names = [f"d{p:g}_mm" for p in points]
    total = weights.sum()
    if not len(sizes) or total <= 0:
        return dict.fromkeys(names, float("nan"))
    passing = np.cumsum(weights) / total
    return {name: float(np.interp(p / 100.0, passing, sizes)) for name, p in zip(names, points)}


def sieve_curve(table, sizes_mm=None, *, weight: Weight = "volume", size: str = "eq_diameter_mm") -> pd.DataFrame:
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

    Returns
    -------
    pandas.DataFrame
        ``size_mm`` (increasing) and ``percent_passing``: the percentage of the
        weight in particles with ``size <= size_mm``; ``percent_retained`` on the
        sieve (between it and the next smaller one).
    """
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
            raise InputError(f"sizes_mm must be positive sieve apertures in mm, got {sizes_mm!r}")
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
    table = check_table(table, ["elongation", "flatness"])
    return _zingg_class(table)


def _zingg_class(table) -> pd.Categorical:
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
    table = check_table(table, ["sphericity", "elongation", "flatness", "axis_major_mm", "axis_minor_mm"])
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
    classes = _zingg_class(table)
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
    table = check_table(table, ["volume_mm3"])
    names = phase_names(table)
    if not names:
        raise InputError("table has no phase_fraction_<name> columns; measure it with phases=")
    volume = table["volume_mm3"].to_numpy(dtype=float)
    total = volume.sum()
    rows = []
    for name in names:
        fraction = table[_PHASE_PREFIX + name].to_numpy(dtype=float)
        phase_volume = np.nansum(fraction * volume)
        rows.append({
            "phase": name,
            "volume_mm3": phase_volume,
            "volume_fraction": phase_volume / total if total > 0 else np.nan,
            "mean_particle_fraction": float(np.nanmean(fraction)) if len(fraction) else np.nan,
            "particles_with_phase": int(np.sum(fraction > 0)),
        })
    frame = pd.DataFrame(rows).set_index("phase")
    target = table.attrs.get("liberation_phase", names[0])
    if "liberation_class" in table.columns and target in names:
        # the table's own classes: liberation_table keeps them for the phase that set them
        liberation = _liberation_rows(table, names, None)
        rows = liberation[liberation["phase"] == target]
        for cls, count, share in zip(rows["liberation_class"], rows["count"], rows["phase_volume_share"]):
            frame.loc[target, f"n_{cls}"] = int(count)
            frame.loc[target, f"phase_volume_fraction_{cls}"] = share
    return frame


def liberation_table(table, *, thresholds=None) -> pd.DataFrame:
    """Particles and phase volume per liberation class, for every phase of the table.

    For each phase, each particle is classed by the volume fraction of that
    phase inside it (:func:`ps3d_toolkit.measurement.liberation_class`): locked,
    middling or liberated.

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=`` (``phase_fraction_<name>`` columns).
    thresholds : (float, float), optional
        ``(locked_below, liberated_from)``. By default the table's
        ``attrs["liberation_thresholds"]``, else (0.3, 0.9) as in
        :func:`~ps3d_toolkit.measurement.measure`; and the phase behind the
        table's own ``liberation_class`` column (``attrs["liberation_phase"]``,
        else the first phase) keeps that column's classes.

    Returns
    -------
    pandas.DataFrame
        One row per phase and class (locked, middling, liberated): ``phase``,
        ``liberation_class``, ``count`` (particles), ``count_share`` (of all
        particles), ``particle_volume_mm3`` and ``particle_volume_share`` (of
        all particle volume), ``phase_volume_mm3`` (volume of the phase in
        those particles) and ``phase_volume_share`` (of the phase's whole
        volume; sums to 1 over the classes of a phase that is present).

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If the table lacks ``volume_mm3`` or has no ``phase_fraction_*``
        column, or the thresholds are out of order.
    """
    table = check_table(table)
    names = phase_names(table)
    if not names or "volume_mm3" not in table.columns:
        raise InputError("table must have volume_mm3 and phase_fraction_<name> columns; measure it with phases=")
    return _liberation_rows(table, names, thresholds)


def phase_names(table) -> list:
    """The mineral phases of a particle table: ``<name>`` of every ``phase_fraction_<name>`` column."""
    return [c[len(_PHASE_PREFIX):] for c in table.columns if c.startswith(_PHASE_PREFIX)]


def _liberation_rows(table, names, thresholds) -> pd.DataFrame:
    """:func:`liberation_table` of a checked table with ``volume_mm3`` and the phases ``names``."""
    from ps3d_toolkit.measurement import LIBERATION_CLASSES, liberation_class

    own_classes = thresholds is None and "liberation_class" in table.columns
    if thresholds is None:
        thresholds = table.attrs.get("liberation_thresholds", _LIBERATION_THRESHOLDS)
    own_phase = table.attrs.get("liberation_phase", names[0])
    volume = table["volume_mm3"].to_numpy(dtype=float)
    total_volume = np.nansum(volume)
    rows = []
    for name in names:
        fraction = table[_PHASE_PREFIX + name].to_numpy(dtype=float)
        classes = table["liberation_class"] if own_classes and name == own_phase else liberation_class(
            fraction, thresholds)
        # NaN (no class) becomes "nan", which matches no class
        classes = np.asarray(pd.Series(classes).astype(str))
        phase_volume = fraction * volume
        phase_total = np.nansum(phase_volume)
        for cls in LIBERATION_CLASSES:
            inside = classes == cls
            rows.append({
                "phase": name,
                "liberation_class": cls,
                "count": int(inside.sum()),
                "count_share": inside.sum() / len(table) if len(table) else np.nan,
                "particle_volume_mm3": float(np.nansum(volume[inside])),
                "particle_volume_share": np.nansum(volume[inside]) / total_volume if total_volume > 0 else np.nan,
                "phase_volume_mm3": float(np.nansum(phase_volume[inside])),
                "phase_volume_share": np.nansum(phase_volume[inside]) / phase_total if phase_total > 0 else np.nan,
            })
    return pd.DataFrame(rows)
