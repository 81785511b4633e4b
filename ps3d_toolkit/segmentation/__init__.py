"""From a grey-value scan to a uint32 label image: ``segment()`` and its methods.

Modules
-------
registry
    ``segment()``: validates its input once and hands it to a method.
grains
    The Otsu grain mask, its distance map and the particle-size estimate.
normalize
    Intensity and particle-size normalisation: a scan on the network's grid.
classic
    Otsu + distance transform + watershed, and porespy's SNOW.
instances
    Border-core class maps to particle instances.
model
    The border-core U-Net: network, weight files, sliding-window inference.
chunked
    ``segment_chunked()``: block by block with a halo, stitched across faces,
    written to zarr, resumable.
region
    The sample region (``roi=``, ``mask=``) and the grain polarity (``grains=``), applied once at the door.
sample_mask
    The inside of the sample holder, without its wall and the outside air (``mask="auto"``).
polarity
    Whether the grains are brighter or darker than their matrix (``grains="auto"``).
"""

from __future__ import annotations

from ps3d_toolkit.segmentation.registry import (
    METHODS,
    Method,
    available_methods,
    default_method,
    method_function,
    segment,
)

__all__ = ["METHODS", "Method", "PolarityDecision", "SampleMask", "SizeEstimate", "available_methods", "default_method",
           "estimate_particle_size", "grain_polarity", "method_function", "segment", "segment_chunked"]


def __getattr__(name):
    # grains pulls in scipy and scikit-image: load it only when its names are used
    if name in ("SizeEstimate", "estimate_particle_size"):
        from ps3d_toolkit.segmentation import grains

        return getattr(grains, name)
    # (the function sample_mask() lives in the module of that name: import it from there)
    lazy = {"SampleMask": "sample_mask", "PolarityDecision": "polarity", "grain_polarity": "polarity"}
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f"ps3d_toolkit.segmentation.{lazy[name]}"), name)
    if name == "segment_chunked":
        from ps3d_toolkit.segmentation.chunked import segment_chunked

        return segment_chunked
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
