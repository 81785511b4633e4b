"""Self-training on an unlabelled scan (``adapt``): accuracy before and after, on scans the model is weak on.

Each development scan is generated from a seed that neither training,
validation, the model-accuracy benchmark nor the quality calibration draws
(9700+), of a kind the shipped model is weakest on: heavy blur, heavy noise,
noisy angular grains, multiphase grains, low contrast and grains ~9 voxels
across. ``adapt`` sees only the grey values, the spacing and the particle size;
the exact labels are used only here, to score the first pass and the result
(F1 at IoU > 0.5 and > 0.75). One JSON line per scan is appended to ``--jsonl``
as soon as the scan is done, so a partial run keeps its results.

Run: ``python benchmarks/adapt.py [--minutes 6] [--only blur noisy] [--jsonl PATH]``
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
    ("blur-2.6-hard-20", "hard", 20, {"blur_sigma": 2.6}),
    ("blur-2.6-medium-24", "medium", 24, {"blur_sigma": 2.6}),
    ("noisy-hard-20", "hard", 20, {"noise": 0.25}),
    ("noisy-angular-22", "hard", 22, {"noise": 0.22, "shape_weights": {"angular": 1, "flaky": 1}}),
    ("multiphase-20", "hard", 20, {"n_phases": 4, "multiphase_fraction": 0.5}),
    ("low-contrast-20", "hard", 20, {"contrast": 0.12, "noise": 0.15}),
    ("tiny-9-hard", "hard", 9, {}),
    ("tiny-9-medium", "medium", 9, {}),
]


def generate(index: int, seed: int):
    """The scan ``SCANS[index]`` (shape 5 mean diameters a side, 64 to 112 voxels)."""
    from ps3d_toolkit.data.synthetic import generate_scan

    _, preset, diameter, overrides = SCANS[index]
    edge = int(np.clip(diameter * 5, 64, 112))
    return generate_scan((max(64, edge * 3 // 4), edge, edge), diameter, seed=seed + index, preset=preset,
                         **overrides)


def run_one(index: int, args) -> dict:
    """Adapt on one scan; its row (F1 before/after, estimates, time)."""
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.training import adapt

    name = SCANS[index][0]
    scan = generate(index, args.seed)
    start = time.perf_counter()
    given = {"targets": args.targets, "rounds": args.rounds, "learning_rate": args.lr,
             "min_confidence": args.min_confidence, "max_steps": args.max_steps}
    result = adapt(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm, minutes=args.minutes,
                   seed=0, progress=False, scan_name=name, **{k: v for k, v in given.items() if v is not None})
    seconds = time.perf_counter() - start
    before = evaluate_instances(scan.labels, result.first_pass_labels)
    after = evaluate_instances(scan.labels, result.labels)
    # what the adapted weights gave, kept or not (to judge the decision)
    candidate = evaluate_instances(scan.labels, result.candidate_labels)
    return {"scan": name, "shape": list(scan.image.shape), "n_gt": int(scan.labels.max()),
            "f1_50_before": before["f1_50"], "f1_75_before": before["f1_75"],
            "f1_50_after": after["f1_50"], "f1_75_after": after["f1_75"],
            "f1_50_adapted": candidate["f1_50"], "f1_75_adapted": candidate["f1_75"],
            "estimate_before": result.estimate_before, "estimate_after": result.estimate_after,
            "kept": result.kept, "steps": result.steps, "seconds": round(seconds, 1),
            "stage_seconds": result.record["stage_seconds"], "estimate_source": result.record["estimate_source"],
            "settings": {**result.record["settings"], "threads": args.threads}}


def table(rows: list, command: str) -> str:
    """The markdown table of ``rows`` with the means and the goal's two checks."""
    lines = [f"Command: `{command}`", "",
             "| scan | F1@0.5 before | after | F1@0.75 before | after | adapted (kept or not) F1@0.5 / @0.75 "
             "| estimate before | after | kept | steps | minutes in all |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['scan']} | {r['f1_50_before']:.3f} | {r['f1_50_after']:.3f} | {r['f1_75_before']:.3f} "
                     f"| {r['f1_75_after']:.3f} | {r['f1_50_adapted']:.3f} / {r['f1_75_adapted']:.3f} "
                     f"| {r['estimate_before']:.3f} | {r['estimate_after']:.3f} | {'yes' if r['kept'] else 'no'} "
                     f"| {r['steps']} | {r['seconds'] / 60:.1f} |")
    d75 = np.mean([r["f1_75_after"] - r["f1_75_before"] for r in rows])
    worst50 = min(r["f1_50_after"] - r["f1_50_before"] for r in rows)
    lines += ["", f"Mean F1@0.75 change {d75:+.4f} (goal >= +0.02); the largest F1@0.5 drop {worst50:+.4f} "
                  "(goal: no scan below -0.01)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="training minutes per scan (default 6)")
    # left out: adapt()'s defaults
    parser.add_argument("--targets", nargs="+", default=None, choices=["pseudo", "matched"])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--min-confidence", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps (reproducible)")
    parser.add_argument("--seed", type=int, default=9700)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="run only scans whose name contains one of these")
    parser.add_argument("--jsonl", default=None, help="append one JSON line per scan here as it finishes")
    parser.add_argument("--output", default=None, help="write the markdown table here")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for index, (name, *_) in enumerate(SCANS):
        if args.only and not any(key in name for key in args.only):
            continue
        row = run_one(index, args)
        rows.append(row)
        print(f"{name:20s} F1@0.5 {row['f1_50_before']:.3f} -> {row['f1_50_after']:.3f} "
              f"(adapted {row['f1_50_adapted']:.3f}) F1@0.75 {row['f1_75_before']:.3f} -> {row['f1_75_after']:.3f} "
              f"(adapted {row['f1_75_adapted']:.3f}) estimate {row['estimate_before']:.3f} -> "
              f"{row['estimate_after']:.3f} kept {row['kept']} {row['seconds']:.0f} s", flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as out:
                out.write(json.dumps(row) + "\n")
    if rows:
        import shlex
        import sys

        text = table(rows, "python benchmarks/adapt.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        print(text)
        if args.output:
            Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
