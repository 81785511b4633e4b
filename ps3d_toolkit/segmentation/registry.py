"""One entry point for every segmentation method: ``segment``.

The border-core U-Net (``method="model"``) is the default once shipped weights
exist; the classic baselines stay available by name.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.core.checks import check_positive, check_spacing, check_volume

__all__ = ["segment", "METHODS"]

METHODS = ("model", "otsu-watershed", "snow")


def default_method() -> str:
    """The method used when none is named: the model when its weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available

    return "model" if weights_available() else "otsu-watershed"


def segment(image, *, spacing, particle_size_mm=None, method: str | None = None,
            progress: bool = True, particle_size=None, **options) -> np.ndarray:
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
    particle_size : float, optional
        Alias of ``particle_size_mm`` (the name ParticleSeg3D users know).
    **options
        Passed to the method (e.g. ``overlap``, ``tta`` for the model).

    Returns
    -------
    np.ndarray
        uint32 labels of the scan's shape, 0 = background.
    """
    if particle_size is not None:
        if particle_size_mm is not None and particle_size_mm != particle_size:
            raise ValueError("give particle_size_mm or its alias particle_size, not both")
        particle_size_mm = particle_size
    method = method or default_method()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    image = check_volume(image, "image")
    spacing = check_spacing(spacing)
    particle_size_mm = check_positive(particle_size_mm, "particle_size_mm", allow_none=True)
    if method == "model":
        from ps3d_toolkit.segmentation.model.inference import segment_with_model

        return segment_with_model(image, spacing=spacing, particle_size_mm=particle_size_mm,
                                  progress=progress, **options)
    from ps3d_toolkit.segmentation.classic import BASELINES

    return BASELINES[method](image, spacing=spacing, particle_size_mm=particle_size_mm,
                             progress=progress, **options)
