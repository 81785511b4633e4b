"""Input checks shared by every public function.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and
says what was expected, as the design notes ask.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_spacing(spacing, name: str = "spacing") -> tuple[float, float, float]:
    """Return ``spacing`` as three positive floats in mm (z, y, x).

    Parameters
    ----------
    spacing : float or sequence of 3 floats
        Voxel size in millimetres; a scalar means isotropic voxels.
    name : str
        Argument name used in error messages.

    Raises
    ------
    TypeError
        If ``spacing`` is neither a number nor a sequence of numbers.
    ValueError
        If it does not hold 3 finite positive values.
    """
    if spacing is None:
        raise ValueError(f"{name} must be 3 positive numbers in mm (z, y, x), got None")
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        values = (float(spacing),) * 3
    else:
        try:
            values = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be a number or 3 numbers in mm, got {spacing!r}"
            ) from None
        if len(values) == 1:
            values = values * 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be 3 positive numbers in mm (z, y, x), got {spacing!r}")
    return values


def check_volume(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as a 3D numpy array, or raise naming what was wrong.

    Array-likes such as zarr or dask arrays are read into memory.
    """
    if image is None:
        raise TypeError(f"{name} must be a 3D array (z, y, x), got None")
    array = np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D array (z, y, x), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def check_labels(labels, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 3D non-negative integer array (dtype kept where possible)."""
    array = check_volume(labels, name)
    if array.dtype == bool:
        return array.astype(np.uint32)
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            array = array.astype(np.int64)
        else:
            raise TypeError(f"{name} must be an integer label image, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise ValueError(f"{name} must be non-negative (0 = background), got minimum {array.min()}")
    return array


def check_positive(value, name: str, allow_none: bool = False):
    """Return ``value`` as a positive float (or None when allowed)."""
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return number


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` when two volumes differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def check_table(table, columns=(), name: str = "table"):
    """Return ``table`` if it is a particle table (a DataFrame) holding ``columns``.

    Raises
    ------
    TypeError
        If ``table`` is not a pandas DataFrame.
    ValueError
        If a required column is missing.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame of particles "
                        f"(the output of measure()), got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; expected the output of "
                         "ps3d_toolkit.measure()")
    return table


def check_lazy_volume(image, name: str = "image"):
    """A 3D numeric array, kept lazy (zarr, dask, memory map) when it is one.

    A numpy array or a nested list goes through :func:`check_volume`; an object
    with ``shape`` and ``dtype`` is checked without reading its values.
    """
    if isinstance(image, np.ndarray) or not (hasattr(image, "shape") and hasattr(image, "dtype")):
        return check_volume(image, name)
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3D array (z, y, x), got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{name} must not be empty, got shape {shape}")
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise TypeError(f"{name} must hold numbers, got dtype {dtype}")
    return image
