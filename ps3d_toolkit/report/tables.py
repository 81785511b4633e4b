"""The report's tables as DataFrames: the summary, the sieve and phase frames, and all by sheet name."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ps3d_toolkit.analysis.stats import (
    grey_range_text,
    liberation_limits,
    liberation_table,
    percentiles,
    phase_names,
    phase_summary,
    select_particles,
    shape_summary,
    sieve_curve,
)
from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.report.fragments import cut_by

__all__ = ["liberation_table", "report_frames", "summary_table"]

#: Columns the size-distribution parts need.
SIZE_COLUMNS = ("eq_diameter_mm", "volume_mm3")
#: Columns the shape parts need.
SHAPE_COLUMNS = ("label", "eq_diameter_mm", "sphericity", "elongation", "flatness",
                 "axis_major_mm", "axis_minor_mm")


def summary_table(table, *, scan=None, notes: dict | None = None, include_cut: bool = False):
    """Headline numbers of a particle table, one row per quantity.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table (:func:`ps3d_toolkit.measurement.measure`).
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for its name, shape, voxel size and the particle size given.
    notes : dict, optional
        Extra rows, appended as given.
    include_cut : bool
        Count the particles cut by the scan border in the statistics (by
        default they are left out; see :func:`ps3d_toolkit.analysis.stats.select_particles`).

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity`` (a key, e.g. ``d50_volume_mm``), ``description``
        (as the report shows it) and ``value``. Rows: ``n_particles`` (all),
        ``n_touching_border`` when the table has that column,
        ``cut_policy`` (what the statistics do with cut particles),
        ``n_cut_left_out`` and ``n_in_statistics`` (the policy's effect); then,
        over the particles in the statistics: with ``volume_mm3``
        ``total_volume_mm3``; with ``eq_diameter_mm`` also
        ``d10/d50/d90_volume_mm`` and ``..._number_mm`` (the values of
        :func:`ps3d_toolkit.analysis.stats.percentiles`) and ``mean_eq_diameter_mm``;
        ``mean_sphericity``; with phases ``min_phase_fraction`` and
        ``liberation_thresholds``; ``scan``, ``scan_shape`` with a scan;
        ``spacing_mm`` from the scan or the table's ``attrs``; then the notes.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    """
    return summary_rows(check_table(table), scan=scan, notes=notes, include_cut=include_cut)


def summary_rows(table, *, scan=None, notes: dict | None = None, include_cut: bool = False, region: bool = False,
                 min_confidence: float | None = None):
    """:func:`summary_table` of a table already checked; ``region``: the particles were measured in a sample region;
    ``min_confidence``: the particles under it are left out of the statistics."""
    columns = set(table.columns)
    rows = [("n_particles", "particles", len(table))]
    if "touches_border" in columns:
        rows.append(("n_touching_border", f"particles cut by {cut_by(table, region)}",
                     int(table["touches_border"].astype(bool).sum())))
    kept = select_particles(table, include_cut=include_cut, min_confidence=min_confidence)
    policy = ("counted as measured" if include_cut
              else "left out (the uncut particles counted as they are, no edge correction)")
    rows += [("cut_policy", "cut particles in the statistics", policy),
             ("n_cut_left_out", "particles left out of the statistics", kept.attrs["n_cut_left_out"])]
    if min_confidence is not None:
        rows.append(("n_low_confidence_left_out", f"particles with a confidence under {min_confidence:g} left out",
                     kept.attrs["n_low_confidence_left_out"]))
    rows.append(("n_in_statistics", "particles in the statistics", len(kept)))
    rows += _statistics_rows(kept, columns)
    spacing = scan.spacing if scan is not None else table.attrs.get("spacing_mm")
    if scan is not None:
        rows += [("scan", "scan", scan.name),
                 ("scan_shape", "voxels (z × y × x)", " × ".join(str(s) for s in scan.shape))]
    if spacing is not None:
        rows.append(("spacing_mm", "voxel size (z × y × x), mm", " × ".join(f"{float(s):g}" for s in spacing)))
    if scan is not None and scan.particle_size_mm is not None:
        rows.append(("particle_size_given_mm", "particle size given, mm", scan.particle_size_mm))
    rows += [(str(key), str(key), value) for key, value in (notes or {}).items()]
    return pd.DataFrame(rows, columns=["quantity", "description", "value"])


def _statistics_rows(kept, columns) -> list:
    """The summary's statistics over the particles ``kept`` (already selected: nothing more is left out)."""
    rows = []
    if "volume_mm3" in columns:
        rows.append(("total_volume_mm3", "total particle volume, mm³", float(kept["volume_mm3"].sum())))
    if {"eq_diameter_mm", "volume_mm3"} <= columns:
        for weight in ("volume", "number"):
            for name, value in percentiles(kept, weight=weight, include_cut=True).items():
                d = name.removesuffix("_mm")
                rows.append((f"{d}_{weight}_mm", f"{d} by {weight}, mm", value))
    if "eq_diameter_mm" in columns:
        rows.append(("mean_eq_diameter_mm", "mean equivalent diameter, mm", float(kept["eq_diameter_mm"].mean())))
    if "sphericity" in columns:
        rows.append(("mean_sphericity", "mean sphericity (Wadell)", float(kept["sphericity"].mean())))
    if phase_names(kept):
        barren, low, high = liberation_limits(kept)
        rows.append(("min_phase_fraction", "a phase is absent below this share of a particle, %", 100 * barren))
        rows.append(("liberation_thresholds", "liberation classes, % of the phase in a particle",
                     f"barren < {100 * barren:g} ≤ locked < {100 * low:g} ≤ middling < {100 * high:g} "
                     "≤ liberated"))
    return rows



def sieve_frame(table, include_cut: bool = False, min_confidence: float | None = None):
    """Sieve curves by volume and by number on the same (ISO 565) apertures."""
    volume = sieve_curve(table, weight="volume", include_cut=include_cut, min_confidence=min_confidence)
    number = sieve_curve(table, volume["size_mm"], weight="number", include_cut=include_cut,
                         min_confidence=min_confidence)
    return pd.DataFrame({
        "size_mm": volume["size_mm"],
        "percent_passing_volume": volume["percent_passing"],
        "percent_retained_volume": volume["percent_retained"],
        "percent_passing_number": number["percent_passing"],
        "percent_retained_number": number["percent_retained"],
    })


def _phase_definition(spec) -> str:
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return f"phase id {int(spec)}"
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError):
        return ""
    return grey_range_text(low, high)


