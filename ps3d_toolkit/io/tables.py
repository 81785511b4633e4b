"""Particle tables on disk: :func:`save_table` and :func:`read_table` (CSV or Parquet)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_table
from ps3d_toolkit.core.errors import InputError, MissingInputError

#: File extensions of particle tables.
TABLE_FORMATS = (".csv", ".parquet")
#: How CSV files write floats: 10 significant digits read back within 5e-10 relative (more than any
#: measurement holds) and drop binary noise (0.0015810000000000002 is written 0.001581).
CSV_FLOAT_FORMAT = "%.10g"
# the columns read_table asks of a file before calling it a particle table
_PARTICLE_COLUMNS = ("eq_diameter_mm", "volume_mm3")


def save_table(table: pd.DataFrame, path) -> Path:
    """Write a particle table to ``.csv`` or ``.parquet``, atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`ps3d_toolkit.measurement.measure` (or any DataFrame).
    path : str or Path
        Target file; the extension picks the format. CSV floats are written
        with 10 significant digits (:data:`CSV_FLOAT_FORMAT`).

    Returns
    -------
    Path
        The table's file.

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If the extension is not ``.csv`` or ``.parquet``.
    """
    check_table(table)
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise InputError(f"path must end in one of {', '.join(TABLE_FORMATS)}, got {path.name!r}")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False, float_format=CSV_FLOAT_FORMAT)
        else:
            table.to_parquet(tmp, index=False)
    return path


def read_table(path) -> pd.DataFrame:
    """Read a particle table written by :func:`save_table` (or any CSV/Parquet of the same columns).

    Parameters
    ----------
    path : str or Path
        A ``.csv`` or ``.parquet`` file.

    Returns
    -------
    pandas.DataFrame
        The table, with at least ``eq_diameter_mm`` and ``volume_mm3``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is not ``.csv`` or ``.parquet``, or the file has no
        ``eq_diameter_mm`` and ``volume_mm3`` columns.

    Examples
    --------
    >>> table = read_table("out/particles.csv")            # doctest: +SKIP
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise InputError(f"unknown table format for {path}: use one of {', '.join(TABLE_FORMATS)}")
    if not path.is_file():
        raise MissingInputError(f"particle table not found: {path}")
    table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    if not set(_PARTICLE_COLUMNS) <= set(table.columns):
        raise InputError(f"{path} is not a particle table: it has no eq_diameter_mm and volume_mm3 columns")
    return table
