"""Surface area and maximum Feret diameter of particles, in physical units.

Surface area
------------
A digitised particle only tells which voxel centres are inside it, so its
"true" surface is a choice: a digital ball should measure like the ball it
samples (4 pi r^2), a digital cube like the cube it *is* (6 a^2). The usual
estimators get one or the other wrong (relative error, min .. max over the
shapes of ``benchmarks/measure_accuracy.py``: radii/sides 4-40 voxels, spacings
(1,1,1), (2,1,1), (1,0.6,1.3), random offsets and rotations, fixed seed):

=================================  =============  ==============  ==============
estimator                          balls          rotated         aligned cubes
                                                  ellipsoids
=================================  =============  ==============  ==============
marching cubes, binary mask        +7.4 .. +12.8  +7.9 .. +14.1   -7.5 .. -0.9
marching cubes, gaussian sigma 1   -14.3 .. +0.5  -3.4 .. +0.1    -23.3 .. -2.7
this module                        +0.0 .. +2.2   -0.1 .. +2.1    -1.6 .. -0.4
=================================  =============  ==============  ==============

(this module, further: rotated cubes -2.3 .. +1.0 %, rotated cylinders
-2.0 .. +1.6 %, plates 3 voxels thick -3.4 .. -2.5 %.)

The estimate is a flux: the area of a closed surface is the flux of its unit
normal field through it, and the flux may be taken through any surface that
encloses the same voxel centres -- here the voxel-face boundary (the faces
between inside and outside voxels; the binary marching-cubes surface has the
same projections onto the three axis planes to within ~0.5 %, so this is also,
nearly, the projected flux through that mesh). A face of axis ``a`` contributes its area times ``|n_a|``,
the ``a`` component of the *estimated* unit normal there, so that a staircase
tilted by any angle contributes the area of the plane it digitises rather than
its (up to 1.7 times larger) face count.

The normals are the gradient (central differences) of the mask smoothed by a
gaussian of ``SIGMA_VOX`` voxels (per axis, so that anisotropic voxels are
smoothed at their own digitisation scale), converted to physical units. Smoothing alone would tilt
the normals within ~2 sigma of a sharp edge (a cube would lose ~0.6/side of its
area); so each face also looks at the faces of its axis within ``REACH_VOX``
voxels in its own plane and, when one of them has a gradient magnitude more
than ``EDGE_JUMP`` larger (a flat stretch away from the edge: the smoothed mask
is steepest across a plane) and a normal closer to the face's own axis, takes
that normal. On smooth surfaces the gradient magnitude varies by only a few
percent and each face keeps its own normal. Particles are processed in batches
stacked in one array (so the filters run once per batch, not once per
particle); a particle's result does not depend on its batch.

Particles of a few voxels have no well-defined surface: a single voxel gets 6
voxel faces (exact for a cube), 2^3 and 3^3 cubes about 0.78 of their faces.

Feret diameter
--------------
The largest distance between two vertices of the marching-cubes surface of the
mask smoothed by a gaussian of ``FERET_SIGMA_VOX`` voxels, cut at 0.5
(:func:`skimage.measure.marching_cubes` with ``spacing``; the vertices are
computed directly on the grid edges through the voxel faces, and the diameter
of the point set exactly, without building the mesh or its hull). On the binary
mask the diameter joins the most protruding staircase corners (+1.6 % on
rotated ellipsoids on average, up to +4.9 %); wider smoothing shrinks convex
tips. With 0.6 voxels, errors are: rotated ellipsoids -0.8 .. +2.1 %, rotated
cylinders -0.5 .. +3.0 %; balls +1.0 .. +5.4 % (a diameter in every direction:
the largest digitisation error wins, about +0.4 voxel, i.e. +3.5 % at radius 6
voxels, +1 % at 30); cubes -11 .. -1.4 % (corners are rounded off by ~0.8
voxel each: -5 % on average, improving with size).

Minimum Feret diameter
----------------------
The smallest width over all directions (the caliper's narrowest opening) of
the crossing points of a surface smoothed by ``FERET_MIN_SIGMA_VOX`` voxels;
the width in a direction ``u`` is ``max(p . u) - min(p . u)`` over the points.
Only faces where the smoothed mask does cross 0.5 give points (a face centre
standing in would stick out of a tilted plane by up to half a voxel; a particle
with fewer than 4 such points keeps its face centres). The 0.6 voxels of the
maximum's surface leave the staircase of tilted flat faces in the hull (rotated
boxes +1 .. +6 %); 1 voxel brings those within +3 % and keeps ellipsoids
within +-1.5 %, at the price of thin features: a plate 2 voxels thick measures
-9 %, a ball of radius 3 voxels -25 % (see docs/measurement.md, "Minimum Feret").

The width is searched over directions, for all particles at once (numpy
operations on all their points, grouped by particle, several batches together).
Starts: ``FERET_MIN_DIRECTIONS`` fixed directions and the three axes; the
narrowest direction of the quadratic model ``w(u)^2 = u^T Q u`` fitted to their
widths (exact for an ellipsoid); the principal axes of the points (the normal of a
flat end, whose valley of widths is too narrow for the fixed directions). A
pattern search starts from the narrowest of them, a second from the narrowest
start far from it and a third from the narrowest principal axis far from both,
when within ``_FERET_MIN_SECOND`` of the narrowest. Each step measures the widths
along a small pattern of directions around the current one and moves to the
narrowest, shrinking the pattern when it stays; a point that can no longer be
extreme along any direction the search may still reach is dropped (a bound, not a
guess), so the steps work on fewer and fewer points, the last ones in float64.
The result is the exact width of the points along the final direction, so never
below their true minimum width. On the 1000 ellipsoids of
``benchmarks/measure_speed.py`` (semi-axes 4-9 voxels) it is +0.03 % above a
dense reference (the same kind of search from the best 4 of 203 fixed directions,
or the previous hull search where lower) on average, 4 particles more than 1 %
above, at most +3.3 % (small particles whose width is nearly the same in a whole
circle of directions, with local minima from the digitisation); the previous
search over the faces of a small convex hull was +0.18 % on average, at most
+2.0 %, and took ~1.5 ms a particle against ~0.25 ms. The points are taken in the
particle's own crop frame and each particle's value depends on its own points
only, so that it does not depend on its batch (the chunked table gives the same
bits).
A particle of one voxel (six face centres: an octahedron) measures 1/sqrt(3)
voxel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

#: Gaussian scale of the normal estimate, in voxels of each axis.
SIGMA_VOX = 1.25
#: How far (voxels, in the face's own plane) a face looks for a cleaner normal.
REACH_VOX = 3
#: Relative gain in gradient magnitude that marks a neighbour as cleaner.
EDGE_JUMP = 0.12
#: Gaussian scale of the surface whose extent gives the Feret diameter, in voxels.
FERET_SIGMA_VOX = 0.6
#: Fixed directions (besides the three axes) whose widths start the minimum Feret search.
FERET_MIN_DIRECTIONS = 10
#: Gaussian scale of the surface whose narrowest width gives the minimum Feret diameter, in voxels.
FERET_MIN_SIGMA_VOX = 1.0

_TRUNCATE = 2.5
_RADIUS = int(_TRUNCATE * SIGMA_VOX + 0.5)
# Crops are stacked along z in one array per batch, with zero slices between them.
# Across _GAP slices the blur of one particle (radius _RADIUS) does not reach the
# faces of the next, and a face's in-plane search (up to REACH_VOX + 1 slices out)
# meets the next particle's gradient at under a third of a face's strength, far
# below what it takes to be chosen.
_GAP = max(_RADIUS + 1, REACH_VOX + 2)
_LEVELS = 4095
# Bound of |grad(G * mask)| for a gaussian G and a 0/1 mask (attained at a plane), twice
# that for the sum of two voxels' gradients at a face, with room for truncation.
_MAX_MAGNITUDE = 1.02 * 2.0 / (np.sqrt(2.0 * np.pi) * SIGMA_VOX)
_BATCH_VOXELS = 1 << 16
# The minimum Feret pattern search: its first radius (radians), steps, and how much the
# radius shrinks after a step whose centre stays or moves.
_FERET_MIN_RADIUS = 0.35
_FERET_MIN_STEPS = 20
_FERET_MIN_FLOAT32_STEPS = 6
_FERET_MIN_SHRINK = 3.0
_FERET_MIN_MOVE_SHRINK = 2.0
# A second search starts from a direction far from the first's when its width is within this factor.
_FERET_MIN_SECOND = 1.1
# Points gathered from batches before one minimum Feret search over them.
_FERET_MIN_POINTS = 1 << 18


def shape_metrics(labels: np.ndarray, boxes, values, spacing, progress=None, workers: int = 1, *,
                  feret_min: bool = False):
    """Surface area (mm^2) and maximum (and minimum) Feret diameter (mm) of many particles.

    Parameters
    ----------
    labels : ndarray of int, 3D
        Label image.
    boxes : sequence of tuple of slices
        Bounding box of each particle (as from :func:`scipy.ndimage.find_objects`).
    values : sequence of int
        Label value of each particle.
    spacing : tuple of 3 floats
        Voxel size in mm.
    progress : tqdm-like, optional
        Updated by the number of particles done.
    workers : int
        Threads working on batches at once (the filters release the GIL).
    feret_min : bool
        Also compute the minimum Feret diameter (the smallest width).

    Returns
    -------
    area, feret : ndarray of float
        Without ``feret_min``.
    area, feret, feret_min : ndarray of float
        With ``feret_min``.
    """
    spacing = tuple(float(s) for s in spacing)
    n = len(boxes)
    out = (np.zeros(n), np.zeros(n), np.zeros(n)) if feret_min else (np.zeros(n), np.zeros(n))
    if not n:
        return out

    def run(rows):
        return rows, _batch([labels[boxes[r]] == values[r] for r in rows], spacing, feret_min=feret_min)

    # the minimum Feret search runs on the points of several batches at once (fewer, longer array operations)
    pending = []

    def flush():
        if pending:
            rows = np.concatenate([p[0] for p in pending])
            offsets = np.cumsum([0] + [len(p[0]) for p in pending])
            points = np.concatenate([p[1][0] for p in pending])
            crosses = np.concatenate([p[1][1] for p in pending])
            owners = np.concatenate([p[1][2] + offset for p, offset in zip(pending, offsets)])
            out[2][rows] = _feret_min_by_owner(points, crosses, owners, len(rows))
            pending.clear()

    def collect(rows, result):
        for column, values_ in zip(out, result[:2]):
            column[rows] = values_
        if feret_min:
            pending.append((rows, result[2]))
            if sum(len(p[1][0]) for p in pending) >= _FERET_MIN_POINTS:
                flush()
        if progress is not None:
            progress.update(len(rows))

    batches = _batches(np.array([[s.stop - s.start for s in box] for box in boxes], dtype=np.int64))
    if workers <= 1 or len(batches) == 1:
        for rows in batches:
            collect(*run(rows))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(run, rows) for rows in batches]):
                collect(*future.result())
    flush()
    return out


def _batches(dims: np.ndarray) -> list[np.ndarray]:
    """Group particles (rows of their bounding-box sizes) into batches of at most ~_BATCH_VOXELS.

    Sorted by in-plane size first, so that the particles of a batch waste little
    of its common (y, x) frame.
    """
    order = np.lexsort((dims[:, 0], np.minimum(dims[:, 1], dims[:, 2]), np.maximum(dims[:, 1], dims[:, 2])))
    batches = []
    start, n = 0, len(dims)
    while start < n:
        stop = start + 1
        frame = dims[order[start], 1:] + 2
        depth = dims[order[start], 0] + 2 * _GAP
        while stop < n:
            grown = np.maximum(frame, dims[order[stop], 1:] + 2)
            if (depth + dims[order[stop], 0] + _GAP) * grown[0] * grown[1] > _BATCH_VOXELS:
                break
            frame, depth = grown, depth + dims[order[stop], 0] + _GAP
            stop += 1
        batches.append(order[start:stop])
        start = stop
    return batches


def _batch(masks, spacing, feret_min: bool = False):
    """Area and Feret diameter of the particles in ``masks`` (crops), stacked along z.

    With ``feret_min``, also the input of :func:`_feret_min_by_owner`: the crossing
    points in each particle's crop frame (mm), whether each crosses, and its owner.
    """
    depth = sum(m.shape[0] for m in masks) + _GAP * (len(masks) + 1)
    height = max(m.shape[1] for m in masks) + 2
    width = max(m.shape[2] for m in masks) + 2
    stack = np.zeros((depth, height, width), dtype=bool)
    starts = np.empty(len(masks), dtype=np.int64)
    z = _GAP
    for k, m in enumerate(masks):
        stack[z:z + m.shape[0], 1:1 + m.shape[1], 1:1 + m.shape[2]] = m
        starts[k] = z
        z += m.shape[0] + _GAP
    # each face belongs to the particle whose slab (gap halves included) holds it
    region_starts = starts - _GAP // 2

    f = stack.astype(np.float32)
    grad = _gaussian_gradient(f, SIGMA_VOX)
    smooth = ndi.gaussian_filter(f, FERET_SIGMA_VOX, mode="constant", truncate=_TRUNCATE)
    smooth_min = smooth
    if feret_min and FERET_MIN_SIGMA_VOX != FERET_SIGMA_VOX:
        smooth_min = ndi.gaussian_filter(f, FERET_MIN_SIGMA_VOX, mode="constant", truncate=_TRUNCATE)
    area = np.zeros(len(masks))
    points, owners, local, crossing = [], [], [], []
    for a in range(3):
        b, c = (i for i in range(3) if i != a)
        lo = tuple(slice(0, -1) if i == a else slice(None) for i in range(3))
        hi = tuple(slice(1, None) if i == a else slice(None) for i in range(3))
        faces = np.nonzero(stack[lo] != stack[hi])
        owner = np.searchsorted(region_starts, faces[0], side="right") - 1
        weight = _face_weights(grad, lo, hi, faces, a, spacing)
        area += np.bincount(owner, weights=weight, minlength=len(masks)) * (spacing[b] * spacing[c])
        t, crosses = _crossing_offsets(smooth, lo, hi, faces)
        points.append(_crossings(faces, a, t))
        if feret_min:
            if smooth_min is not smooth:
                t, crosses = _crossing_offsets(smooth_min, lo, hi, faces)
            # the points in the particle's crop frame: integers first, so that they are exact
            local.append(_crossings((faces[0] - starts[owner], faces[1], faces[2]), a, t))
            crossing.append(crosses)
        owners.append(owner)
    points = np.concatenate(points, axis=1).T * np.asarray(spacing)
    owners = np.concatenate(owners)
    feret = _feret_by_owner(points, owners, len(masks))
    if not feret_min:
        return area, feret
    local = np.concatenate(local, axis=1).T * np.asarray(spacing)
    # the minimum Feret diameter is left to the caller, which searches several batches' points at once
    return area, feret, (local, np.concatenate(crossing), owners)


def _gaussian_gradient(f: np.ndarray, sigma: float) -> list[np.ndarray]:
    """Gradient (d/dz, d/dy, d/dx) of ``f`` smoothed by a gaussian, in voxel units.

    Central differences of the smoothed image: three filter passes instead of
    the eight of derivative-of-gaussian kernels, for the same areas. The image
    is smoothed with a one-voxel margin so that the differences at its edges
    see the blur beyond them.
    """
    smooth = ndi.gaussian_filter(np.pad(f, 1), sigma, mode="constant", truncate=_TRUNCATE)
    inner = (slice(1, -1),) * 3
    gradient = []
    for axis in range(3):
        ahead = tuple(slice(2, None) if i == axis else inner[i] for i in range(3))
        behind = tuple(slice(0, -2) if i == axis else inner[i] for i in range(3))
        out = np.subtract(smooth[ahead], smooth[behind])
        out *= np.float32(0.5)
        gradient.append(out)
    return gradient


def _face_weights(grad, lo, hi, faces, a, spacing) -> np.ndarray:
    """``|n_a|`` of the edge-preserving normal at every face of axis ``a``.

    Works on squared magnitudes and squared components (no square roots over the
    whole batch), in place and in float32, because this runs over every voxel.
    """
    # twice the face-centre gradient (only ratios matter), in voxel units
    g = [np.add(gi[lo], gi[hi]) for gi in grad]
    for gi in g:
        gi *= gi
    magnitude2 = g[0] + g[1]
    magnitude2 += g[2]
    if len(set(spacing)) > 1:
        # the normal in mm: each component divided by its spacing
        weights = [np.float32(1.0 / s**2) for s in spacing]
        norm2 = g[0] * weights[0]
        for i in (1, 2):
            g[i] *= weights[i]
            norm2 += g[i]
        component2 = g[a] if a else g[0] * weights[0]
    else:
        norm2 = magnitude2.copy()
        component2 = g[a]
    norm2 += np.float32(1e-30)
    component2 /= norm2  # n_a^2
    own_magnitude2 = magnitude2[faces].astype(np.float64)
    own_n = np.sqrt(component2[faces].astype(np.float64))
    # One maximum filter finds, for every face, the in-plane neighbour with the
    # steepest gradient and carries that neighbour's n_a^2 along in the low bits:
    # key = |grad|^2 (12 bits, of a fixed bound so that a particle's result does not
    # depend on its batch) * 4096 + n_a^2 (12 bits); exact in float32 (< 2**24).
    top2 = _MAX_MAGNITUDE**2
    key = magnitude2
    key *= np.float32(_LEVELS / top2)
    np.floor(key, out=key)
    np.minimum(key, np.float32(_LEVELS), out=key)
    key *= np.float32(_LEVELS + 1)
    component2 *= np.float32(_LEVELS)
    component2 += np.float32(0.5)
    np.floor(component2, out=component2)
    key += component2
    for axis in range(3):
        if axis != a:
            key = _window_max(key, axis, REACH_VOX)
    best = key[faces].astype(np.int64)
    best_magnitude2 = (best // (_LEVELS + 1)) * (top2 / _LEVELS)
    best_n = np.sqrt((best % (_LEVELS + 1)) / _LEVELS)
    # the own magnitude is rounded down like the key's so that a face never "beats" itself
    own_rounded = np.minimum(np.floor(own_magnitude2 * (_LEVELS / top2)), _LEVELS) * (top2 / _LEVELS)
    steeper = best_magnitude2 > (1.0 + EDGE_JUMP) ** 2 * own_rounded
    return np.where(steeper, np.maximum(best_n, own_n), own_n)


def _window_max(values: np.ndarray, axis: int, reach: int) -> np.ndarray:
    """Maximum over ``[i - reach, i + reach]`` along ``axis`` (zeros beyond the ends).

    The array is copied with ``reach`` zeros on both sides along ``axis``; in
    that layout a shift along ``axis`` is a shift of the flat array that never
    reaches another line's data, so windows of 1, 2, 4, ... are combined by
    doubling with maxima of contiguous 1D arrays (many times faster than
    :func:`scipy.ndimage.maximum_filter1d`, or than shifting 3D views along a
    short innermost axis).
    """
    width = 2 * reach + 1
    shape = list(values.shape)
    shape[axis] += 2 * reach
    padded = np.zeros(shape, dtype=values.dtype)
    padded[tuple(slice(reach, reach + n) if i == axis else slice(None) for i, n in enumerate(values.shape))] = values
    stride = int(np.prod(shape[axis + 1:], dtype=np.int64))
    flat = padded.reshape(-1)
    span = 1
    while span < width:
        step = min(span, width - span) * stride
        flat = np.maximum(flat[:-step], flat[step:])
        span += min(span, width - span)
    # flat[k] is now the maximum over padded.flat[k], ..., padded.flat[k + 2 * reach * stride]: the window
    # centred on the original element whose padded index along ``axis`` is that of k plus ``reach``
    itemsize = flat.itemsize
    strides = [itemsize * int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
    return np.lib.stride_tricks.as_strided(flat, shape=values.shape, strides=strides, writeable=False)


def _crossing_offsets(smooth, lo, hi, faces) -> tuple[np.ndarray, np.ndarray]:
    """Where ``smooth`` crosses 0.5 between the two voxels of every face, as a fraction of the way, and whether.

    These give the marching-cubes vertices of the smoothed mask on the grid edges
    through the faces; where the smoothed mask does not cross 0.5 there (a particle
    of a voxel or two) the face centre (0.5) stands in, as in marching cubes on the
    binary mask.
    """
    s0 = smooth[lo][faces].astype(np.float64)
    s1 = smooth[hi][faces].astype(np.float64)
    crosses = (s0 - 0.5) * (s1 - 0.5) < 0
    return np.divide(s0 - 0.5, s0 - s1, out=np.full_like(s0, 0.5), where=crosses), crosses


def _crossings(faces, a, t) -> np.ndarray:
    """The crossing points (voxel units, (3, m)): the faces' lower voxels moved by ``t`` along axis ``a``."""
    p = np.array(faces, dtype=np.float64)
    p[a] += t
    return p


