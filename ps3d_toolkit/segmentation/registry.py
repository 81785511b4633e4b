"""One entry point for every segmentation method: ``segment``.

The border-core U-Net (``method="model"``) is the default once shipped weights
exist; the classic baselines stay available by name.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation._checks import NonFinite, check_scan, zero_where
from ps3d_toolkit.segmentation.region import Grains, check_grains, prepare_scan, resolve_region, size_in_voxels

__all__ = ["METHODS", "Method", "available_methods", "check_method", "default_method", "method_function", "segment"]

Method = Literal["model", "otsu-watershed", "snow"]
METHODS: tuple[str, ...] = get_args(Method)


def default_method() -> Method:
    """The method used when none is named: the model when its weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available

    return "model" if weights_available() else "otsu-watershed"


def segment(image, *, spacing, particle_size_mm=None, method: Method | None = None, grains: Grains = "brighter",
            roi=None, mask=None, non_finite: NonFinite = "refuse", progress=True, chunk_size: int | None = None,
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
    method : {"model", "otsu-watershed", "snow"}, optional
        Segmentation method; default: the shipped model.
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
    chunk_size : int, optional
        Segment block by block, blocks of ``chunk_size`` voxels a side with a
        halo, stitched across block faces (see
        :func:`~ps3d_toolkit.segmentation.chunked.segment_chunked`); the
        labels are still returned in memory.
    **options
        Options of the method's own function, with its defaults (e.g. ``overlap``,
        ``tta`` of :func:`~ps3d_toolkit.segmentation.model.inference.segment_with_model`).

    Returns
    -------
    np.ndarray
        uint32 labels of the scan's shape, 0 = background; all 0 (and a
        logged warning) for a scan without grain contrast (empty, constant or
        noise only).

    Raises
    ------
    InputError
        If the method is unknown, or the image, spacing, size or an option is
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
    method = check_method(method)
    check_grains(grains)
    if chunk_size is not None:
        from ps3d_toolkit.segmentation.chunked import segment_chunked

        return segment_chunked(image, spacing=spacing, chunk_size=chunk_size, particle_size_mm=particle_size_mm,
                               method=method, grains=grains, roi=roi, mask=mask, non_finite=non_finite,
                               progress=progress, **options)
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    region = resolve_region(scan.image, roi=roi, mask=mask, spacing=scan.spacing)
    if region is not None and not region.is_whole_box:
        # A region of interest: the blocks over it, with the whole scan's statistics and windows,
        # so that its labels are those of a run on the whole scan, cut to the region.
        from ps3d_toolkit.segmentation.chunked import segment_chunked

        return segment_chunked(image, spacing=spacing, chunk_size=_ROI_BLOCK, particle_size_mm=particle_size_mm,
                               method=method, grains=grains, roi=region.box, mask=region.mask,
                               non_finite=non_finite, progress=progress, **options)
    prepared, grains, _ = prepare_scan(scan.image, grains=grains, region=region,
                                       particle_size_vox=size_in_voxels(scan.particle_size_mm, scan.spacing))
    public, implementation = _method(method)
    # The public function's signature is the one source of the options' defaults;
    # non_finite was handled at the door.
    defaults = {k: v for k, v in public.__kwdefaults__.items() if k != "non_finite"}
    options = {**defaults, **options, "progress": progress,
               "spacing": scan.spacing, "particle_size_mm": scan.particle_size_mm}
    labels = implementation(np.asarray(prepared), **options)
    if region is not None:
        labels = zero_where(labels, ~region.full())
    return scan.zero_masked(labels)


#: Block edge of a run over a region of interest.
_ROI_BLOCK = 128


def available_methods() -> tuple:
    """The methods that can run here: the model when its weights ship, SNOW when porespy is installed."""
    from ps3d_toolkit.segmentation.classic import snow_available
    from ps3d_toolkit.segmentation.model import weights_available

    ready = {"model": weights_available(), "snow": snow_available()}
    return tuple(m for m in METHODS if ready.get(m, True))


def check_method(method) -> Method:
    """The method to run: ``method``, or the default when it is None; one whose packages are installed.

    Raises
    ------
    InputError
        If ``method`` is not one of :data:`METHODS`.
    MissingDependencyError
        If it is ``"snow"`` and porespy (the ``classic`` extra) is not installed.
    """
    method = method or default_method()
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if method == "snow":
        from ps3d_toolkit.segmentation.classic import import_porespy

        import_porespy()
    return method


def method_function(method: Method):
    """The public function behind ``method``: its signature lists the method's options and defaults.

    Raises
    ------
    ValueError
        If ``method`` is not one of :data:`METHODS`.
    """
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    return _method(method)[0]


def _method(method: Method) -> tuple:
    """The public function of a method (for its defaults) and its trusting implementation."""
    if method == "model":
        from ps3d_toolkit.segmentation.model.inference import _run_model, segment_with_model

        return segment_with_model, lambda image, **options: _run_model(image, **options).labels
    from ps3d_toolkit.segmentation.classic import _otsu_watershed, _snow, otsu_watershed, snow

    if method == "snow":
        return snow, _snow
    return otsu_watershed, _otsu_watershed
