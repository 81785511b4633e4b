"""Export of the report's tables: CSV files or one Excel workbook, atomically."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.io.tables import CSV_FLOAT_FORMAT
from ps3d_toolkit.report.tables import report_frames

# a worksheet holds 1,048,576 rows, one of them the header
_EXCEL_MAX_ROWS = 1_048_575


def export_tables(table, path, *, scan=None, notes: dict | None = None, include_cut: bool = False,
                  min_confidence: float | None = None) -> list:
    """Write the particle table and the report's tables as CSV files or one Excel workbook, atomically.

    The tables (sheets) are ``particles`` (the table itself), ``summary``
    (:func:`summary_table`), ``psd`` (sieve curves by volume and number),
    ``shape`` (:func:`ps3d_toolkit.analysis.stats.shape_summary`), ``phases``
    (:func:`ps3d_toolkit.analysis.stats.phase_summary`) and ``liberation``
    (:func:`liberation_table`); ``psd``, ``shape``, ``phases`` and
    ``liberation`` only when the table has the columns they need. The
    particle table holds every particle; the others leave out the particles
    cut by the scan border unless ``include_cut`` (``summary`` says how many).

    Parameters
    ----------
    table : pandas.DataFrame
        The particle table.
    path : str or Path
        ``report.xlsx``: one workbook, a sheet per table (needs openpyxl).
        ``particles.csv``: the particle table to that file and every other
        table beside it as ``particles_<table>.csv``. A path without
        extension is a stem: ``stem_<table>.csv`` for every table.
    scan : ps3d_toolkit.io.Scan, optional
        The scan, for the summary.
    notes : dict, optional
        Extra summary rows.
    include_cut : bool
        Count the particles cut by the scan border in the statistics.
    min_confidence : float, optional
        Leave the particles whose ``confidence`` is under this out of the statistics
        (``summary`` says how many).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If the extension is neither ``.xlsx`` nor ``.csv`` (nor absent), or a
        workbook would need more rows than a sheet holds.
    ImportError
        If openpyxl is missing for ``.xlsx``.

    Examples
    --------
    >>> export_tables(table, "out/report.xlsx")            # doctest: +SKIP
    [PosixPath('out/report.xlsx')]
    """
    table = check_table(table)
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv", ""):
        raise InputError(f"path must end in .xlsx or .csv, or be a stem without extension, got {path.name!r}")
    if suffix == ".xlsx":
        if importlib.util.find_spec("openpyxl") is None:
            raise ImportError("writing .xlsx needs openpyxl: pip install openpyxl")
        if len(table) > _EXCEL_MAX_ROWS:
            raise InputError(f"{len(table):,} particles do not fit in an Excel sheet "
                             f"({_EXCEL_MAX_ROWS:,} rows); export to .csv instead")
    frames = report_frames(table, scan=scan, notes=notes, include_cut=include_cut, min_confidence=min_confidence)
    if suffix == ".xlsx":
        with atomic_path(path) as tmp:
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                for name, frame in frames.items():
                    frame.to_excel(writer, sheet_name=name, index=False, freeze_panes=(1, 0))
        return [path]
    stem = path.with_suffix("") if suffix else path
    written = []
    for name, frame in frames.items():
        target = path if (suffix == ".csv" and name == "particles") else stem.with_name(f"{stem.name}_{name}.csv")
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
        written.append(target)
    return written

