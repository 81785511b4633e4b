"""Patch augmentation for training (torch, on the CPU or GPU).

Spatial: random flips and 90-degree rotations (the resampled scans are
isotropic, so every orientation is plausible). Intensity: scale, shift, gamma,
Gaussian noise and blur, as a scanner and a reconstruction would vary them.
Scale changes are drawn when a training volume is resampled (see
:mod:`ps3d_toolkit.training.loop`), where they are exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(F.pad(x, pad, mode="replicate"), kernel.view(shape))
    return x


def augment_batch(image: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> tuple:
    """Augment a batch of patches in place of the originals.

    Parameters
    ----------
    image : torch.Tensor
        (B, 1, D, H, W) normalised grey values.
    target : torch.Tensor
        (B, 1, D, H, W) border-core classes.
    generator : torch.Generator
        Source of randomness (seeded for reproducible training).

    Returns
    -------
    image, target
    """

    def rand() -> float:
        return float(torch.rand((), generator=generator))

    images, targets = [], []
    for x, y in zip(image, target):
        x, y = x[None], y[None]
        for axis in (2, 3, 4):
            if rand() < 0.5:
                x, y = x.flip(axis), y.flip(axis)
        k = int(rand() * 4)
        plane = [(2, 3), (2, 4), (3, 4)][int(rand() * 3)]
        if k and x.shape[plane[0]] == x.shape[plane[1]]:
            x, y = torch.rot90(x, k, plane), torch.rot90(y, k, plane)
        if rand() < 0.25:
            x = _gaussian_blur(x, 0.4 + 0.8 * rand())
        if rand() < 0.3:
            # Gamma on the [0, 1] range of the patch, then back to its own range.
            lo, hi = x.min(), x.max()
            span = (hi - lo).clamp_min(1e-6)
            gamma = 0.7 + 0.8 * rand()
            x = ((x - lo) / span).clamp(0, 1) ** gamma * span + lo
        x = x * (0.75 + 0.5 * rand()) + (rand() - 0.5) * 0.3
        if rand() < 0.5:
            x = x + torch.randn(x.shape, generator=generator).to(x.device) * 0.08 * rand()
        images.append(x)
        targets.append(y)
    return torch.cat(images), torch.cat(targets)
