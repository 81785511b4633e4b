"""Surface meshes of single particles (for 3D views and exports)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ps3d_toolkit.core.checks import check_labels, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.measurement import surface as _surface


def particle_mesh(labels, label: int, *, spacing=1.0, smooth_vox: float = _surface.FERET_SIGMA_VOX):
    """Marching-cubes surface of one particle, in mm in the scan's frame.

    The particle's mask is smoothed by a gaussian of ``smooth_vox`` voxels and
    cut at 0.5 (:func:`skimage.measure.marching_cubes` with ``spacing``); this is
    the surface whose convex hull gives ``feret_max_mm``.

    Parameters
    ----------
    labels : array_like of int, 3D
        Label image.
    label : int
        The particle's id.
    spacing : float or 3 floats
        Voxel size in mm (z, y, x).
    smooth_vox : float
        Gaussian sigma in voxels; 0 gives the binary mask's staircase surface.

    Returns
    -------
    vertices : ndarray (n, 3) of float
        Vertex coordinates in mm (z, y, x); voxel ``(i, j, k)`` has its centre at
        ``(i, j, k) * spacing``, as the ``centroid_*_mm`` columns.
    faces : ndarray (m, 3) of int
        Triangles as vertex indices.

    Raises
    ------
    ValueError
        If ``label`` is not in ``labels``.
    """
    labels = check_labels(labels, "labels")
    spacing = check_spacing(spacing)
    if smooth_vox < 0:
        raise InputError(f"smooth_vox must be >= 0, got {smooth_vox!r}")
    label = int(label)
    found = ndi.find_objects((labels == label).astype(np.uint8)) if label > 0 else []
    if not found or found[0] is None:
        raise InputError(f"label {label} is not in labels")
    box = found[0]
    vertices, faces = _surface.surface_mesh(labels[box] == label, spacing, sigma_vox=smooth_vox)
    origin = np.array([s.start for s in box], float) * np.asarray(spacing)
    return vertices + origin, faces