def _feret_by_owner(points: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Largest distance between the points of each owner, exactly.

    A double sweep (the point farthest from the centroid, the point farthest
    from it, the point farthest from that) gives a lower bound ``L0`` of each
    diameter, usually the diameter itself, for all owners at once. A pair
    longer than ``L0`` needs both ends farther than ``L0 - R`` from the centroid
    (``R`` the largest such distance), since ``|x - y| <= |x - c| + |y - c|``;
    only those few points of each owner are then compared pairwise.
    """
    order = np.argsort(owners, kind="stable")
    points, owners = points[order], owners[order]
    bounds = np.searchsorted(owners, np.arange(count + 1))
    sizes = np.diff(bounds)
    out = np.zeros(count)
    present = np.flatnonzero(sizes > 0)
    if not len(present):
        return out
    starts = bounds[:-1][present]
    centre = np.stack([np.bincount(owners, weights=points[:, i], minlength=count) for i in range(3)], axis=1)
    centre /= np.maximum(sizes, 1)[:, None]
    centred = points - centre[owners]
    radius = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    reach = np.zeros(count)
    reach[present] = np.maximum.reduceat(radius, starts)
    far = _segment_argmax(radius, owners, starts, present, count)
    for _ in range(2):
        offset = centred - centred[far][owners]
        distance = np.sqrt(np.einsum("ij,ij->i", offset, offset))
        far = _segment_argmax(distance, owners, starts, present, count)
    guess = np.zeros(count)
    guess[present] = np.maximum.reduceat(distance, starts)
    keep = radius > (guess - reach)[owners]
    kept_owners = owners[keep]
    kept = centred[keep]
    kept_bounds = np.searchsorted(kept_owners, np.arange(count + 1))
    for k in present:
        lo, hi = kept_bounds[k], kept_bounds[k + 1]
        out[k] = guess[k] if hi - lo < 2 else max(guess[k], _max_pair_distance(kept[lo:hi]))
    return out


def _hemisphere(count: int) -> np.ndarray:
    """The three axes and ``count`` near-uniform directions of the upper half sphere (golden-angle spiral), (n, 3)."""
    k = np.arange(count) + 0.5
    z = k / count
    angle = k * np.pi * (3.0 - np.sqrt(5.0))
    ring = np.sqrt(1.0 - z * z)
    spiral = np.stack([z, ring * np.cos(angle), ring * np.sin(angle)], axis=1)
    return np.concatenate([np.eye(3), spiral])


def _stencil(ring: int, inner: bool) -> np.ndarray:
    """Offsets (m, 2) in the unit disc of a search step: the centre, ``ring`` points on the circle, and
    (``inner``) as many at half the radius between them."""
    angle = 2.0 * np.pi * np.arange(ring) / ring
    offsets = [np.zeros((1, 2)), np.stack([np.cos(angle), np.sin(angle)], axis=1)]
    if inner:
        angle = angle + np.pi / ring
        offsets.append(0.5 * np.stack([np.cos(angle), np.sin(angle)], axis=1))
    return np.concatenate(offsets)


_DIRECTIONS = _hemisphere(FERET_MIN_DIRECTIONS)
# the quadratic model w(u)^2 = u^T Q u of the widths along _DIRECTIONS: Q's 6 entries by least squares
_QUADRATIC = np.linalg.pinv(np.stack([
    _DIRECTIONS[:, 0] ** 2, _DIRECTIONS[:, 1] ** 2, _DIRECTIONS[:, 2] ** 2,
    2 * _DIRECTIONS[:, 0] * _DIRECTIONS[:, 1], 2 * _DIRECTIONS[:, 0] * _DIRECTIONS[:, 2],
    2 * _DIRECTIONS[:, 1] * _DIRECTIONS[:, 2]], axis=1))
# the pattern of the first step, the second, and all later ones (their points are fewer and fewer)
_STENCILS = tuple(_stencil(ring, inner).astype(np.float32) for ring, inner in ((6, False), (8, False), (8, True)))


def _feret_min_by_owner(points: np.ndarray, crosses: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    """Smallest width of the points of each owner (see the module's notes), all owners at once.

    Only the points where the smoothed mask crosses 0.5 count: a face where it
    does not lies off the smoothed surface (its centre would stand out of a tilted
    plane by up to half a voxel); an owner with fewer than 4 such points keeps all.
    Every step works on all owners' points together, grouped by owner, and each
    owner's result depends on its own points only (in their order), bit for bit.
    """
    few = np.bincount(owners[crosses], minlength=count) < 4
    chosen = np.flatnonzero(crosses | few[owners])
    chosen = chosen[np.argsort(owners[chosen], kind="stable")]
    sizes = np.bincount(owners[chosen], minlength=count)
    out = np.zeros(count)
    present = np.flatnonzero(sizes)
    if not len(present):
        return out
    sizes = sizes[present]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    x, y, z = (np.ascontiguousarray(points[chosen, i]) for i in range(3))
    # centred on the middle of the bounding box (exact, and only a few bits of each coordinate change)
    for v in (x, y, z):
        v -= np.repeat(0.5 * (np.minimum.reduceat(v, starts) + np.maximum.reduceat(v, starts)), sizes)
    # the search runs in float32 (see _refine_directions)
    x32, y32, z32 = (v.astype(np.float32) for v in (x, y, z))
    # widths along the fixed directions; the quadratic model's narrowest direction (exact for an ellipsoid)
    widths = np.empty((len(present), len(_DIRECTIONS)), dtype=np.float32)
    for j, (dx, dy, dz) in enumerate(_DIRECTIONS.astype(np.float32)):
        p = x32 * dx
        p += y32 * dy
        p += z32 * dz
        widths[:, j] = np.maximum.reduceat(p, starts) - np.minimum.reduceat(p, starts)
    squared = widths.astype(np.float64) ** 2
    model = np.zeros((len(present), 6))
    for j in range(len(_DIRECTIONS)):  # elementwise, not BLAS: the same bits whatever the batch
        model += squared[:, j:j + 1] * _QUADRATIC[:, j]
    q = np.empty((len(present), 3, 3))
    for (r, c), k in zip(((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)), range(6)):
        q[:, r, c] = q[:, c, r] = model[:, k]
    # more starts: the model's narrowest direction, and the principal axes of the points (second moments
    # about the box centre; the normal of a flat end, as of a cylinder or a box, is one: a narrow valley
    # of widths that the fixed directions miss)
    moments = np.empty((len(present), 3, 3))
    for r, c in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
        moments[:, r, c] = moments[:, c, r] = np.add.reduceat((x, y, z)[r] * (x, y, z)[c], starts)
    extra = np.concatenate([np.linalg.eigh(q)[1][:, None, :, 0], np.linalg.eigh(moments)[1].transpose(0, 2, 1)], axis=1)
    extra_widths = np.empty(extra.shape[:2], dtype=np.float32)
    for j in range(extra.shape[1]):
        p = _project(x32, y32, z32, sizes, extra[:, j].astype(np.float32))
        extra_widths[:, j] = np.maximum.reduceat(p, starts) - np.minimum.reduceat(p, starts)
    candidates = np.concatenate([np.broadcast_to(_DIRECTIONS, (len(present),) + _DIRECTIONS.shape), extra], axis=1)
    candidate_widths = np.concatenate([widths, extra_widths], axis=1)
    rows = np.arange(len(present))
    first = candidates[rows, np.argmin(candidate_widths, axis=1)]
    # a second search from the narrowest start far from the first, when it is not much wider
    apart = np.abs(np.einsum("ijk,ik->ij", candidates, first)) < np.cos(_FERET_MIN_RADIUS)
    masked = np.where(apart, candidate_widths, np.inf)
    pick = np.argmin(masked, axis=1)
    second = candidates[rows, pick]
    limit = _FERET_MIN_SECOND * candidate_widths.min(axis=1)
    again = masked[rows, pick] <= limit
    # and a third from the narrowest principal axis far from both (their valleys are narrow)
    axes = candidates[:, -3:]
    apart &= np.abs(np.einsum("ijk,ik->ij", candidates, second)) < np.cos(_FERET_MIN_RADIUS)
    masked = np.where(apart[:, -3:], candidate_widths[:, -3:], np.inf)
    pick = np.argmin(masked, axis=1)
    third = axes[rows, pick]
    once_more = again & (masked[rows, pick] <= limit)
    searched = np.concatenate([rows, np.flatnonzero(again), np.flatnonzero(once_more)])
    order = np.argsort(searched, kind="stable")
    searched = searched[order]
    start = np.concatenate([first, second[again], third[once_more]])[order]
    found = _refine_directions((x, y, z), (x32, y32, z32), sizes, starts, start, searched)
    out[present] = np.minimum.reduceat(found, np.flatnonzero(np.diff(searched, prepend=-1)))
    return out


def _refine_directions(coordinates, coordinates32, sizes, starts, directions, searched) -> np.ndarray:
    """Narrowest width of each search's points near its start direction, by pattern search.

    Each step measures the widths along a small pattern of directions around the
    current one (radius ``r``); the narrowest becomes the new centre, and ``r``
    shrinks by ``_FERET_MIN_SHRINK`` when the centre stays, by
    ``_FERET_MIN_MOVE_SHRINK`` when it moves. A search so never goes farther than
    ``r / (1 - 1 / _FERET_MIN_MOVE_SHRINK)`` from where it stands, which bounds the
    points that can still be extreme: a point ``q`` can be the farthest along a
    direction ``v`` within angle ``t`` of ``u`` only if
    ``max(p . u) - q . u <= t |q - p*|`` (``p*`` the farthest point along ``u``;
    likewise at the other end), and the others are dropped. The search runs in
    float32 (with a margin for its rounding in that test); the value returned is the
    width, in float64, of the points along the final direction (all of which the
    test kept): the exact width of the points along some direction.
    """
    counts = sizes[searched]
    bounds = np.concatenate([[0], np.cumsum(counts)[:-1]])
    x, y, z = coordinates
    if len(searched) == len(sizes):
        index = np.arange(len(x))
        wx, wy, wz = coordinates32
    else:
        index = np.arange(counts.sum()) - np.repeat(bounds - starts[searched], counts)
        wx, wy, wz = (v[index] for v in coordinates32)
    directions = directions.astype(np.float32)
    # rounding of float32 projections, far below the widths but above zero
    size = np.sqrt(np.maximum.reduceat(x * x + y * y + z * z, starts)).astype(np.float32)
    tolerance = np.repeat(np.float32(1e-5) * (size[searched] + np.float32(1e-3)), counts)
    radius = np.full(len(directions), _FERET_MIN_RADIUS, dtype=np.float32)
    reach = np.float32(1.0 / (1.0 - 1.0 / _FERET_MIN_MOVE_SHRINK))
    for step in range(_FERET_MIN_STEPS):
        if step == _FERET_MIN_FLOAT32_STEPS:
            # few points are left: the last, fine steps in float64
            wx, wy, wz = x[index], y[index], z[index]
            directions, radius, reach = directions.astype(np.float64), radius.astype(np.float64), float(reach)
            tolerance = tolerance.astype(np.float64) * 1e-6
        pattern = _STENCILS[min(step, len(_STENCILS) - 1)]
        directions, centre_stays, projection = _pattern_step(wx, wy, wz, counts, bounds, directions, radius, pattern)
        radius = radius / np.where(centre_stays, radius.dtype.type(_FERET_MIN_SHRINK),
                                   radius.dtype.type(_FERET_MIN_MOVE_SHRINK))
        kept = _still_extreme(wx, wy, wz, projection, counts, bounds, radius * reach, tolerance)
        wx, wy, wz, index, tolerance = wx[kept], wy[kept], wz[kept], index[kept], tolerance[kept]
        counts = np.add.reduceat(kept.astype(np.int64), bounds)
        bounds = np.concatenate([[0], np.cumsum(counts)[:-1]])
    u = directions.astype(np.float64)
    u /= np.sqrt(np.einsum("ij,ij->i", u, u))[:, None]
    p = _project(x[index], y[index], z[index], counts, u)
    return np.maximum.reduceat(p, bounds) - np.minimum.reduceat(p, bounds)


def _project(wx, wy, wz, counts, directions) -> np.ndarray:
    """Projection of each point onto its search's direction."""
    p = wx * np.repeat(directions[:, 0], counts)
    p += wy * np.repeat(directions[:, 1], counts)
    p += wz * np.repeat(directions[:, 2], counts)
    return p


def _still_extreme(wx, wy, wz, projection, counts, bounds, angle, tolerance) -> np.ndarray:
    """Which points can be the farthest, at either end, along a direction within ``angle`` of the current one."""
    keep = np.zeros(len(projection), dtype=bool)
    slack = np.repeat(angle * angle * angle.dtype.type(1.001), counts)
    for reduce in (np.maximum, np.minimum):
        extreme = reduce.reduceat(projection, bounds)
        gap = np.abs(projection - np.repeat(extreme, counts))
        # the first point of each search at its extreme value
        hits = np.flatnonzero(gap == 0)
        owner = np.searchsorted(bounds, hits, side="right") - 1
        at = np.zeros(len(counts), dtype=np.int64)
        at[owner[::-1]] = hits[::-1]
        d2 = np.square(wx - np.repeat(wx[at], counts))
        d2 += np.square(wy - np.repeat(wy[at], counts))
        d2 += np.square(wz - np.repeat(wz[at], counts))
        gap -= tolerance
        np.maximum(gap, 0, out=gap)
        keep |= gap * gap <= slack * d2
    return keep


def _tangent_basis(directions: np.ndarray):
    """Two unit vectors (n, 3) orthogonal to each unit direction and to each other."""
    ux, uy, uz = directions.T
    # u x a, with a the axis along which u is shortest
    size = np.abs(directions)
    ax = (size[:, 0] <= size[:, 1]) & (size[:, 0] <= size[:, 2])
    ay = ~ax & (size[:, 1] <= size[:, 2])
    az = ~(ax | ay)
    e1 = np.stack([uy * az - uz * ay, uz * ax - ux * az, ux * ay - uy * ax], axis=1)
    e1 /= np.sqrt((e1 * e1).sum(axis=1))[:, None]
    vx, vy, vz = e1.T
    e2 = np.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx], axis=1)
    return e1, e2


