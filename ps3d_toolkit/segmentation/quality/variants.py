"""What a rescan would change, applied to one scan: the variants a stable particle survives.

A variant turns and flips the scan (exactly invertible), shifts it by part of a voxel,
adds noise at the scan's own noise level and asks for a slightly different particle
size; it is segmented like the original and its labels are mapped back to the
original frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["VARIANTS", "Variant", "noise_level"]


@dataclass(frozen=True)
class Variant:
    """One stand-in for a rescan.

    Attributes
    ----------
    name : str
        Short name, recorded with the estimate.
    flip : tuple of int
        Axes mirrored.
    turn : bool
        Turn by 90 degrees in the (y, x) plane (y and x spacing swap).
    shift_vox : float
        Sub-voxel shift along every axis (linear interpolation).
    size_factor : float
        The particle size asked for, as a multiple of the given one (the network
        grid is resampled by its inverse).
    noise : float
        Gaussian noise added, in units of the scan's own noise level.
    """

    name: str
    flip: tuple = ()
    turn: bool = False
    shift_vox: float = 0.0
    size_factor: float = 1.0
    noise: float = 0.0

    def forward(self, image: np.ndarray, spacing: tuple, sigma: float, seed: int) -> tuple[np.ndarray, tuple]:
        """The variant's scan and spacing."""
        out = image.astype(np.float32, copy=True)
        if self.noise > 0 and sigma > 0:
            out += np.random.default_rng(seed).normal(0.0, self.noise * sigma, out.shape).astype(np.float32)
        if self.shift_vox:
            out = ndimage.shift(out, self.shift_vox, order=1, mode="nearest")
        if self.flip:
            out = np.flip(out, self.flip)
        if self.turn:
            out = np.rot90(out, 1, axes=(1, 2))
            spacing = (spacing[0], spacing[2], spacing[1])
        return np.ascontiguousarray(out), spacing

    def orient(self, volume: np.ndarray) -> np.ndarray:
        """A voxel-aligned volume (a mask) flipped and turned like the variant's scan."""
        if self.flip:
            volume = np.flip(volume, self.flip)
        if self.turn:
            volume = np.rot90(volume, 1, axes=(1, 2))
        return np.ascontiguousarray(volume)

    def back(self, labels: np.ndarray) -> np.ndarray:
        """The variant's labels in the original frame (the sub-voxel shift is left: under half a voxel)."""
        if self.turn:
            labels = np.rot90(labels, -1, axes=(1, 2))
        if self.flip:
            labels = np.flip(labels, self.flip)
        return np.ascontiguousarray(labels)


#: The variants, in the order they are used: ``variants=n`` runs the first n. Each mixes
#: several changes so that one extra segmentation tests several at once; the first asks
#: for a larger size (a smaller network grid: cheaper than the plain run).
VARIANTS: tuple[Variant, ...] = (
    Variant("turn+flip-z, size x1.1, noise", flip=(0,), turn=True, size_factor=1.1, noise=0.5),
    Variant("flip-y, shift 0.5, size x0.93", flip=(1,), shift_vox=0.5, size_factor=0.93),
    Variant("turn+flip-x, size x1.05, noise", flip=(2,), turn=True, size_factor=1.05, noise=1.0),
    Variant("flip-zyx, shift 0.5, size x0.97", flip=(0, 1, 2), shift_vox=0.5, size_factor=0.97, noise=0.5),
)


def noise_level(image: np.ndarray) -> float:
    """A robust estimate of the scan's voxel noise: the MAD of neighbour differences, as a standard deviation."""
    step = max(1, int(round((image.size / 2_000_000) ** (1 / 3))))
    sample = image[::step, ::step, ::step].astype(np.float32, copy=False)
    diff = np.diff(sample, axis=2).ravel()
    if diff.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))
