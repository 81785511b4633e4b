"""Core threshold of the instance step, swept on development scans (never the held-out seeds).

The development set is 56 synthetic scans: the 12 kinds of ``model_accuracy.py``
at seeds 7000+ and 7100+ (the held-out benchmark uses 9000+), and 2 x 16
stress scans (seeds 7200+ and 7300+: low contrast, rings with cupping,
angular/flaky-only populations at random strengths and sizes, the hard
preset). The network runs once per scan, given the particle size, and each
threshold re-runs only the instance step. Writes a markdown table.

Run: ``python benchmarks/dev_core_threshold.py [--thresholds 0.6 0.7 ...]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_accuracy import SCANS  # noqa: E402


def development_scans():
    """Yield ``(group, name, scan)`` for the 56 development scans."""
    from ps3d_toolkit.data.synthetic import generate_scan

    for base in (7000, 7100):
        for i, (name, preset, diameter, overrides) in enumerate(SCANS):
            edge = int(np.clip(diameter * 5, 96, 192))
            yield "benchmark kinds", f"{name}/{base + i}", generate_scan(
                (max(80, edge * 3 // 4), edge, edge), diameter, seed=base + i, preset=preset,
                **overrides)
    for base in (7200, 7300):
        rng = np.random.default_rng(base)
        for k in range(16):
            kind = ("low-contrast", "low-contrast", "rings-cupping", "flaky-angular")[k % 4]
            diameter = float(rng.choice([14, 18, 22, 28]))
            if kind == "low-contrast":
                overrides = dict(contrast=float(rng.uniform(0.08, 0.16)),
                                 noise=float(rng.uniform(0.12, 0.2)))
            elif kind == "rings-cupping":
                overrides = dict(ring_strength=float(rng.uniform(0.06, 0.14)),
                                 cupping=float(rng.uniform(0.2, 0.4)))
            else:
                overrides = dict(shape_weights={"angular": 1, "flaky": 1})
            edge = int(np.clip(diameter * 5, 96, 160))
            yield f"stress {base}+", f"{kind}/{base + k}", generate_scan(
                (max(80, edge * 3 // 4), edge, edge), diameter, seed=base + k, preset="hard",
                **overrides)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93])
    parser.add_argument("--weights", default=None, help="weight file (default: shipped)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N scans (a smoke test)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "core_threshold.md"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.methods.model import METHOD
    from ps3d_toolkit.segmentation.model.device import load_model
    from ps3d_toolkit.segmentation.model.postprocess import instances_from_core_border
    from ps3d_toolkit.segmentation.model.windows import predict_probabilities
    from ps3d_toolkit.segmentation.model.network import resolve_inference_diameter_vox
    from ps3d_toolkit.segmentation.normalize import resample_to_shape, to_network_grid

    model, config, _ = load_model(args.weights, device="cpu")
    diameter = resolve_inference_diameter_vox(config)
    # the model's own settings, from the method's defaults
    defaults = METHOD.defaults
    window = {k: defaults[k] for k in ("window_size", "overlap", "batch_size")}
    instance = {k: defaults[k] for k in ("min_core_voxels", "min_particle_fraction")}
    rows = []
    for n, (group, name, scan) in enumerate(development_scans()):
        if args.limit is not None and n >= args.limit:
            break
        grid_image, zoom = to_network_grid(scan.image, spacing=scan.spacing,
                                           particle_size_mm=scan.particle_size_mm, network_diameter_vox=diameter,
                                           intensity_percentiles=config["intensity_percentiles"])
        probs = predict_probabilities(grid_image, model, device="cpu", **window)
        core_border = resample_to_shape(probs[1:], scan.image.shape)
        row = {"group": group, "name": name}
        for threshold in args.thresholds:
            labels = instances_from_core_border(
                core_border, spacing=scan.spacing, zoom=zoom,
                particle_size_mm=scan.particle_size_mm, core_threshold=threshold, **instance)
            metrics = evaluate_instances(scan.labels, labels)
            row[threshold] = (metrics["f1_50"], metrics["f1_75"])
        rows.append(row)
        print(f"{group:16s} {name:24s} "
              + " ".join(f"{t}: {row[t][0]:.3f}/{row[t][1]:.3f}" for t in args.thresholds), flush=True)

    groups = list(dict.fromkeys(r["group"] for r in rows)) + ["all"]
    lines = [
        "# Core threshold on development scans",
        "",
        f"Command: `python benchmarks/dev_core_threshold.py` ({time.strftime('%Y-%m-%d')}), "
        f"{args.threads} CPU threads, weights: {args.weights or 'shipped default'}, network grid "
        f"{diameter:g} voxels per particle, the particle size given. Mean F1@0.5 / F1@0.75 per "
        "group of development scans (seeds 7000-7315; the held-out benchmark's seeds 9000+ are "
        "never used here).",
        "",
        "| scans | n | " + " | ".join(f"core > {t:g}" for t in args.thresholds) + " |",
        "|---|---:|" + "---:|" * len(args.thresholds),
    ]
    for group in groups:
        sel = [r for r in rows if group == "all" or r["group"] == group]
        cells = []
        for t in args.thresholds:
            f50, f75 = np.mean([r[t] for r in sel], axis=0)
            cells.append(f"{f50:.3f} / {f75:.3f}")
        lines.append(f"| {group} | {len(sel)} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if args.limit is None:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
