"""The measurements a quality estimate is made of: stability, shape, size and volume cues.

Every function here works on a label image that is already checked (uint32, 3D) and
returns plain numbers or arrays indexed by particle position ``0 .. n-1`` for the ids
``1 .. n`` of :func:`particle_ids`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.geometry import equivalent_diameter

__all__ = ["best_iou", "core_counts", "particle_ids", "size_ratios", "solidity", "volume_agreement"]

# A particle's cores are the connected parts of its inside deeper than this share of its
# own largest depth: two balls merged through a neck give two, an ellipsoid one.
_CORE_DEPTH_SHARE = 0.6
# Particles with fewer voxels than this get no hull (their solidity reads 1).
_MIN_HULL_VOXELS = 8


def particle_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The particle ids present in ``labels`` and their voxel counts."""
    counts = np.bincount(labels.ravel())
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    return ids, counts[ids]


def best_iou(labels: np.ndarray, other: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each particle of ``labels`` (by ``ids``), its largest IoU with any particle of ``other``.

    The contingency table is counted over the voxels where ``labels`` is foreground,
    with one ``np.unique`` over pairs encoded as int64.
    """
    if ids.size == 0:
        return np.zeros(0)
    size_a = np.bincount(labels.ravel())
    size_b = np.bincount(other.ravel())
    both = (labels != 0) & (other != 0)
    a = labels[both].astype(np.int64)
    b = other[both].astype(np.int64)
    pairs, inter = np.unique(a * (int(b.max(initial=0)) + 1) + b, return_counts=True)
    pa = pairs // (int(b.max(initial=0)) + 1)
    pb = pairs % (int(b.max(initial=0)) + 1)
    iou = inter / (size_a[pa] + size_b[pb] - inter)
    best = np.zeros(size_a.size)
    np.maximum.at(best, pa, iou)
    return best[ids]


def core_counts(labels: np.ndarray, ids: np.ndarray, spacing: tuple) -> np.ndarray:
    """How many separate deep cores each particle holds (merged grains hold several)."""
    import cc3d
    import edt

    if ids.size == 0:
        return np.zeros(0, np.int64)
    anisotropy = tuple(float(s) / min(spacing) for s in spacing)
    depth = edt.edt(np.ascontiguousarray(labels), anisotropy=anisotropy, black_border=False, parallel=1)
    deepest = np.zeros(int(labels.max()) + 1, np.float32)
    np.maximum.at(deepest, labels.ravel(), depth.ravel())
    cores = np.where(depth > _CORE_DEPTH_SHARE * deepest[labels], labels, 0).astype(np.uint32)
    # cc3d keeps voxels of different values apart: every component belongs to one particle
    components = cc3d.connected_components(cores, connectivity=26)
    first = np.zeros(int(components.max()) + 1, np.int64)
    flat = components.ravel()
    first[flat] = cores.ravel()
    return np.bincount(first[1:], minlength=int(labels.max()) + 1)[ids]


def solidity(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Voxel count over convex-hull volume of each particle (1 for a convex grain, less for merged ones)."""
    from scipy.spatial import ConvexHull, QhullError

    out = np.ones(ids.size)
    boxes = ndimage.find_objects(labels)
    for i, pid in enumerate(ids):
        box = boxes[pid - 1]
        inside = labels[box] == pid
        shell = inside & ~ndimage.binary_erosion(inside)
        points = np.argwhere(shell)
        if points.shape[0] < _MIN_HULL_VOXELS:
            continue
        # the hull of the voxel centres: a digital convex grain then fills it (its voxel count
        # is the volume of the shape whose centres it holds); a neck between merged grains does not
        try:
            hull = ConvexHull(points)
        except QhullError:
            continue
        out[i] = min(1.0, inside.sum() / hull.volume)
    return out


def size_ratios(counts: np.ndarray, spacing: tuple, particle_size_mm: float | None,
                estimated_size_mm: float | None) -> dict:
    """The particle size given, set against the grains found and against the scan's own estimate.

    Returns
    -------
    dict
        ``found_over_given``: median equivalent diameter of the particles found over the
        given size; ``estimate_over_given``: the distance-map estimate on the Otsu mask
        over the given size (NaN where a term is missing).
    """
    found = float(np.median(equivalent_diameter(counts * float(np.prod(spacing))))) if counts.size else np.nan
    given = np.nan if particle_size_mm is None else float(particle_size_mm)
    estimated = np.nan if estimated_size_mm is None else float(estimated_size_mm)
    return {"found_over_given": found / given, "estimate_over_given": estimated / given,
            "found_mm": found, "estimated_mm": estimated}


def volume_agreement(labels: np.ndarray, grain_voxels: np.ndarray) -> float:
    """Labelled voxels over Otsu grain-mask voxels (1 when the particles fill the grains exactly)."""
    grain = int(np.count_nonzero(grain_voxels))
    return float(np.count_nonzero(labels)) / grain if grain else np.nan
