"""Synthetic micro-CT scans of mineral grains with exact instance labels.

A phantom is built the way a real sample is: mineral grains of log-normal size
(spheres, ellipsoids, irregular and angular/flaky grains, some made of several
phases, some cracked) packed densely inside an epoxy cylinder that stands in
air, with air bubbles in the epoxy. Optionally the cylinder stands in a tube (a
sample holder of plastic or glass) whose wall has its own grey value. The labels
are exact because the grey image is rendered from them. A CT forward model then adds what a scanner does: blur
(point-spread function and partial volume), beam-hardening cupping, ring
artefacts, noise and an arbitrary grey-value scale.

These scans train the model, test every module and make the bundled sample.
All randomness comes from one seed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.checks import check_positive, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.geometry import equivalent_diameter, sphere_volume
from ps3d_toolkit.core.labels import drop_small_labels

__all__ = ["PRESETS", "PRESET_NAMES", "SHAPES", "SyntheticScan", "generate_scan", "holder_inside", "random_params"]

SHAPES = ("sphere", "ellipsoid", "irregular", "angular", "flaky")

#: The difficulty presets, easiest first.
PRESET_NAMES = ("easy", "medium", "hard")

# One row per parameter: its (low, high) range in the easy, medium and hard preset.
# The rows' order is the order of the random draws (it fixes what a seed gives).
_PRESET_RANGES: dict[str, tuple] = {
    "size_sigma": ((0.1, 0.2), (0.15, 0.3), (0.25, 0.45)),
    "packing": ((0.25, 0.4), (0.35, 0.5), (0.45, 0.6)),
    "max_overlap": ((0.0, 0.03), (0.02, 0.08), (0.05, 0.12)),
    "shape_weights": (dict(sphere=3, ellipsoid=2, irregular=1, angular=0, flaky=0),
                      dict(sphere=1, ellipsoid=2, irregular=2, angular=2, flaky=1),
                      dict(sphere=0.5, ellipsoid=1, irregular=2, angular=3, flaky=2)),
    "n_phases": ((1, 2), (2, 3), (2, 4)),
    "multiphase_fraction": ((0.0, 0.1), (0.1, 0.3), (0.2, 0.5)),
    "crack_fraction": ((0.0, 0.0), (0.0, 0.1), (0.05, 0.25)),
    "bubble_fraction": ((0.0, 0.002), (0.0, 0.005), (0.002, 0.01)),
    "blur_sigma": ((0.4, 0.7), (0.5, 1.0), (0.7, 1.4)),
    "noise": ((0.02, 0.05), (0.04, 0.10), (0.08, 0.20)),
    "cupping": ((0.0, 0.05), (0.0, 0.12), (0.05, 0.25)),
    "ring_strength": ((0.0, 0.0), (0.0, 0.04), (0.02, 0.08)),
    "contrast": ((0.5, 0.7), (0.3, 0.6), (0.15, 0.45)),
}

#: Difficulty presets: ranges from which :func:`random_params` draws.
#: Each entry is (low, high) for a uniform draw, or a fixed value.
PRESETS: dict[str, dict] = {name: {key: ranges[i] for key, ranges in _PRESET_RANGES.items()}
                            for i, name in enumerate(PRESET_NAMES)}


@dataclass
class SyntheticScan:
    """A generated scan with its exact ground truth.

    Attributes
    ----------
    image : np.ndarray
        Grey values, float32, axis order (z, y, x).
    labels : np.ndarray
        Exact instance labels, uint32, 0 = background.
    phases : np.ndarray
        Mineral phase of every voxel, uint8, 0 = not a grain.
    spacing : tuple of float
        Voxel size in mm.
    particle_size_mm : float
        Mean equivalent-sphere diameter of the grains, in mm.
    params : dict
        Every parameter used, so that a scan can be described and regenerated.
    """

    image: np.ndarray
    labels: np.ndarray
    phases: np.ndarray
    spacing: tuple[float, float, float]
    particle_size_mm: float
    params: dict = field(default_factory=dict)

    @property
    def mean_diameter_vox(self) -> float:
        """Mean equivalent diameter of the grains in voxels (isotropic spacing)."""
        return self.particle_size_mm / self.spacing[0]


def random_params(rng: np.random.Generator, preset: str = "medium") -> dict:
    """Draw one set of phantom parameters from a difficulty preset.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    preset : {"easy", "medium", "hard"}
        Which ranges to draw from.

    Returns
    -------
    dict
        Keyword arguments accepted by :func:`generate_scan`.
    """
    if preset not in PRESETS:
        raise InputError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    ranges = PRESETS[preset]
    params = {}
    for key, value in ranges.items():
        if isinstance(value, tuple):
            low, high = value
            if isinstance(low, int) and isinstance(high, int):
                params[key] = int(rng.integers(low, high + 1))
            else:
                params[key] = float(rng.uniform(low, high))
        else:
            params[key] = value
    params["cylinder_radius_fraction"] = float(rng.uniform(0.38, 0.56))
    params["cylinder_axis"] = "z"
    return params


def generate_scan(
    shape=(128, 128, 128),
    mean_diameter_vox: float = 24.0,
    seed: int | None = 0,
    *,
    spacing=0.01,
    preset: str | None = "medium",
    wall_thickness_vox: float = 0.0,
    wall_value: float = 0.5,
    **overrides,
) -> SyntheticScan:
    """Generate a synthetic CT scan of grains in an epoxy cylinder, with exact labels.

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape (z, y, x).
    mean_diameter_vox : float
        Mean equivalent diameter of the grains in voxels (before log-normal spread).
    seed : int or None
        Seed of every random draw; the same seed gives the same scan.
    spacing : float or tuple of 3 float
        Voxel size in mm (only recorded; the phantom is built in voxels).
    preset : {"easy", "medium", "hard"} or None
        Difficulty preset from which unspecified parameters are drawn.
    **overrides
        Any parameter of :data:`PRESETS` (``packing``, ``noise``, ``blur_sigma``,
        ``shape_weights``, ``n_phases``, ``multiphase_fraction``, ``crack_fraction``,
        ``bubble_fraction``, ``cupping``, ``ring_strength``, ``contrast``,
        ``size_sigma``, ``max_overlap``, ``cylinder_radius_fraction``), fixed to
        the given value.
    wall_thickness_vox : float
        Thickness in voxels of a sample-holder tube around the epoxy cylinder
        (0: no tube, the epoxy stands in air). Grains are cut at the tube's inner
        surface. Not drawn from the seed: a scan with a tube has the same grains,
        noise and grey-value scale as the same seed without one. A cylinder of
        ``cylinder_radius_fraction`` above ~0.71 fills the whole field of view
        (no air in view); a tube is meant for fractions that leave room for it.
    wall_value : float
        Attenuation of the tube wall in units of the epoxy's (air 0, epoxy 1):
        ~0.3-0.9 for a plastic tube, 2-4 for glass (grains lie at
        ``1 + contrast * (0.7..2.2) / epoxy``).

    Returns
    -------
    SyntheticScan

    Examples
    --------
    >>> scan = generate_scan((64, 64, 64), mean_diameter_vox=16, seed=1)
    >>> scan.labels.dtype, scan.image.shape
    (dtype('uint32'), (64, 64, 64))
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise InputError(f"shape must be 3 integers >= 8 (z, y, x), got {shape!r}")
    mean_diameter_vox = check_positive(mean_diameter_vox, "mean_diameter_vox")
    if mean_diameter_vox < 3:
        raise InputError(f"mean_diameter_vox must be at least 3 voxels, got {mean_diameter_vox}")
    spacing = check_spacing(spacing)
    wall_thickness_vox = float(wall_thickness_vox)
    if not np.isfinite(wall_thickness_vox) or wall_thickness_vox < 0:
        raise InputError(f"wall_thickness_vox must be a number >= 0 (voxels), got {wall_thickness_vox!r}")
    wall_value = check_positive(wall_value, "wall_value")
    rng = np.random.default_rng(seed)
    params = random_params(rng, preset or "medium")
    unknown = set(overrides) - set(params)
    if unknown:
        raise InputError(f"unknown phantom parameter(s) {sorted(unknown)}; known: {sorted(params)}")
    params.update(overrides)
    params.update(shape=shape, mean_diameter_vox=mean_diameter_vox, seed=seed, preset=preset)
    if wall_thickness_vox > 0:
        # only with a tube: the parameters of every existing scan stay as they were
        params.update(wall_thickness_vox=wall_thickness_vox, wall_value=wall_value)

    phase_values = _draw_phase_values(rng, params)
    cylinder = _CylinderGeometry(shape, params["cylinder_radius_fraction"])
    labels, phases, cracks = _pack_grains(rng, shape, cylinder, phase_values, params)
    if wall_thickness_vox > 0:
        # a grain cannot reach into the tube's wall: cut it at the inner surface
        outside = np.broadcast_to(cylinder.radial_distance() > cylinder.radius, shape)
        labels[outside] = 0
        phases[outside] = 0
        cracks[outside] = False
    labels, phases = _clean_fragments(labels, phases)
    bubbles = _bubbles(rng, shape, cylinder, labels, mean_diameter_vox, params["bubble_fraction"])
    image = _render(rng, labels, phases, cracks, bubbles, cylinder, phase_values, params)

    counts = np.bincount(labels.ravel())[1:]
    counts = counts[counts > 0]
    eq_diam_vox = float(np.mean(equivalent_diameter(counts))) if counts.size else mean_diameter_vox
    # The mean diameter is defined on an isotropic grid; for anisotropic spacing
    # the geometric mean voxel size converts it to mm.
    voxel_mm = float(np.cbrt(np.prod(spacing)))
    params["phase_values"] = phase_values.tolist()
    params["n_particles"] = int(counts.size)
    return SyntheticScan(
        image=image,
        labels=labels,
        phases=phases,
        spacing=spacing,
        particle_size_mm=eq_diam_vox * voxel_mm,
        params=params,
    )


