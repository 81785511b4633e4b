"""Small operations on label images shared by segmentation, measurement and evaluation."""

from __future__ import annotations

import numpy as np

#: Above this label id a lookup table over all ids would be too large; ids are then
#: compacted with ``np.unique`` instead.
LUT_MAX_LABEL = 1 << 24


def keep_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep the labels where ``keep[label]`` is True, renumbered 1..n (uint32).

    Parameters
    ----------
    labels : np.ndarray of int
        Label image, 0 = background.
    keep : np.ndarray of bool
        One flag per label id ``0..labels.max()``; the flag of 0 is ignored.

    Examples
    --------
    >>> keep_labels(np.array([0, 3, 3, 5]), np.array([0, 0, 0, 1, 0, 1], bool)).tolist()
    [0, 1, 1, 2]
    """
    keep = np.asarray(keep, dtype=bool).copy()
    keep[0] = False
    lut = np.zeros(keep.size, np.uint32)
    lut[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.uint32)
    return lut[labels]


def drop_small_labels(labels: np.ndarray, *, min_voxels: float = 0,
                      min_fraction: float = 0.0, reference_voxels: float | None = None) -> np.ndarray:
    """Remove particles below ``min_voxels`` or ``min_fraction`` of a reference; relabel 1..n.

    Parameters
    ----------
    labels : np.ndarray of int
        Label image, 0 = background.
    min_voxels : float
        Smallest particle kept, in voxels.
    min_fraction : float
        Smallest particle kept as a fraction of ``reference_voxels``.
    reference_voxels : float, optional
        Reference volume in voxels; default: the mean volume of the particles present.

    Returns
    -------
    np.ndarray
        uint32 labels 1..n.

    Examples
    --------
    >>> drop_small_labels(np.array([1, 1, 1, 1, 2, 0, 3, 3]), min_voxels=2).tolist()
    [1, 1, 1, 1, 0, 0, 2, 2]
    """
    sizes = np.bincount(np.asarray(labels).ravel())
    sizes[0] = 0
    keep = sizes > 0
    if keep.any():
        reference = sizes[keep].mean() if reference_voxels is None else float(reference_voxels)
        keep &= sizes >= max(min_fraction * reference, min_voxels)
    return keep_labels(labels, keep)


def compact_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct ids of ``values`` and each value's index among them.

    A lookup table serves ids below :data:`LUT_MAX_LABEL`; larger (sparse) ids
    go through ``np.unique``.

    Examples
    --------
    >>> ids, index = compact_ids(np.array([7, 0, 7, 3]))
    >>> ids.tolist(), index.tolist()
    ([0, 3, 7], [2, 0, 2, 1])
    """
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(values.shape, dtype=np.int64)
    top = int(values.max())
    if top < LUT_MAX_LABEL:
        present = np.bincount(values.astype(np.int64, copy=False).ravel(), minlength=top + 1) > 0
        ids = np.flatnonzero(present)
        lut = np.cumsum(present, dtype=np.int64) - 1
        return ids, lut[values]
    ids, inverse = np.unique(values, return_inverse=True)
    return ids.astype(np.int64), inverse.reshape(values.shape).astype(np.int64)
