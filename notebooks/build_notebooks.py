"""Write the tutorial notebooks (without outputs) from the cell texts below.

Edit the text here, then run ``python notebooks/build_notebooks.py``; the
``.ipynb`` files are generated, so that diffs stay readable and every notebook
shares the same set-up. ``tests/test_notebooks.py`` runs each one top to
bottom on the bundled sample.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


def setup(*, sample: bool = True):
    """The first code cell of a tutorial: imports, its temporary folder, figures that a saved notebook
    still shows on GitHub, and (unless ``sample=False``) the bundled sample."""
    imports = "\nfrom ps3d_toolkit.data import load_sample" if sample else ""
    load = SAMPLE if sample else 'print(f"files go to {workdir}")'
    return code(SETUP_TEXT.replace("{imports}", imports).replace("{load}", load))


SETUP_TEXT = """
import time
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
{imports}
from ps3d_toolkit.viz.notebook import static_figure_fallbacks

notebook_start = time.perf_counter()
# Everything this notebook writes goes into a fresh ps3d_tutorial_* folder in the system's temporary
# folder; the last cell deletes it. Set workdir to a folder of your own to keep the files.
workdir = Path(tempfile.mkdtemp(prefix="ps3d_tutorial_"))
# Each figure is also kept as a JPEG, which a saved notebook shows where no JavaScript runs (GitHub).
static_figure_fallbacks()
{load}
"""
SAMPLE = """scan, truth = load_sample()
print(f"scan {scan.name!r}: {' x '.join(map(str, scan.shape))} voxels of {scan.dtype}, "
      f"voxel size {scan.spacing[0]} mm; files go to {workdir}")"""

SETUP = setup()

#: The last code cell of every tutorial: its temporary folder goes (tests/test_notebooks.py checks that it has).
CLEAN_UP = [
    md("""
## Clean up

