"""Border-core training targets and their inverse.

A voxel is *border* when it lies within ``border_vox`` voxels of anything that is
not its own particle (background or another particle), *core* otherwise. Cores of
touching particles therefore never touch, which is what lets the network's output
be split into instances.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.checks import check_labels, check_positive
from ps3d_toolkit.core.geometry import equivalent_diameter

__all__ = ["BACKGROUND", "BORDER", "CORE", "IGNORE", "border_core_targets", "masked_dice_ce"]

BACKGROUND, CORE, BORDER = 0, 1, 2
#: Target value of a voxel left out of the loss (an uncertain voxel of a pseudo-label).
IGNORE = 255


def _label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Foreground voxels with a 6-neighbour (or the volume edge) of another label."""
    boundary = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        for shift in (1, -1):
            neighbour = np.roll(labels, shift, axis=axis)
            # np.roll wraps around; the volume edge counts as "same label" so that
            # a particle cut by the scan edge keeps its core there.
            edge = [slice(None)] * labels.ndim
            edge[axis] = 0 if shift == 1 else -1
            neighbour[tuple(edge)] = labels[tuple(edge)]
            boundary |= neighbour != labels
    return boundary & (labels > 0)


def border_core_targets(labels, *, border_vox: float,
                        relative_border: float = 0.15) -> np.ndarray:
    """Convert instance labels to border-core classes.

    Parameters
    ----------
    labels : array_like
        Instance labels (z, y, x), 0 = background.
    border_vox : float
        Thickness of the border shell in voxels (the weights' ``border_vox``),
        measured from the particle surface inwards (Euclidean distance).
    relative_border : float
        Small particles get a thinner shell, ``relative_border`` times their
        equivalent diameter but at least 1 voxel, so that they keep a core:
        with a fixed 2-voxel shell a grain of 7 voxels would have none and be
        swallowed by its neighbour.

    Returns
    -------
    np.ndarray
        uint8 array: 0 background, 1 core, 2 border.

    Examples
    --------
    >>> lab = np.zeros((9, 9, 9), np.uint32); lab[1:8, 1:8, 1:8] = 1
    >>> t = border_core_targets(lab, border_vox=2)
    >>> int(t[4, 4, 4]), int(t[1, 4, 4])
    (1, 2)
    """
    labels = check_labels(labels)
    border_vox = check_positive(border_vox, "border_vox")
    foreground = labels > 0
    interior = foreground & ~_label_boundaries(labels)
    # Distance from each interior voxel to the nearest boundary voxel; boundary
    # voxels themselves are at distance 0 and always border.
    if interior.all():
        # scipy's transform of an array without zeros is undefined, not infinite
        distance = np.full(labels.shape, np.inf)
    else:
        distance = ndimage.distance_transform_edt(interior)
    counts = np.bincount(labels.ravel())
    thickness = np.clip(relative_border * equivalent_diameter(counts), 1.0, border_vox)
    targets = np.zeros(labels.shape, dtype=np.uint8)
    targets[foreground] = BORDER
    targets[interior & (distance >= thickness[labels])] = CORE
    return targets


def masked_dice_ce(prediction, target, keep, smooth: float = 1e-5):
    """Dice + cross-entropy on the voxels ``keep`` only, as MONAI's ``DiceCELoss`` on the rest.

    Parameters
    ----------
    prediction : torch.Tensor
        (B, C, D, H, W) logits.
    target : torch.Tensor
        (B, 1, D, H, W) class indices; voxels outside ``keep`` may hold any value
        (e.g. :data:`IGNORE`).
    keep : torch.Tensor
        (B, 1, D, H, W) booleans: the voxels that count.
    smooth : float
        Added to the Dice's numerator and denominator (MONAI's default).

    Returns
    -------
    torch.Tensor
        The loss, a scalar: the mean Dice loss over batch and classes plus the
        mean cross-entropy over the kept voxels (0 when none is kept).
    """
    import torch
    import torch.nn.functional as F

    classes = prediction.shape[1]
    weight = keep.to(prediction.dtype)
    label = torch.where(keep, target, torch.zeros_like(target))[:, 0]
    onehot = F.one_hot(label.long(), classes).permute(0, 4, 1, 2, 3).to(prediction.dtype) * weight
    probability = torch.softmax(prediction, dim=1) * weight
    dims = (2, 3, 4)
    overlap = (probability * onehot).sum(dims)
    dice = 1 - (2 * overlap + smooth) / (probability.sum(dims) + onehot.sum(dims) + smooth)
    cross = F.cross_entropy(prediction, label.long(), reduction="none") * weight[:, 0]
    return dice.mean() + cross.sum() / weight.sum().clamp_min(1.0)