# --------------------------------------------------------------------------- geometry


def holder_inside(shape, params: dict) -> np.ndarray:
    """The true inside of the epoxy cylinder (the holder's inside) of a generated scan.

    Parameters
    ----------
    shape : tuple of 3 int
        Volume shape (z, y, x) of the scan.
    params : dict
        ``SyntheticScan.params`` of that scan (its ``cylinder_radius_fraction``).

    Returns
    -------
    np.ndarray
        Boolean (z, y, x): True where a voxel's centre lies inside the cylinder.
        Grains of a scan without a tube may reach a few voxels beyond it.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise InputError(f"shape must be 3 integers (z, y, x), got {shape!r}")
    cylinder = _CylinderGeometry(shape, float(params["cylinder_radius_fraction"]))
    return np.broadcast_to(cylinder.radial_distance() <= cylinder.radius, shape).copy()


@dataclasses.dataclass
class _CylinderGeometry:
    """Epoxy cylinder along z, centred in the (y, x) plane."""

    shape: tuple
    radius_fraction: float

    def __post_init__(self):
        _, ny, nx = self.shape
        self.center = ((ny - 1) / 2.0, (nx - 1) / 2.0)
        self.radius = self.radius_fraction * min(ny, nx)

    def radial_distance(self) -> np.ndarray:
        """Distance of every (y, x) column from the axis, shape (ny, nx)."""
        _, ny, nx = self.shape
        yy, xx = np.ogrid[:ny, :nx]
        return np.hypot(yy - self.center[0], xx - self.center[1])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _draw_shape(rng: np.random.Generator, weights: dict) -> str:
    names = [s for s in SHAPES if weights.get(s, 0) > 0]
    p = np.array([weights[s] for s in names], dtype=float)
    return str(rng.choice(names, p=p / p.sum()))


def _grain_axes(rng: np.random.Generator, kind: str, radius: float) -> np.ndarray:
    """Semi-axes of a grain whose equivalent-sphere radius is ``radius``."""
    if kind == "sphere":
        axes = np.ones(3)
    elif kind == "flaky":
        axes = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.25, 0.45)])
    else:
        axes = np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9)])
        if kind in ("irregular", "angular"):
            axes = np.clip(axes, 0.6, None)
    return axes / np.cbrt(np.prod(axes)) * radius


def _grain_mask(rng: np.random.Generator, kind: str, axes: np.ndarray, rot: np.ndarray,
                offset: np.ndarray, box_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one grain in its bounding box.

    Returns the boolean mask and the normalised local coordinates (3, ...) used
    to place phases and cracks inside it.
    """
    grid = np.indices(box_shape, dtype=np.float32).reshape(3, -1) - offset[:, None].astype(np.float32)
    local = (rot.T.astype(np.float32) @ grid) / axes[:, None].astype(np.float32)
    norm2 = np.einsum("ij,ij->j", local, local)
    if kind in ("sphere", "ellipsoid"):
        inside = norm2 <= 1.0
    elif kind == "irregular":
        unit = local / np.sqrt(norm2 + 1e-12)
        bump = np.zeros(norm2.shape, dtype=np.float32)
        for _ in range(6):
            k = rng.normal(size=3) * rng.uniform(1.0, 2.5)
            bump += rng.uniform(0.04, 0.12) * np.cos(k @ unit + rng.uniform(0, 2 * np.pi))
        inside = np.sqrt(norm2) <= 1.0 + np.clip(bump, -0.35, 0.25)
    else:  # angular and flaky: a convex polyhedron (intersection of half-spaces)
        n_faces = int(rng.integers(7, 16))
        normals = rng.normal(size=(n_faces, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        distances = rng.uniform(0.75, 1.0, size=n_faces)
        inside = np.all(normals @ local <= distances[:, None], axis=0) & (norm2 <= 1.6)
    return inside.reshape(box_shape), local.reshape((3,) + tuple(box_shape))


_PROBE_DIRECTIONS = np.hstack([np.eye(3), -np.eye(3)])


def _pack_grains(rng, shape, cylinder, phase_values, params):
    """Place grains one by one with random sequential adsorption.

    A candidate is accepted when at most ``max_overlap`` of it overlaps earlier
    grains; the overlap stays with the earlier grain, which gives real flat
    contacts instead of the point contacts of hard spheres.
    """
    nz, ny, nx = shape
    labels = np.zeros(shape, dtype=np.uint32)
    phases = np.zeros(shape, dtype=np.uint8)
    cracks = np.zeros(shape, dtype=bool)
    d_mean = params["mean_diameter_vox"]
    sigma = params["size_sigma"]
    # log-normal whose mean is d_mean
    mu = math.log(d_mean) - sigma**2 / 2
    cyl_volume = math.pi * cylinder.radius**2 * nz
    target_volume = params["packing"] * cyl_volume
    filled = 0.0
    next_label = 1
    attempts = 0
    max_attempts = int(60 * target_volume / sphere_volume(d_mean) + 200)
    n_phases = max(1, int(params["n_phases"]))
    while filled < target_volume and attempts < max_attempts:
        attempts += 1
        diameter = float(np.clip(rng.lognormal(mu, sigma), 0.4 * d_mean, 3.0 * d_mean))
        radius = diameter / 2
        r_axis = rng.uniform(0, max(cylinder.radius - radius * 0.9, 0.5))
        theta = rng.uniform(0, 2 * np.pi)
        center = np.array([
            rng.uniform(-radius * 0.7, nz - 1 + radius * 0.7),
            cylinder.center[0] + r_axis * math.sin(theta),
            cylinder.center[1] + r_axis * math.cos(theta),
        ])
        # Cheap early rejection: the centre must be free.
        ci = np.round(center).astype(int)
        if np.all((ci >= 0) & (ci < shape)) and labels[tuple(ci)]:
            continue
        kind = _draw_shape(rng, params["shape_weights"])
        axes = _grain_axes(rng, kind, radius)
        rot = _random_rotation(rng)
        # Cheap early rejection: points half-way along the grain's axes must be free.
        probes = np.round(center[:, None] + rot @ np.diag(axes * 0.6) @ _PROBE_DIRECTIONS).astype(int)
        valid = np.all((probes >= 0) & (probes < np.array(shape)[:, None]), axis=0)
        if np.any(labels[tuple(probes[:, valid])]):
            continue
        # Bounding box of the rotated ellipsoid, widened because irregular grains
        # bulge up to 1.25 and polyhedra reach sqrt(1.6) of the axes.
        extent = np.ceil(np.sqrt(((rot * axes[None, :]) ** 2).sum(axis=1)) * 1.3).astype(int) + 1
        lo = np.floor(center - extent).astype(int)
        hi = np.ceil(center + extent).astype(int) + 1
        lo_c = np.maximum(lo, 0)
        hi_c = np.minimum(hi, shape)
        if np.any(hi_c - lo_c <= 1):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo_c, hi_c))
        mask, local = _grain_mask(rng, kind, axes, rot, center - lo_c, tuple(hi_c - lo_c))
        volume = mask.sum()
        if volume < 8:
            continue
        region = labels[box]
        overlap = np.count_nonzero(region[mask])
        if overlap > params["max_overlap"] * volume:
            continue
        new = mask & (region == 0)
        region[new] = next_label
        phase_box = phases[box]
        primary = int(rng.integers(1, n_phases + 1))
        phase_box[new] = primary
        if n_phases > 1 and rng.random() < params["multiphase_fraction"]:
            secondary = _secondary_phase(rng, local, new)
            other = int(rng.choice([p for p in range(1, n_phases + 1) if p != primary]))
            phase_box[secondary] = other
        if rng.random() < params["crack_fraction"]:
            cracks[box] |= _crack(rng, local, new)
        filled += new.sum()
        next_label += 1
    return labels, phases, cracks