The files this notebook wrote are in `workdir`, the `ps3d_tutorial_*` folder printed at the top (in
your system's temporary folder). This removes it; skip the cell to keep them.
"""),
    code("""
import shutil

shutil.rmtree(workdir)
print(f"removed {workdir}; the notebook ran for {time.perf_counter() - notebook_start:.0f} s")
"""),
]

# --------------------------------------------------------------------------- 01
NB01 = [
    md("""
# 1 · Load and explore a scan

This first tutorial opens a micro-CT scan and looks at it from every side. You will learn

* what a scan is for ps3d_toolkit: a 3D grey-value volume with a **voxel size in millimetres**,
* how to read your own scans (TIFF stacks, zarr, NIfTI, npy),
* how to browse it with the interactive **slice viewer** (three orthogonal planes, contrast window,
  particle overlay, click a grain),
* how to look at single grains in **3D**.

Everything runs on the small sample that ships with the toolkit: a 128³ synthetic scan of mineral
grains in an epoxy cylinder, with the exact answer (every grain's label) known, so that later
tutorials can score themselves.
"""),
    SETUP,
    md("""
`load_sample()` returns a `Scan` (the grey values `scan.image` plus their metadata: `scan.spacing`,
`scan.particle_size_mm`, `scan.name`) and the ground-truth label image. With your own data you would write

```python
from ps3d_toolkit.io import load_scan
scan = load_scan("my_scan.tif", spacing=0.01)            # spacing in mm, (z, y, x) or one number
scan = load_scan("slices_folder/")                       # a folder of 2D TIFF slices
scan = load_scan("big_scan.zarr")                        # read lazily, chunk by chunk
```

Arrays are always ordered **(z, y, x)**. The spacing travels with the scan and every measurement
later comes out in millimetres.
"""),
    code("""
z, y, x = scan.shape
size_mm = [n * s for n, s in zip(scan.shape, scan.spacing)]
print(f"{z} x {y} x {x} voxels of {scan.dtype}, voxel size {scan.spacing} mm")
print(f"field of view {size_mm[0]:.2f} x {size_mm[1]:.2f} x {size_mm[2]:.2f} mm, "
      f"{scan.image.nbytes / 1e6:.1f} MB in memory")
print(f"mean particle diameter stored with the scan: {scan.particle_size_mm:.3f} mm "
      f"= {scan.particle_size_mm / scan.spacing[0]:.1f} voxels")
"""),
    md("""
## The grey-value histogram

A scan of grains in epoxy holds three kinds of material: **air** around the sample (darkest),
**epoxy** (middle) and the **grains** (brightest; minerals of different density give different
grey levels). The histogram shows them as peaks; every segmentation method starts by telling them
apart.
"""),
    code("""
counts, edges = np.histogram(scan.image[::2, ::2, ::2], bins=128)
centres = (edges[:-1] + edges[1:]) / 2
fig = go.Figure(go.Bar(x=centres, y=counts, marker_color="#4c78a8"))
fig.update_layout(title="grey values (every 8th voxel)", xaxis_title="grey value",
                  yaxis_title="voxels", yaxis_type="log", height=320, bargap=0)
fig
"""),
    md("""
## The slice viewer

`SliceViewer` shows three orthogonal planes through one voxel: the **z** plane (y across, x along),
the **y** plane and the **x** plane, all to scale in mm.

* the **z / y / x sliders** move the planes;
* **contrast** sets which grey values map to black and white (narrow it to see faint differences
  between mineral phases);
* with a label image, **overlay** sets how strongly particles are coloured (each particle keeps its
  colour everywhere) and **outlines** draws their boundaries;
* **click** a grain in any plane: the other planes jump there and the text below names the
  particle (and, with a particle table, shows its measurements — see tutorial 3).

Here the overlay is the ground truth.
"""),
    code("""
from ps3d_toolkit.viz import SliceViewer

viewer = SliceViewer(scan.image, truth, spacing=scan.spacing, opacity=0.35)
viewer
"""),
    md("""
Every control calls a plain method, so you can drive the viewer from code too; this is exactly what
a click on the pixel in row 64, column 64 of the z plane does:
"""),
    code("""
label = viewer.click("z", 64, 64)
print(f"clicked particle {label}; the planes now go through voxel {viewer.position}")
viewer.set_highlight([label])
"""),
    md("""
## The label image

A segmentation (and this ground truth) is a **label image**: same shape as the scan, `uint32`,
0 for background and one id per particle. A few numbers straight from it:
"""),
    code("""
voxels = np.bincount(truth.ravel())[1:]
voxels = voxels[voxels > 0]
eq_diameter_mm = np.cbrt(6 * voxels * np.prod(scan.spacing) / np.pi)
print(f"{voxels.size} particles; equivalent diameter {eq_diameter_mm.min():.3f} to "
      f"{eq_diameter_mm.max():.3f} mm, median {np.median(eq_diameter_mm):.3f} mm")
print(f"particles fill {100 * np.count_nonzero(truth) / truth.size:.1f} % of the volume")
"""),
    md("""
## Grains in 3D

`fig_particles_3d` draws the surface of one or a few particles (marching cubes, in mm, same colours
as in the viewer). Drag to rotate, scroll to zoom. Here: the three largest grains and the one you
clicked.
"""),
    code("""
from ps3d_toolkit.viz import fig_particles_3d

largest = np.argsort(np.bincount(truth.ravel())[1:])[::-1][:3] + 1
fig_particles_3d(truth, [*largest, label], spacing=scan.spacing, opacity=0.9)
"""),
    *CLEAN_UP,
    md("""
**Next:** tutorial 2 finds the particles without being told: segmentation.
"""),
]

# --------------------------------------------------------------------------- 02
NB02 = [
    md("""
# 2 · Segment the particles

Segmentation turns the grey values into a label image: one id per particle. ps3d_toolkit has one
entry point, `segment()`, and three methods behind it:

| method | what it does |
|---|---|
| `"model"` | the border-core 3D U-Net (ParticleSeg3D's method): predicts particle *cores* and *borders*, so touching grains stay apart. Default when its weights ship with the package. |
| `"otsu-watershed"` | the classic pipeline: Otsu threshold, distance transform, watershed. |
| `"snow"` | porespy's SNOW partitioning of the same thresholded grains (needs the optional extra `classic`: `pip install "ps3d_toolkit[classic]"`). |

The model runs on a **GPU when one is present** (CUDA or Apple MPS, with mixed precision) and on
the CPU otherwise; this notebook times each method so you know what to expect on your machine.
"""),
    SETUP,
    code("""
import torch

from ps3d_toolkit.segmentation import available_methods, default_method
from ps3d_toolkit.segmentation.model import weights_available

device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
print(f"torch {torch.__version__}, running on: {device}"
      + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else f", {torch.get_num_threads()} CPU threads"))
print(f"model weights shipped: {weights_available()}; default method: {default_method()!r}")
"""),
    md("""
## The particle size

Every method needs a rough **mean particle diameter** (in mm): the model rescales the scan so that
grains have the size it was trained on, the watershed uses it to space its seeds. The sample stores
it; for a scan without it, `estimate_particle_size` finds it from the distance map and says how sure
it is (a relative spread above ~0.6 means: check it).
"""),
    code("""
from ps3d_toolkit.segmentation import estimate_particle_size

estimate = estimate_particle_size(scan.image, spacing=scan.spacing)
print(estimate)
print(f"stored with the scan: {scan.particle_size_mm:.4g} mm")
"""),
    md("""
## Segment with the default method

One call; the timing includes everything (normalisation, inference, turning predictions into
particles). `segment()` shows progress bars by default, as `ps3d segment` does in a terminal; the
tutorials pass `progress=False` to keep their outputs short.
"""),
    code("""
from ps3d_toolkit.segmentation import segment

method = default_method()
options = {"device": device} if method == "model" else {}
start = time.perf_counter()
labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                 method=method, progress=False, **options)
seconds = time.perf_counter() - start
print(f"{method}: {labels.max()} particles in {seconds:.1f} s "
      f"({scan.image.size / seconds / 1e6:.2f} million voxels per second on {device})")
"""),
    md("""
## How good is it? Compare the methods

Because the sample is synthetic we know the right answer. `evaluate_instances` matches predicted to
true particles and reports the **instance F1** at IoU > 0.5 and > 0.75 (a particle counts as found
when it overlaps its true self by more than half / three quarters) and the **panoptic quality** PQ.
We run every available method on the same scan.
"""),
    code("""
from ps3d_toolkit.analysis import evaluate_instances

methods = available_methods()          # the model when its weights ship, SNOW when porespy is installed
results, times, rows = {method: labels}, {method: seconds}, []   # the default method ran above
for name in methods:
    if name not in results:
        opts = {"device": device} if name == "model" else {}
        start = time.perf_counter()
        results[name] = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                                method=name, progress=False, **opts)
        times[name] = time.perf_counter() - start
    scores = evaluate_instances(truth, results[name])
    rows.append({"method": name, "seconds": round(times[name], 2), "particles": int(results[name].max()),
                 "true particles": int(truth.max()), "F1@0.5": scores["f1_50"], "F1@0.75": scores["f1_75"],
                 "PQ": scores["pq"]})
comparison = pd.DataFrame(rows).set_index("method")
best = comparison["F1@0.5"].idxmax()
comparison.style.format(precision=3)
"""),
    md("""
## Save the labels

Here we keep the labels of the best method. Label images are written atomically (a crash never leaves a half-written file) in the format the
extension names; the spacing goes with them. The same from a terminal:

```
ps3d segment my_scan.tif --spacing 0.01 --particle-size 0.17 --output labels.tif
```
"""),
    code("""
from ps3d_toolkit.io import load_labels, save_labels

path = save_labels(results[best], workdir / "labels.tif", spacing=scan.spacing)
print(path, path.stat().st_size // 1024, "KiB;", "reads back identical:",
      np.array_equal(load_labels(path), results[best]))
