"""The sample region of a micro-CT scan: the inside of the sample holder.

:func:`sample_mask` finds the voxels inside the holder (a cylinder along z, the
rotation axis, or a box), without the holder's wall and without the air
around it, so that nothing is segmented or measured in the wall or the air.

How it decides
--------------
The scan is reduced once, slab by slab, to block means (at most
``_TARGET_YX`` blocks across y and x, ``_TARGET_Z`` along z), so a lazy array
(zarr, a TIFF reader) is read once and never held whole. The block means are
smoothed a little (Gaussian, one block) against noise.

1. **Outside air.** Air is the lowest-attenuation material in X-ray and neutron
   CT alike, whichever of grains and matrix is brighter; nothing here assumes
   grains brighter than their matrix. The block means are averaged along z
   into one (y, x) projection: an air column stays at the air's grey value, any
   column through the sample or its holder is brighter (grains and matrix
   averaged along z, in whichever order of brightness). The air's value is
   the dark end of the field's border; air is there when that end lies below
   nearly all voxels of the scan's centre by many times its own spread (a
   homogeneous dark class). Otherwise the sample fills the field: the mask is
   everything (kind ``"field"``). Columns without a finite value (outside a
   reconstruction's circle) count as outside air.
2. **Footprint and depth.** The outside air is the set of projected columns
   near the air's value and connected to the border; the footprint is the
   rest, holes filled. When its edge is a circle (least-squares fit) the depth
   of a voxel is its distance inside that circle, exact to a fraction of a
   voxel; otherwise a smoothed signed distance transform of the footprint.
3. **Wall.** The grey values of all voxels, binned by depth (a quarter voxel
   per bin), give a profile of mean and spread from the air into the sample.
   A holder wall is the first flat layer of one material after the rise from
   the air: a run of bins whose spread is the noise's (the air's; the change of
   the mean across a bin taken out), at a grey value of its own, not the one
   most of the sample's outer part has (a skin of matrix without grains is no
   wall). Its edges are where the mean crosses half-way from the air's level to
   the wall's and from the wall's to the sample's just inside it; the mask
   starts ``wall_margin_vox`` further in. Without a wall the mask's edge is the
   half-way crossing from the air to the sample's outer layer. Beam-hardening
   cupping and ring artefacts, both circular about the rotation axis, shift a
   bin's mean but hardly its spread.

Measured on the synthetic phantoms (128 x 128 slices, 5-voxel tubes darker than
the epoxy or brighter than the grains, all presets): the wall's inner edge is
found 0.0-0.6 voxel inside the true one, so with the default margin of half a
voxel no wall voxel is in the mask and the mask's IoU with the true inside is
0.96-0.98.

Limits: the mask is one (y, x) footprint shared by every slice (a prism along
the rotation axis, stored with a z factor of the scan's depth), at the scan's
own (y, x) resolution when that fits in memory; a holder's end (its bottom) in
view is not cut off along z. A wall of the matrix's own grey value (a plastic
as dense as the epoxy) cannot be told from a layer of matrix and stays in the
mask; a wall thinner than about three blocks of the reduced grid shows no
plateau and is not found.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.checks import check_lazy_volume, check_spacing
from ps3d_toolkit.core.errors import InputError

__all__ = ["SampleMask", "sample_mask"]

logger = logging.getLogger(__name__)

# Size of the reduced grid on which the grey values are analysed.
_TARGET_YX = 256
_TARGET_Z = 128
# Values read from the scan at a time (float64 working copy: 128 MB).
_READ_VALUES = 1 << 24
# Largest full-resolution (y, x) footprint kept (bytes of a bool array).
_FULL_RES_FOOTPRINT = 1 << 26
# Bins of the depth profile per voxel.
_BINS_PER_VOXEL = 4
# Air counts as found when the darkest border class lies this many of its own
# spreads below the sample's darkest voxels.
_AIR_CONTRAST = 6.0
# A layer is homogeneous (a wall) while its spread stays under this many times the air's.
_HOMOGENEOUS = 2.5


@dataclass(frozen=True, eq=False)
class SampleMask:
    """The inside of the sample holder, on a coarse grid, with its full-resolution view.

    Attributes
    ----------
    mask : np.ndarray
        Boolean mask on the coarse grid (z, y, x).
    factor : tuple of 3 int
        Scan voxels per mask voxel along each axis (nearest upsampling).
    shape : tuple of 3 int
        Shape of the scan (z, y, x).
    kind : str
        ``"cylinder"``, ``"box"``, ``"other"`` (a holder of another shape) or
        ``"field"`` (the sample fills the field of view: all True).
    wall_thickness_vox : float
        Thickness of the holder's wall in scan voxels (0 without a wall).
    fraction : float
        Share of the field of view inside the mask.
    """

    mask: np.ndarray
    factor: tuple[int, int, int]
    shape: tuple[int, int, int]
    kind: str
    wall_thickness_vox: float
    fraction: float

    def region(self, slices) -> np.ndarray:
        """Full-resolution mask of one block of the scan.

        Parameters
        ----------
        slices : tuple of 3 slice
            The block, ``(z0:z1, y0:y1, x0:x1)``; steps must be 1 or None.

        Returns
        -------
        np.ndarray
            Boolean, the block's shape.
        """
        if len(slices) != 3:
            raise InputError(f"slices must be 3 slices (z, y, x), got {slices!r}")
        index = []
        for axis, (s, n, f, m) in enumerate(zip(slices, self.shape, self.factor, self.mask.shape)):
            if not isinstance(s, slice) or s.step not in (None, 1):
                raise InputError(f"slices[{axis}] must be a slice with step 1, got {s!r}")
            start, stop, _ = s.indices(n)
            positions = np.arange(start, max(start, stop))
            index.append(np.minimum(positions // f, m - 1))
        return self.mask[np.ix_(*index)]

    def full(self) -> np.ndarray:
        """The whole full-resolution mask, boolean, shape :attr:`shape`."""
        return self.region((slice(None),) * 3)

    def __str__(self) -> str:
        if self.kind == "field":
            return "sample mask: the sample fills the field of view (100 % of the field)"
        wall = f"wall {self.wall_thickness_vox:.0f} voxels" if self.wall_thickness_vox > 0 else "no wall"
        return f"sample mask: {self.kind}, {wall}, {100 * self.fraction:.0f} % of the field"


def sample_mask(image, *, spacing=None, wall_margin_vox: float = 0.5) -> SampleMask:
    """Find the inside of the sample holder: no holder wall, no outside air.

    Parameters
    ----------
    image : array-like, shape (z, y, x)
        Grey values; z is the rotation axis. A lazy array (zarr, a TIFF reader
        with ``__getitem__``) is read slab by slab, never whole. NaN and
        infinite voxels count as outside (the corners of a reconstruction).
    spacing : float or 3 floats, optional
        Voxel size in mm; only the ratio of the y and x sizes is used (for
        distances). Default: isotropic.
    wall_margin_vox : float
        Scan voxels removed inside a detected wall's inner edge (found where
        the grey value is half-way between the wall's and the sample's),
        against the partial volume of the wall's inner surface.

    Returns
    -------
    SampleMask

    Raises
    ------
    InputError
        If ``image`` is not a 3D array of real numbers or holds no finite
        value, or ``wall_margin_vox`` is negative.

    Examples
    --------
    >>> from ps3d_toolkit.data.synthetic import generate_scan
    >>> scan = generate_scan((48, 64, 64), mean_diameter_vox=10, seed=0, wall_thickness_vox=4)
    >>> mask = sample_mask(scan.image)
    >>> mask.kind, mask.full().shape
    ('cylinder', (48, 64, 64))
    """
    image = check_lazy_volume(image, "image")
    shape = tuple(int(n) for n in image.shape)
    _, sy, sx = check_spacing(1.0 if spacing is None else spacing)
    try:
        wall_margin_vox = float(wall_margin_vox)
    except (TypeError, ValueError):
        raise InputError(f"wall_margin_vox must be a number >= 0, got {wall_margin_vox!r}") from None
    if not math.isfinite(wall_margin_vox) or wall_margin_vox < 0:
        raise InputError(f"wall_margin_vox must be a number >= 0, got {wall_margin_vox!r}")

    factor = _factors(shape)
    means = _block_means(image, factor)
    finite = np.isfinite(means)
    if not finite.any():
        raise InputError("image holds no finite grey value (all NaN or infinite)")
    smooth = _smooth(means, finite)
    # distances in scan voxels of the finer of y and x
    unit = min(sy, sx)
    sampling = (factor[1] * sy / unit, factor[2] * sx / unit)

    air = _outside_air(smooth)
    if air is None:
        return _everything(shape, "field")
    footprint = ndimage.binary_fill_holes(~air)
    if not footprint.any():
        return _everything(shape, "field")
    circle = _fit_circle(footprint, sampling)
    if circle is not None:
        depth = _circle_depth(circle, footprint.shape, sampling, (1, 1))
    else:
        depth = _signed_depth(footprint, sampling)
    edge, wall = _edges(smooth, depth, sampling, wall_margin_vox)
    full_res = shape[1] * shape[2] <= _FULL_RES_FOOTPRINT
    if full_res and factor[1:] != (1, 1):
        if circle is not None:
            depth = _circle_depth(circle, shape[1:], sampling, factor[1:])
        else:
            depth = _upsample_depth(depth, factor, shape)
        factor = (factor[0], 1, 1)
    inside = depth > edge
    if not inside.any():
        raise InputError("image: no sample found inside the holder (the mask would be empty)")
    fraction = float(inside.mean()) if full_res else _fraction(inside, factor, shape)
    kind = _kind(inside)
    result = SampleMask(mask=inside[None], factor=(shape[0], factor[1], factor[2]), shape=shape, kind=kind,
                        wall_thickness_vox=float(wall), fraction=fraction)
    logger.info("%s", result)
    return result


# --------------------------------------------------------------------------- reading


def _factors(shape) -> tuple[int, int, int]:
    """Integer block sizes: at most ~_TARGET_Z x _TARGET_YX x _TARGET_YX blocks; the same in y and x."""
    nz, ny, nx = shape
    fyx = max(1, math.ceil(max(ny, nx) / _TARGET_YX))
    return max(1, math.ceil(nz / _TARGET_Z)), fyx, fyx


def _block_means(image, factor) -> np.ndarray:
    """Mean of the finite values of every block (NaN where a block has none), read slab by slab."""
    nz, ny, nx = (int(n) for n in image.shape)
    fz, fy, fx = factor
    out_shape = (-(-nz // fz), -(-ny // fy), -(-nx // fx))
    sums = np.zeros(out_shape)
    counts = np.zeros(out_shape)
    chunks = getattr(image, "chunks", None)
    chunk_z = int(chunks[0]) if chunks and len(chunks) == 3 else 1
    # whole chunks along z when they are small enough, so each chunk is decoded once per band of y
    step_z = fz * max(1, round(chunk_z / fz))
    rows = max(fy, (_READ_VALUES // max(1, step_z * nx)) // fy * fy)
    for z0 in range(0, nz, step_z):
        z1 = min(z0 + step_z, nz)
        for y0 in range(0, ny, rows):
            y1 = min(y0 + rows, ny)
            slab = np.asarray(image[z0:z1, y0:y1, :], dtype=np.float64)
            good = np.isfinite(slab)
            slab = np.where(good, slab, 0.0)
            bz, by = z0 // fz, y0 // fy
            s, c = _block_sum(slab, factor), _block_sum(good.astype(np.float64), factor)
            sums[bz:bz + s.shape[0], by:by + s.shape[1]] += s
            counts[bz:bz + c.shape[0], by:by + c.shape[1]] += c
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32)


def _block_sum(values: np.ndarray, factor) -> np.ndarray:
    """Sum over blocks of ``factor`` (the last block of an axis may be partial)."""
    pads = [(0, -n % f) for n, f in zip(values.shape, factor)]
    if any(p for _, p in pads):
        values = np.pad(values, pads)
    (dz, dy, dx), (fz, fy, fx) = values.shape, factor
    return values.reshape(dz // fz, fz, dy // fy, fy, dx // fx, fx).sum(axis=(1, 3, 5))


# --------------------------------------------------------------------------- outside air


def _border(plane: np.ndarray) -> np.ndarray:
    return np.concatenate([plane[0], plane[-1], plane[1:-1, 0], plane[1:-1, -1]])


def _smooth(means: np.ndarray, finite: np.ndarray) -> np.ndarray:
    """Gaussian smoothing (one voxel) of the finite block means; NaN stays where no finite value is near."""
    if finite.all():
        return ndimage.gaussian_filter(means, 1.0, mode="nearest")
    weight = ndimage.gaussian_filter(finite.astype(np.float32), 1.0, mode="nearest")
    total = ndimage.gaussian_filter(np.where(finite, means, 0).astype(np.float32), 1.0, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, total / weight, np.nan).astype(np.float32)


def _outside_air(smooth: np.ndarray) -> np.ndarray | None:
    """(y, x) columns of outside air connected to the field's border, or None without outside air.

    Columns without a finite value (outside a reconstruction's circle) count as
    outside, and the finite columns next to them as the field's border.
    """
    _, ny, nx = smooth.shape
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        projection = np.nanmean(smooth, axis=0)
    missing = ~np.isfinite(projection)
    ring = np.zeros((ny, nx), dtype=bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    ring = (ring | ndimage.binary_dilation(missing)) & ~missing
    if not ring.any():
        return None
    air = float(np.percentile(projection[ring], 1))
    yy, xx = np.ogrid[:ny, :nx]
    centre = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) <= 0.25 * min(ny, nx)
    central = smooth[:, centre]
    central = central[np.isfinite(central)]
    if central.size == 0:
        return None
    sample_low = float(np.percentile(central, 2))
    gap = sample_low - air
    if gap <= 0:
        return None
    # the dark end of the border: the air's voxels, if there is air
    dark_columns = np.zeros((ny, nx), dtype=bool)
    dark_columns[ring] = projection[ring] <= air + 0.25 * gap
    spread = float(np.nanstd(smooth[:, dark_columns]))
    projected_spread = float(np.std(projection[dark_columns]))
    logger.debug("air %.4g, sample's darkest %.4g, air spread %.3g", air, sample_low, spread)
    if gap < _AIR_CONTRAST * spread:
        return None
    threshold = air + min(max(6 * projected_spread, 0.05 * gap), 0.25 * gap)
    dark = (projection <= threshold) | missing
    components, _ = ndimage.label(dark)
    touching = np.unique(_border(components))
    touching = touching[touching > 0]
    return np.isin(components, touching)


def _signed_depth(footprint: np.ndarray, sampling) -> np.ndarray:
    """Distance to the footprint's edge (positive inside), smoothed against the pixel staircase."""
    inside = ndimage.distance_transform_edt(footprint, sampling=sampling)
    outside = ndimage.distance_transform_edt(~footprint, sampling=sampling)
    return ndimage.gaussian_filter(inside - outside, 1.0, mode="nearest")


def _fit_circle(footprint: np.ndarray, sampling) -> tuple[float, float, float] | None:
    """Centre (y, x, in reduced voxels) and radius (scan voxels) of a round footprint, else None.

    The footprint's edge pixels away from the field's border are fitted by least
    squares (algebraic circle fit); a circle whose edge pixels lie within a pixel
    and a half of it (or 3 % of its radius) counts as round.
    """
    edge = footprint & ~ndimage.binary_erosion(footprint)
    edge[[0, -1], :] = False
    edge[:, [0, -1]] = False
    ey, ex = np.nonzero(edge)
    if ey.size < 16:
        return None
    py, px = ey * sampling[0], ex * sampling[1]
    # x^2 + y^2 = 2 a x + 2 b y + c
    design = np.column_stack([2 * px, 2 * py, np.ones_like(px)])
    (a, b, c), *_ = np.linalg.lstsq(design, px**2 + py**2, rcond=None)
    radius = math.sqrt(max(c + a * a + b * b, 0.0))
    residual = np.abs(np.hypot(px - a, py - b) - radius)
    if radius <= 0 or np.percentile(residual, 90) > max(1.5 * max(sampling), 0.03 * radius):
        return None
    return b / sampling[0], a / sampling[1], radius


def _circle_depth(circle, plane_shape, sampling, factor) -> np.ndarray:
    """Depth below a circle's edge (scan voxels) of every pixel of a grid ``factor`` times finer than the
    reduced one."""
    cy, cx, radius = circle
    fy, fx = factor
    y = ((np.arange(plane_shape[0]) + 0.5) / fy - 0.5 - cy) * sampling[0]
    x = ((np.arange(plane_shape[1]) + 0.5) / fx - 0.5 - cx) * sampling[1]
    return radius - np.hypot(y[:, None], x[None, :])


def _upsample_depth(depth: np.ndarray, factor, shape) -> np.ndarray:
    """The (y, x) depth map on the scan's own grid (linear interpolation between block centres)."""
    _, fy, fx = factor
    _, ny, nx = shape
    y = (np.arange(ny) + 0.5) / fy - 0.5
    x = (np.arange(nx) + 0.5) / fx - 0.5
    yy = np.clip(y, 0, depth.shape[0] - 1)[:, None]
    xx = np.clip(x, 0, depth.shape[1] - 1)[None, :]
    return ndimage.map_coordinates(depth, np.broadcast_arrays(yy, xx), order=1, mode="nearest")


# --------------------------------------------------------------------------- wall


def _profile(smooth: np.ndarray, depth: np.ndarray, bin_width: float):
    """Count, mean and standard deviation of the voxels binned by depth (bin 0 = the deepest outside)."""
    low = float(depth.min())
    index = np.floor((depth - low) / bin_width).astype(np.int64).ravel()
    n_bins = int(index.max()) + 1
    values = smooth.astype(np.float64)
    total = np.bincount(index, weights=np.nansum(values, axis=0).ravel(), minlength=n_bins)
    squares = np.bincount(index, weights=np.nansum(values**2, axis=0).ravel(), minlength=n_bins)
    count = np.bincount(index, weights=np.isfinite(values).sum(axis=0).ravel(), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    centres = low + (np.arange(n_bins) + 0.5) * bin_width
    return centres, count, mean, std


def _runs(flags: np.ndarray):
    """(first, last) index of every run of True in ``flags``, in order."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)
    stops = np.flatnonzero(np.diff(padded) == -1) - 1
    return list(zip(starts.tolist(), stops.tolist()))


def _plateau(mean, first: int, last: int) -> tuple[float, float]:
    """Grey value of the flattest voxel of the profile's bins ``first..last``, and its change across it."""
    window = _BINS_PER_VOXEL
    best, level = np.inf, float(np.mean(mean[first:last + 1]))
    for i in range(first, last - window + 1):
        part = mean[i:i + window + 1]
        if np.all(np.isfinite(part)) and abs(part[-1] - part[0]) < best:
            best, level = abs(part[-1] - part[0]), float(np.mean(part))
    return level, best


def _crossing(centres, values, level, start, stop, rising: bool) -> float | None:
    """First depth in [start, stop) where ``values`` crosses ``level`` (linear interpolation)."""
    sel = np.flatnonzero((centres >= start) & (centres < stop) & np.isfinite(values))
    for a, b in itertools.pairwise(sel):
        va, vb = values[a], values[b]
        if (va < level <= vb) if rising else (va > level >= vb):
            return float(centres[a] + (level - va) / (vb - va) * (centres[b] - centres[a]))
    return None


def _matrix_layer(smooth, depth, run_end: float, step: float, wall_mean: float, air_std: float) -> bool:
    """Whether a homogeneous layer is the matrix (epoxy without grains), not a wall: most of the
    sample's outer part just inside it has the layer's grey value."""
    band = (depth > run_end + 2 * step) & (depth < run_end + 8 * step)
    values = smooth[:, band]
    values = values[np.isfinite(values)]
    matrix_like = float(np.mean(np.abs(values - wall_mean) <= 2 * air_std)) if values.size else 0.0
    logger.debug("layer to %.2f at %.4g: %.0f %% of the sample's outer part alike", run_end, wall_mean,
                 100 * matrix_like)
    return matrix_like >= 0.25


def _edges(smooth, depth, sampling, margin) -> tuple[float, float]:
    """Depth at which the mask starts, and the wall's thickness (0 without a wall), in scan voxels."""
    step = max(sampling)
    centres, count, mean, std = _profile(smooth, depth, step / _BINS_PER_VOXEL)
    # only bins that hold enough voxels (depths below straight edges come in whole voxels)
    keep = count >= max(20.0, 1e-4 * count.sum())
    centres, mean, std = centres[keep], mean[keep], std[keep]
    enough = np.ones(centres.size, dtype=bool)
    outside = (centres < -4 * step) & enough
    if not outside.any():
        outside = (centres < -step) & enough
    if not outside.any():
        outside = enough & (centres < 0)
    air_mean = float(np.nanmedian(mean[outside])) if outside.any() else float(np.nanmin(mean))
    air_std = float(np.nanmedian(std[outside])) if outside.any() else float(np.nanmin(std))
    deepest = float(np.nanmax(np.where(enough, centres, np.nan)))
    interior = (centres > max(8 * step, 0.3 * deepest)) & enough
    interior_mean = float(np.nanmedian(mean[interior if interior.any() else (centres > 0) & enough]))
    up = interior_mean > air_mean

    # Homogeneous bins: the spread of one material (the air's, the noise), not of a mixture.
    # The median over a voxel ignores the short rise of the spread across a sharp edge.
    # A bin's spread holds the change of the mean across its width (a steep edge), taken out here;
    # a few per cent of the contrast to the air are allowed for (a wall's own slight unevenness).
    slope = np.gradient(np.nan_to_num(mean, nan=air_mean))
    own = np.sqrt(np.maximum(np.nan_to_num(std, nan=np.inf) ** 2 - slope**2 / 12, 0.0))
    spread = ndimage.median_filter(own, size=_BINS_PER_VOXEL + 1, mode="nearest")
    homogeneous = spread <= _HOMOGENEOUS * air_std + 0.03 * np.abs(np.nan_to_num(mean, nan=air_mean) - air_mean)
    # A wall: the first flat, homogeneous layer after the mean leaves the air's level, of a grey
    # value well away from the air's. The rise itself may be inhomogeneous (a steep edge).
    contrast = abs(interior_mean - air_mean)
    leave = _crossing(centres, mean, air_mean + (0.1 if up else -0.1) * contrast, -4 * step, deepest, rising=up)
    leave = 0.0 if leave is None else leave
    is_wall, wall_mean, run_end, outer = False, air_mean, leave, None
    for first, last in _runs(homogeneous & enough):
        # a run from the air through a gentle rise into the wall begins at the rise
        first = max(first, int(np.searchsorted(centres, leave)))
        if last < first or centres[last] - centres[first] < step:
            continue
        if centres[first] > leave + 4 * step:
            break
        level, flatness = _plateau(mean, first, last)
        logger.debug("homogeneous layer %.2f-%.2f at %.4g (flatness %.3g)", centres[first], centres[last],
                     level, flatness)
        if abs(level - air_mean) < 0.1 * contrast or flatness > 0.4 * abs(level - air_mean):
            continue
        run_end = float(centres[last])
        outer = _crossing(centres, mean, 0.5 * (air_mean + level), -4 * step, run_end, rising=level > air_mean)
        if outer is not None and run_end - outer >= 1.5 * step:
            is_wall, wall_mean = True, level
            break
    if is_wall:
        is_wall = not _matrix_layer(smooth, depth, run_end, step, wall_mean, air_std)
    logger.debug("profile: air %.4g (spread %.3g), interior %.4g; homogeneous to %.2f, wall %s",
                 air_mean, air_std, interior_mean, run_end, is_wall)
    if not is_wall:
        # no wall: the mask's edge is half-way from the air to the sample's outer layer
        rise = _crossing(centres, mean, 0.5 * (air_mean + interior_mean), -4 * step, deepest, rising=up)
        rise = 0.0 if rise is None else rise
        layer = (centres > rise + 2 * step) & (centres < rise + 5 * step) & enough
        first = float(np.nanmedian(mean[layer])) if layer.any() else interior_mean
        edge = _crossing(centres, mean, 0.5 * (air_mean + first), -4 * step, deepest, rising=first > air_mean)
        return (edge if edge is not None else 0.0), 0.0
    # the inner edge: half-way from the wall's level to the sample's just inside it
    inner = run_end
    for _ in range(2):
        beyond = (centres > inner + 1.5 * step) & (centres < inner + 4 * step) & enough
        beyond_mean = float(np.nanmedian(mean[beyond])) if beyond.any() else interior_mean
        if abs(beyond_mean - wall_mean) <= 0.1 * abs(wall_mean - air_mean):
            break  # the sample's mean is the wall's: the spread's rise is the edge
        crossing = _crossing(centres, mean, 0.5 * (wall_mean + beyond_mean), run_end - 2 * step, deepest,
                             rising=beyond_mean > wall_mean)
        if crossing is None:
            break
        inner = crossing
    return inner + margin, max(inner - outer, 0.0)


# --------------------------------------------------------------------------- result


def _everything(shape, kind) -> SampleMask:
    result = SampleMask(mask=np.ones((1, 1, 1), dtype=bool), factor=tuple(shape), shape=tuple(shape), kind=kind,
                        wall_thickness_vox=0.0, fraction=1.0)
    logger.info("%s", result)
    return result


def _fraction(inside: np.ndarray, factor, shape) -> float:
    """Share of the scan's (y, x) plane inside a coarse mask (partial last blocks weighted)."""
    _, fy, fx = factor
    _, ny, nx = shape
    wy = np.full(inside.shape[0], float(fy))
    wy[-1] = ny - fy * (inside.shape[0] - 1)
    wx = np.full(inside.shape[1], float(fx))
    wx[-1] = nx - fx * (inside.shape[1] - 1)
    return float(wy @ inside.astype(float) @ wx / (ny * nx))


def _kind(inside: np.ndarray) -> str:
    """"cylinder" when the footprint's edge (away from the field's border) is a circle, "box" a rectangle."""
    if inside.all():
        return "field"
    ys, xs = np.nonzero(inside)
    box_area = float((np.ptp(ys) + 1) * (np.ptp(xs) + 1))
    if ys.size >= 0.97 * box_area:
        return "box"
    return "cylinder" if _fit_circle(inside, (1.0, 1.0)) is not None else "other"
