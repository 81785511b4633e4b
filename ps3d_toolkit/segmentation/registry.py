"""One entry point for every segmentation method: ``segment``.

The border-core U-Net (``method="model"``) is the default once shipped weights
exist; the classic baselines stay available by name.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation._checks import NonFinite, check_scan

__all__ = ["METHODS", "Method", "default_method", "method_function", "segment"]

Method = Literal["model", "otsu-watershed", "snow"]
METHODS: tuple[str, ...] = get_args(Method)


def default_method() -> Method:
    """The method used when none is named: the model when its weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available

    return "model" if weights_available() else "otsu-watershed"


def segment(image, *, spacing, particle_size_mm=None, method: Method | None = None,
            non_finite: NonFinite = "refuse", progress=True, chunk_size: int | None = None,
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
    """
    method = method or default_method()
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if chunk_size is not None:
        from ps3d_toolkit.segmentation.chunked import segment_chunked

        return segment_chunked(image, spacing=spacing, chunk_size=chunk_size, particle_size_mm=particle_size_mm,
                               method=method, non_finite=non_finite, progress=progress, **options)
    scan = check_scan(image, spacing, particle_size_mm, non_finite=non_finite)
    public, implementation = _method(method)
    # The public function's signature is the one source of the options' defaults;
    # non_finite was handled at the door.
    defaults = {k: v for k, v in public.__kwdefaults__.items() if k != "non_finite"}
    options = {**defaults, **options, "progress": progress,
               "spacing": scan.spacing, "particle_size_mm": scan.particle_size_mm}
    return scan.zero_masked(implementation(scan.image, **options))


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
