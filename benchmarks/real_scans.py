"""Scans as users bring them (issue 15): grain polarity and the sample region, with the shipped model.

Three cases, each against its exact ground truth, in one run:

1. The bundled sample, as it is and with its grey values turned round (dark grains in a bright
   matrix), segmented with ``grains="darker"`` and ``grains="auto"``: F1 against the original run.
2. A phantom in a holder: a glass tube (wall brighter than the epoxy) around the epoxy cylinder,
   with air around it, all in view: the particles found in the wall or the air, with and without
   ``mask="auto"``.
3. A concrete-like phantom: dark aggregates packed in a bright matrix, in a tube, in air (neutron CT
   of concrete): ``grains="brighter"`` (what the toolkit did before), and ``grains="auto"`` with
   ``mask="auto"``.

Writes docs/real_scans.md (the table) and prints it.

Run: python benchmarks/real_scans.py  (~5 minutes on 2 CPU cores)
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ps3d_toolkit.analysis.evaluate import evaluate_instances
from ps3d_toolkit.data import load_sample
from ps3d_toolkit.data.synthetic import generate_scan, holder_inside
from ps3d_toolkit.segmentation import segment
from ps3d_toolkit.segmentation.polarity import grain_polarity
from ps3d_toolkit.segmentation.sample_mask import sample_mask

DOCS = Path(__file__).resolve().parents[1] / "docs" / "real_scans.md"


GUIDE = """\
## Which way round are the grains? (`grains=`, `--grains`)