"""),
    md("""
## Look at the result

Same viewer as in tutorial 1, now with the segmentation of the best method. Narrow the contrast
window and switch on **outlines** to judge the boundaries; click a grain that looks wrongly split or
merged to get its id.
"""),
    code("""
from ps3d_toolkit.viz import SliceViewer

print(f"showing {best}")
SliceViewer(scan.image, results[best], spacing=scan.spacing, outline=True)
"""),
    md("""
## Dark grains, a holder, a region

Every method looks for grains **brighter** than their matrix, as in X-ray CT of minerals in epoxy. In
neutron CT of concrete, or for light minerals in a heavy matrix, the grains are **darker**: pass
`grains="darker"`, or `grains="auto"` to let the scan decide (it says why, and refuses when it cannot
tell). `mask="auto"` keeps the inside of the sample holder, without its wall and the air around it;
`roi="z0:z1,y0:y1,x0:x1"` a box. Here the sample with its grey values turned round:
"""),
    code("""
from ps3d_toolkit.segmentation import grain_polarity
from ps3d_toolkit.segmentation.sample_mask import sample_mask

dark = scan.image.max() + scan.image.min() - scan.image.astype(np.float32)   # dark grains, bright matrix
print(grain_polarity(dark))
holder = sample_mask(dark, spacing=scan.spacing)
print(holder)
found = segment(dark, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, method="otsu-watershed",
                grains="auto", mask="auto", progress=False)
print(f"{found.max()} particles; F1@0.5 against the truth {evaluate_instances(truth, found)['f1_50']:.3f}")
SliceViewer(dark, found, spacing=scan.spacing, outline=True, sample_region=holder.full())
"""),
    md("""
The blue line is the edge of the sample mask. From a terminal: `ps3d segment scan.tif --grains auto
--mask auto --output labels.tif`; `ps3d report` then leaves out the grains the mask cuts.
"""),
    md("""
**On a GPU**, pass `device="cuda"` (the default `"auto"` picks it); the sliding-window inference then
runs in mixed precision and, by default (`tta="auto"`), averages over the 8 mirrored copies of
the scan (test-time augmentation: +0.006 F1@0.5 on our development scans, +0.2 s on a GPU; on a
CPU it is off unless you pass `tta=True`). **Large scans** (several GB) are read lazily from zarr.
"""),
    *CLEAN_UP,
    md("""
**Next:** tutorial 3 measures every particle.
"""),
]

# --------------------------------------------------------------------------- 03
NB03 = [
    md("""
# 3 · Measure particles and explore their shapes

Once every grain has its label, `measure()` computes one table row per particle: size, shape,
position, grey levels and mineral-phase composition, all in physical units. This tutorial

* builds the particle table and explains its columns,
* draws the **size distribution** (number- and volume-weighted, d10/d50/d90) and **shape
  distributions** (sphericity, Zingg diagram),
* links a scatter plot to the scan: **select grains in the plot, see them in the scan and in 3D**.
"""),
    SETUP,
    code("""
from ps3d_toolkit.segmentation import segment

labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, progress=False)
print(f"{labels.max()} particles")
"""),
    md("""
## Mineral phases

The grains of this sample are made of two minerals of different density. `propose_phase_thresholds`
splits the grey values of the particle voxels into phases (multi-level Otsu) and returns
`{name: (low, high)}` grey-value intervals; `measure` then reports each particle's **phase
fractions** and its **liberation class** with respect to the phase of interest. Name the phases
after your minerals.
"""),
    code("""
from ps3d_toolkit.measurement import measure, propose_phase_thresholds

phases = propose_phase_thresholds(scan.image, labels, n_phases=2, names=["light", "dense"])
pd.DataFrame(phases, index=["grey value from", "to"]).T.round(1)
"""),
    code("""
table = measure(labels, scan.image, spacing=scan.spacing, phases=phases, liberation_phase="dense")
print(f"{len(table)} particles x {table.shape[1]} columns")
table.head()
"""),
    md("""
The main columns:

* `volume_mm3`, `eq_diameter_mm` (diameter of the sphere of equal volume), `surface_area_mm2`
  (marching cubes), `sphericity` (Wadell: 1 for a ball, ~0.81 for a cube);
* `axis_major_mm`, `axis_intermediate_mm`, `axis_minor_mm` (from the inertia tensor), `elongation`
  = intermediate / major and `flatness` = minor / intermediate (Zingg ratios), `feret_max_mm`;
* `centroid_*`, `bbox_*` (position), `touches_border` (cut by the field of view: its size is
  unreliable);
* grey-level statistics, `phase_fraction_*` and the liberation class (`liberation_*`).

Save it as CSV or Parquet for your own analysis:
"""),
    code("""
from ps3d_toolkit.io import save_table

print(save_table(table, workdir / "particles.csv"))
table[["eq_diameter_mm", "sphericity", "elongation", "flatness", "feret_max_mm"]].describe().round(3)
"""),
    md("""
## Size distribution

The particle-size distribution (PSD) as a histogram and as cumulative curves. *Number-weighted*
counts every grain once; *volume-weighted* (what a sieve analysis gives) weights each grain by its
volume. d10 / d50 / d90 are the sizes below which 10 / 50 / 90 % lie. The statistics leave out the
grains cut by the edge of the scan (`touches_border`: their sizes are too small) unless you pass
`include_cut=True`.
"""),
    code("""
from ps3d_toolkit.analysis import stats
from ps3d_toolkit.viz import figures

pd.DataFrame({weight: stats.percentiles(table, weight=weight) for weight in ("number", "volume")})
"""),
    code("""
figures.fig_size_histogram(table)
"""),
    code("""
figures.fig_cumulative_psd(table)
"""),
    md("""
## Shape distributions

Sphericity against size shows whether small grains are shaped differently from large ones (crushing
often makes fines flakier). The **Zingg diagram** plots flatness against elongation: its four
quadrants are spheres/cubes (top right), rods, discs and blades.
"""),
    code("""