def phases_frame(table, include_cut: bool = False, min_confidence: float | None = None):
    """:func:`ps3d_toolkit.analysis.stats.phase_summary` with a ``phase`` column and, when known, each definition."""
    frame = phase_summary(table, include_cut=include_cut, min_confidence=min_confidence).reset_index()
    definitions = table.attrs.get("phases") or {}
    if definitions:
        frame.insert(1, "definition", [_phase_definition(definitions.get(name)) for name in frame["phase"]])
    return frame


def report_frames(table, scan=None, notes=None, include_cut: bool = False, min_confidence: float | None = None) -> dict:
    """The tables of the report by sheet name (only those the table's columns allow); ``table`` checked.

    ``particles`` is the whole table; the others follow ``include_cut`` and ``min_confidence``.
    """
    keep = {"include_cut": include_cut, "min_confidence": min_confidence}
    frames = {"particles": table, "summary": summary_rows(table, scan=scan, notes=notes, **keep)}
    columns = set(table.columns)
    if set(SIZE_COLUMNS) <= columns:
        frames["psd"] = sieve_frame(table, **keep)
    if set(SHAPE_COLUMNS) <= columns:
        frames["shape"] = shape_summary(table, **keep).rename_axis("quantity").reset_index()
    if "volume_mm3" in columns and phase_names(table):
        frames["phases"] = phases_frame(table, **keep)
        frames["liberation"] = liberation_table(table, **keep)
    return frames

