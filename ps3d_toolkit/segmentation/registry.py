"""One entry point for every segmentation method: ``segment``.

The border-core U-Net (``method="model"``) is the default once shipped weights
exist; the classic baselines stay available by name.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ps3d_toolkit.segmentation._checks import check_scan

__all__ = ["METHODS", "Method", "default_method", "method_function", "segment"]

Method = Literal["model", "otsu-watershed", "snow"]
METHODS: tuple[str, ...] = get_args(Method)


def default_method() -> Method:
    """The method used when none is named: the model when its weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available

    return "model" if weights_available() else "otsu-watershed"


def segment(image, *, spacing, particle_size_mm=None, method: Method | None = None,
            progress: bool = True, **options) -> np.ndarray:
    """Segment every particle of a scan into a uint32 label image.

    Parameters
    ----------
    image : array_like
        Grey-value scan, axis order (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float, optional
        Rough mean particle diameter in mm; estimated from the scan when omitted.
    method : {"model", "otsu-watershed", "snow"}, optional
        Segmentation method; default: the shipped model.
    progress : bool
        Show progress bars.
    **options
        Options of the method's own function, with its defaults (e.g. ``overlap``,
        ``tta`` of :func:`~ps3d_toolkit.segmentation.model.inference.segment_with_model`).

    Returns
    -------
    np.ndarray
        uint32 labels of the scan's shape, 0 = background.

    Raises
    ------
    ValueError
        If the method is unknown, or the image, spacing, size or an option is invalid.
    TypeError
        If an option does not belong to the method.
    """
    method = method or default_method()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    image, spacing, particle_size_mm = check_scan(image, spacing, particle_size_mm)
    public, implementation = _method(method)
    # The public function's signature is the one source of the options' defaults.
    options = {**public.__kwdefaults__, **options, "progress": progress,
               "spacing": spacing, "particle_size_mm": particle_size_mm}
    return implementation(image, **options)


def method_function(method: Method):
    """The public function behind ``method``: its signature lists the method's options and defaults.

    Raises
    ------
    ValueError
        If ``method`` is not one of :data:`METHODS`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
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