figures.fig_sphericity_vs_size(table)
"""),
    code("""
figures.fig_zingg(table)
"""),
    md("""
## Select grains in a plot, see them in the scan

`LinkedExplorer` puts a scatter of the table above the slice viewer. **Drag a box or a lasso** over
some points: those grains are highlighted in yellow in the scan, the viewer jumps to the largest
one, and **show in 3D** draws them. Clicking a grain in the viewer shows its row of the table.

The scatter can be any figure whose points carry particle labels: here the sphericity-against-size
plot from above; `figure=figures.fig_zingg(table)` links the Zingg diagram instead, and without
`figure` you get any two columns (`x=`, `y=`).
"""),
    code("""
from ps3d_toolkit.viz import LinkedExplorer

explorer = LinkedExplorer(scan.image, labels, table, figure=figures.fig_sphericity_vs_size(table))
explorer
"""),
    md("""
A selection can also come from code: here, the five least spherical grains that are not cut by the
edge of the scan (often two grains wrongly merged into one — worth a look).
"""),
    code("""
odd = table[~table["touches_border"]].nsmallest(5, "sphericity")
explorer.select(odd["label"])
print(f"selected {[int(label) for label in explorer.selected]}; "
      f"viewer at voxel {tuple(int(i) for i in explorer.viewer.position)}")
explorer.fig_selection_3d()
"""),
    *CLEAN_UP,
    md("""
**Next:** tutorial 4 tunes the segmentation parameters; tutorial 6 writes all of this into a report.
"""),
]

# --------------------------------------------------------------------------- 04
NB04 = [
    md("""
# 4 · Tune the segmentation parameters

The defaults work for typical scans, but a new material (very irregular grains, a wide size range,
low contrast) may need other settings. `SegmentationTuner` makes this quick: sliders for the
parameters that matter, and a **live preview** on a slab of the scan a few particles thick, with the
particle count, the size distribution and — when you have a ground truth for a small region — the
F1 score. When you are happy, copy the settings out as Python or as a command line.

The parameters:

* **particle_size_mm** — the mean particle diameter: the most important one. Too small splits grains,
  too large merges neighbours.
* **min_particle_fraction** — particles smaller than this fraction of the mean volume are dropped
  (debris, noise).
* **n_classes** (classic methods) — how many grey-level classes the Otsu threshold finds (the
  threshold between epoxy and grain); *auto* adapts to one or two mineral phases.
* **min_distance_fraction** (otsu-watershed) — how far apart two seeds must be, as a fraction of the
  mean radius: lower splits more, higher merges more.
* **sigma** (snow) — smoothing of the distance map before the peak search.
* **core_threshold**, **min_core_voxels**, **overlap**, **tta** (model) — the core probability
  above which a voxel seeds a particle (higher splits touching grains, lower keeps small ones), the
  smallest predicted core that seeds a particle, the overlap of the sliding windows and test-time
  mirroring.
"""),
    SETUP,
    code("""
from ps3d_toolkit.viz import SegmentationTuner

tuner = SegmentationTuner(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                          truth=truth)
tuner.update()          # a first preview with the default settings
tuner
"""),
    md("""
## What a slider does

Each slider calls `tuner.update(name=value)`, which segments the preview region again and returns
the numbers shown under the preview. So a small parameter study is a loop: here the seed spacing of
the watershed against the F1 score on the preview.
"""),
    code("""
rows = []
for fraction in [0.3, 0.6, 0.9, 1.2]:
    result = tuner.update(method="otsu-watershed", min_distance_fraction=fraction)
    rows.append({"min_distance_fraction": fraction, "particles": result["n_particles"],
                 "F1@0.5": result["scores"]["f1_50"], "F1@0.75": result["scores"]["f1_75"],
                 "d50_mm": result["d50_mm"]})
sweep = pd.DataFrame(rows)
fig = go.Figure([go.Scatter(x=sweep["min_distance_fraction"], y=sweep[c], mode="lines+markers", name=c)
                 for c in ["F1@0.5", "F1@0.75"]])
fig.update_layout(title="seed spacing against instance F1 (preview region)",
                  xaxis_title="min_distance_fraction", yaxis_title="F1", height=320)
fig
"""),
    md("""
The particle size matters most: a size 40 % too small or too large against the stored one.
"""),
    code("""
best = sweep.loc[sweep["F1@0.5"].idxmax(), "min_distance_fraction"]
for factor in [0.6, 1.0, 1.4]:
    result = tuner.update(min_distance_fraction=best, particle_size_mm=factor * scan.particle_size_mm)
    print(f"size x{factor}: {result['n_particles']:3d} particles, F1@0.5 {result['scores']['f1_50']:.3f}")
result = tuner.update(particle_size_mm=scan.particle_size_mm)     # back to the stored size
"""),
    md("""
## Copy the settings out

`settings()` gives the keyword arguments of `segment()`; `settings_code()` the same as code to paste
(and the command line, for the options it takes). Then segment the whole scan with them:
"""),
    code("""
print(tuner.settings_code())
"""),
    code("""
from ps3d_toolkit.analysis import evaluate_instances
from ps3d_toolkit.segmentation import segment

start = time.perf_counter()
labels = segment(scan.image, spacing=scan.spacing, progress=False, **tuner.settings())
tuned_seconds = time.perf_counter() - start
scores = evaluate_instances(truth, labels)
print(f"whole scan, tuned {tuner.settings()['method']}: {labels.max()} particles (truth {truth.max()}), "
      f"F1@0.5 {scores['f1_50']:.3f}, F1@0.75 {scores['f1_75']:.3f}")
"""),
    md("""
## Tuned classic settings against the default model

The watershed above was tuned on this very scan, with its ground truth. The fair question is whether
it beats the method you get without tuning: `segment()`'s default, the border-core model. Same scan,
same score:
"""),
    code("""
