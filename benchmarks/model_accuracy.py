"""Accuracy of the shipped U-Net on held-out synthetic scans, beside the classic pipeline.

The scans come from seeds that training never drew (training and validation
use other seeds), across every difficulty preset and mean grain diameters of
~14-45 voxels, plus variations the presets do not contain (a cylinder wider
than the field of view, no air, very low contrast, strong rings). Each scan is
segmented three ways: the model given the particle size, the model estimating
it, and multi-level Otsu + watershed given the size. Writes docs/model_accuracy.md.

Run: ``python benchmarks/model_accuracy.py [--weights PATH]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCANS = [
    # name, preset, requested mean diameter (voxels), overrides
    ("easy-14", "easy", 14, {}),
    ("easy-30", "easy", 30, {}),
    ("medium-14", "medium", 14, {}),
    ("medium-24", "medium", 24, {}),
    ("medium-45", "medium", 45, {}),
    ("hard-16", "hard", 16, {}),
    ("hard-24", "hard", 24, {}),
    ("hard-36", "hard", 36, {}),
    ("wide-cylinder-20", "medium", 20, {"cylinder_radius_fraction": 0.62}),
    ("low-contrast-20", "hard", 20, {"contrast": 0.12, "noise": 0.15}),
    ("rings-cupping-24", "hard", 24, {"ring_strength": 0.1, "cupping": 0.3}),
    ("flaky-angular-22", "hard", 22, {"shape_weights": {"angular": 1, "flaky": 1}}),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weight file (default: shipped)")
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "docs" / "model_accuracy.md"))
    parser.add_argument("--json", default=None, help="also write the raw rows as JSON")
    parser.add_argument("--only", nargs="*", help="run only scans whose name contains one of these")
    parser.add_argument("--inference-diameter-vox", type=float, default=None,
                        help="particle diameter in voxels on the network grid (trade-off study)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from ps3d_toolkit.segmentation.classic import otsu_watershed
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation.methods.model import run_model, segment_with_model
    from ps3d_toolkit.data.synthetic import generate_scan

    rows = []
    for i, (name, preset, diameter, overrides) in enumerate(SCANS):
        if args.only and not any(k in name for k in args.only):
            continue
        edge = int(np.clip(diameter * 5, 96, 192))
        scan = generate_scan((max(80, edge * 3 // 4), edge, edge), diameter, seed=args.seed + i,
                             preset=preset, **overrides)
        row = {"scan": name, "shape": list(scan.image.shape), "n_gt": int(scan.labels.max()),
               "diameter_vox": round(scan.mean_diameter_vox, 1)}
        runs = {
            "model": lambda: segment_with_model(scan.image, spacing=scan.spacing,
                                                particle_size_mm=scan.particle_size_mm,
                                                weights=args.weights, progress=False,
                                                inference_diameter_vox=args.inference_diameter_vox),
            "model_no_size": lambda: run_model(scan.image, spacing=scan.spacing, weights=args.weights,
                                               progress=False,
                                               inference_diameter_vox=args.inference_diameter_vox),
            "otsu": lambda: otsu_watershed(scan.image, spacing=scan.spacing,
                                           particle_size_mm=scan.particle_size_mm, progress=False),
        }
        for key, run in runs.items():
            start = time.perf_counter()
            labels = run()
            seconds = time.perf_counter() - start
            labels, run_details = (labels.labels, labels) if hasattr(labels, "labels") else (labels, None)
            m = evaluate_instances(scan.labels, labels)
            row[key] = {"f1_50": m["f1_50"], "f1_75": m["f1_75"], "pq": m["pq"],
                        "n_pred": m["n_pred"], "seconds": seconds}
            if run_details is not None:  # the size the model estimated, first and finally used
                row[key]["size_first"] = run_details.size_estimate.particle_size_mm / scan.particle_size_mm
                row[key]["size_used"] = run_details.particle_size_mm / scan.particle_size_mm
        rows.append(row)
        print(f"{name:20s} gt {row['n_gt']:4d} d {row['diameter_vox']:5.1f} | "
              + " | ".join(f"{k} F1 {row[k]['f1_50']:.3f}/{row[k]['f1_75']:.3f}" for k in runs))

    def mean(key, metric):
        return float(np.mean([r[key][metric] for r in rows]))

    lines = [
        "# Model accuracy on held-out synthetic scans",
        "",
        f"Command: `python benchmarks/model_accuracy.py` ({time.strftime('%Y-%m-%d')}), "
        f"{args.threads} CPU threads, weights: {args.weights or 'shipped default'}. Seeds "
        f"{args.seed}-{args.seed + len(SCANS) - 1}, never drawn in training or validation. "
        "F1 at IoU > 0.5 / > 0.75 against the exact labels; `model` is given the particle "
        "size, `model, size estimated` is not (its column `size / truth` is the estimate, and "
        "after the arrow the size of the re-run on the model's own mask); Otsu + watershed is "
        "given the size.",
        "",
        "| scan | shape | grains | mean diameter (vox) | model F1@0.5 | model F1@0.75 | model PQ "
        "| model, size estimated F1@0.5 | F1@0.75 | size / truth | Otsu+watershed F1@0.5 | F1@0.75 "
        "| model s | Otsu s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def size(r):
        first, used = r["model_no_size"]["size_first"], r["model_no_size"]["size_used"]
        return f"{first:.2f}" if abs(used - first) < 1e-9 else f"{first:.2f} -> {used:.2f}"

    for r in rows:
        lines.append(
            f"| {r['scan']} | {'x'.join(map(str, r['shape']))} | {r['n_gt']} | {r['diameter_vox']} | "
            f"{r['model']['f1_50']:.3f} | {r['model']['f1_75']:.3f} | {r['model']['pq']:.3f} | "
            f"{r['model_no_size']['f1_50']:.3f} | {r['model_no_size']['f1_75']:.3f} | {size(r)} | "
            f"{r['otsu']['f1_50']:.3f} | {r['otsu']['f1_75']:.3f} | {r['model']['seconds']:.1f} | "
            f"{r['otsu']['seconds']:.1f} |")
    lines.append(
        f"| **mean** | | | | **{mean('model', 'f1_50'):.3f}** | **{mean('model', 'f1_75'):.3f}** | "
        f"**{mean('model', 'pq'):.3f}** | **{mean('model_no_size', 'f1_50'):.3f}** | "
        f"**{mean('model_no_size', 'f1_75'):.3f}** | | **{mean('otsu', 'f1_50'):.3f}** | "
        f"**{mean('otsu', 'f1_75'):.3f}** | | |")
    text = "\n".join(lines) + "\n"
    if not args.only:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"mean F1@0.5: model {mean('model', 'f1_50'):.3f}, no size {mean('model_no_size', 'f1_50'):.3f}, "
          f"otsu {mean('otsu', 'f1_50'):.3f}; F1@0.75: model {mean('model', 'f1_75'):.3f}, "
          f"otsu {mean('otsu', 'f1_75'):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
