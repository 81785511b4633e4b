"""Grey-level statistics, phase fractions and liberation classes per particle.

Everything here is vectorised over all particles: the voxel values are sorted
once by (particle, value), after which each particle's minimum, maximum and
percentiles are read at fixed offsets of its segment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import check_labels, check_same_shape, check_volume
from ps3d_toolkit.core.errors import InputError, InputTypeError

#: Percentiles reported as ``intensity_p<q>`` columns.
PERCENTILES = (10, 50, 90)
#: The grey-level columns of the particle table, in order.
_INTENSITY_NAMES = ("intensity_mean", "intensity_std", "intensity_min", "intensity_max",
                    *(f"intensity_p{q}" for q in PERCENTILES))
#: Liberation classes of a particle in one phase, from least to most liberated.
LIBERATION_CLASSES = ("barren", "locked", "middling", "liberated")
#: Default ``(locked_below, liberated_from)`` volume fractions of the phase:
#: locked < 30 % <= middling < 95 % <= liberated (the usual mineral-processing classes).
LIBERATION_THRESHOLDS = (0.3, 0.95)
#: Default minimum volume fraction of a phase in a particle; below it the phase
#: is absent (the particle is barren in it). Partial-volume voxels at a grain's
#: edge fall in the neighbouring grey interval: on the bundled sample (grains of
#: ~20 voxels) they give pure grains up to ~2 % of the other phase, while its
#: truly two-phase grains hold >= 3.2 % of each; 2 % then calls 1 of 88 and 6 of
#: 105 grains "containing" a phase they lack (1 % calls 12 and 25) and misses none.
MIN_PHASE_FRACTION = 0.02
#: Column prefixes of the phase columns of the particle table.
PHASE_PREFIX = "phase_fraction_"
LIBERATION_PREFIX = "liberation_"


def intensity_columns(values: np.ndarray, index: np.ndarray, n_particles: int, *, prefix: str = "intensity") -> dict:
    """Mean, std, min, max and percentiles of the finite ``values`` grouped by ``index``.

    Non-finite values (NaN, inf) are left out of every statistic alike, so that
    the minimum, mean and maximum of a particle describe the same voxels; a
    particle without a finite value gets NaN in every column. (:func:`measure`
    refuses non-finite grey values unless told to mask them.)

    Parameters
    ----------
    values : ndarray, 1D
        Grey value of every particle voxel.
    index : ndarray of int, 1D
        Particle index (0..n_particles-1) of every voxel.
    n_particles : int
        Number of particles (rows of the table).
    prefix : str
        Start of the column names: ``intensity`` for the main image,
        ``intensity_<name>`` for an extra one.

    Returns
    -------
    dict
        ``intensity_mean``, ``intensity_std``, ``intensity_min``, ``intensity_max``
        and ``intensity_p10/p50/p90`` arrays of length ``n_particles`` (with
        ``prefix`` in place of ``intensity``).
    """
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all():
            values, index = values[finite], index[finite]
    columns = _finite_statistics(values, index, n_particles)
    if prefix == "intensity":
        return columns
    return {prefix + name.removeprefix("intensity"): column for name, column in columns.items()}


def _finite_statistics(values: np.ndarray, index: np.ndarray, n_particles: int) -> dict:
    """:func:`intensity_columns` of finite ``values``, under the main image's names."""
    counts = np.bincount(index, minlength=n_particles).astype(np.int64)
    empty = counts == 0
    if empty.all():
        return {name: np.full(n_particles, np.nan) for name in _INTENSITY_NAMES}
    v64 = values.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(index, weights=v64, minlength=n_particles) / counts
        # second moment about the mean of each particle: no cancellation for bright scans
        spread = np.bincount(index, weights=(v64 - mean[index]) ** 2, minlength=n_particles)
        out = {"intensity_mean": mean, "intensity_std": np.sqrt(spread / counts)}
    ordered = _sorted_by_particle(values, index)
    # a particle without finite values reads a harmless offset; its row is NaN below
    last = len(ordered) - 1
    start = np.minimum(np.cumsum(counts) - counts, last)
    size = np.maximum(counts, 1)
    out["intensity_min"] = ordered[start].astype(np.float64)
    out["intensity_max"] = ordered[np.minimum(start + size - 1, last)].astype(np.float64)
    for q in PERCENTILES:
        # numpy's default ("linear") percentile, per segment
        position = (q / 100.0) * (size - 1)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, size - 1)
        lo = ordered[np.minimum(start + below, last)].astype(np.float64)
        hi = ordered[np.minimum(start + above, last)].astype(np.float64)
        out[f"intensity_p{q}"] = lo + (position - below) * (hi - lo)
    for column in out.values():
        column[empty] = np.nan
    return out