from ps3d_toolkit.segmentation import default_method

start = time.perf_counter()
default_labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                         progress=False)
default_seconds = time.perf_counter() - start
rows = []
for name, found, seconds in [(f"tuned {tuner.settings()['method']}", labels, tuned_seconds),
                             (f"default ({default_method()}, untuned)", default_labels, default_seconds)]:
    result = evaluate_instances(truth, found)
    rows.append({"segmentation": name, "seconds": seconds, "particles": int(found.max()),
                 "F1@0.5": result["f1_50"], "F1@0.75": result["f1_75"], "PQ": result["pq"]})
versus = pd.DataFrame(rows).set_index("segmentation")
best, other = versus["F1@0.5"].idxmax(), versus["F1@0.5"].idxmin()
slow, fast = versus["seconds"].idxmax(), versus["seconds"].idxmin()
print(f"{best} scores higher: F1@0.5 {versus.loc[best, 'F1@0.5']:.3f} against "
      f"{versus.loc[other, 'F1@0.5']:.3f}; {slow} took {versus.loc[slow, 'seconds'] / versus.loc[fast, 'seconds']:.1f}"
      f" times as long")
versus.style.format(precision=3)
"""),
    md("""
**Which to use when.**

* **The default model** first, for any scan of grains in epoxy: it needs no tuning (only the particle
  size, which it estimates when you do not know it) and it keeps touching grains apart by predicting
  their borders. Tune its `core_threshold` if it splits or merges grains.
* **A tuned classic method** (`otsu-watershed`, `snow`) when grains are well apart and contrast is
  high, when speed matters more than the last few per cent (many scans, a slow CPU), when you have no
  ground truth to check the model on your material — or to cross-check the model: two different
  methods that agree are more convincing than one.
* **Neither** is good enough on your material (both miss or merge grains you can see): label a few
  small regions and fine-tune the model — tutorial 5.

Tune on a region with ground truth, then score on *another* region: settings tuned and scored on the
same voxels look better than they are.
"""),
    md("""
The tuner, where you left it — move the sliders (the preview updates on every change; untick
*update on every change* for the slow model method and press *preview*):
"""),
    code("""
tuner
"""),
    *CLEAN_UP,
    md("""
**Next:** when no setting is good enough, teach the model your material: tutorial 5.
"""),
]

# --------------------------------------------------------------------------- 05
NB05 = [
    md("""
# 5 · Fine-tune the model on your own labels

The shipped model was trained on synthetic scans. When your grains look different (other shapes,
textures, contrast), label a few small scans — or correct the toolkit's own output — and
**fine-tune**: continue training from the shipped weights on your labels. A few hundred steps on a
handful of 128³ crops usually suffice; on a GPU that takes minutes.

This notebook goes through the mechanics on the bundled sample, with only **20 training steps** on
small 32³ patches, then scores the result on a second scan the training never saw. On a 2-core CPU
it runs for one to two minutes (71 to 123 s measured on a shared 2-core machine; the last cell
prints how long it took on yours): the point is the workflow, not the score. For real work keep the
default 64³ patches and train a few hundred steps or more.
"""),
    SETUP,
    md("""
## A label set

The training code reads a folder with one sub-folder per labelled scan:

```
my_labels/
    scan_a/  scan.tif   labels.tif   metadata.json   (spacing, particle_size_mm)
    scan_b/  ...
```

Any format `load_scan` reads works (`.tif`, `.zarr`, `.nii.gz`, `.npy`). Here we write the sample
with its ground truth as a one-scan label set.
"""),
    code("""
from ps3d_toolkit.io import save_labels, save_scan, write_metadata
from ps3d_toolkit.training import load_label_set

label_set = workdir / "my_labels"
(label_set / "sample").mkdir(parents=True)
save_scan(scan.image, label_set / "sample" / "scan.tif", spacing=scan.spacing,
          particle_size_mm=scan.particle_size_mm)
save_labels(truth, label_set / "sample" / "labels.tif", spacing=scan.spacing)
write_metadata(label_set / "sample" / "metadata.json", spacing=scan.spacing,
               particle_size_mm=scan.particle_size_mm)
for item in load_label_set(label_set):
    print(f"{item['name']}: {' x '.join(map(str, item['image'].shape))} voxels, "
          f"particle size {item['particle_size_mm']:.3f} mm")
"""),
    md("""
## Train

`TrainingConfig` holds every setting of a run (it is stored inside the weight file, with the command
that made it). The important ones for fine-tuning:

* `init_weights="default"` — start from the shipped model (without shipped weights this notebook
  trains from scratch, which needs thousands of steps to be useful);
* `data_dirs=[...]` — your label sets; `synthetic_fraction` — the share of synthetic scans mixed in
  (0 here: only your data; ~0.3 guards against forgetting);
* `steps`, `patch_size`, `batch_size`, `learning_rate`.

A run can be stopped and resumed: it continues from `output_dir/last.pt`. From a terminal:

```
ps3d train --data my_labels --init default --steps 300 --output runs/mine
```
"""),
    code("""
from ps3d_toolkit.segmentation.model import weights_available
from ps3d_toolkit.training import TrainingConfig, train

config = TrainingConfig(
    output_dir=str(workdir / "finetune"),
    steps=20,
    batch_size=2,
    patch_size=32,
    learning_rate=5e-4,
    init_weights="default" if weights_available() else None,
    data_dirs=[str(label_set)],
    synthetic_fraction=0.0,
    pool_size=2,
    val_every=0,
    checkpoint_every=10,
)
start = time.perf_counter()
weights = train(config)
print(f"trained {config.steps} steps in {time.perf_counter() - start:.0f} s -> {weights}")
"""),
    md("""
## The loss curve

Every step is logged to `log.jsonl` in the run folder (loss, learning rate, elapsed time, and the
validation scores when `val_every` is set).
"""),
    code("""