def _secondary_phase(rng, local, mask):
    """A second mineral inside a grain: a cut-off cap or one or two inclusions."""
    if rng.random() < 0.5:
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        side = np.tensordot(normal, local, axes=1) > rng.uniform(-0.4, 0.5)
    else:
        side = np.zeros(mask.shape, dtype=bool)
        for _ in range(int(rng.integers(1, 3))):
            c = rng.uniform(-0.5, 0.5, size=3)
            r = rng.uniform(0.25, 0.5)
            side |= np.sum((local - c[:, None, None, None]) ** 2, axis=0) <= r**2
    return side & mask


def _crack(rng, local, mask):
    """A thin planar crack that runs only part way through a grain."""
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    guide = rng.normal(size=3)
    guide -= guide @ normal * normal
    guide /= np.linalg.norm(guide)
    width = rng.uniform(0.03, 0.08)
    plane = np.abs(np.tensordot(normal, local, axes=1) - rng.uniform(-0.3, 0.3)) < width
    partial = np.tensordot(guide, local, axes=1) < rng.uniform(0.0, 0.5)
    return plane & partial & mask


def _clean_fragments(labels, phases):
    """Keep the largest connected piece of every grain.

    Overlap resolution can cut a thin sliver off a grain; a label in two pieces
    would not be a particle, so the smaller pieces go to the touching grain
    (or background) and the labels are made consecutive.
    """
    import cc3d

    pieces = cc3d.connected_components(labels, connectivity=6)
    piece_sizes = np.bincount(pieces.ravel())
    owner = np.zeros(piece_sizes.size, dtype=np.uint32)
    flat_pieces = pieces.ravel()
    flat_labels = labels.ravel()
    nz = flat_pieces > 0
    owner[flat_pieces[nz]] = flat_labels[nz]
    n_labels = int(labels.max())
    best = np.zeros(n_labels + 1, dtype=np.int64)
    keep_piece = np.zeros(n_labels + 1, dtype=np.int64)
    for piece in np.argsort(piece_sizes)[::-1]:
        if piece == 0:
            continue
        lab = owner[piece]
        if piece_sizes[piece] > best[lab]:
            best[lab] = piece_sizes[piece]
            keep_piece[lab] = piece
    keep = np.zeros(piece_sizes.size, dtype=bool)
    keep[keep_piece[keep_piece > 0]] = True
    drop = ~keep[pieces] & (pieces > 0)
    if drop.any():
        labels = labels.copy()
        labels[drop] = 0
        phases = phases.copy()
        phases[drop] = 0
    # Drop specks (a few voxels) that no detector could see as particles.
    labels = drop_small_labels(labels, min_voxels=8)
    phases[labels == 0] = 0
    return labels, phases


