"""Input checks shared by every public function.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and
says what was expected, as the design notes ask.
"""

from __future__ import annotations

import numbers
from typing import Literal, get_args

import numpy as np

from ps3d_toolkit.core.errors import InputError, InputTypeError

# Values per slab of the finiteness count: bounds its temporary boolean mask (16 MiB).
_FINITE_SLAB_VALUES = 1 << 24

#: What to do with NaN or infinite grey values: refuse the scan, or leave those
#: voxels out (background when segmenting, out of the statistics when measuring).
NonFinite = Literal["refuse", "mask"]
NON_FINITE: tuple[str, ...] = get_args(NonFinite)


#: Voxel sizes outside this range (mm) are a unit mistake, and would under- or
#: overflow voxel volumes and distance maps.
PLAUSIBLE_SPACING_MM = (1e-9, 1e9)


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
        If it does not hold 3 finite positive values, or one lies outside
        :data:`PLAUSIBLE_SPACING_MM`.
    """
    if spacing is None:
        raise InputError(f"{name} must be 3 positive numbers in mm (z, y, x), got None")
    if isinstance(spacing, numbers.Real) and not isinstance(spacing, bool):
        values = (float(spacing),) * 3
    else:
        try:
            values = tuple(float(v) for v in spacing)
        except (TypeError, ValueError):
            raise InputTypeError(
                f"{name} must be a number or 3 numbers in mm, got {spacing!r}"
            ) from None
        if len(values) == 1:
            values = values * 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"{name} must be 3 positive numbers in mm (z, y, x), got {spacing!r}")
    low, high = PLAUSIBLE_SPACING_MM
    if not all(low <= v <= high for v in values):
        raise InputError(f"{name} {', '.join(f'{v:.4g}' for v in values)} mm (z, y, x) is not a plausible "
                         f"voxel size (from {low:g} to {high:g} mm): give the spacing in mm")
    return values


def check_volume(image, name: str = "image") -> np.ndarray:
    """Return ``image`` as a 3D numpy array, or raise naming what was wrong.

    Array-likes such as zarr or dask arrays are read into memory.
    """
    if image is None:
        raise InputTypeError(f"{name} must be a 3D array (z, y, x), got None")
    array = np.asarray(image)
    if array.ndim != 3:
        raise InputError(f"{name} must be a 3D array (z, y, x), got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name} must not be empty, got shape {array.shape}")
    _check_real_numbers(array.dtype, name)
    return array


def _check_real_numbers(dtype: np.dtype, name: str) -> None:
    """Refuse anything but real numbers (bool counts): no strings, objects or complex values."""
    if np.issubdtype(dtype, np.complexfloating):
        # No method knows which part of a complex value is the grey value.
        raise InputTypeError(f"{name} must hold real grey values or labels, not complex numbers "
                             f"(dtype {dtype}); pass its real part or magnitude (np.abs)")
    if not (np.issubdtype(dtype, np.number) or dtype == bool):
        raise InputTypeError(f"{name} must hold numbers, got dtype {dtype}")


def check_non_finite(non_finite) -> str:
    """Return ``non_finite`` when it is one of :data:`NON_FINITE` ("refuse" or "mask")."""
    if non_finite not in NON_FINITE:
        raise InputError(f"non_finite must be one of {NON_FINITE}, got {non_finite!r}")
    return non_finite


def count_non_finite(image) -> int:
    """Number of NaN or infinite values in ``image``; 0 at once for integer and bool arrays.

    Floating-point arrays, lazy ones too, are scanned a slab of ~16 M values
    at a time, so that the temporary mask stays small however large the scan.

    Examples
    --------
    >>> count_non_finite(np.array([[[1.0, np.nan, np.inf]]]))
    2
    """
    # a lazy array (zarr, memory map) is read slab by slab too, never whole
    array = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
    if np.dtype(array.dtype).kind not in "fc":
        return 0
    if len(array.shape) == 0:
        return int(not np.isfinite(np.asarray(array)))
    step = max(1, _FINITE_SLAB_VALUES // max(1, int(np.prod(array.shape[1:]))))
    count = 0
    for i in range(0, array.shape[0], step):
        slab = np.asarray(array[i:i + step])
        count += int(slab.size - np.count_nonzero(np.isfinite(slab)))
    return count


def check_labels(labels, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 3D non-negative integer array (dtype kept where possible)."""
    array = check_volume(labels, name)
    if array.dtype == bool:
        return array.astype(np.uint32)
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(np.mod(array, 1) == 0):
            array = array.astype(np.int64)
        else:
            raise InputTypeError(f"{name} must be an integer label image, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.signedinteger) and array.size and array.min() < 0:
        raise InputError(f"{name} must be non-negative (0 = background), got minimum {array.min()}")
    return array


def check_positive(value, name: str, allow_none: bool = False):
    """Return ``value`` as a positive float (or None when allowed)."""
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return number


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ``ValueError`` when two volumes differ in shape."""
    if a.shape != b.shape:
        raise InputError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


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
        raise InputTypeError(f"{name} must be a pandas DataFrame of particles "
                        f"(the output of measure()), got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{name} lacks the column(s) {missing}; expected the output of "
                         "ps3d_toolkit.measure()")
    return table


def check_lazy_volume(image, name: str = "image"):
    """A 3D numeric array, kept lazy (zarr, dask, memory map) when it is one.

    A numpy array or a nested list goes through :func:`check_volume`; an object
    with ``shape``, ``dtype`` and slicing is checked without reading its values;
    any other array (``__array__`` without slicing) is read through :func:`check_volume`.
    """
    if not isinstance(image, np.ndarray) and hasattr(image, "dtype"):
        # a complex or text array is refused by its dtype, before any value is read
        _check_real_numbers(np.dtype(image.dtype), name)
    lazy = all(hasattr(image, attribute) for attribute in ("shape", "dtype", "__getitem__"))
    if isinstance(image, np.ndarray) or not lazy:
        return check_volume(image, name)
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise InputError(f"{name} must be a 3D array (z, y, x), got shape {shape}")
    if 0 in shape:
        raise InputError(f"{name} must not be empty, got shape {shape}")
    _check_real_numbers(np.dtype(image.dtype), name)
    return image
