"""The checks at segmentation's door, shared by ``segment()`` and each public method.

Everything behind a public function trusts the values these return.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.core.checks import check_positive, check_spacing, check_volume


def check_scan(image, spacing, particle_size_mm) -> tuple[np.ndarray, tuple, float | None]:
    """Return the image as a 3D numeric array, spacing as 3 floats in mm, the size or None."""
    return (check_volume(image, "image"), check_spacing(spacing),
            check_positive(particle_size_mm, "particle_size_mm", allow_none=True))


def check_fraction(value, name: str) -> float:
    """Return ``value`` as a float in [0, 1), or raise naming ``name``."""
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def check_n_classes(n_classes) -> int | None:
    """Return ``n_classes`` as None (automatic) or an int >= 2."""
    if n_classes is None:
        return None
    if not isinstance(n_classes, (int, np.integer)) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be None (automatic) or an integer >= 2, got {n_classes!r}")
    return int(n_classes)
