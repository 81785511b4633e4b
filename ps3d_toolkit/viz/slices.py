"""Rendering of 2D slices: contrast window, label colours, overlays, PNG encoding.

Shared by the notebook viewers (:mod:`ps3d_toolkit.viz.viewer`, the tuner) and
the HTML report, so that a particle has the same colour and outline everywhere.
Plain functions on numpy arrays, testable without a browser.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from ps3d_toolkit.core.arrays import strided_sample
from ps3d_toolkit.core.errors import InputError

__all__ = ["HIGHLIGHT_RGB", "default_window", "draw_region_edge", "draw_scale_bar", "label_colors", "outlined_slice",
           "overlay_labels", "value_colors", "png_base64", "png_data_uri", "scale_bar_length", "window_image"]

#: Colour of highlighted (selected) particles in the overlay.
HIGHLIGHT_RGB = (255, 230, 0)
# Spreads successive label ids around the colour wheel (golden-ratio hue steps), so
# that neighbours, which usually have close ids, get clearly different colours.
_GOLDEN = 0.618033988749895
# A few million voxels fix the percentiles of a scan as well as all of them.
_WINDOW_SAMPLE = 2_000_000


def default_window(image, percentiles=(0.5, 99.5)) -> tuple:
    """A contrast window (low, high) from percentiles of the grey values.

    Parameters
    ----------
    image : array_like
        Grey values (any shape); large images are subsampled evenly.
    percentiles : 2 floats
        Lower and upper percentile in [0, 100].

    Returns
    -------
    tuple of 2 float
        ``low < high`` (widened by one grey level for a constant image).
    """
    low_p, high_p = (float(p) for p in percentiles)
    if not 0 <= low_p < high_p <= 100:
        raise InputError(f"percentiles must be two increasing numbers in [0, 100], got {percentiles!r}")
    sample = np.asarray(strided_sample(image, _WINDOW_SAMPLE), dtype=np.float64)
    low, high = np.percentile(sample, [low_p, high_p])
    if high <= low:
        low, high = low - 0.5, low + 0.5
    return float(low), float(high)



def window_image(image, low: float, high: float) -> np.ndarray:
    """Map grey values to 8 bits: ``low`` and below to 0, ``high`` and above to 255.

    Parameters
    ----------
    image : array_like
        Grey values.
    low, high : float
        The contrast window, ``low < high``.

    Returns
    -------
    np.ndarray of uint8
        Same shape as ``image``, linear inside the window.
    """
    low, high = float(low), float(high)
    if not high > low:
        raise InputError(f"the contrast window needs low < high, got low={low}, high={high}")
    scaled = (np.asarray(image, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)



def label_colors(ids) -> np.ndarray:
    """A fixed, bright colour per label id; 0 (background) is black.

    The colour depends on the id only, so a particle has the same colour in
    every plane, in the 3D view and in every figure.

    Parameters
    ----------
    ids : array_like of int
        Label ids.

    Returns
    -------
    np.ndarray of uint8, shape (n, 3)
        RGB per id.
    """
    from skimage.color import hsv2rgb

    ids = np.asarray(ids, dtype=np.int64).ravel()
    hsv = np.empty((ids.size, 1, 3))
    hsv[:, 0, 0] = (ids * _GOLDEN) % 1.0
    # Two saturation/value levels alternate so that ids whose hues come close still differ.
    hsv[:, 0, 1] = np.where(ids % 2 == 0, 0.75, 0.95)
    hsv[:, 0, 2] = np.where(ids % 3 == 0, 0.85, 1.0)
    rgb = np.round(hsv2rgb(hsv)[:, 0] * 255).astype(np.uint8)
    rgb[ids == 0] = 0
    return rgb



def value_colors(ids, values, *, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """A colour per label id from a value: red at ``low``, yellow halfway, green at ``high``; grey without one.

    Parameters
    ----------
    ids : array_like of int
        Label ids.
    values : pandas.Series or mapping
        Value by label id (e.g. each particle's ``confidence``); a missing or NaN value is grey.
    low, high : float
        The values drawn red and green.

    Returns
    -------
    np.ndarray of uint8, shape (n, 3)
    """
    import pandas as pd

    ids = np.asarray(ids, dtype=np.int64).ravel()
    series = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=np.float64)
    v = series.reindex(ids).to_numpy(np.float64)
    t = np.clip((v - low) / (high - low), 0, 1) if high > low else np.full(v.shape, 0.5)
    rgb = np.stack([np.where(t < 0.5, 230, 230 * (1 - t) * 2), np.where(t < 0.5, 230 * t * 2, 200),
                    np.full(t.shape, 40.0)], axis=1)
    rgb[~np.isfinite(v)] = (150, 150, 150)
    rgb[ids == 0] = 0
    return np.round(rgb).astype(np.uint8)


def overlay_labels(grey, labels, *, opacity: float = 0.4, highlight=None, outline: bool = False,
                   colors=None) -> np.ndarray:
    """Colour particles over a grey-value plane.

    Parameters
    ----------
    grey : array_like of uint8, 2D
        The plane after :func:`window_image`.
    labels : array_like of int, 2D
        The label plane of the same shape (0 = background).
    opacity : float
        Weight of the particle colour in [0, 1]: 0 shows the grey values only,
        1 paints particles in flat colour.
    highlight : iterable of int, optional
        Particles drawn in :data:`HIGHLIGHT_RGB` at an opacity of at least 0.7,
        so that a selection stands out whatever the overlay opacity.
    outline : bool
        Also draw each particle's boundary pixels in its full colour.
    colors : callable, optional
        ``colors(ids) -> (n, 3) uint8`` instead of :func:`label_colors` (e.g. a
        :func:`value_colors` of the particles' confidence).

    Returns
    -------
    np.ndarray of uint8, shape (rows, cols, 3)
        RGB image.
    """
    grey = np.asarray(grey)
    labels = np.asarray(labels)
    if grey.ndim != 2 or labels.shape != grey.shape:
        raise InputError(f"grey and labels must be 2D planes of one shape, got {grey.shape} and {labels.shape}")
    opacity = float(opacity)
    if not 0 <= opacity <= 1:
        raise InputError(f"opacity must be in [0, 1], got {opacity!r}")
    rgb = np.repeat(grey.astype(np.float64)[..., None], 3, axis=2)
    ids, inverse = np.unique(labels, return_inverse=True)
    colors = (label_colors if colors is None else colors)(ids)[inverse.reshape(labels.shape)].astype(np.float64)
    alpha = np.where(labels > 0, opacity, 0.0)
    if highlight is not None:
        chosen = np.isin(labels, np.asarray(list(highlight), dtype=np.int64)) & (labels > 0)
        colors[chosen] = HIGHLIGHT_RGB
        alpha[chosen] = max(opacity, 0.7)
    if outline:
        from skimage.segmentation import find_boundaries

        edge = find_boundaries(labels, mode="inner") & (labels > 0)
        alpha[edge] = 1.0
    rgb = rgb * (1 - alpha[..., None]) + colors * alpha[..., None]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)



def png_base64(rgb, *, optimize: bool = False, palette: bool = False) -> str:
    """An RGB (or grey) uint8 image as base64-encoded PNG bytes.

    ``optimize`` makes the file smaller (for reports) at a little more time.
    ``palette`` stores an RGB image with 256 colours at most (a third of the
    data; a grey slice with a few outline colours loses at most a grey level
    or two).
    """
    from PIL import Image

    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if palette and picture.mode == "RGB":
        picture = picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    picture.save(buffer, format="PNG", optimize=optimize)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(rgb) -> str:
    """An RGB (or grey) uint8 image as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + png_base64(rgb)


def draw_region_edge(rgb: np.ndarray, region, colour=(60, 170, 255)) -> np.ndarray:
    """Draw, in place, the inner edge of a 2D boolean ``region`` (a sample mask's plane) on ``rgb``.

    The scan's own border is not an edge: only where the region meets its outside.
    """
    inside = np.asarray(region, dtype=bool)
    outside = np.pad(~inside, 1, mode="edge")
    near = np.zeros_like(inside)
    for axis in (0, 1):
        for step in (-1, 1):
            near |= np.roll(outside, step, axis=axis)[1:-1, 1:-1]
    rgb[inside & near] = colour
    return rgb


def outlined_slice(grey, labels, *, outline_rgb=(255, 60, 60), min_size_px: int = 0, region=None,
                   region_rgb=(60, 170, 255), highlight=None, highlight_rgb=(255, 0, 200)) -> np.ndarray:
    """A 2D slice in grey with each particle's boundary drawn in one colour.

    Parameters
    ----------
    grey : array_like, 2D, optional
        Grey values; windowed at their 0.5 and 99.5 percentiles. None draws black.
    labels : array_like of int, 2D, optional
        Labels of the same plane; None draws no outline.
    outline_rgb : 3 int
        Colour of the outlines.
    min_size_px : int
        Enlarge by pixel repetition until the longer side has at least this many pixels.
    region : array_like of bool, 2D, optional
        The sample region of the plane (a sample mask or region of interest); its edge is drawn.
    region_rgb : 3 int
        Colour of the region's edge.
    highlight : array_like of int, optional
        Label ids outlined in ``highlight_rgb`` instead (e.g. the low-confidence particles).
    highlight_rgb : 3 int
        Colour of their outlines.

    Returns
    -------
    np.ndarray of uint8, shape (rows, cols, 3)
    """
    from skimage.segmentation import find_boundaries

    if grey is None:
        rgb = np.zeros(np.shape(labels) + (3,), np.uint8)
    else:
        grey = window_image(grey, *default_window(grey))
        rgb = np.repeat(grey[..., None], 3, axis=2)
    if region is not None:
        draw_region_edge(rgb, region, region_rgb)
    if labels is not None:
        labels = np.asarray(labels)
        edges = find_boundaries(labels, mode="inner")
        rgb[edges] = outline_rgb
        if highlight is not None and len(highlight):
            rgb[edges & np.isin(labels, np.asarray(highlight))] = highlight_rgb
    factor = max(1, int(np.ceil(min_size_px / max(rgb.shape[:2]))))
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def scale_bar_length(width_px: int, pixel_mm: float, fraction: float = 0.25) -> float:
    """The longest round length (1, 2 or 5 times a power of ten, in mm) that spans at most ``fraction`` of the width.

    Examples
    --------
    >>> scale_bar_length(384, 0.01 / 3)
    0.2
    """
    if not (np.isfinite(pixel_mm) and pixel_mm > 0):
        raise InputError(f"pixel_mm must be a positive pixel size in mm, got {pixel_mm!r}")
    longest = width_px * fraction * pixel_mm
    power = 10.0 ** np.floor(np.log10(longest))
    step = max((m for m in (1, 2, 5) if m * power <= longest * (1 + 1e-9)), default=1)
    return float(f"{step * power:.6g}")


def draw_scale_bar(rgb, pixel_mm: float, *, fraction: float = 0.25) -> np.ndarray:
    """Draw a scale bar with its length (mm) in the lower left corner of an RGB image.

    A white bar outlined in black, of :func:`scale_bar_length`, with its label
    above it; readable on dark and bright scans alike.

    Parameters
    ----------
    rgb : array_like of uint8, shape (rows, cols, 3)
        The image (e.g. from :func:`outlined_slice`).
    pixel_mm : float
        Width of one image pixel in mm (the voxel size over any enlargement).
    fraction : float
        The bar spans at most this share of the image width.

    Returns
    -------
    np.ndarray of uint8
        A copy with the bar drawn.
    """
    from PIL import Image, ImageDraw, ImageFont

    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"rgb must be an RGB image (rows, cols, 3), got shape {rgb.shape}")
    rows, cols = rgb.shape[:2]
    length_mm = scale_bar_length(cols, pixel_mm, fraction)
    length_px = int(round(length_mm / pixel_mm))
    thick = max(3, rows // 80)
    margin = max(4, cols // 30)
    picture = Image.fromarray(rgb.copy())
    draw = ImageDraw.Draw(picture)
    x0, y1 = margin, rows - margin
    draw.rectangle([x0 - 1, y1 - thick - 1, x0 + length_px, y1], fill=(0, 0, 0))
    draw.rectangle([x0, y1 - thick, x0 + length_px - 1, y1 - 1], fill=(255, 255, 255))
    font = ImageFont.load_default(size=max(10, rows // 24))
    draw.text((x0, y1 - thick - 3), f"{length_mm:g} mm", fill=(255, 255, 255), font=font, anchor="ls",
              stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(picture)
