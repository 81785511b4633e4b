"""From a grey-value scan to a uint32 label image: ``segment()`` and its methods.

Modules
-------
registry
    ``segment()``: validates its input once and hands it to a method.
grains
    The Otsu grain mask, its distance map and the particle-size estimate.
normalize
    Intensity and particle-size normalisation (resampling to the network's grid).
classic
    Otsu + distance transform + watershed, and porespy's SNOW.
instances
    Border-core class maps to particle instances.
model
    The border-core U-Net: network, weight files, sliding-window inference.
"""

from __future__ import annotations

from ps3d_toolkit.segmentation.registry import METHODS, default_method, segment

__all__ = ["METHODS", "default_method", "segment"]