def _bubbles(rng, shape, cylinder, labels, mean_diameter_vox, fraction):
    """Air bubbles in the epoxy (never inside a grain)."""
    bubbles = np.zeros(shape, dtype=bool)
    if fraction <= 0:
        return bubbles
    nz = shape[0]
    target = fraction * math.pi * cylinder.radius**2 * nz
    filled = 0
    while filled < target:
        r = rng.uniform(0.1, 0.4) * mean_diameter_vox
        rr = rng.uniform(0, max(cylinder.radius - r, 1))
        th = rng.uniform(0, 2 * np.pi)
        c = np.array([rng.uniform(0, nz - 1), cylinder.center[0] + rr * math.sin(th),
                      cylinder.center[1] + rr * math.cos(th)])
        lo = np.maximum(np.floor(c - r - 1).astype(int), 0)
        hi = np.minimum(np.ceil(c + r + 2).astype(int), shape)
        if np.any(hi <= lo):
            continue  # a cylinder wider than the field of view: centre outside the volume
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.indices(tuple(hi - lo), dtype=np.float32) + lo[:, None, None, None]
        ball = np.sum((grid - c[:, None, None, None]) ** 2, axis=0) <= r**2
        bubbles[box] |= ball
        filled += ball.sum()
    bubbles &= labels == 0
    return bubbles