log = pd.read_json(workdir / "finetune" / "log.jsonl", lines=True)
fig = go.Figure(go.Scatter(x=log["step"], y=log["loss"], mode="lines+markers", name="loss"))
fig.update_layout(title="training loss (Dice + cross-entropy)", xaxis_title="step", yaxis_title="loss",
                  height=320)
fig
"""),
    md("""
## Score the fine-tuned weights on a scan they did not see

Scoring weights on the scan they were trained on says how well they *remember* it, not how well they
segment your next scan. So we score on a second scan: generated like the sample (same kind of grains,
same voxel size) but from another random seed, so that no grain of it was seen in training. Its
labels are exact, which a real held-out scan would have from your own labelling.

Pass the weight file to `segment(..., method="model", weights=...)`; from a terminal,
`ps3d segment my_scan.tif --weights runs/mine/model.pt --output labels.tif`. The shipped model is
scored too, for comparison. After only 20 steps on one scan do not expect an improvement; the
mechanics are what count here.
"""),
    code("""
from ps3d_toolkit.analysis import evaluate_instances
from ps3d_toolkit.data import generate_scan
from ps3d_toolkit.segmentation import segment

unseen = generate_scan((96, 96, 96), mean_diameter_vox=20, seed=7, preset="medium", spacing=scan.spacing[0])
print(f"unseen scan: {' x '.join(map(str, unseen.image.shape))} voxels, {unseen.labels.max()} particles")
candidates = {"fine-tuned (20 steps)": weights}
if weights_available():
    candidates["shipped model"] = None
rows, labels = [], {}
for name, path in candidates.items():
    start = time.perf_counter()
    labels[name] = segment(unseen.image, spacing=unseen.spacing, particle_size_mm=unseen.particle_size_mm,
                           method="model", weights=path, progress=False)
    scores = evaluate_instances(unseen.labels, labels[name])
    rows.append({"weights": name, "seconds": time.perf_counter() - start, "particles": int(labels[name].max()),
                 "F1@0.5": scores["f1_50"], "F1@0.75": scores["f1_75"]})
pd.DataFrame(rows).set_index("weights").style.format(precision=3)
"""),
    code("""
from ps3d_toolkit.viz import SliceViewer

SliceViewer(unseen.image, labels["fine-tuned (20 steps)"], spacing=unseen.spacing, outline=True)
"""),
    md("""
To use these weights, keep the file (it is in `workdir`, which the next cell deletes: copy it out
first) and pass `weights=` — or train longer with `val_every` set, so that the run also keeps
`best.pt`, the weights with the best validation F1.
"""),
    *CLEAN_UP,
    md("""
**Next:** tutorial 6 turns a segmentation into a mineralogy report.
"""),
]


# --------------------------------------------------------------------------- 06
NB06 = [
    md("""
# 6 · Write a mineralogy report

The last step of a study is a report a colleague can open anywhere: this tutorial segments the
sample, measures every grain with its **mineral phases**, and writes

* a **self-contained HTML report** (opens offline, figures stay interactive): summary table,
  particle-size distribution with d10/d50/d90, shape statistics and the Zingg diagram, phase
  statistics, the liberation table, example slices with the particle outlines;
* an **Excel workbook** and **CSV files** with the same tables, for your own plots.

The command line does the same in one line: `ps3d report labels.tif --image scan.tif --auto-phases 2
--output report.html --excel report.xlsx`.
"""),
    SETUP,
    md("""
## Segment and measure

`segment()` uses the shipped model (the classic pipeline if you pass `method="otsu-watershed"`).
For the phases, `propose_phase_thresholds` splits the grey levels inside the particles into classes
(multi-level Otsu on the particles' histogram); check the proposal against what you know of your
minerals and pass your own intervals where you know better.
"""),
    code("""
from ps3d_toolkit.measurement import measure, propose_phase_thresholds
from ps3d_toolkit.segmentation import segment

start = time.perf_counter()
labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, progress=False)
phases = propose_phase_thresholds(scan.image, labels, n_phases=2)
table = measure(labels, image=scan.image, spacing=scan.spacing, phases=phases)
print(f"{len(table)} particles segmented and measured in {time.perf_counter() - start:.1f} s")
pd.DataFrame(phases, index=["grey value from", "to"]).T.round(1)
"""),
    md("""
## The numbers behind the report

The summary table and the liberation table are plain DataFrames: print them, or use them in your own
document. Like the report, they leave out the grains cut by the edge of the scan and say how many.
"""),
    code("""
from ps3d_toolkit.report import liberation_table, summary_table

summary_table(table, scan=scan)
"""),
    code("""
liberation_table(table)
"""),
    md("""
## Write the report and the workbook

Both writes are atomic: an interrupted run never leaves a half-written file that looks complete.
"""),
    code("""
from ps3d_toolkit.analysis import evaluate_instances
from ps3d_toolkit.report import export_tables, write_report

report = write_report(table, workdir / "report.html", scan=scan, labels=labels,
                      metrics=evaluate_instances(truth, labels), title="Sample: mineralogy report")
workbook = export_tables(table, workdir / "report.xlsx", scan=scan)
print(report, f"{report.stat().st_size / 1e6:.1f} MB")
for path in workbook:
    print(path)
print("sheets:", ", ".join(pd.read_excel(workbook[0], sheet_name=None)))
"""),
    md("""
## Look at it

The report, embedded here (an `<iframe>` holding the whole page, inside a `<div>`: the page is not
a file JupyterLab serves, so `IPython.display.IFrame` cannot show it); open the `.html` file in
any browser to read it full size — copy it out of `workdir` first, which the last cell deletes.
"""),
    code("""
import html

from IPython.display import HTML

HTML(f'<div><iframe srcdoc="{html.escape(report.read_text())}" '
     'style="width:100%;height:600px;border:1px solid #ccc"></iframe></div>')
"""),
    code("""
from ps3d_toolkit.viz.figures import fig_cumulative_psd

fig_cumulative_psd(table)
"""),
    *CLEAN_UP,
    md("""