def _sorted_by_particle(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return ``values`` sorted by particle index, then by value.

    One sort of packed 64-bit (particle, value) keys beats a two-key lexsort by
    several times; integer values up to 32 bits and float32 values (through the
    order-preserving map of their bit patterns to unsigned integers) are packed,
    anything else falls back to the lexsort.
    """
    if not values.size or int(index.max()) >= 2**31:
        return values[np.lexsort((values, index))]
    if np.issubdtype(values.dtype, np.integer):
        low, high = int(values.min()), int(values.max())
        if high - low < 2**32:
            key = (index.astype(np.uint64) << np.uint64(32)) | (values.astype(np.int64) - low).astype(np.uint64)
            key.sort()
            return (key & np.uint64(0xFFFFFFFF)).astype(np.int64) + low
    elif values.dtype == np.float32 and not np.isnan(values).any():
        bits = values.view(np.uint32)
        # negative floats: flip all bits; positive: flip the sign bit -> unsigned order = float order
        ordered = np.where(bits >> np.uint32(31), ~bits, bits | np.uint32(0x80000000))
        key = (index.astype(np.uint64) << np.uint64(32)) | ordered.astype(np.uint64)
        key.sort()
        low = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        back = np.where(low >> np.uint32(31), low & np.uint32(0x7FFFFFFF), ~low)
        return back.view(np.float32)
    return values[np.lexsort((values, index))]


def phase_masks(phases: dict, values: np.ndarray | None, codes: np.ndarray | None):
    """Yield ``(name, bool array over particle voxels)`` for every phase."""
    for name, spec in phases.items():
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            yield name, codes == spec
        else:
            low, high = spec
            yield name, (values >= low) & (values < high)


def check_phases(phases, image, phase_map) -> dict:
    """Validate the ``phases`` argument of :func:`measure` and return it as a dict."""
    if not isinstance(phases, dict) or not phases:
        raise InputTypeError(
            "phases must be a non-empty dict {name: (low, high)} of grey-level intervals "
            f"or {{name: id}} of phase-map ids, got {phases!r}"
        )
    checked = {}
    for name, spec in phases.items():
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"phases keys must be non-empty strings, got {name!r}")
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            if phase_map is None:
                raise InputError(f"phases[{name!r}] is a phase id ({spec}) but no phase_map was given")
            checked[name] = int(spec)
            continue
        try:
            low, high = (float(v) for v in spec)
        except (TypeError, ValueError):
            raise InputTypeError(
                f"phases[{name!r}] must be a (low, high) grey-level interval or an int phase id, got {spec!r}"
            ) from None
        if not low < high:
            raise InputError(f"phases[{name!r}] must have low < high, got ({low}, {high})")
        if image is None:
            raise InputError(f"phases[{name!r}] is a grey-level interval but no image was given")
        checked[name] = (low, high)
    return checked


def liberation_class(fraction, thresholds=LIBERATION_THRESHOLDS, *,
                     min_phase_fraction: float = MIN_PHASE_FRACTION) -> pd.Categorical:
    """Liberation class of particles in one phase, from the volume fraction of that phase.

    A particle is ``"barren"`` in the phase when the phase fills less than
    ``min_phase_fraction`` of it (the phase is absent there: partial-volume
    voxels at a grain's edge are not a phase), ``"locked"`` below
    ``thresholds[0]``, ``"liberated"`` from ``thresholds[1]``, ``"middling"``
    in between.

    Parameters
    ----------
    fraction : array_like of float
        Volume fraction (0..1) of the phase in each particle.
    thresholds : (float, float)
        ``(locked_below, liberated_from)``; default (0.3, 0.95).
    min_phase_fraction : float
        Below it the particle is barren in the phase; default 0.02 (see
        :data:`MIN_PHASE_FRACTION`).

    Returns
    -------
    pandas.Categorical
        Ordered categories ``barren < locked < middling < liberated``; NaN fractions give NaN.

    Raises
    ------
    ValueError
        If not ``0 <= min_phase_fraction <= locked_below < liberated_from <= 1``.

    Examples
    --------
    >>> list(liberation_class([0.0, 0.05, 0.5, 0.97]))
    ['barren', 'locked', 'middling', 'liberated']
    """
    barren, low, high = check_liberation_thresholds(thresholds, min_phase_fraction)
    f = np.asarray(fraction, dtype=float).reshape(-1)
    codes = np.select([f >= high, f >= low, f >= barren], [3, 2, 1], default=0)
    codes[np.isnan(f)] = -1
    return pd.Categorical.from_codes(codes, categories=list(LIBERATION_CLASSES), ordered=True)


def check_liberation_thresholds(thresholds, min_phase_fraction) -> tuple[float, float, float]:
    """``(min_phase_fraction, locked_below, liberated_from)`` as floats, checked to be in order in [0, 1]."""
    try:
        low, high = (float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"thresholds must be two numbers (locked_below, liberated_from), got {thresholds!r}") from None
    try:
        barren = float(min_phase_fraction)
    except (TypeError, ValueError):
        raise InputTypeError(f"min_phase_fraction must be a number in [0, 1], got {min_phase_fraction!r}") from None
    if not 0.0 <= low < high <= 1.0:
        raise InputError(f"thresholds must satisfy 0 <= locked_below < liberated_from <= 1, got {thresholds!r}")
    if not 0.0 <= barren <= low:
        raise InputError(f"min_phase_fraction must be between 0 and locked_below ({low:g}), got {min_phase_fraction!r}")
    return barren, low, high


def rename_phases(table, names) -> pd.DataFrame:
    """The particle table with its phases renamed: columns ``phase_fraction_<name>``, ``liberation_<name>`` and attrs.

    Parameters
    ----------
    table : pandas.DataFrame
        A table measured with ``phases=``.
    names : sequence of str or dict
        New names in the order of the table's phases (darkest first for
        ``phases="auto"``), or ``{old: new}``.

    Returns
    -------
    pandas.DataFrame
        A renamed copy (``attrs`` kept and updated).

    Raises
    ------
    ValueError
        If the names do not match the table's phases or are not distinct valid names.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"phase_fraction_phase_1": [0.2], "phase_fraction_phase_2": [0.8]})
    >>> list(rename_phases(t, ["quartz", "magnetite"]).columns)
    ['phase_fraction_quartz', 'phase_fraction_magnetite']
    """
    old = [c[len(PHASE_PREFIX):] for c in table.columns if c.startswith(PHASE_PREFIX)]
    mapping = dict(names) if isinstance(names, dict) else dict(zip(old, check_phase_names(names, len(old))))
    unknown = sorted(set(mapping) - set(old))
    if unknown or (not isinstance(names, dict) and len(mapping) != len(old)):
        raise InputError(f"names must name the table's {len(old)} phases {old}, got {names!r}")
    check_phase_names(list(mapping.values()), len(mapping))
    final = [mapping.get(n, n) for n in old]
    if len(set(final)) != len(final):
        raise InputError(f"the renamed phases must stay distinct, got {final}")
    columns = {}
    for name, new in mapping.items():
        columns[PHASE_PREFIX + name] = PHASE_PREFIX + new
        columns[LIBERATION_PREFIX + name] = LIBERATION_PREFIX + new
    renamed = table.rename(columns=columns)
    renamed.attrs = dict(table.attrs)
    if "phases" in table.attrs:
        renamed.attrs["phases"] = {mapping.get(k, k): v for k, v in table.attrs["phases"].items()}
    if "liberation_phases" in table.attrs:
        renamed.attrs["liberation_phases"] = [mapping.get(k, k) for k in table.attrs["liberation_phases"]]
    return renamed


def check_phase_names(names, n_phases: int) -> list[str]:
    """``n_phases`` distinct non-empty names made of letters, digits, ``_`` and ``-`` (they become column names)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    names = [str(n) for n in names]
    if len(names) != n_phases or len(set(names)) != n_phases:
        raise InputError(f"give {n_phases} distinct phase names, got {names!r}")
    bad = [n for n in names if not n or not all(c.isalnum() or c in "_-" for c in n)]
    if bad:
        raise InputError(f"phase names may hold letters, digits, '_' and '-' only, got {bad!r}")
    return names


def propose_phase_thresholds(image, labels=None, *, n_phases: int = 2, names=None,
                             max_samples: int = 2_000_000, seed: int = 0) -> dict:
    """Propose grey-level intervals for mineral phases from the particles' histogram.

    Multi-Otsu thresholds (:func:`skimage.filters.threshold_multiotsu`) on the
    256-bin histogram of the particle voxels' grey values split them into
    ``n_phases`` classes, darkest first; each threshold then moves to the lowest
    point of the (lightly smoothed) histogram between the means of its two
    classes. The result plugs straight into ``measure(..., phases=...)``.

    Parameters
    ----------
    image : array_like, 3D
        Grey-value scan.
    labels : array_like, 3D, optional
        Label image; only its foreground voxels count. All voxels when omitted.
    n_phases : int
        Number of phases, 2 to 5.
    names : sequence of str, optional
        Phase names, darkest first; default ``phase_1``, ``phase_2``, ...
    max_samples : int
        Voxels drawn at random (fixed seed) when there are more; the histogram
        of a million voxels is as good as that of a billion.
    seed : int
        Seed of that draw.

    Returns
    -------
    dict
        ``{name: (low, high)}``, contiguous intervals covering all grey values
        (the first starts at ``-inf``, the last ends at ``inf``).

    Raises
    ------
    ValueError
        If ``n_phases`` is out of range, ``names`` has the wrong length, or
        there are too few distinct grey values to split.
    """
    image = check_volume(image, "image")
    names = phase_names(n_phases, names)
    if labels is not None:
        labels = check_labels(labels, "labels")
        check_same_shape(image, labels, "image", "labels")
        values = image[labels != 0]
    else:
        values = image.reshape(-1)
    values = values[np.isfinite(values)] if np.issubdtype(values.dtype, np.floating) else values
    if values.size > max_samples:
        values = np.random.default_rng(seed).choice(values, size=max_samples, replace=False)
    return phases_from_values(values, names)


def phase_names(n_phases, names=None) -> list[str]:
    """The checked names of ``n_phases`` phases, darkest first (default ``phase_1``, ``phase_2``, ...)."""
    if not isinstance(n_phases, (int, np.integer)) or not 2 <= n_phases <= 5:
        raise InputError(f"n_phases must be an integer from 2 to 5, got {n_phases!r}")
    if names is None:
        names = [f"phase_{i + 1}" for i in range(n_phases)]
    names = [str(n) for n in names]
    if len(names) != n_phases or len(set(names)) != n_phases:
        raise InputError(f"names must be {n_phases} distinct names, got {names!r}")
    return names


def phases_from_values(values: np.ndarray, names) -> dict:
    """The grey-level intervals of :func:`propose_phase_thresholds` from the (sampled) finite particle values.

    The result does not depend on the order of ``values``.
    """
    from skimage.filters import threshold_multiotsu

    n_phases = len(names)
    if np.unique(values).size < n_phases:
        raise InputError(f"the particles hold fewer than {n_phases} distinct grey values; cannot split them "
                         f"into {n_phases} phases")
    counts, edges = np.histogram(values.astype(np.float64), bins=256)
    centres = 0.5 * (edges[:-1] + edges[1:])
    cuts = threshold_multiotsu(hist=(counts, centres), classes=n_phases)
    cuts = _to_valleys(counts, centres, cuts)
    bounds = [-np.inf, *(float(c) for c in cuts), np.inf]
    return {name: (bounds[i], bounds[i + 1]) for i, name in enumerate(names)}


def _to_valleys(counts: np.ndarray, centres: np.ndarray, cuts) -> list[float]:
    """Move each threshold to the lowest point of the histogram between its two class means.

    Otsu's criterion is flat across an empty gap between two modes and returns
    its first bin, right at the foot of the darker mode; the middle of the
    valley is the more robust cut (noise in either phase is less often
    misclassified).
    """
    smooth = np.convolve(counts.astype(float), np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2), mode="same")
    bounds = [-np.inf, *cuts, np.inf]
    moved = []
    for k, cut in enumerate(cuts):
        below = (centres >= bounds[k]) & (centres < cut)
        above = (centres >= cut) & (centres < bounds[k + 2])
        if not counts[below].sum() or not counts[above].sum():
            moved.append(float(cut))
            continue
        low = np.average(centres[below], weights=counts[below])
        high = np.average(centres[above], weights=counts[above])
        between = np.flatnonzero((centres > low) & (centres < high))
        if not len(between):
            moved.append(float(cut))
            continue
        floor = smooth[between].min()
        lowest = between[smooth[between] <= floor + 1e-9 * max(1.0, smooth.max())]
        # the middle of the longest run of lowest bins (an empty gap is flat)
        runs = np.split(lowest, np.flatnonzero(np.diff(lowest) > 1) + 1)
        run = max(runs, key=len)
        moved.append(float(0.5 * (centres[run[0]] + centres[run[-1]])))
    return moved