# --------------------------------------------------------------------------- rendering


def _draw_phase_values(rng, params):
    """Grey value of air, epoxy and each mineral phase (attenuation units)."""
    epoxy = rng.uniform(0.2, 0.35)
    contrast = params["contrast"]
    n = max(1, int(params["n_phases"]))
    # The first phase is the least contrasted one: hard scans have grains that
    # are barely brighter than the epoxy.
    values = epoxy + contrast * np.sort(rng.uniform(0.8, 2.2, size=n))
    if n > 1:
        values[0] = epoxy + contrast * rng.uniform(0.7, 1.1)
    return np.concatenate([[0.0, epoxy], values])


def _render(rng, labels, phases, cracks, bubbles, cylinder, phase_values, params):
    """CT forward model: attenuation map -> cupping -> blur -> rings -> noise."""
    shape = labels.shape
    radial = cylinder.radial_distance()
    inside = np.broadcast_to(radial <= cylinder.radius, shape)
    # phase_values: [air, epoxy, phase1, phase2, ...]
    lut = np.asarray(phase_values, dtype=np.float32)
    material = np.where(inside, 1, 0).astype(np.uint8)
    grain = phases > 0
    material[grain] = phases[grain] + 1
    material[bubbles] = 0
    material[cracks] = 1
    wall = float(params.get("wall_thickness_vox", 0.0))
    if wall > 0:
        # the tube: a ring of its own material, outside the epoxy and inside the field
        ring = (radial > cylinder.radius) & (radial <= cylinder.radius + wall)
        lut = np.append(lut, np.float32(params["wall_value"] * phase_values[1]))
        material[np.broadcast_to(ring, shape)] = lut.size - 1
    image = lut[material]

    # Beam hardening: the middle of a dense cylinder reconstructs darker.
    cup = params["cupping"]
    if cup > 0:
        profile = 1.0 - cup * np.clip(1.0 - (radial / cylinder.radius) ** 2, 0, 1)
        image *= profile[None].astype(np.float32)

    blur = params["blur_sigma"]
    if blur > 0:
        image = ndimage.gaussian_filter(image, blur, mode="nearest")

    strength = params["ring_strength"]
    if strength > 0:
        rings = np.zeros(radial.shape, dtype=np.float32)
        for _ in range(int(rng.integers(3, 12))):
            r0 = rng.uniform(0, cylinder.radius * 1.1)
            width = rng.uniform(0.5, 1.5)
            rings += rng.choice([-1, 1]) * rng.uniform(0.3, 1.0) * strength * np.exp(
                -((radial - r0) ** 2) / (2 * width**2))
        image += rings[None]

    noise = params["noise"] * (phase_values[2] - phase_values[1] + 0.1)
    field_ = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    # Reconstruction correlates neighbouring voxels' noise a little.
    corr = rng.uniform(0.0, 0.7)
    if corr > 0.2:
        field_ = ndimage.gaussian_filter(field_, corr)
        field_ /= field_.std() + 1e-6
    image += noise * field_

    # Scanners write arbitrary units: a random affine grey-value map.
    scale = rng.uniform(500.0, 20000.0)
    offset = rng.uniform(-0.1, 0.3) * scale
    return (image * scale + offset).astype(np.float32)
