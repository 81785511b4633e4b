"""Accuracy of ps3d_toolkit.measurement on digital shapes with exact answers.

For balls, ellipsoids, cubes, boxes, cylinders, plates and rotated cubes at
several sizes and voxel spacings (isotropic and anisotropic), with random
sub-voxel offsets and orientations drawn from a fixed seed, print the range and
mean of the relative error of each measurement against the analytic value, and
the same for plain marching cubes (binary mask, and gaussian-smoothed) for
comparison.

``--feret-min`` prints instead the minimum Feret diameter of boxes, ellipsoids,
cylinders and balls of several sizes and spacings, one row per shape: true and
measured width and the relative error (the table of docs/measurement.md,
"Minimum Feret").

Run:  OMP_NUM_THREADS=1 python benchmarks/measure_accuracy.py [--quick] [--feret-min]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation
from skimage.measure import marching_cubes, mesh_surface_area

from ps3d_toolkit.measurement import measure

# the analytic reference formulas live with the tests that use them too
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from analytic_shapes import ellipsoid_area, ellipsoid_labels  # noqa: E402
from feret_shapes import aligned_box_labels, cylinder_labels, rotated_box_labels, rotation

SPACINGS = [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 0.6, 1.3)]


def grid_points(half_extent_mm, spacing, offset_vox, rotation):
    spacing = np.asarray(spacing, float)
    half = np.ceil(half_extent_mm / spacing).astype(int) + 3
    axes = [(np.arange(2 * h + 1) - h - o) * s for h, o, s in zip(half, offset_vox, spacing)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1) @ rotation


def ellipsoid(semi, spacing, rotation, offset):
    p = grid_points(max(semi), spacing, offset, rotation)
    return ((p / np.asarray(semi)) ** 2).sum(-1) <= 1


def box(sides, spacing, rotation, offset):
    p = grid_points(0.5 * np.linalg.norm(sides), spacing, offset, rotation)
    return np.all(np.abs(p) <= np.asarray(sides) / 2, axis=-1)


def cylinder(radius, height, spacing, rotation, offset):
    p = grid_points(np.hypot(radius, height / 2), spacing, offset, rotation)
    return (np.abs(p[..., 0]) <= height / 2) & (p[..., 1] ** 2 + p[..., 2] ** 2 <= radius**2)


def shapes(rng, quick):
    """Yield (kind, mask, spacing, truth dict)."""
    repeats = 1 if quick else 2
    for spacing in SPACINGS:
        big = max(spacing)
        eye = np.eye(3)
        for r in (4, 6, 10, 20, 30):
            for _ in range(repeats):
                radius = r * big
                kind = "ball, radius 4-6 voxels" if r <= 6 else "ball, radius 10-30 voxels"
                yield kind, ellipsoid([radius] * 3, spacing, eye, rng.uniform(-.5, .5, 3)), spacing, {
                    "volume": 4 / 3 * np.pi * radius**3, "area": 4 * np.pi * radius**2, "sphericity": 1.0,
                    "axes": [2 * radius] * 3, "feret": 2 * radius, "feret_min": 2 * radius}
        for _ in range(4 if quick else 10):
            semi = np.sort(rng.uniform(4, 16, 3))[::-1] * big
            rot = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
            yield "ellipsoid (rotated)", ellipsoid(semi, spacing, rot, rng.uniform(-.5, .5, 3)), spacing, {
                "volume": 4 / 3 * np.pi * np.prod(semi), "area": ellipsoid_area(*semi),
                "axes": list(2 * semi), "feret": 2 * semi[0], "feret_min": 2 * semi[2]}
        for n in (8, 12, 20, 40):
            # aligned with the voxels: a whole number of voxels per axis, as close to a cube as
            # the spacing allows; the truth is that of the box the voxels make up
            counts = [int(round(n * big / s)) for s in spacing]
            sides = np.array(counts) * np.array(spacing)
            mask = np.zeros(tuple(c + 6 for c in counts), bool)
            mask[tuple(slice(3, 3 + c) for c in counts)] = True
            volume = float(np.prod(sides))
            area = 2 * (sides[0] * sides[1] + sides[1] * sides[2] + sides[0] * sides[2])
            yield "cube (aligned), side 8 voxels" if n == 8 else "cube (aligned), side 12-40 voxels", mask, spacing, {
                "volume": volume, "area": area, "sphericity": np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area,
                "feret": float(np.linalg.norm(sides)), "feret_min": float(sides.min())}
        for _ in range(2 if quick else 4):
            side = rng.uniform(10, 25) * big
            rot = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
            yield "cube (rotated)", box([side] * 3, spacing, rot, rng.uniform(-.5, .5, 3)), spacing, {
                "volume": side**3, "area": 6 * side**2, "sphericity": (np.pi / 6) ** (1 / 3),
                "feret": side * np.sqrt(3), "feret_min": side}
            radius, height = rng.uniform(5, 12) * big, rng.uniform(8, 25) * big
            yield "cylinder (rotated)", cylinder(radius, height, spacing, rot, rng.uniform(-.5, .5, 3)), spacing, {
                "volume": np.pi * radius**2 * height, "area": 2 * np.pi * radius * (radius + height),
                "feret": np.hypot(2 * radius, height), "feret_min": min(2 * radius, height)}
            thin = 3 * big
            sides = np.array([thin, 20 * big, 16 * big])
            mask = np.zeros(tuple(int(round(s / sp)) + 6 for s, sp in zip(sides, spacing)), bool)
            mask[tuple(slice(3, 3 + int(round(s / sp))) for s, sp in zip(sides, spacing))] = True
            yield "plate 3 voxels thick", mask, spacing, {
                "volume": np.prod(sides), "area": 2 * (sides[0] * sides[1] + sides[1] * sides[2] + sides[0] * sides[2])}


def plain_marching_cubes(mask, spacing, sigma):
    m = np.pad(mask, 4).astype(np.float32)
    if sigma:
        m = ndi.gaussian_filter(m, sigma)
    vertices, faces, _, _ = marching_cubes(m, 0.5, spacing=spacing)
    return mesh_surface_area(vertices, faces)


def feret_min_shapes():
    """Yield (shape, spacing, labels, true minimum Feret diameter in mm): fixed sizes, rotations and offsets."""
    for spacing in SPACINGS:
        big = max(spacing)
        for counts in ((6, 9, 12), (14, 10, 20), (30, 24, 8)):
            # aligned: a whole number of voxels per axis; the truth is the box the voxels make up
            yield f"box {counts} voxels, aligned", spacing, aligned_box_labels(counts), float(
                min(np.asarray(counts) * np.asarray(spacing)))
        for sides, seed in (((10, 16, 22), 1), ((14, 14, 24), 2), ((20, 12, 30), 3)):
            sides_mm = np.asarray(sides, float) * big
            yield f"box {sides}, rotated", spacing, rotated_box_labels(
                sides_mm, spacing, rotation(seed), (0.2, -0.3, 0.1)), float(sides_mm.min())
        for semi, seed in (((6, 9, 12), 11), ((8, 8, 15), 12), ((10, 14, 16), 13)):
            semi_mm = np.asarray(semi, float) * big
            yield f"ellipsoid semi-axes {semi}, rotated", spacing, ellipsoid_labels(
                semi_mm, spacing, rotation=rotation(seed), offset_vox=(0.3, 0.1, -0.2)), 2 * float(semi_mm.min())
        for radius in (6, 12):
            yield f"ball radius {radius}", spacing, ellipsoid_labels(
                [radius * big] * 3, spacing, offset_vox=(0.3, 0.1, -0.2)), 2.0 * radius * big
        for radius, height, seed in ((6, 24, 21), (14, 18, 22), (10, 9, 23)):
            yield f"cylinder r {radius}, h {height}, rotated", spacing, cylinder_labels(
                radius * big, height * big, spacing, rotation(seed), (-0.1, 0.25, 0.4)), float(
                min(2 * radius, height) * big)


def print_feret_min_table():
    """One row per shape of :func:`feret_min_shapes`: true and measured minimum Feret diameter, error."""
    print("Sizes in voxels of the coarsest axis; every length in mm.\n")
    print("| shape | spacing (mm) | true | measured | error % | Feret ratio |")
    print("|---|---|---:|---:|---:|---:|")
    errors = defaultdict(list)
    for kind, spacing, labels, truth in feret_min_shapes():
        row = measure(labels, spacing=spacing, progress=False).iloc[0]
        error = 100 * (row.feret_min_mm / truth - 1)
        errors[kind.split()[0] + (", rotated" if "rotated" in kind else "")].append(error)
        print(f"| {kind} | {tuple(spacing)} | {truth:.2f} | {row.feret_min_mm:.2f} | {error:+.1f} | "
              f"{row.feret_ratio:.3f} |")
    print("\n| shape | n | min % | mean % | max % |")
    print("|---|---:|---:|---:|---:|")
    for kind, values in errors.items():
        v = np.asarray(values)
        print(f"| {kind} | {len(v)} | {v.min():+.1f} | {v.mean():+.1f} | {v.max():+.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--feret-min", action="store_true", help="the minimum Feret table, shape by shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.feret_min:
        print_feret_min_table()
        return
    rng = np.random.default_rng(args.seed)
    errors = defaultdict(lambda: defaultdict(list))
    start = time.perf_counter()
    count = 0
    for kind, mask, spacing, truth in shapes(rng, args.quick):
        count += 1
        row = measure(mask.astype(np.uint32), spacing=spacing, progress=False).iloc[0]
        e = errors[kind]
        e["volume"].append(row.volume_mm3 / truth["volume"] - 1)
        e["surface area"].append(row.surface_area_mm2 / truth["area"] - 1)
        if "sphericity" in truth:
            e["sphericity"].append(row.sphericity / truth["sphericity"] - 1)
        if "axes" in truth:
            measured = [row.axis_major_mm, row.axis_intermediate_mm, row.axis_minor_mm]
            e["axes"].extend(m / t - 1 for m, t in zip(measured, truth["axes"]))
        if "feret" in truth:
            e["Feret max"].append(row.feret_max_mm / truth["feret"] - 1)
        if "feret_min" in truth:
            e["Feret min"].append(row.feret_min_mm / truth["feret_min"] - 1)
        for sigma, name in ((0, "area, MC on binary mask"), (1.0, "area, MC gaussian sigma 1")):
            e[name].append(plain_marching_cubes(mask, spacing, sigma) / truth["area"] - 1)
    print(f"{count} shapes, spacings {SPACINGS}, seed {args.seed}, {time.perf_counter() - start:.1f} s\n")
    print("| shape | measurement | n | min % | mean % | max % |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, per in errors.items():
        for name, values in per.items():
            v = 100 * np.asarray(values)
            print(f"| {kind} | {name} | {len(v)} | {v.min():+.1f} | {v.mean():+.1f} | {v.max():+.1f} |")


if __name__ == "__main__":
    main()