Every method looks for grains brighter than their matrix: X-ray CT of minerals in epoxy. In neutron
CT of concrete the aggregates are dark in bright cement, and light minerals in a heavy matrix or
pores are darker than what surrounds them. `segment(..., grains="darker")` (`ps3d segment
--grains darker`, the tuner's `grains` menu) turns the grey values round (`-value`) before any
method sees them, lazily, block by block for large scans; the labels are those of a scan whose
grains are bright.

`grains="auto"` decides from the scan (`ps3d_toolkit.segmentation.polarity.grain_polarity`), inside
the sample region when there is one: a sample of at most ~3 M voxels is cut in two phases at its
Otsu threshold, and

- the grain phase falls apart into many separate pieces, while the matrix stays one piece;
- an opening with a 2-voxel ball removes less of the grain phase per interface area than of a
  matrix, whose thin gaps and cusped pockets between touching grains vanish;

so it works for dilute grains (the pieces tell) and dense packings (the opening tells), whichever
phase is the larger. It says what it chose and why (`ps3d segment` prints it, and records it beside
the labels; the report names it), and it **refuses to guess** (an error that says to pass
`--grains brighter` or `--grains darker`) when the scan has no grain contrast, when the phases are
not grains in a matrix (flat layers, smoothed noise), or when its score is under 0.1. Grains merged
at their contacts into one mass score weakly; grains under ~8 voxels across in the analysed grid
(pass the particle size) weaken both signs.

## Where is the sample? (`roi=`, `mask=`, `--roi`, `--mask`)

- `--roi z0:z1,y0:y1,x0:x1` segments only that box. It runs over the blocks that cover the box with
  the whole scan's statistics and network windows, so its labels are those of a run on the whole
  scan cut to the box (F1 1.000 against the crop of the whole run, model and Otsu, in the tests).
- `--mask FILE` (nonzero = sample) or `mask=array`: voxels outside read as background (the
  matrix's grey value: the median of the values inside below their Otsu threshold) and are labelled 0.
- `--mask auto` (`ps3d_toolkit.segmentation.sample_mask.sample_mask`) finds the inside of the holder
  — a cylinder along z (the rotation axis) or a box — without its wall and without the air around
  it: on block means of the scan (at most 128 x 256 x 256, read slab by slab), the outside air is
  the dark plateau connected to the field's side; the wall is the first flat, homogeneous layer by
  depth from the outside whose grey value is not the sample's; the mask starts half a voxel inside
  its inner edge. It does not assume the grains' polarity (air is the darkest material in X-ray and
  neutron CT alike). When no outside air is found, the sample fills the field and the mask is all of
  it (and says so). Not found: a wall as dense as the matrix (kept inside; it holds no grains), walls
  thinner than ~3 voxels of the reduced grid, the holder's bottom along z.

Particles that the region or the scan's border cut are flagged (`touches_border`) and left out of
the statistics; the report and `ps3d report` say how many ("cut by the scan border or the sample
region"). `ps3d measure` and `ps3d report` take the same `--roi`/`--mask`, and without them use the
region `ps3d segment` recorded beside the labels (`<labels>.ps3d.json`). The viewer
(`SliceViewer(sample_region=)`) and the report's slices draw the region's edge in blue.

"""


def turned_round(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    return image.max() + image.min() - image


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def outside_particles(labels, inside) -> int:
    """Particles with any voxel outside the holder's inside (in its wall or the air)."""
    return int(np.unique(labels[(labels > 0) & ~inside]).size)


def holder_phantom(seed: int = 5):
    return generate_scan((96, 160, 160), mean_diameter_vox=14, seed=seed, preset="medium",
                         cylinder_radius_fraction=0.40, wall_thickness_vox=6, wall_value=3.0)


def concrete_phantom(seed: int = 7):
    """Dark aggregates densely packed in a bright matrix, in a tube, in air (the labels of a dense phantom)."""
    base = generate_scan((96, 160, 160), mean_diameter_vox=14, seed=seed, preset="easy", packing=0.55,
                         cylinder_radius_fraction=0.40, wall_thickness_vox=6, wall_value=0.6)
    rng = np.random.default_rng(seed)
    inside = holder_inside(base.image.shape, base.params)
    radial = ndimage.distance_transform_edt(~inside[0])
    wall = (radial > 0) & (radial <= 6)
    image = np.zeros(base.image.shape, np.float32)            # air
    image[:, wall] = 0.5                                       # the tube
    image[inside] = 1.0                                        # cement
    image[base.labels > 0] = 0.45                              # aggregates, darker than the cement
    image = ndimage.gaussian_filter(image, 0.8)
    image += rng.normal(0.0, 0.06, image.shape).astype(np.float32)
    return base, image * 3000 + 500


def main() -> None:
    rows = []
    kw = dict(method="model", progress=False)

    # 1. the bundled sample, turned round
    sample, truth = load_sample()
    original, t0 = timed(segment, sample.image, spacing=sample.spacing, particle_size_mm=sample.particle_size_mm,
                         **kw)
    inverted = turned_round(sample.image)
    decision = grain_polarity(inverted)
    for grains in ("darker", "auto"):
        labels, seconds = timed(segment, inverted, spacing=sample.spacing, particle_size_mm=sample.particle_size_mm,
                                grains=grains, **kw)
        rows.append(("bundled sample, grey values turned round", f'grains="{grains}"',
                     evaluate_instances(labels, original)["f1_50"], evaluate_instances(truth, labels)["f1_50"],
                     int(labels.max()), "", seconds))
    rows.insert(0, ("bundled sample, as it is", 'grains="brighter" (default)', 1.0,
                    evaluate_instances(truth, original)["f1_50"], int(original.max()), "", t0))

    # 2. a phantom in a glass tube, with air around
    scan = holder_phantom()
    inside = holder_inside(scan.image.shape, scan.params)
    found_mask, mask_seconds = timed(sample_mask, scan.image, spacing=scan.spacing)
    mask = found_mask.full()
    iou = float((mask & inside).sum() / (mask | inside).sum())
    for name, options in (("none", {}), ('mask="auto"', {"mask": "auto"}),
                          ("Otsu + watershed, none", {"method": "otsu-watershed"}),
                          ('Otsu + watershed, mask="auto"', {"method": "otsu-watershed", "mask": "auto"})):
        labels, seconds = timed(segment, scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                                **{**kw, **options})
        rows.append(("phantom in a glass tube (wall and air in view)", name, "",
                     evaluate_instances(scan.labels, labels)["f1_50"], int(labels.max()),
                     outside_particles(labels, inside), seconds))

    # 3. concrete-like: dark aggregates in bright cement, in a tube, in air
    base, image = concrete_phantom()
    inside = holder_inside(image.shape, base.params)
    concrete_decision = grain_polarity(image, mask=sample_mask(image, spacing=base.spacing).full())
    for name, options in (('grains="brighter" (the old behaviour)', {}),
                          ('grains="darker", mask="auto"', {"grains": "darker", "mask": "auto"}),
                          ('grains="auto", mask="auto"', {"grains": "auto", "mask": "auto"})):
        labels, seconds = timed(segment, image, spacing=base.spacing, particle_size_mm=base.particle_size_mm,
                                **options, **kw)
        rows.append(("concrete-like: dark aggregates (55 % packing) in bright cement, tube, air", name, "",
                     evaluate_instances(base.labels, labels)["f1_50"], int(labels.max()),
                     outside_particles(labels, inside), seconds))

    def cell(value):
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = [
        "# Scans as users bring them: grain polarity and the sample region",
        "",
        *GUIDE.splitlines(),
        "## Measured",
        "",
        "`benchmarks/real_scans.py`, the shipped model (`method=\"model\"`), the particle size given; "
        "F1 at IoU 0.5. Each phantom's ground truth is exact.",
        "",
        "| scan | setting | F1 vs the original run | F1 vs truth | particles | particles in wall or air | s |",
        "|---|---|---:|---:|---:|---:|---:|",
        *(f"| {' | '.join(cell(v) for v in row[:-1])} | {row[-1]:.1f} |" for row in rows),
        "",
        f"- Automatic polarity on the turned-round sample: **{decision.grains}** ({decision.reason}).",
        f"- Automatic polarity on the concrete-like phantom inside its automatic mask: "
        f"**{concrete_decision.grains}** ({concrete_decision.reason}).",
        f"- Automatic sample mask of the tube phantom: {found_mask}; IoU with the true inside "
        f"{iou:.3f}; {mask_seconds:.2f} s.",
        "- Reading the table: on the tube phantom the model alone already keeps the wall and the air apart "
        "from the grains but finds a few particles there; the mask removes them, at a small cost in F1 on "
        "the grains at the wall (the sample seen through the mask ends at a cut face). Otsu + watershed, "
        "whose threshold the bright wall takes, gains most. On the concrete-like phantom the toolkit's "
        "default (bright grains) finds the cement, not one aggregate; turned round inside the mask it "
        "finds the aggregates, and auto chooses so by itself.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        "times are wall-clock on a shared machine.",
        "",
    ]
    text = "\n".join(lines)
    DOCS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
