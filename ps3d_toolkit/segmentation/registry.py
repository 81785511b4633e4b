"""One entry point for every segmentation method: ``segment``.

The border-core U-Net (``method="model"``) is the default once shipped weights
exist; the classic baselines and the methods of other packages (entry points,
:mod:`ps3d_toolkit.segmentation.methods`) are found by name. Every run is the block
engine: in memory on one block, the whole scan (:mod:`ps3d_toolkit.segmentation.engine`), or
block by block (:mod:`ps3d_toolkit.segmentation.chunked`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ps3d_toolkit.segmentation._checks import DEFAULT_CHUNK_SIZE, NonFinite, memory_budget_bytes
from ps3d_toolkit.segmentation.methods import (
    available_methods,
    check_method,
    default_method,
    get_method,
    method_names,
)
from ps3d_toolkit.segmentation.region import Grains, check_grains, resolve_region

__all__ = ["available_methods", "check_method", "chunk_size_for", "default_method", "get_method", "method_names",
           "segment"]

logger = logging.getLogger(__name__)


def segment(image, *, spacing, particle_size_mm=None, method: str | None = None, grains: Grains = "brighter",
            roi=None, mask=None, non_finite: NonFinite = "refuse", progress=True, chunk_size=None,
            **options) -> np.ndarray:
    """Segment every particle of a scan into a uint32 label image.

    Parameters
    ----------
    image : array_like
        Grey-value scan, axis order (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; estimated from the scan when omitted.
        It must span at least 3 voxels along every axis and fit in the scan.
    method : str, optional
        Segmentation method: "model", "otsu-watershed", "snow", or a method another package
        registers (:func:`~ps3d_toolkit.segmentation.methods.method_names`); default: the
        shipped model.
    grains : {"brighter", "darker", "auto"}
        Whether the grains are brighter than their matrix (X-ray CT of minerals in epoxy; the
        default) or darker (neutron CT of concrete, light minerals in a heavy matrix, pores):
        every method then sees the grey values turned round. ``"auto"`` decides from the scan
        inside the sample region and logs what it chose and why
        (:func:`~ps3d_toolkit.segmentation.polarity.grain_polarity`); it refuses to guess when
        the scan does not tell.
    roi : str or 3 slices, optional
        Segment only this box, ``"z0:z1,y0:y1,x0:x1"`` (voxel indices, stop excluded); the voxels
        around it are read as context, and labelled 0.
    mask : array_like of bool, str or Path, optional
        Segment only the sample: a scan-shaped boolean array or a file (nonzero = sample), or
        ``"auto"``: the inside of the holder, without its wall and the air around it
        (:func:`~ps3d_toolkit.segmentation.sample_mask.sample_mask`). Voxels outside count as
        background (label 0); measure with the same ``roi`` and ``mask`` to flag the particles
        it cuts.
    non_finite : {"refuse", "mask"}
        NaN or infinite grey values: refuse the scan (the default), or treat
        those voxels as background (label 0; how many is logged).
    progress : bool or Stages
        Show progress: the model as one bar over named stages (normalise,
        estimate size, network, ..., instances), the classic methods by their
        steps; a :class:`~ps3d_toolkit.core.progress.Stages` continues a
        caller's display (``ps3d segment`` adds read and write).
    chunk_size : int or "auto", optional
        Segment block by block, blocks of ``chunk_size`` voxels a side with a
        halo, stitched across block faces (see
        :func:`~ps3d_toolkit.segmentation.chunked.segment_chunked`); the
        labels are still returned in memory. ``"auto"``: in one piece when the
        scan fits the memory budget, else in blocks of 128 (:func:`chunk_size_for`).
        None (the default): in one piece, the engine's single block.
    **options
        Options of the method, with its defaults (e.g. ``overlap``, ``tta`` of the model:
        :attr:`~ps3d_toolkit.segmentation.methods.model.Model.defaults`).

    Returns
    -------
    np.ndarray
        uint32 labels of the scan's shape, 0 = background; all 0 (and a
        logged warning) for a scan without grain contrast (empty, constant or
        noise only).

    Raises
    ------
    InputError
        If the method is unknown (the message lists the methods there are), or the image, spacing, size or an option is
        invalid: a scan with NaN or infinite values (unless masked), a particle
        size under 3 voxels or larger than the scan.
    InputTypeError
        If the image does not hold real numbers.
    ResourceError
        If the model's network grid would not fit in the memory budget.
    DeviceError
        If the model's device is unknown or not on this machine.
    TypeError
        If an option does not belong to the method.
    MissingDependencyError
        If the method is ``"snow"`` and porespy (the ``classic`` extra) is not installed.
    """
    from ps3d_toolkit.segmentation.chunked import segment_chunked
    from ps3d_toolkit.segmentation.engine import run_method

    name = check_method(method)
    check_grains(grains)
    if chunk_size == "auto":
        chunk_size, why = chunk_size_for(np.shape(image), name, memory_limit_gb=options.get("memory_limit_gb"))
        if chunk_size is not None:
            logger.info("%s: segmenting it block by block (chunk_size %d)", why, chunk_size)
    if chunk_size is None and roi is not None:
        region = resolve_region(image, roi=roi, mask=mask, spacing=spacing)
        if region is not None and not region.is_whole_box:
            # A region of interest: the blocks over it, with the whole scan's plan and windows, so that its
            # labels are those of a run on the whole scan, cut to the region.
            chunk_size, roi, mask = DEFAULT_CHUNK_SIZE, region.box, region.mask
    if chunk_size is not None:
        return segment_chunked(image, spacing=spacing, chunk_size=chunk_size, particle_size_mm=particle_size_mm,
                               method=name, grains=grains, roi=roi, mask=mask, non_finite=non_finite,
                               progress=progress, **options)
    return run_method(image, get_method(name), spacing=spacing, particle_size_mm=particle_size_mm,
                      non_finite=non_finite, grains=grains, roi=roi, mask=mask, progress=progress, options=options)


def chunk_size_for(shape, method: str, *, memory_limit_gb=None) -> tuple:
    """Whether a scan fits in memory in one piece: (None, why) when it does, else (the default block edge, why).

    The method's peak bytes per scan voxel
    (:attr:`~ps3d_toolkit.segmentation.methods.base.SegmentationMethod.bytes_per_voxel`) times the
    scan's voxels, against the memory budget (80 % of the memory available, or ``memory_limit_gb``).
    """
    voxels = math.prod(int(n) for n in shape)
    needed = voxels * get_method(method).bytes_per_voxel
    budget, how = memory_budget_bytes(memory_limit_gb)
    why = f"the scan ({voxels:,} voxels) needs ~{needed / 1e9:.3g} GB in one piece, "
    if needed <= budget:
        return None, why + f"within {budget / 1e9:.3g} GB ({how})"
    return DEFAULT_CHUNK_SIZE, why + f"above {budget / 1e9:.3g} GB ({how})"
