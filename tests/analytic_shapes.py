"""Shapes with answers known by construction, and exact reference formulas.

Shared by the measurement tests and ``benchmarks/measure_*.py`` (which put this
folder on ``sys.path``); nothing here is part of the package.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.measurement.surface import shape_metrics


def ellipsoid_labels(semi_axes_mm, spacing, rotation=None, offset_vox=(0, 0, 0), pad=3, label=1):
    """Digital ellipsoid: voxels whose centre lies inside it (body axes along z, y, x before rotation)."""
    spacing = np.asarray(spacing, float)
    semi = np.asarray(semi_axes_mm, float)
    rot = np.eye(3) if rotation is None else rotation
    half = np.ceil(semi.max() / spacing).astype(int) + pad
    grids = [(np.arange(2 * h + 1) - h - o) * s for h, o, s in zip(half, offset_vox, spacing)]
    points = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1) @ rot
    inside = ((points / semi) ** 2).sum(axis=-1) <= 1.0
    return inside.astype(np.uint32) * np.uint32(label)


def box_labels(sides_vox, pad=3, label=1):
    """A box of ``sides_vox`` voxels with ``pad`` empty voxels around it."""
    shape = tuple(int(s) + 2 * pad for s in sides_vox)
    labels = np.zeros(shape, np.uint32)
    labels[tuple(slice(pad, pad + int(s)) for s in sides_vox)] = label
    return labels


def ellipsoid_area(a: float, b: float, c: float) -> float:
    """Exact surface area of the ellipsoid of semi-axes ``a``, ``b``, ``c`` (Legendre's formula).

    Any order of the semi-axes, any unit.
    """
    from scipy.special import ellipeinc, ellipkinc

    a, b, c = sorted((a, b, c), reverse=True)
    if np.isclose(a, c):
        return 4 * np.pi * a * a
    phi = np.arccos(c / a)
    m = (a * a * (b * b - c * c)) / (b * b * (a * a - c * c))
    return 2 * np.pi * c * c + 2 * np.pi * a * b / np.sin(phi) * (
        ellipeinc(phi, m) * np.sin(phi) ** 2 + ellipkinc(phi, m) * np.cos(phi) ** 2)


def _mask_metrics(mask, spacing):
    """(surface area mm^2, max Feret mm) of the single particle in ``mask``."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return 0.0, 0.0
    area, feret = shape_metrics(mask.astype(np.uint8), [tuple(slice(0, s) for s in mask.shape)], [1], spacing)
    return float(area[0]), float(feret[0])


def surface_area(mask, spacing) -> float:
    """Surface area in mm^2 of the particle in ``mask`` (voxels beyond the array are outside)."""
    return _mask_metrics(mask, spacing)[0]


def feret_max(mask, spacing) -> float:
    """Maximum Feret diameter in mm of the particle in ``mask``."""
    return _mask_metrics(mask, spacing)[1]


def sphere_table(diameters, **columns):
    """A particle table of spheres of the given diameters (mm), labels 1..n, plus ``columns``."""
    import pandas as pd

    d = np.asarray(diameters, float)
    frame = pd.DataFrame({"label": np.arange(1, len(d) + 1), "eq_diameter_mm": d,
                          "volume_mm3": np.pi / 6 * d**3})
    for name, values in columns.items():
        frame[name] = values
    return frame
