"""The report's tables as DataFrames: the summary, the sieve and phase frames, and all by sheet name."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ps3d_toolkit.analysis.stats import (
    liberation_table,
    percentiles,
    phase_names,
    phase_summary,
    shape_summary,
    sieve_curve,
)
from ps3d_toolkit.core.checks import check_table

__all__ = ["liberation_table", "report_frames", "summary_table"]

#: Columns the size-distribution parts need.
SIZE_COLUMNS = ("eq_diameter_mm", "volume_mm3")
#: Columns the shape parts need.
SHAPE_COLUMNS = ("label", "eq_diameter_mm", "sphericity", "elongation", "flatness",
                 "axis_major_mm", "axis_minor_mm")


def summary_table(table, *, scan=None, notes: dict | None = None):
    """Headline numbers of a particle table, one row per quantity.

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table (:func:`ps3d_toolkit.measurement.measure`).
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for its name, shape, voxel size and the particle size given.
    notes : dict, optional
        Extra rows, appended as given.

    Returns
    -------
    pandas.DataFrame
        Columns ``quantity`` (a key, e.g. ``d50_volume_mm``), ``description``
        (as the report shows it) and ``value``. Rows: ``n_particles``; with
        ``volume_mm3`` ``total_volume_mm3``; with ``eq_diameter_mm`` also
        ``d10/d50/d90_volume_mm`` and ``..._number_mm`` (the values of
        :func:`ps3d_toolkit.analysis.stats.percentiles`) and ``mean_eq_diameter_mm``;
        ``mean_sphericity`` and ``n_touching_border`` when the table has those
        columns; ``scan``, ``scan_shape`` with a scan; ``spacing_mm`` from the
        scan or the table's ``attrs``; then the notes.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    """
    return summary_rows(check_table(table), scan=scan, notes=notes)


def summary_rows(table, *, scan=None, notes: dict | None = None):
    """:func:`summary_table` of a table already checked."""
    columns = set(table.columns)
    rows = [("n_particles", "particles", len(table))]
    if "volume_mm3" in columns:
        rows.append(("total_volume_mm3", "total particle volume, mm³", float(table["volume_mm3"].sum())))
    if {"eq_diameter_mm", "volume_mm3"} <= columns:
        for weight in ("volume", "number"):
            for name, value in percentiles(table, weight=weight).items():
                d = name.removesuffix("_mm")
                rows.append((f"{d}_{weight}_mm", f"{d} by {weight}, mm", value))
    if "eq_diameter_mm" in columns:
        rows.append(("mean_eq_diameter_mm", "mean equivalent diameter, mm", float(table["eq_diameter_mm"].mean())))
    if "sphericity" in columns:
        rows.append(("mean_sphericity", "mean sphericity (Wadell)", float(table["sphericity"].mean())))
    if "touches_border" in columns:
        rows.append(("n_touching_border", "particles touching the scan border",
                     int(table["touches_border"].astype(bool).sum())))
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



def sieve_frame(table):
    """Sieve curves by volume and by number on the same apertures."""
    volume = sieve_curve(table, weight="volume")
    number = sieve_curve(table, volume["size_mm"], weight="number")
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
    if np.isinf(low):
        return f"grey < {high:.6g}"
    if np.isinf(high):
        return f"grey ≥ {low:.6g}"
    return f"{low:.6g} ≤ grey < {high:.6g}"


def phases_frame(table):
    """:func:`ps3d_toolkit.analysis.stats.phase_summary` with a ``phase`` column and, when known, each definition."""
    frame = phase_summary(table).reset_index()
    definitions = table.attrs.get("phases") or {}
    if definitions:
        frame.insert(1, "definition", [_phase_definition(definitions.get(name)) for name in frame["phase"]])
    return frame


def report_frames(table, scan=None, notes=None) -> dict:
    """The tables of the report by sheet name (only those the table's columns allow); ``table`` checked."""
    frames = {"particles": table, "summary": summary_rows(table, scan=scan, notes=notes)}
    columns = set(table.columns)
    if set(SIZE_COLUMNS) <= columns:
        frames["psd"] = sieve_frame(table)
    if set(SHAPE_COLUMNS) <= columns:
        frames["shape"] = shape_summary(table).rename_axis("quantity").reset_index()
    if "volume_mm3" in columns and phase_names(table):
        frames["phases"] = phases_frame(table)
        frames["liberation"] = liberation_table(table)
    return frames