def _pattern_step(wx, wy, wz, counts, bounds, directions, radius, pattern):
    """One step of the pattern search of every search at once.

    Returns the new directions, whether the centre stayed, and the points'
    projections onto the new directions.
    """
    # a tangent basis (e1, e2) of each direction u: the pattern's directions are u + r (s1 e1 + s2 e2), normalised
    e1, e2 = _tangent_basis(directions)
    along = _project(wx, wy, wz, counts, directions)
    side1 = _project(wx, wy, wz, counts, e1 * radius[:, None])
    side2 = _project(wx, wy, wz, counts, e2 * radius[:, None])
    high = np.empty((len(directions), len(pattern)), dtype=wx.dtype)
    low = np.empty_like(high)
    for m, (s1, s2) in enumerate(pattern):
        p = along
        if m:
            p = along + s1 * side1
            p += s2 * side2
        high[:, m] = np.maximum.reduceat(p, bounds)
        low[:, m] = np.minimum.reduceat(p, bounds)
    norms = np.sqrt(1.0 + radius[:, None] ** 2 * np.einsum("ij,ij->i", pattern, pattern)[None, :]).astype(wx.dtype)
    best = np.argmin((high - low) / norms, axis=1)
    rows = np.arange(len(directions))
    step = radius[:, None] * pattern[best].astype(wx.dtype)
    norm = norms[rows, best]
    new = (directions + step[:, :1] * e1 + step[:, 1:] * e2) / norm[:, None]
    projection = along + np.repeat(pattern[best, 0].astype(wx.dtype), counts) * side1
    projection += np.repeat(pattern[best, 1].astype(wx.dtype), counts) * side2
    projection /= np.repeat(norm, counts)
    return new, best == 0, projection


