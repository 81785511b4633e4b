"""End-to-end segmentation speed and memory: the U-Net beside the classic pipelines.

Every configuration runs in its own process on the same synthetic scan (mean
grain diameter ~24 voxels), so that peak memory is that configuration's own.
Reports seconds, voxels of scan per second, peak resident memory and the
accuracy (F1 against the exact labels) of each, and writes the table into the
"## Segmentation speed" section of docs/performance.md.

Run: ``python benchmarks/segment_speed.py`` (on a GPU: ``--device cuda --warmup
--section "## Segmentation speed on a GPU"``, which also reports peak GPU memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

CONFIGS = [
    ("otsu-watershed", dict(method="otsu-watershed")),
    ("snow", dict(method="snow")),
    ("model (overlap 0.25, window 96)", dict(method="model", overlap=0.25, window_size=96)),
    ("model, overlap 0.125", dict(method="model", overlap=0.125, window_size=96)),
    ("model, overlap 0.5", dict(method="model", overlap=0.5, window_size=96)),
    ("model, window 128", dict(method="model", overlap=0.25, window_size=128)),
    ("model, batch 8", dict(method="model", overlap=0.25, window_size=96, batch_size=8)),
    ("model, auto windows, overlap 0.125", dict(method="model", overlap=0.125, window_size="auto")),
    ("model, mirroring TTA", dict(method="model", overlap=0.25, window_size=96, tta=True)),
    ("model at 14-voxel target", dict(method="model", overlap=0.25, window_size=96,
                                      inference_diameter_vox=14)),
    ("model at 24-voxel target", dict(method="model", overlap=0.25, window_size=96,
                                      inference_diameter_vox=24)),
    ("model, size estimated", dict(method="model", overlap=0.25, window_size=96, no_size=True)),
]


def worker(scan_dir: str, options: dict, threads: int, device: str, warmup: bool = False) -> dict:
    """Run one configuration and return its timings (called in a child process)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.segmentation import segment

    image = np.load(Path(scan_dir) / "image.npy")
    truth = np.load(Path(scan_dir) / "labels.npy")
    meta = json.loads((Path(scan_dir) / "meta.json").read_text())
    options = dict(options)
    size = None if options.pop("no_size", False) else meta["particle_size_mm"]
    if options.get("method") == "model":
        options["device"] = device
    if warmup:
        segment(image, spacing=meta["spacing"], particle_size_mm=size, progress=False, **options)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    labels = segment(image, spacing=meta["spacing"], particle_size_mm=size, progress=False, **options)
    seconds = time.perf_counter() - start
    metrics = evaluate_instances(truth, labels)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return {"seconds": seconds, "mvox_per_s": image.size / seconds / 1e6, "peak_rss_mb": peak_mb,
            "peak_gpu_mb": gpu_mb,
            "f1_50": metrics["f1_50"], "f1_75": metrics["f1_75"], "pq": metrics["pq"],
            "n_particles": int(labels.max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 192, 192))
    parser.add_argument("--diameter", type=float, default=30.0,
                        help="requested mean grain diameter in voxels (measured one is reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", help="run only configurations whose name contains one of these")
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    parser.add_argument("--section", default="## Segmentation speed",
                        help="heading of the section of --output that the table replaces")
    parser.add_argument("--warmup", action="store_true",
                        help="run each configuration once untimed first (on a GPU: leaves out "
                             "CUDA start-up and cuDNN's autotuning)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        scan_dir, options = json.loads(args.worker)
        print(json.dumps(worker(scan_dir, options, args.threads, args.device, args.warmup)))
        return 0

    import numpy as np

    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan(tuple(args.shape), args.diameter, seed=777, preset="medium")
    tmp = tempfile.mkdtemp(prefix="ps3d_speed_")
    np.save(Path(tmp) / "image.npy", scan.image)
    np.save(Path(tmp) / "labels.npy", scan.labels)
    (Path(tmp) / "meta.json").write_text(json.dumps(
        {"spacing": scan.spacing, "particle_size_mm": scan.particle_size_mm}))
    print(f"scan {scan.image.shape}, {scan.labels.max()} grains, mean diameter "
          f"{scan.mean_diameter_vox:.1f} voxels; {args.threads} threads on {args.device}")

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for name, options in CONFIGS:
        if args.only and not any(key in name for key in args.only):
            continue
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--device", args.device,
               *(["--warmup"] if args.warmup else []), "--worker", json.dumps([tmp, options])]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(f"{name}: FAILED\n{done.stderr[-2000:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append((name, result))
        print(f"{name:32s} {result['seconds']:7.1f} s {result['mvox_per_s']:6.2f} Mvox/s "
              f"{result['peak_rss_mb']:7.0f} MB  F1@0.5 {result['f1_50']:.3f} F1@0.75 {result['f1_75']:.3f}")

    baseline = next((r for n, r in rows if n == "otsu-watershed"), None)
    gpu = any(r.get("peak_gpu_mb") is not None for _, r in rows)
    command = " ".join(["python benchmarks/segment_speed.py", *map(shlex.quote, sys.argv[1:])])
    lines = [
        args.section,
        "",
        f"Command: `{command}`"
        f" ({time.strftime('%Y-%m-%d')}). Machine: {cpu_model(platform.machine())}, "
        f"{os.cpu_count()} cores, {args.threads} torch/OpenMP threads, device {_device_name(args.device)}; "
        "a shared machine, so compare ratios within this table rather than across runs.",
        f"Scan: synthetic, {' x '.join(map(str, scan.image.shape))} voxels "
        f"({scan.image.size / 1e6:.1f} Mvoxel), {int(scan.labels.max())} grains, measured mean "
        f"diameter {scan.mean_diameter_vox:.1f} voxels, preset medium, seed 777. End-to-end time of "
        "`segment()` (normalisation, resampling, network, resampling back, instances), each in a "
        "fresh process" + (" after one untimed warm-up run" if args.warmup else "") +
        "; peak memory is that process's maximum resident set" +
        (", peak GPU memory PyTorch's maximum allocation." if gpu else "."),
        "",
        "| configuration | seconds | Mvoxel/s of scan | speed vs otsu-watershed | peak memory (MB) | "
        + ("peak GPU memory (MB) | " if gpu else "") + "F1@0.5 | F1@0.75 | PQ | particles |",
        "|---|---:|---:|---:|---:|" + ("---:|" if gpu else "") + "---:|---:|---:|---:|",
    ]
    for name, r in rows:
        ratio = (baseline["seconds"] / r["seconds"]) if baseline else float("nan")
        gpu_cell = (f"{r['peak_gpu_mb']:.0f} | " if r.get("peak_gpu_mb") is not None else "- | ") if gpu else ""
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['mvox_per_s']:.2f} | {ratio:.2f}x | "
                     f"{r['peak_rss_mb']:.0f} | {gpu_cell}{r['f1_50']:.3f} | {r['f1_75']:.3f} | "
                     f"{r['pq']:.3f} | {r['n_particles']} |")
    lines.append(f"\nGround truth: {int(scan.labels.max())} grains.\n")
    _replace_section(Path(args.output), args.section, "\n".join(lines))
    print(f"wrote {args.output}")
    return 0


def _device_name(device: str) -> str:
    """The device as named in the table: 'cpu', or 'cuda (NVIDIA H100 ...)'."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"


def _replace_section(path: Path, heading: str, text: str) -> None:
    """Replace one '## ' section of a markdown file (or append it)."""
    from ps3d_toolkit.core.atomic import atomic_path

    old = path.read_text() if path.exists() else "# Performance\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(text.rstrip() + "\n\n", old) if pattern.search(old) else old.rstrip() + "\n\n" + text + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(new)


if __name__ == "__main__":
    raise SystemExit(main())
