"""Fingerprint of the bundled sample's results, to show that a change of code kept them.

Segments the sample with every method (the model given the size and estimating
it, Otsu + watershed, SNOW), measures the ground truth with two automatic
phases, and writes a JSON of particle counts, F1 scores and SHA-1 hashes of the
label arrays, plus the table as Parquet. Run it on two versions and compare:

    PYTHONPATH=/path/to/old/checkout python benchmarks/sample_fingerprint.py /tmp/before
    python benchmarks/sample_fingerprint.py /tmp/after --compare /tmp/before

It imports ``measure``'s phase helper from either layout (0.1's
``ps3d_toolkit.measure`` or 0.2's ``ps3d_toolkit.measurement``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

METHODS = {
    "model_size": {"size": True},
    "model_estimated": {"size": False},
    "otsu-watershed": {"method": "otsu-watershed", "size": True},
    "snow": {"method": "snow", "size": True},
}


def fingerprint(out: Path) -> dict:
    from ps3d_toolkit import evaluate_instances, load_sample, measure, segment

    try:
        from ps3d_toolkit.measurement import propose_phase_thresholds
    except ImportError:  # the 0.1 layout
        from ps3d_toolkit.measure import propose_phase_thresholds

    scan, truth = load_sample()
    result = {}
    for name, spec in METHODS.items():
        size = scan.particle_size_mm if spec["size"] else None
        kwargs = {"method": spec["method"]} if "method" in spec else {}
        labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=size, progress=False, **kwargs)
        scores = evaluate_instances(truth, labels)
        result[name] = {"n": int(labels.max()), "f1_50": scores["f1_50"], "f1_75": scores["f1_75"],
                        "sha1": hashlib.sha1(labels.tobytes()).hexdigest()}
    phases = propose_phase_thresholds(scan.image, truth, n_phases=2)
    table = measure(truth, image=scan.image, spacing=scan.spacing, phases=phases, progress=False)
    table.to_parquet(out / "table.parquet")
    result["table"] = {"rows": len(table), "columns": list(table.columns)}
    (out / "fingerprint.json").write_text(json.dumps(result, indent=1))
    return result


def compare(out: Path, other: Path) -> bool:
    import pandas as pd

    mine, theirs = (json.loads((p / "fingerprint.json").read_text()) for p in (out, other))
    same = True
    for name in METHODS:
        equal = mine[name]["sha1"] == theirs[name]["sha1"]
        same &= equal
        print(f"{name:16s} {theirs[name]['n']:4d} -> {mine[name]['n']:4d} particles, "
              f"F1 {mine[name]['f1_50']:.4f}/{mine[name]['f1_75']:.4f}, labels {'identical' if equal else 'DIFFER'}")
    try:
        pd.testing.assert_frame_equal(pd.read_parquet(out / "table.parquet"),
                                      pd.read_parquet(other / "table.parquet"), check_exact=True)
        print(f"table: identical ({mine['table']['rows']} rows x {len(mine['table']['columns'])} columns)")
    except AssertionError as error:
        same = False
        print(f"table: DIFFERS: {error}")
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for fingerprint.json and table.parquet")
    parser.add_argument("--compare", type=Path, metavar="DIR", help="a fingerprint folder to compare with")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fingerprint(args.out)
    return 0 if args.compare is None or compare(args.out, args.compare) else 1


if __name__ == "__main__":
    raise SystemExit(main())
