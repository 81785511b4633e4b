"""The sphere formulas that tie a particle's volume to its equivalent diameter."""

from __future__ import annotations

import numpy as np


def sphere_volume(diameter):
    """Volume of a sphere of the given diameter (same unit, cubed).

    Examples
    --------
    >>> round(float(sphere_volume(2.0)), 4)
    4.1888
    """
    return np.pi / 6.0 * np.asarray(diameter, dtype=float) ** 3


def equivalent_diameter(volume):
    """Diameter of the sphere of the given volume (the inverse of :func:`sphere_volume`).

    Examples
    --------
    >>> round(float(equivalent_diameter(np.pi / 6)), 6)
    1.0
    """
    return np.cbrt(6.0 * np.asarray(volume, dtype=float) / np.pi)


def wadell_sphericity(volume, area):
    """Wadell's sphericity, the surface of the equal-volume sphere over the surface."""
    return np.pi ** (1 / 3) * (6.0 * np.asarray(volume, dtype=float)) ** (2 / 3) / area