def _min_width(points: np.ndarray) -> float:
    """Smallest width of one point set (n, 3), by the search of :func:`_feret_min_by_owner`."""
    points = np.asarray(points, dtype=np.float64)
    return float(_feret_min_by_owner(points, np.ones(len(points), bool), np.zeros(len(points), np.int64), 1)[0])


def _segment_argmax(values, owners, starts, present, count):
    """Index (into ``values``) of the largest value of each owner's contiguous segment."""
    top = np.full(count, -np.inf)
    top[present] = np.maximum.reduceat(values, starts)
    hits = np.flatnonzero(values >= top[owners])
    first = np.zeros(count, dtype=np.int64)
    # the last hit of each owner wins; any of them will do
    first[owners[hits]] = hits
    return first


def _max_pair_distance(points: np.ndarray, block: int = 512) -> float:
    """Largest pairwise distance by brute force, in blocks so that memory stays bounded."""
    if len(points) > 4 * block:
        try:
            points = points[ConvexHull(points).vertices]
        except (QhullError, ValueError):
            pass  # a flat point set: compare them all
    best = 0.0
    for start in range(0, len(points), block):
        chunk = points[start:start + block]
        others = points[start:]
        squared = (np.einsum("ij,ij->i", chunk, chunk)[:, None] + np.einsum("ij,ij->i", others, others)[None, :]
                   - 2.0 * chunk @ others.T)
        best = max(best, float(squared.max()))
    return float(np.sqrt(max(best, 0.0)))


def surface_mesh(mask: np.ndarray, spacing, sigma_vox: float = FERET_SIGMA_VOX):
    """Marching-cubes mesh (mm, crop frame) of ``mask`` smoothed by ``sigma_vox`` voxels.

    Returns ``(vertices, faces)``; both empty when the smoothed mask never
    reaches 0.5 (a particle of a voxel or two).
    """
    from skimage.measure import marching_cubes

    pad = 2 + int(np.ceil(_TRUNCATE * sigma_vox))
    m = np.pad(np.asarray(mask, dtype=bool), pad).astype(np.float32)
    if sigma_vox > 0:
        m = ndi.gaussian_filter(m, sigma_vox, mode="constant", truncate=_TRUNCATE)
    if m.max() <= 0.5:
        return np.empty((0, 3)), np.empty((0, 3), dtype=np.int64)
    vertices, faces, _, _ = marching_cubes(m, 0.5, spacing=tuple(float(s) for s in spacing))
    return vertices - pad * np.asarray(spacing, float), faces