**Next:** the same on your own scan, from a terminal: `ps3d segment`, then `ps3d report labels.tif
--image scan.tif --auto-phases 2 --output report.html --excel report.xlsx` (see the README); or
back to tutorial 4 to tune the segmentation first.
"""),
]

NB07 = [
    md("""
# 7 · Scans larger than memory

A real scan is 1000³ to 4000³ voxels: 2 to 128 GB as 16-bit values, and the in-memory run needs
about 134 bytes of memory a voxel. This tutorial segments and measures a scan **block by block**,
with the blocks as tasks on a **Dask cluster**, so that memory is set by the block, not the scan:

1. write a generated scan to a zarr store and pretend the notebook has a small memory budget;
2. segment it in blocks of 64³ on a `LocalCluster` (watch the dashboard), into an OME-Zarr store;
3. measure the particles block by block and plot the size distribution.

The scan here is small so that the notebook runs in a few minutes; the same code runs a 2000³
scan. The command line does the same: `ps3d segment scan.zarr --chunk-size 128 -o labels.zarr
--dask-scheduler local`, then `ps3d measure labels.zarr --image scan.zarr --output particles.csv`.
docs/scale.md explains how it works and how to run it on a SLURM or Kubernetes cluster.
"""),
    setup(sample=False),
    md("""
## A scan on disk, larger than the budget

`generate_scan` draws a phantom with known particles; `save_scan` writes it to a zarr store, which
the toolkit reads lazily: nothing is read until a block is sliced. Say this notebook may use
60 MB for the network: the in-memory run would need more, so `segment()` refuses it with a line that says why.
"""),
    code("""
from ps3d_toolkit.core.errors import ResourceError
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.io import load_scan, save_scan
from ps3d_toolkit.segmentation import segment

phantom = generate_scan((128, 128, 128), 20.0, seed=7)
save_scan(phantom.image, workdir / "big_scan.zarr", spacing=phantom.spacing,
          particle_size_mm=phantom.particle_size_mm)
big = load_scan(workdir / "big_scan.zarr")
print(f"{type(big.image).__name__} of {' x '.join(map(str, big.image.shape))} voxels, "
      f"{big.image.nbytes / 1e6:.0f} MB on disk uncompressed; nothing read yet")

budget_gb = 0.06
try:
    segment(big.image, spacing=big.spacing, particle_size_mm=big.particle_size_mm, memory_limit_gb=budget_gb,
            progress=False)
except ResourceError as error:
    print("in memory:", error)
"""),
    md("""
## Segment block by block on a Dask cluster

`LocalCluster` starts worker processes on this machine (on a cluster you would connect a `Client` to
its scheduler instead). Open the **dashboard** link to watch the tasks: one *windows* task per group
of network windows (each window of the scan runs through the network once) and one *block* task per
block. Each block is read with a halo of one particle diameter; the blocks' particles are joined
across faces afterwards, so the result is the in-memory run's particles. The labels go to an
OME-Zarr store (spacing in mm, a pyramid for viewers), written at the end.
"""),
    code("""
from distributed import Client, LocalCluster

from ps3d_toolkit.segmentation import segment_chunked

cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0", silence_logs=40)
client = Client(cluster)
print("Dask dashboard:", client.dashboard_link)

start = time.perf_counter()
labels = segment_chunked(big.image, spacing=big.spacing, particle_size_mm=big.particle_size_mm,
                         output=workdir / "big_labels.zarr", chunk_size=64, scheduler=client,
                         memory_limit_gb=budget_gb, progress=False)
print(f"{labels.attrs['n_particles']} particles in {time.perf_counter() - start:.0f} s, "
      f"blocks of {labels.chunks[0]}³; wrote {workdir / 'big_labels.zarr'}")
"""),
    md("""
The phantom's own particles let us check the answer: the instance F1 score (a particle counts as
found when its labels overlap by IoU ≥ 0.5) of the chunked labels against the truth.
"""),
    code("""
from ps3d_toolkit.analysis.evaluate import evaluate_instances

scores = evaluate_instances(phantom.labels, labels[:])
print(f"F1 at IoU 0.5 against the phantom's particles: {scores['f1_50']:.3f}")
client.close()
cluster.close()
"""),
    md("""
A run that stops part-way (a killed job, a lost machine) keeps its finished blocks in
`big_labels.zarr.ps3d-work`; `resume=True` (`--resume`) continues from there.

## Measure block by block

`measure` reads lazy inputs larger than 256³ voxels block by block by itself; `chunk_size=` asks
for it on this small scan. The table is the one the in-memory call gives.
"""),
    code("""
from ps3d_toolkit.measurement import measure

table = measure(labels, big.image, spacing=big.spacing, chunk_size=64, progress=False)
print(f"{len(table)} particles measured; {int(table['touches_border'].sum())} touch the scan's border "
      "and are left out of the statistics below")
"""),
    code("""
from ps3d_toolkit.viz.figures import fig_cumulative_psd

fig_cumulative_psd(table)
"""),
    *CLEAN_UP,
    md("""
**Next:** your own large scan, from a terminal: `ps3d convert` it to zarr if it is a TIFF folder, then
`ps3d segment scan.zarr --chunk-size 128 -o labels.zarr --dask-scheduler local` and `ps3d report
labels.zarr --image scan.zarr --output report.html`; docs/scale.md for clusters.
"""),
]

NB08 = [
    md("""
# 08 · Trust and adapt: how right are the particles of a scan nobody labelled?

Every accuracy figure of a segmentation needs a scan with known answers. On your own scan there are
none, yet a run with a wrong particle size or on a blurred scan exits like a good run. This notebook:

1. segments a scan of a kind the shipped model finds hard (heavy blur) **and estimates, without
   labels, how right the particles are** (`segment(..., quality=True)`): an estimated instance F1 and
   a confidence per particle;
