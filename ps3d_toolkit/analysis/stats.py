"""Distributions of the particle table: sizes, shapes, phases (numbers; figures are in viz.figures).

Every function takes the table from :func:`ps3d_toolkit.measurement.measure` (or
any DataFrame with the same columns) first. Sizes default to the
volume-equivalent sphere diameter ``eq_diameter_mm``; any other length column
(``feret_max_mm``, ``axis_intermediate_mm`` -- the closest to what a sieve sees)
can be chosen with ``size=``.

Weighting: ``"number"`` counts particles, ``"volume"`` weighs each by its
``volume_mm3`` (a mass distribution for a single density), the usual basis of
sieve analysis.

Cut grains: a particle cut by the scan border (``touches_border``) has a size
and shape that are not its own, so every distribution and summary here leaves
it out unless ``include_cut=True``; :func:`cut_particles` says which rows are
cut (the flag columns in :data:`CUT_COLUMNS`) and :func:`select_particles`
applies the policy (its result's ``attrs["n_cut_left_out"]`` counts the rows
left out). Dropping cut grains biases a distribution slightly towards small
grains (a large grain is more likely to be cut); the count left out says how
much is at stake.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.core.errors import InputError

__all__ = [
    "CUT_COLUMNS",
    "SIEVE_SERIES",
    "ZINGG_BOUNDARY",
    "cumulative_distribution",
    "cut_particles",
    "grey_range_text",
    "liberation_limits",
    "liberation_table",
    "percentiles",
    "phase_labels",
    "phase_names",
    "phase_summary",
    "select_particles",
    "shape_summary",
    "sieve_apertures",
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
_LIBERATION_PREFIX = "liberation_"
#: Flag columns that mark a particle as cut, so that its size and shape are not
#: its own: by the scan border (or the field of view given to measure). A flag
#: for grains cut by a sample mask joins this tuple when the table carries one.
CUT_COLUMNS = ("touches_border",)
#: R40 preferred numbers (ISO 3): every third is the ISO 565 R40/3 sieve series,
#: every sixth the principal R20/3 series (... 0.045, 0.063, 0.09, 0.125, 0.18, 0.25, 0.355, 0.5 ... mm).
_R40 = (1.00, 1.06, 1.12, 1.18, 1.25, 1.32, 1.40, 1.50, 1.60, 1.70, 1.80, 1.90, 2.00, 2.12, 2.24, 2.36, 2.50,
        2.65, 2.80, 3.00, 3.15, 3.35, 3.55, 3.75, 4.00, 4.25, 4.50, 4.75, 5.00, 5.30, 5.60, 6.00, 6.30, 6.70,
        7.10, 7.50, 8.00, 8.50, 9.00, 9.50)
#: Sieve series of :func:`sieve_apertures`: steps of the R40 numbers between apertures.
SIEVE_SERIES = {"R20/3": 6, "R40/3": 3}
# the principal series is used when it puts at least this many sieves across the particles
_MIN_SIEVES = 8


def cut_particles(table) -> np.ndarray:
    """Which particles are cut (their size and shape are not their own): any flag of :data:`CUT_COLUMNS` set.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table; a table without any flag column has no cut particle.

    Returns
    -------
    numpy.ndarray of bool
        One value per row.
    """
    table = check_table(table)
    cut = np.zeros(len(table), dtype=bool)
    for column in CUT_COLUMNS:
        if column in table.columns:
            cut |= table[column].fillna(False).astype(bool).to_numpy()
    return cut


def select_particles(table, *, include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
    """The particles the statistics use: all of them with ``include_cut``, else those not cut; with
    ``min_confidence``, only those trusted that far.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    include_cut : bool
        Keep the particles cut by the scan border (:func:`cut_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` column (the label-free estimate of
        ``segment(..., quality=True)``, 0-1) is under this; a particle the estimate did not
        assess (NaN) is kept.

    Returns
    -------
    pandas.DataFrame
        The rows kept (the table itself when nothing is left out), with
        ``attrs["n_cut_left_out"]`` the number of cut rows left out,
        ``attrs["include_cut"]`` the policy, and with ``min_confidence``
        ``attrs["n_low_confidence_left_out"]`` (uncut rows under it) and ``attrs["min_confidence"]``.

    Raises
    ------
    InputError
        If ``min_confidence`` is not in [0, 1] or the table has no ``confidence`` column.
    """
    table = check_table(table)
    cut = np.zeros(len(table), dtype=bool) if include_cut else cut_particles(table)
    low = _low_confidence(table, min_confidence) & ~cut
    drop = cut | low
    kept = table[~drop] if drop.any() else table.copy(deep=False)
    kept.attrs = {**table.attrs, "n_cut_left_out": int(cut.sum()), "include_cut": bool(include_cut)}
    if min_confidence is not None:
        kept.attrs.update(n_low_confidence_left_out=int(low.sum()), min_confidence=float(min_confidence))
    return kept


def _low_confidence(table, min_confidence) -> np.ndarray:
    """Which rows have a confidence under ``min_confidence`` (none without it; NaN is not under it)."""
    if min_confidence is None:
        return np.zeros(len(table), dtype=bool)
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float, np.integer, np.floating)) \
            or not 0 <= float(min_confidence) <= 1:
        raise InputError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}")
    if "confidence" not in table.columns:
        raise InputError("min_confidence needs the table's confidence column: segment with quality=True "
                         "(ps3d segment --quality) and measure with its confidences")
    return (table["confidence"].to_numpy(dtype=float) < float(min_confidence))


def _sizes_and_weights(table, size: str, weight: Weight, include_cut: bool, min_confidence=None):
    """Check the table and ``weight``; return finite sizes and their weights, sorted by size."""
    if weight not in _WEIGHTS:
        raise InputError(f"weight must be 'number' or 'volume', got {weight!r}")
    columns = [size] + (["volume_mm3"] if weight == "volume" else [])
    table = select_particles(check_table(table, columns), include_cut=include_cut, min_confidence=min_confidence)
    sizes = table[size].to_numpy(dtype=float)
    weights = table["volume_mm3"].to_numpy(dtype=float) if weight == "volume" else np.ones(len(sizes))
    keep = np.isfinite(sizes) & np.isfinite(weights) & (weights >= 0)
    sizes, weights = sizes[keep], weights[keep]
    order = np.argsort(sizes, kind="stable")
    return sizes[order], weights[order]


# --------------------------------------------------------------------------- distributions


def size_distribution(table, weight: Weight = "number", bins=20, *, size: str = "eq_diameter_mm",
                      include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
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
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    pandas.DataFrame
        One row per class: ``size_low_mm``, ``size_high_mm``, ``size_mid_mm``
        (geometric mean of the edges), ``count`` (particles), ``fraction``
        (share of the weight, sums to 1), ``cumulative_fraction`` (share at or
        below ``size_high_mm``), ``density_per_mm`` (fraction / class width).
        Classes are ``[low, high)``, the last one closed.
    """
    sizes, weights = _sizes_and_weights(table, size, weight, include_cut, min_confidence)
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


def cumulative_distribution(table, weight: Weight = "volume", *, size: str = "eq_diameter_mm",
                            include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
    """The cumulative size distribution through the particles (the sieve curve at their own sizes).

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    weight : {"number", "volume"}
        Count particles, or weigh them by volume (the default).
    size : str
        Size column (mm).
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

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
    sizes, weights = _sizes_and_weights(table, size, weight, include_cut, min_confidence)
    total = weights.sum()
    passing = np.cumsum(weights) / total if total > 0 else np.zeros(len(sizes))
    return pd.DataFrame({"size_mm": sizes, "fraction_passing": passing})


def percentiles(table, weight: Weight = "volume", *, size: str = "eq_diameter_mm", points=(10, 50, 90),
                include_cut: bool = False, min_confidence: float | None = None) -> dict:
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
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    dict
        ``{"d10_mm": ..., "d50_mm": ..., "d90_mm": ...}`` (NaN for an empty table).
    """
    sizes, weights = _sizes_and_weights(table, size, weight, include_cut, min_confidence)
    points = [float(p) for p in np.atleast_1d(points)]
    if any(not 0 <= p <= 100 for p in points):
        raise InputError(f"points must be percentages between 0 and 100, got {points}")
    names = [f"d{p:g}_mm" for p in points]
    total = weights.sum()
    if not len(sizes) or total <= 0:
        return dict.fromkeys(names, float("nan"))
    passing = np.cumsum(weights) / total
    return {name: float(np.interp(p / 100.0, passing, sizes)) for name, p in zip(names, points)}


def sieve_curve(table, sizes_mm=None, *, weight: Weight = "volume", size: str = "eq_diameter_mm",
                include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
    """Cumulative percentage passing at a series of sieve sizes.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    sizes_mm : sequence of float, optional
        Sieve apertures in mm. Default: :func:`sieve_apertures` of the
        particles' sizes (an ISO 565 series spanning them).
    weight : {"number", "volume"}
        Percent of particles or of volume (mass for one density); volume by default.
    size : str
        Size column (mm) compared with the aperture.
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    pandas.DataFrame
        ``size_mm`` (increasing) and ``percent_passing``: the percentage of the
        weight in particles with ``size <= size_mm``; ``percent_retained`` on the
        sieve (between it and the next smaller one).
    """
    sizes, weights = _sizes_and_weights(table, size, weight, include_cut, min_confidence)
    if sizes_mm is None:
        apertures = sieve_apertures(sizes)
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


def sieve_apertures(sizes_mm, series: str = "auto") -> np.ndarray:
    """Standard sieve apertures (ISO 565 / ISO 3310-1) spanning a set of particle sizes.

    From the largest aperture smaller than the smallest particle (nothing
    passes it) to the smallest aperture at least as large as the largest one
    (everything passes).

    Parameters
    ----------
    sizes_mm : array_like of float
        Particle sizes in mm (non-positive and non-finite ones are ignored).
    series : {"auto", "R20/3", "R40/3"}
        The principal series R20/3 (ratio 10^(3/20), about sqrt(2): ... 0.063,
        0.09, 0.125, 0.18, 0.25, 0.355, 0.5 mm ...), the supplementary R40/3
        (ratio 10^(3/40): ... 0.075, 0.09, 0.106, 0.125, 0.15, 0.18 mm ...), or
        ``"auto"``: R20/3 when it puts at least 8 sieves across the sizes, else R40/3.

    Returns
    -------
    numpy.ndarray
        Increasing apertures in mm; ``[1.0]`` when there is no positive size.

    Examples
    --------
    >>> sieve_apertures([0.1, 0.3], "R20/3").tolist()
    [0.09, 0.125, 0.18, 0.25, 0.355]
    """
    if series != "auto" and series not in SIEVE_SERIES:
        raise InputError(f"series must be 'auto', 'R20/3' or 'R40/3', got {series!r}")
    sizes = np.asarray(sizes_mm, dtype=float).reshape(-1)
    sizes = sizes[np.isfinite(sizes) & (sizes > 0)]
    if not len(sizes):
        return np.array([1.0])
    if series == "auto":
        principal = sieve_apertures(sizes, "R20/3")
        return principal if len(principal) >= _MIN_SIEVES else sieve_apertures(sizes, "R40/3")
    step = SIEVE_SERIES[series]
    # R40 index k has the value _R40[k % 40] * 10 ** (k // 40); steps of 3 or 6 from 1 mm
    low = int(np.floor(40 * np.log10(sizes.min()) / step)) * step - step
    high = int(np.ceil(40 * np.log10(sizes.max()) / step)) * step + step
    values = np.array([round(_R40[k % 40] * 10.0 ** (k // 40), 6) for k in range(low, high + 1, step)])
    below = np.flatnonzero(values < sizes.min())
    above = np.flatnonzero(values >= sizes.max())
    return values[below[-1]:above[0] + 1]


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


def shape_summary(table, *, include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
    """Statistics of the shape descriptors and the share of each Zingg class.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    pandas.DataFrame
        Rows ``sphericity``, ``elongation``, ``flatness`` and
        ``aspect_ratio`` (minor / major axis) with columns ``count``, ``mean``,
        ``std``, ``p10``, ``median``, ``p90``; then rows ``zingg_<class>`` whose
        ``count`` is the number of particles in the class and ``mean`` their share.
    """
    table = check_table(table, ["sphericity", "elongation", "flatness", "axis_major_mm", "axis_minor_mm"])
    table = select_particles(table, include_cut=include_cut, min_confidence=min_confidence)
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


def phase_summary(table, *, min_phase_fraction: float | None = None, include_cut: bool = False,
                  min_confidence: float | None = None) -> pd.DataFrame:
    """Volume of each mineral phase over all particles, and the particles that contain it.

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=`` (``phase_fraction_<name>`` columns).
    min_phase_fraction : float, optional
        A particle contains a phase when the phase fills at least this share of
        it (below it the phase is absent: partial-volume voxels at a grain's
        edge are not a phase). Default: the table's
        ``attrs["min_phase_fraction"]``, else
        :data:`~ps3d_toolkit.measurement.intensity.MIN_PHASE_FRACTION` (0.02).
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    pandas.DataFrame
        One row per phase: ``volume_mm3`` (sum of fraction x particle volume),
        ``volume_fraction`` (of all particle volume), ``mean_particle_fraction``,
        ``particles_with_phase`` (fraction >= ``min_phase_fraction``), ``particles``
        (all counted). ``attrs["min_phase_fraction"]`` holds the minimum used.

    Raises
    ------
    ValueError
        If the table has no ``phase_fraction_*`` column.
    """
    table = check_table(table, ["volume_mm3"])
    names = phase_names(table)
    if not names:
        raise InputError("table has no phase_fraction_<name> columns; measure it with phases=")
    minimum = _min_phase_fraction(table, min_phase_fraction)
    table = select_particles(table, include_cut=include_cut, min_confidence=min_confidence)
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
            "particles_with_phase": int(np.sum(fraction >= minimum)),
            "particles": len(table),
        })
    frame = pd.DataFrame(rows).set_index("phase")
    frame.attrs = {"min_phase_fraction": minimum, "n_cut_left_out": table.attrs["n_cut_left_out"]}
    return frame


def _min_phase_fraction(table, value) -> float:
    """The minimum phase fraction asked for, else the table's own, else the default; checked."""
    from ps3d_toolkit.measurement.intensity import MIN_PHASE_FRACTION

    value = table.attrs.get("min_phase_fraction", MIN_PHASE_FRACTION) if value is None else value
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"min_phase_fraction must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InputError(f"min_phase_fraction must be in [0, 1], got {value!r}")
    return value


def liberation_table(table, *, thresholds=None, min_phase_fraction: float | None = None,
                     include_cut: bool = False, min_confidence: float | None = None) -> pd.DataFrame:
    """Particles and phase volume per liberation class, for every phase of the table.

    For each phase, each particle is classed by the volume fraction ``f`` of
    that phase inside it (:func:`ps3d_toolkit.measurement.liberation_class`):
    barren (``f < min_phase_fraction``: the phase is absent), locked
    (``f < locked_below``), middling, liberated (``f >= liberated_from``).

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=`` (``phase_fraction_<name>`` columns).
    thresholds : (float, float), optional
        ``(locked_below, liberated_from)``. By default the table's
        ``attrs["liberation_thresholds"]``, else (0.3, 0.95) as in
        :func:`~ps3d_toolkit.measurement.measure`.
    min_phase_fraction : float, optional
        By default the table's ``attrs["min_phase_fraction"]``, else 0.02.
        With neither argument given, a phase's own ``liberation_<name>``
        column (as measured) gives its classes.
    include_cut : bool
        Count the particles cut by the scan border too (see :func:`select_particles`).
    min_confidence : float, optional
        Leave out the particles whose ``confidence`` is under this (see :func:`select_particles`).

    Returns
    -------
    pandas.DataFrame
        One row per phase and class (barren, locked, middling, liberated):
        ``phase``, ``liberation_class``, ``count`` (particles), ``count_share``
        (of all particles counted), ``particle_volume_mm3`` and
        ``particle_volume_share`` (of all particle volume), ``phase_volume_mm3``
        (volume of the phase in those particles) and ``phase_volume_share``
        (of the phase's whole volume; sums to 1 over the classes of a phase
        that is present). ``attrs`` holds the thresholds and minimum used.

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
    own_classes = thresholds is None and min_phase_fraction is None
    limits = liberation_limits(table, thresholds=thresholds, min_phase_fraction=min_phase_fraction)
    kept = select_particles(table, include_cut=include_cut, min_confidence=min_confidence)
    frame = _liberation_rows(kept, names, limits, own_classes)
    frame.attrs = {"min_phase_fraction": limits[0], "liberation_thresholds": limits[1:],
                   "n_cut_left_out": kept.attrs["n_cut_left_out"]}
    return frame


def liberation_limits(table, *, thresholds=None, min_phase_fraction: float | None = None) -> tuple:
    """``(min_phase_fraction, locked_below, liberated_from)``: those given, else the table's own, else the defaults.

    The defaults are those of :func:`~ps3d_toolkit.measurement.measure`:
    barren < 2 % <= locked < 30 % <= middling < 95 % <= liberated.
    """
    from ps3d_toolkit.measurement.intensity import LIBERATION_THRESHOLDS, check_liberation_thresholds

    limits = table.attrs.get("liberation_thresholds", LIBERATION_THRESHOLDS) if thresholds is None else thresholds
    return check_liberation_thresholds(limits, _min_phase_fraction(table, min_phase_fraction))


def phase_names(table) -> list:
    """The mineral phases of a particle table: ``<name>`` of every ``phase_fraction_<name>`` column."""
    return [c[len(_PHASE_PREFIX):] for c in table.columns if c.startswith(_PHASE_PREFIX)]


#: Words for automatic phases by their place in the grey scale, darkest first, by number of phases.
_TONES = {2: ("darker", "brighter"), 3: ("darkest", "middle", "brightest"),
          4: ("darkest", "dark", "bright", "brightest"), 5: ("darkest", "dark", "middle", "bright", "brightest")}
_DEFAULT_PHASE = re.compile(r"phase_(\d+)")


def phase_labels(table) -> dict:
    """How a report names each phase of the table: as the user named it, else by its grey values in words.

    A phase named by the user (``quartz``) keeps its name. One with the
    default name of an automatic phase (``phase_1``, ``phase_2``, ... darkest
    first) is named by its place in the grey scale and its grey-level range
    from ``table.attrs["phases"]``, e.g. ``"darker phase (grey < 41,157)"`` and
    ``"brighter phase (grey ≥ 41,157)"``; by its id for a phase map
    (``"phase 1 (id 1)"``); ``"phase 1"`` when the table does not say.

    Parameters
    ----------
    table : pandas.DataFrame
        A particle table measured with ``phases=``.

    Returns
    -------
    dict
        ``{name: label}`` for every phase of :func:`phase_names`, in their order.
    """
    names = phase_names(check_table(table))
    definitions = table.attrs.get("phases") or {}
    intervals = {n: tuple(definitions[n]) for n in names if _is_interval(definitions.get(n))}
    order = sorted(intervals, key=lambda n: intervals[n][0])
    tones = _TONES.get(len(order)) if len(order) == len(names) else None
    labels = {}
    for name in names:
        number = _DEFAULT_PHASE.fullmatch(name)
        if number is None:
            labels[name] = name
        elif name in intervals:
            tone = f"{tones[order.index(name)]} phase" if tones else f"phase {number.group(1)}"
            labels[name] = f"{tone} ({grey_range_text(*intervals[name])})"
        elif isinstance(definitions.get(name), (int, np.integer)):
            labels[name] = f"phase {number.group(1)} (id {int(definitions[name])})"
        else:
            labels[name] = f"phase {number.group(1)}"
    return labels


def _is_interval(spec) -> bool:
    return isinstance(spec, (list, tuple)) and len(spec) == 2


def grey_range_text(low, high) -> str:
    """A grey-level interval ``[low, high)`` in words: ``grey < 41,157``, ``grey ≥ 41,157``, ``grey 80-140``."""
    low, high = float(low), float(high)
    if np.isinf(low) and np.isinf(high):
        return "all grey values"
    if np.isinf(low):
        return f"grey < {_grey(high)}"
    if np.isinf(high):
        return f"grey ≥ {_grey(low)}"
    return f"grey {_grey(low)}–{_grey(high)}"


def _grey(value: float) -> str:
    """A grey value as a reader takes it in: whole numbers with thousands separators, else 3 significant digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _liberation_rows(table, names, limits, own_classes: bool) -> pd.DataFrame:
    """:func:`liberation_table` of a checked table with ``volume_mm3`` and the phases ``names``."""
    from ps3d_toolkit.measurement.intensity import LIBERATION_CLASSES, liberation_class

    barren, low, high = limits
    volume = table["volume_mm3"].to_numpy(dtype=float)
    total_volume = np.nansum(volume)
    rows = []
    for name in names:
        fraction = table[_PHASE_PREFIX + name].to_numpy(dtype=float)
        own = _LIBERATION_PREFIX + name
        classes = table[own] if own_classes and own in table.columns else liberation_class(
            fraction, (low, high), min_phase_fraction=barren)
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
