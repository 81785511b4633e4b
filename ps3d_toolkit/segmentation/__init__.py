"""From a grey-value scan to a uint32 label image: ``segment()`` and its methods.

Modules
-------
assess
    ``segment()`` as the package gives it: the registry's, and with ``quality=True`` the
    label-free quality estimate of the run (in blocks: on a sample of blocks).
registry
    ``segment()``: checks the method and hands the scan to the block engine.
methods
    The methods, one object each (the model, otsu-watershed, snow, and those of other packages,
    registered by entry points).
engine
    The block engine's core: the scan opened once (region, polarity), the plan every block
    shares, one region segmented by a method; in memory the region is the whole scan.
chunked
    ``segment_chunked()``: block by block with a halo, stitched across faces,
    written to zarr, resumable, on Dask.
foreground
    The Otsu grain mask, its distance map and the particle-size estimate.
normalize
    Intensity and particle-size normalisation: a scan on the network's grid.
classic
    The classic baselines by name (``otsu_watershed``, ``snow``).
instances
    Border-core class maps to particle instances.
model
    The border-core U-Net: network, weight files, device, windows, memory check, post-processing.
region
    The sample region (``roi=``, ``mask=``) and the grain polarity (``grains=``), applied once at the door.
sample_mask
    The inside of the sample holder, without its wall and the outside air (``mask="auto"``).
polarity
    Whether the grains are brighter or darker than their matrix (``grains="auto"``).
"""

from __future__ import annotations

from ps3d_toolkit.segmentation.assess import segment
from ps3d_toolkit.segmentation.registry import (
    available_methods,
    chunk_size_for,
    default_method,
    get_method,
    method_names,
)

__all__ = ["METHODS", "PolarityDecision", "SampleMask", "SizeEstimate", "available_methods", "chunk_size_for",
           "default_method", "estimate_particle_size", "get_method", "grain_polarity", "method_names", "segment",
           "segment_chunked"]


def __getattr__(name):
    # METHODS: every method's name now, the entry points installed since the import included
    if name == "METHODS":
        return method_names()
    lazy = {"SizeEstimate": "foreground", "estimate_particle_size": "foreground", "SampleMask": "sample_mask",
            "PolarityDecision": "polarity", "grain_polarity": "polarity", "segment_chunked": "chunked"}
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(f"ps3d_toolkit.segmentation.{lazy[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