2. **adapts** the model to that scan, without labels (`training.adapt`), and estimates again;
3. compares both estimates with the truth, which a generated scan has and your scan has not.

The command line does the same: `ps3d segment scan.tif ... --quality`, `ps3d adapt scan.tif ...
--output adapted.pt`, then `ps3d segment scan.tif ... --weights adapted.pt --quality`; `ps3d report`
shows the estimate in its section "How far to trust these particles". docs/quality.md says how the
estimate works and what it cannot see.
"""),
    setup(sample=False),
    md("""
## A hard scan

A generated scan with exact labels, blurred with a Gaussian of 2.6 voxels: the grain boundaries are
soft, and touching grains are hard to tell apart.
"""),
    code("""
import logging

from ps3d_toolkit.data.synthetic import generate_scan

# The estimate also logs its warnings; this notebook prints them itself, below.
logging.getLogger("ps3d_toolkit").setLevel(logging.ERROR)

hard = generate_scan((96, 96, 96), 20.0, seed=23, blur_sigma=2.6)
print(f"{' x '.join(map(str, hard.image.shape))} voxels of {hard.spacing[0]} mm, "
      f"grains ~{hard.particle_size_mm:.2f} mm across, {int(hard.labels.max())} grains")
"""),
    md("""
## Segment, and estimate the quality without labels

With `quality=True`, `segment` returns the labels and a `QualityReport`. It segments the scan again
as a rescan would change it (turned, flipped, with added noise, at a slightly different particle
size) and checks which particles come back; with shape cues of merged grains, the particle size
against the grains found and the labelled volume against the grain mask, a calibration turns this
into a **confidence per particle** and an **estimated F1@0.5** for the scan. It costs about one more
run.
"""),
    code("""
from ps3d_toolkit.segmentation import segment

start = time.perf_counter()
labels, quality = segment(hard.image, spacing=hard.spacing, particle_size_mm=hard.particle_size_mm,
                          quality=True, progress=False)
print(f"{int(labels.max())} particles in {time.perf_counter() - start:.0f} s (with the estimate)")
print(f"estimated F1@0.5 {quality.estimated_f1:.2f}, "
      f"{100 * quality.low_confidence_share:.0f} % of the particles low confidence")
for warning in quality.warnings:
    print("warning:", warning)
"""),
    md("""
The confidence goes into the particle table as the column `confidence`; `SliceViewer(...,
color_by="confidence")` draws each particle from red (doubtful) to green (trusted), and the report
can leave the doubtful ones out of its statistics (`min_confidence=`, `--min-confidence`).
"""),
    code("""
from ps3d_toolkit.measurement import measure

table = measure(labels, hard.image, spacing=hard.spacing, confidence=quality, shape=False, progress=False)
go.Figure(go.Histogram(x=table["confidence"], nbinsx=20),
          layout=dict(title="confidence of each particle", xaxis_title="confidence", yaxis_title="particles",
                      height=300))
"""),
    md("""
## Adapt the model to this scan, without labels

`adapt` measures the scan's look from the first pass (grain sizes, contrast, noise, blur), generates
phantoms like it with exact labels, fine-tunes the shipped model on them, and keeps the new weights
only when the label-free estimate says they are better. A real run trains for ~6 minutes; here one
minute, to keep the notebook short.
"""),
    code("""
from ps3d_toolkit.training import adapt

start = time.perf_counter()
adapted = adapt(hard.image, spacing=hard.spacing, particle_size_mm=hard.particle_size_mm, minutes=1.0,
                output=workdir / "adapted.pt", progress=False)
print(f"{time.perf_counter() - start:.0f} s: {adapted.message}")
"""),
    code("""
labels_after, quality_after = segment(hard.image, spacing=hard.spacing, particle_size_mm=hard.particle_size_mm,
                                      weights=adapted.weights, quality=True, progress=False)
print(f"with the weights adapt kept: estimated F1@0.5 {quality_after.estimated_f1:.2f}, "
      f"{100 * quality_after.low_confidence_share:.0f} % of the particles low confidence")
"""),
    md("""
## Against the truth

A generated scan knows its grains, so here, and only here, the estimates can be checked: the true
instance F1@0.5 of both runs next to their estimates.
"""),
    code("""
from ps3d_toolkit.analysis.evaluate import evaluate_instances

runs = {"shipped model": (labels, quality), "after adapt": (labels_after, quality_after)}
rows = [{"run": run, "estimated F1@0.5": q.estimated_f1,
         "true F1@0.5": evaluate_instances(hard.labels, found)["f1_50"]} for run, (found, q) in runs.items()]
compared = pd.DataFrame(rows).set_index("run").round(3)
compared
"""),
    code("""
go.Figure([go.Bar(name=column, x=compared.index, y=compared[column]) for column in compared.columns],
          layout=dict(title="label-free estimate and truth", yaxis=dict(title="F1@0.5", range=[0, 1]),
                      barmode="group", height=320))
"""),
    *CLEAN_UP,
    md("""
**Next:** on your own scan, `ps3d segment scan.tif --spacing S --particle-size P --quality -o labels.tif`
and `ps3d report labels.tif --image scan.tif --min-confidence 0.5`; docs/quality.md for how far the
estimate can be trusted, docs/adapt.md for adapting.
"""),
]

NOTEBOOKS = {
    "01_load_and_explore.ipynb": NB01,
    "02_segment.ipynb": NB02,
    "03_measure_and_shapes.ipynb": NB03,
    "04_tune_parameters.ipynb": NB04,
    "05_fine_tune.ipynb": NB05,
    "06_report.ipynb": NB06,
    "07_large_scans.ipynb": NB07,
    "08_trust_and_adapt.ipynb": NB08,
}


def build(folder: Path = HERE) -> list:
    """Write every notebook (no outputs, python3 kernel) into ``folder``; return their paths."""
    written = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[nbformat.from_dict(dict(c)) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for index, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{index:02d}"
        nbformat.validate(nb)
        path = folder / name
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in build():
        print(path)
