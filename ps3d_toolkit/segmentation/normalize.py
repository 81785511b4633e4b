"""Intensity and particle-size normalisation: a scan brought to the network's grid.

The model sees every scan at the same grey-value scale and with the same mean
particle diameter in voxels, so one network serves every grain size (the
ParticleSeg3D idea). :func:`to_network_grid` does both steps.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ps3d_toolkit.core.arrays import strided_sample
from ps3d_toolkit.core.checks import check_positive, check_spacing, check_volume
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.segmentation._checks import finite_image

__all__ = [
    "check_percentiles",
    "normalize_intensity",
    "resample_image",
    "resample_labels",
    "grid_shape",
    "resample_to_shape",
    "to_network_grid",
    "zoom_factors",
]

# Percentile sample: a strided subsample of a few million voxels gives the same
# percentiles as the whole scan, at a fraction of the cost.
_PERCENTILE_SAMPLE = 4_000_000


def normalize_intensity(image, *, intensity_percentiles: tuple[float, float]) -> np.ndarray:
    """Map grey values so that the darkest material is ~0 and the brightest ~1.

    Scanners write arbitrary units; robust percentiles of the scan itself (not
    min/max, which single hot voxels dominate) fix the scale.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    intensity_percentiles : (float, float)
        Percentiles mapped to 0 and 1 (the weights' ``intensity_percentiles``).

    Returns
    -------
    np.ndarray
        float32 array of the same shape.

    Raises
    ------
    InputError
        If the image holds NaN or infinite values (they would make every value NaN).
    """
    image, _ = finite_image(check_volume(image, "image"), "refuse")
    return _normalize_intensity(image, check_percentiles(intensity_percentiles))


def check_percentiles(percentiles) -> tuple[float, float]:
    """``(low, high)`` intensity percentiles as floats with 0 <= low < high <= 100, else an InputError."""
    low, high = (float(p) for p in percentiles)
    if not 0 <= low < high <= 100:
        raise InputError("intensity_percentiles must be (low, high) with 0 <= low < high <= 100, "
                         f"got {percentiles!r}")
    return low, high


def _normalize_intensity(image: np.ndarray, percentiles) -> np.ndarray:
    sample = strided_sample(image, _PERCENTILE_SAMPLE).astype(np.float32, copy=False)
    lo, hi = np.percentile(sample, percentiles)
    scale = float(hi - lo) if hi > lo else 1.0
    out = image.astype(np.float32, copy=True)
    out -= np.float32(lo)
    out /= np.float32(scale)
    return out


def zoom_factors(spacing, particle_size_mm, network_diameter_vox: float) -> tuple[float, float, float]:
    """Per-axis zoom that makes the mean particle ``network_diameter_vox`` voxels wide.

    A factor below 1 shrinks the scan. Anisotropic voxels become isotropic.

    Examples
    --------
    >>> zoom_factors((0.02, 0.01, 0.01), 0.2, 10)
    (1.0, 0.5, 0.5)
    """
    return _zoom_factors(check_spacing(spacing), check_positive(particle_size_mm, "particle_size_mm"),
                         check_positive(network_diameter_vox, "network_diameter_vox"))


def _zoom_factors(spacing, particle_size_mm: float, network_diameter_vox: float) -> tuple[float, float, float]:
    grid_spacing = particle_size_mm / network_diameter_vox
    return tuple(s / grid_spacing for s in spacing)


def grid_shape(shape, zoom) -> tuple[int, int, int]:
    """The shape of a volume of ``shape`` resampled by ``zoom`` (rounded, at least 1 voxel an axis)."""
    return tuple(max(1, int(round(n * z))) for n, z in zip(shape, zoom))


def resample_to_shape(volume, shape, *,
                      mode: Literal["trilinear", "nearest"] = "trilinear") -> np.ndarray:
    """Resample a (C, z, y, x) or (z, y, x) float volume to a new spatial shape.

    Uses torch's interpolation (multi-threaded, much faster than
    ``scipy.ndimage.zoom`` at order 1).
    """
    array = np.asarray(volume, dtype=np.float32)
    squeeze = array.ndim == 3
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    tensor = tensor[None, None] if squeeze else tensor[None]
    if tuple(tensor.shape[2:]) == tuple(shape):
        out = tensor
    else:
        with torch.inference_mode():
            out = F.interpolate(tensor, size=tuple(int(s) for s in shape), mode=mode,
                                align_corners=False)
    out = out[0, 0] if squeeze else out[0]
    return out.numpy()


def resample_image(image, zoom) -> np.ndarray:
    """Resample a grey image by per-axis ``zoom`` factors (trilinear)."""
    image = check_volume(image, "image")
    return _resample_image(image, zoom)


def _resample_image(image: np.ndarray, zoom) -> np.ndarray:
    return resample_to_shape(image, grid_shape(image.shape, zoom))


def resample_labels(labels, zoom=None, *, shape=None) -> np.ndarray:
    """Nearest-neighbour resampling of a label image (exact for any label value).

    Give either per-axis ``zoom`` factors or the output ``shape``.
    """
    labels = np.asarray(labels)
    if shape is None:
        if zoom is None:
            raise InputError("resample_labels needs zoom or shape")
        shape = grid_shape(labels.shape, zoom)
    index = [np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.int64), m - 1)
             for n, m in zip(shape, labels.shape)]
    return labels[np.ix_(*index)]


def to_network_grid(image, *, spacing, particle_size_mm, network_diameter_vox: float,
                    intensity_percentiles: tuple[float, float]) -> tuple[np.ndarray, tuple]:
    """Intensity- and size-normalise a scan: the network's view of it.

    Parameters
    ----------
    image : array_like
        Grey-value scan (z, y, x).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float
        Mean particle diameter in mm.
    network_diameter_vox : float
        Mean particle diameter wanted on the grid, in voxels (the weights'
        ``train_network_diameter_vox`` in training, the inference one at inference).
    intensity_percentiles : (float, float)
        See :func:`normalize_intensity`.

    Returns
    -------
    grid_image, zoom
        float32 image on the network's grid and the scan-to-grid zoom factors.
    """
    image, _ = finite_image(check_volume(image, "image"), "refuse")
    normalized = _normalize_intensity(image, check_percentiles(intensity_percentiles))
    return _normalized_to_grid(normalized, check_spacing(spacing),
                               check_positive(particle_size_mm, "particle_size_mm"),
                               check_positive(network_diameter_vox, "network_diameter_vox"))


def _normalized_to_grid(normalized: np.ndarray, spacing, particle_size_mm: float,
                        network_diameter_vox: float) -> tuple[np.ndarray, tuple]:
    """The size step of :func:`to_network_grid`, on an intensity-normalised scan.

    Inference normalises the intensity once and may resample twice (at a
    refined particle size).
    """
    zoom = _zoom_factors(spacing, particle_size_mm, network_diameter_vox)
    return _resample_image(normalized, zoom), zoom
