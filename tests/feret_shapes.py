"""Digital boxes and cylinders, rotated or not, with known minimum Feret diameters.

Shared by ``tests/test_feret.py`` and ``benchmarks/measure_accuracy.py`` (which put
this folder on ``sys.path``); ellipsoids come from ``analytic_shapes.py``. Nothing
here is part of the package.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def rotation(seed: int) -> np.ndarray:
    """A random rotation matrix, the same for the same ``seed``."""
    return Rotation.random(random_state=seed).as_matrix()


def _centred_points(half_extent_mm: float, spacing, rotation_matrix, offset_vox, pad: int = 3) -> np.ndarray:
    """Voxel centres (mm) of a grid around the origin, in the shape's own (rotated) frame, (z, y, x, 3)."""
    spacing = np.asarray(spacing, float)
    half = np.ceil(half_extent_mm / spacing).astype(int) + pad
    axes = [(np.arange(2 * h + 1) - h - o) * s for h, o, s in zip(half, offset_vox, spacing)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    return grid if rotation_matrix is None else grid @ rotation_matrix


def rotated_box_labels(sides_mm, spacing, rotation_matrix=None, offset_vox=(0, 0, 0), label=1) -> np.ndarray:
    """Digital box of ``sides_mm`` (its own z, y, x before rotation): voxels whose centre lies inside."""
    sides = np.asarray(sides_mm, float)
    p = _centred_points(0.5 * float(np.linalg.norm(sides)), spacing, rotation_matrix, offset_vox)
    inside = np.all(np.abs(p) <= sides / 2, axis=-1)
    return inside.astype(np.uint32) * np.uint32(label)


def cylinder_labels(radius_mm, height_mm, spacing, rotation_matrix=None, offset_vox=(0, 0, 0),
                    label=1) -> np.ndarray:
    """Digital cylinder (axis along its own z before rotation): voxels whose centre lies inside."""
    p = _centred_points(float(np.hypot(radius_mm, height_mm / 2)), spacing, rotation_matrix, offset_vox)
    inside = (np.abs(p[..., 0]) <= height_mm / 2) & (p[..., 1] ** 2 + p[..., 2] ** 2 <= radius_mm**2)
    return inside.astype(np.uint32) * np.uint32(label)


def aligned_box_labels(counts, pad: int = 3, label=1) -> np.ndarray:
    """A box of ``counts`` voxels per axis, aligned with the grid; its true sides are ``counts * spacing``."""
    labels = np.zeros(tuple(int(c) + 2 * pad for c in counts), np.uint32)
    labels[tuple(slice(pad, pad + int(c)) for c in counts)] = label
    return labels


def box_feret_min(sides) -> float:
    """Minimum Feret diameter of a box: its shortest side."""
    return float(min(sides))


def ellipsoid_feret_min(semi_axes) -> float:
    """Minimum Feret diameter of an ellipsoid: twice its shortest semi-axis."""
    return 2.0 * float(min(semi_axes))


def cylinder_feret_min(radius, height) -> float:
    """Minimum Feret diameter of a cylinder: its diameter or its height, the smaller."""
    return float(min(2.0 * radius, height))
