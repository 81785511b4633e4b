"""Time and peak memory against scan size: the chunked segmentation path beside the in-memory one.

Every run is ``ps3d segment SCAN.zarr -o OUT.zarr`` in a fresh process, with
``--chunk-size N`` (the chunked path, optionally ``--dask-scheduler local``) or
without it (the in-memory path, on the sizes that fit this machine's memory).
Peak memory is the resident memory of the whole process tree (the command and
every process it starts, Dask workers included), polled every 0.05 s; the
operating system's maximum resident set of the largest single process
(``wait4``) is kept beside it as a cross-check. Where a size ran both ways the
two label images are compared (instance F1@0.5).

Scans: ``generate_scan`` up to 256^3 (uint16, zarr chunks of 128^3); larger
scans mirror-tile the 256^3 one (alternate tiles flipped, so the seams are
continuous), written slab by slab without ever holding the large scan. They are
cached under ``--work`` and reused by later runs.

The table, the ratios, a plot and the machine go into the "## Scale" section of
docs/performance.md (between markers; the rest of the file is left as it is).

Run: ``python benchmarks/scale.py`` (all sizes, model and otsu-watershed), or
e.g. ``--sizes 64,128 --methods otsu-watershed`` for a quick check.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

#: Peak bytes per scan voxel of the in-memory path with the particle size given
#: (issue 14: the model 134, measured on the bundled sample; Otsu + watershed 37).
IN_MEMORY_BYTES_PER_VOXEL = {"model": 134, "otsu-watershed": 37}
#: Share of the memory available at start that an in-memory run may be expected to use.
IN_MEMORY_SHARE = 0.7
TILE = 256  # largest scan generated directly; larger ones mirror-tile it
ZARR_CHUNKS = 128
SEED = 14
MEAN_DIAMETER_VOX = 24.0
POLL_S = 0.05
BEGIN = "<!-- benchmarks/scale.py: begin (re-runs replace everything up to the end marker) -->"
END = "<!-- benchmarks/scale.py: end -->"
HEADING = "## Scale"
PLOT = Path("screenshots") / "scale.png"  # next to the --out file
#: ``ps3d`` itself (the entry point's code), run by this interpreter
CLI = "import sys; from ps3d_toolkit.cli import main; sys.exit(main())"


# ---------------------------------------------------------------------------- scans

def scan_path(work: Path, n: int) -> Path:
    """Where the n^3 scan is cached."""
    return work / f"scan_{n}.zarr"


def prepare_scan(work: Path, n: int) -> Path:
    """The n^3 scan as a zarr store under ``work``, generated once and reused."""
    path = scan_path(work, n)
    if (path / ".complete").exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    if n <= TILE:
        scan = generate_scan_uint16(n)
        _write_zarr(path, (n, n, n), scan["attrs"], lambda z0, z1: scan["image"][z0:z1])
    else:
        tile = _tile(work)
        ids = _mirror_indices(n, tile["image"].shape[0])
        _write_zarr(path, (n, n, n), tile["attrs"],
                    lambda z0, z1: tile["image"][np.ix_(ids[z0:z1], ids, ids)])
    (path / ".complete").write_text("")
    return path


def generate_scan_uint16(n: int) -> dict:
    """A generated n^3 scan (seed :data:`SEED`) as uint16, with its spacing and particle size."""
    from ps3d_toolkit.data.synthetic import generate_scan

    scan = generate_scan((n, n, n), MEAN_DIAMETER_VOX, seed=SEED)
    grey = scan.image
    low, high = float(grey.min()), float(grey.max())
    # CT scans are stored as uint16: the full range, far finer than the noise
    image = np.round((grey - low) / (high - low) * 65535).astype(np.uint16)
    attrs = {"spacing": list(scan.spacing), "particle_size_mm": float(scan.particle_size_mm),
             "grains": int(scan.labels.max()), "mean_diameter_vox": float(scan.mean_diameter_vox),
             "generated": f"generate_scan(({n}, {n}, {n}), {MEAN_DIAMETER_VOX}, seed={SEED}), uint16"}
    return {"image": image, "attrs": attrs}


def _tile(work: Path) -> dict:
    """The 256^3 scan that larger scans mirror-tile, read back from its cached store."""
    import zarr

    store = zarr.open_array(str(prepare_scan(work, TILE)), mode="r")
    attrs = dict(store.attrs)
    attrs.pop("grains")  # the tile's count, not the tiled scan's
    attrs["generated"] = f"the {TILE}^3 scan ({attrs.get('generated')}) mirror-tiled"
    return {"image": store[:], "attrs": attrs}


def _mirror_indices(n: int, tile: int) -> np.ndarray:
    """Source index of each of n positions: tiles alternate forwards and flipped, so seams repeat a plane."""
    position = np.arange(n)
    offset = position % tile
    return np.where((position // tile) % 2 == 1, tile - 1 - offset, offset)


def _write_zarr(path: Path, shape: tuple, attrs: dict, slab) -> None:
    """Write a uint16 zarr v2 store slab by slab (one chunk deep), so memory stays one slab."""
    import shutil

    import zarr

    if path.exists():
        shutil.rmtree(path)
    out = zarr.create_array(store=str(path), shape=shape, chunks=(ZARR_CHUNKS,) * 3, dtype="uint16",
                            zarr_format=2, attributes=attrs)
    for z0 in range(0, shape[0], ZARR_CHUNKS):
        z1 = min(z0 + ZARR_CHUNKS, shape[0])
        out[z0:z1] = slab(z0, z1)


# ---------------------------------------------------------------------------- runs

def measure_command(cmd: list, log: Path, env: dict) -> dict:
    """Run ``cmd``; its wall time, peak summed RSS of its process tree and its wait4 maximum RSS.

    The tree's memory over time goes to ``log`` with the suffix ``.rss.tsv``
    (seconds, bytes), to see whether a peak is a plateau, a spike or a ramp.
    """
    import psutil

    trace = []
    done = threading.Event()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        root = psutil.Process(proc.pid)

        def poll():
            while not done.is_set():
                trace.append((time.perf_counter() - start, _tree_rss(root)))
                done.wait(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        poller.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.with_suffix(".rss.tsv").write_text("".join(f"{t:.2f}\t{rss}\n" for t, rss in trace))
    # ru_maxrss is in KiB on Linux: the largest single process among the command and its reaped children
    return {"returncode": proc.returncode, "seconds": seconds, "peak_tree_bytes": max(rss for _, rss in trace),
            "maxrss_bytes": usage.ru_maxrss * 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def _tree_rss(root) -> int:
    """Resident memory of a process and all its descendants (processes that end meanwhile count 0)."""
    import psutil

    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def segment_command(scan: Path, output: Path, method: str, size_mm: float, path: str,
                    chunk_size: int, memory_limit_gb: float) -> list:
    """The ``ps3d segment`` command line of one run."""
    cmd = [sys.executable, "-c", CLI, "segment", str(scan), "-o", str(output), "--overwrite",
           "--method", method, "--particle-size", repr(size_mm)]
    if path == "in-memory" and method == "model":
        # without it the CLI would switch to blocks when its own budget says the scan does not fit
        cmd += ["--memory-limit-gb", f"{memory_limit_gb:.0f}"]
    if path != "in-memory":
        cmd += ["--chunk-size", str(chunk_size)]
    if path == "chunked, dask local":
        cmd += ["--dask-scheduler", "local"]
    return cmd


def ran_in_memory(log: Path) -> bool:
    """Whether the CLI kept the in-memory path (it says 'blocks of N' when it switched to blocks)."""
    return "blocks of" not in log.read_text(errors="replace")


def inspect(labels: str, reference: str | None) -> dict:
    """Particles in a written label store and, with ``reference``, instance F1@0.5 against it (in a child process)."""
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.io import load_labels

    mine = load_labels(labels)
    found = {"particles": int(mine.max()), "f1_50": None}
    if reference is not None:
        found["f1_50"] = float(evaluate_instances(load_labels(reference), mine)["f1_50"])
    return found


def in_child(*options: str) -> str:
    """Run this script with ``options`` in a child process; its last line of output.

    The heavy steps other than the measured runs (generating scans, reading
    labels) run in children so that this process stays small: a child started
    from it inherits its high-water resident memory in ``ru_maxrss``, which
    would corrupt the cross-check.
    """
    done = subprocess.run([sys.executable, __file__, *options], stdout=subprocess.PIPE, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------- report

def write_report(rows: list, args, scans: dict, command: str, machine: str) -> None:
    """The Scale section of ``args.out`` and the plot."""
    lines = [HEADING, "", BEGIN, "",
             f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Machine: {machine}.",
             "Each row is one `ps3d segment SCAN.zarr -o OUT.zarr --particle-size MM` in a fresh process "
             "(the `ps3d` entry point run by this Python, progress bars on, output written): wall time from "
             "start to exit, Python start, imports, reading the scan and writing the labels included. Peak memory: "
             "the sum of the resident memory of the process and all its descendants (Dask workers too), "
             f"polled every {POLL_S} s (shared pages count once per process, so a tree of processes is "
             "over-counted, and a spike shorter than the poll is missed); `maxrss` is the kernel's maximum "
             "resident set of the largest single process (wait4); CPU s: user + system time of the process "
             "and the children it waited for (wait4), which other jobs on a shared machine disturb less than "
             "the wall time. F1@0.5: instance F1 of the chunked labels against the in-memory labels of the "
             "same scan and method.",
             _scans_text(scans), "",
             "| size | voxels | method | path | seconds | Mvoxel/s | CPU s | peak GiB (tree) | maxrss GiB "
             "| particles | F1@0.5 vs in-memory |",
             "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f1 = "-" if r.get("f1_vs_in_memory") is None else f"{r['f1_vs_in_memory']:.4f}"
        lines.append(f"| {r['size']}^3 | {r['voxels']:,} | {r['method']} | {r['path']} | {r['seconds']:.1f} | "
                     f"{r['voxels'] / r['seconds'] / 1e6:.2f} | {r['cpu_seconds']:.1f} | "
                     f"{r['peak_tree_bytes'] / 2**30:.2f} | {r['maxrss_bytes'] / 2**30:.2f} | "
                     f"{r['particles']} | {f1} |")
    if args.failed:
        lines += ["", "Runs that failed (no row above): " + "; ".join(args.failed) + "."]
    lines += ["", *_ratio_lines(rows), "", *_check_lines(rows), "",
              f"![Time and peak memory against scan voxels]({PLOT.as_posix()})", "", END]
    _replace_section(Path(args.out), "\n".join(lines))
    plot(rows, Path(args.out).parent / PLOT)


def _scans_text(scans: dict) -> str:
    parts = [f"{n}^3: {a.get('generated')}, {a.get('grains')} grains in the generated scan, "
             f"mean diameter {a.get('mean_diameter_vox', float('nan')):.1f} voxels"
             for n, a in sorted(scans.items()) if n <= TILE]
    tiled = [f"{n}^3" for n in sorted(scans) if n > TILE]
    text = "Scans (uint16 zarr v2, chunks 128^3, spacing 0.01 mm, the generator's particle size given): " + \
        "; ".join(parts)
    if tiled:
        text += f"; {', '.join(tiled)}: the {TILE}^3 scan mirror-tiled (alternate tiles flipped)"
    return text + "."


def _ratio_lines(rows: list) -> list:
    """Chunked over in-memory voxels per second, at the same size and against the largest in-memory size."""
    lines = ["Chunked voxels per second over in-memory voxels per second (same method; 'same size' where both "
             "ran, else against the largest scan that ran in memory; 'CPU' the same ratio by CPU seconds):", "",
             "| size | method | path | vs in-memory, same size | CPU, same size | vs largest in-memory run |",
             "|---:|---|---|---:|---:|---:|"]
    for r in rows:
        if r["path"] == "in-memory":
            continue
        same = _in_memory(rows, r["method"], lambda size: size == r["size"])
        largest = _in_memory(rows, r["method"], lambda size: size <= r["size"])
        same_text = "-" if same is None else f"{_speed(r, same, 'seconds'):.2f}x"
        cpu_text = "-" if same is None else f"{_speed(r, same, 'cpu_seconds'):.2f}x"
        largest_text = "-" if largest is None else f"{_speed(r, largest, 'seconds'):.2f}x ({largest['size']}^3)"
        lines.append(f"| {r['size']}^3 | {r['method']} | {r['path']} | {same_text} | {cpu_text} | {largest_text} |")
    return lines


def _in_memory(rows: list, method: str, size_ok):
    """The in-memory row of ``method`` with the largest size that ``size_ok`` accepts, or None."""
    hits = [x for x in rows if x["method"] == method and x["path"] == "in-memory" and size_ok(x["size"])]
    return max(hits, key=lambda x: x["size"]) if hits else None


def _speed(row: dict, reference: dict, key: str) -> float:
    """Voxels per (wall or CPU) second of ``row`` over those of ``reference``."""
    return (row["voxels"] / row[key]) / (reference["voxels"] / reference[key])


def _check_lines(rows: list) -> list:
    """Issue 14's acceptance at 512^3 with --chunk-size 128, where it ran."""
    lines = []
    for r in rows:
        if r["size"] != 512 or r["path"] != "chunked":
            continue
        smaller = _in_memory(rows, r["method"], lambda size: size < 512)
        # the larger of the two: a spike shorter than the poll can escape the tree's sum
        peak = max(r["peak_tree_bytes"], r["maxrss_bytes"])
        memory_ok = peak <= 1.5 * 2**30
        speed = "no smaller in-memory run to compare with"
        if smaller is not None:
            ratio = _speed(r, smaller, "seconds")
            speed = (f"{ratio:.2f}x the voxels per second of the in-memory run at {smaller['size']}^3 "
                     f"({'meets' if ratio >= 0.5 else 'misses'} >= 0.5x; "
                     f"{'meets' if ratio >= 1 else 'misses'} the 1x goal)")
        lines.append(f"- 512^3, {r['method']}, chunk size {r['chunk_size']}: peak {peak / 2**30:.2f} "
                     f"GiB, the larger of the tree's sum and maxrss ({'within' if memory_ok else 'above'} 1.5 GiB); "
                     f"{speed}.")
    return lines


#: Line style of each path in the plot (the colour is the method's).
PATH_STYLES = {"in-memory": dict(marker="o", linestyle="-"), "chunked": dict(marker="s", linestyle="--"),
               "chunked, dask local": dict(marker="^", linestyle=":")}


def plot(rows: list, path: Path) -> None:
    """Two log-log panels: seconds and peak memory against voxels, one line per method and path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8))
    colours = {m: f"C{i}" for i, m in enumerate(sorted({r["method"] for r in rows}))}
    for method, way in sorted({(r["method"], r["path"]) for r in rows}):
        mine = sorted((r for r in rows if (r["method"], r["path"]) == (method, way)), key=lambda r: r["voxels"])
        voxels = [r["voxels"] for r in mine]
        style = dict(PATH_STYLES[way], color=colours[method], label=f"{method}, {way}")
        left.plot(voxels, [r["seconds"] for r in mine], **style)
        right.plot(voxels, [r["peak_tree_bytes"] / 2**30 for r in mine], **style)
    right.axhline(1.5, color="grey", linewidth=0.8, linestyle="-.", label="1.5 GiB (issue 14: chunked, 512^3)")
    left.set(xscale="log", yscale="log", xlabel="scan voxels", ylabel="wall time (s)", title="Time")
    right.set(xscale="log", yscale="log", xlabel="scan voxels", ylabel="peak resident memory, process tree (GiB)",
              title="Peak memory")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        # plain numbers on the value axes: a log axis otherwise labels them 4x10^0
        for set_formatter in (axis.yaxis.set_major_formatter, axis.yaxis.set_minor_formatter):
            set_formatter(matplotlib.ticker.FuncFormatter(_tick_label))
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tick_label(value: float, _position) -> str:
    """Plain numbers at 1, 2, 3 and 5 times a power of ten; the other ticks unlabelled, so they do not crowd."""
    if value <= 0:
        return ""
    leading = value / 10 ** np.floor(np.log10(value) + 1e-9)
    return f"{value:g}" if min(abs(leading - d) for d in (1, 2, 3, 5)) < 1e-6 else ""


def _replace_section(path: Path, text: str) -> None:
    """Replace the marked Scale section of a markdown file, or append it at the end."""
    from ps3d_toolkit.core.atomic import atomic_path

    old = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in old and END in old:
        start = old.index(BEGIN)
        heading = old.rfind(HEADING, 0, start)
        start = heading if heading >= 0 else start
        new = old[:start] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + text + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(new)


# ---------------------------------------------------------------------------- main

def in_memory_max(methods: list, sizes: list) -> dict:
    """Largest size each method may run in memory: its bytes per voxel within a share of the free memory."""
    import psutil

    budget = IN_MEMORY_SHARE * psutil.virtual_memory().available
    return {m: max((n for n in sizes if n**3 * IN_MEMORY_BYTES_PER_VOXEL[m] <= budget), default=0) for m in methods}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256,384,512,768", help="scan edges in voxels, comma-separated")
    parser.add_argument("--methods", default="model,otsu-watershed", help="comma-separated: model, otsu-watershed")
    parser.add_argument("--chunk-size", type=int, default=128, help="block edge of the chunked path")
    parser.add_argument("--in-memory-max", type=int,
                        help="largest scan edge to run in memory (default: by method, "
                             f"{IN_MEMORY_BYTES_PER_VOXEL} bytes a voxel within {IN_MEMORY_SHARE * 100:.0f}%% of the "
                             "memory available at start)")
    parser.add_argument("--dask", action="store_true", help="also run the chunked path with --dask-scheduler local")
    parser.add_argument("--work", default="/tmp/ps3d_scale", help="cached scans, outputs and logs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"),
                        help="markdown file whose Scale section is replaced (the plot goes to screenshots/ beside it)")
    parser.add_argument("--keep-outputs", action="store_true", help="keep the label stores (default: deleted)")
    parser.add_argument("--prepare-only", action="store_true", help="generate the scans and stop")
    parser.add_argument("--inspect", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",")})
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(IN_MEMORY_BYTES_PER_VOXEL)
    if unknown:
        parser.error(f"--methods: unknown {sorted(unknown)}; choose from {sorted(IN_MEMORY_BYTES_PER_VOXEL)}")
    args.work = Path(args.work)
    args.failed = []
    return args


def main(argv=None) -> int:
    import psutil
    import zarr

    args = parse_args(argv)
    if args.inspect:
        print(json.dumps(inspect(*json.loads(args.inspect))))
        return 0
    if args.prepare_only:
        for n in args.sizes:
            start = time.perf_counter()
            print(f"scan {n}^3: {prepare_scan(args.work, n)} ({time.perf_counter() - start:.1f} s)", flush=True)
        return 0
    # in a child: generating a scan takes ~0.5 GB, which this process must never hold (see in_child)
    subprocess.run([sys.executable, __file__, "--prepare-only", "--sizes", ",".join(map(str, args.sizes)),
                    "--work", str(args.work)], check=True)
    scans = {n: dict(zarr.open_array(str(scan_path(args.work, n)), mode="r").attrs) for n in args.sizes}
    limits = ({m: args.in_memory_max for m in args.methods} if args.in_memory_max is not None
              else in_memory_max(args.methods, args.sizes))
    memory_limit_gb = psutil.virtual_memory().total / 1e9
    load_before = os.getloadavg()[0]
    (args.work / "out").mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        for method in args.methods:
            rows += run_size(args, scans, n, method, limits[method], memory_limit_gb)
    machine = (f"{cpu_model(platform.machine())}, {os.cpu_count()} cores, "
               f"{psutil.virtual_memory().total / 2**30:.1f} GiB memory, CPU only, threads as the toolkit "
               f"chooses; a shared machine: load average {load_before:.1f} before the runs, "
               f"{os.getloadavg()[0]:.1f} after, so read the ratios within this table")
    command = " ".join(["python benchmarks/scale.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    write_report(rows, args, scans, command, machine)
    (args.work / time.strftime("results-%Y%m%d-%H%M%S.json")).write_text(json.dumps(rows, indent=1, default=str))
    print(f"wrote {args.out} and {Path(args.out).parent / PLOT}", flush=True)
    return 0


def run_size(args, scans: dict, n: int, method: str, in_memory_max: int, memory_limit_gb: float) -> list:
    """The rows of one size and method: every path, then particles and F1 against the in-memory labels."""
    import shutil

    paths = ["in-memory", "chunked"] + (["chunked, dask local"] if args.dask else [])
    rows = []
    for path in paths:
        if path == "in-memory" and n > in_memory_max:
            continue
        row = run_one(args, scans, n, method, path, memory_limit_gb)
        if row is not None:
            rows.append(row)
    reference = next((str(r["output"]) for r in rows if r["path"] == "in-memory"), None)
    for row in rows:
        output = row.pop("output")
        vs = None if row["path"] == "in-memory" else reference
        found = json.loads(in_child("--inspect", json.dumps([str(output), vs])))
        row["particles"], row["f1_vs_in_memory"] = found["particles"], found["f1_50"]
        f1 = "" if found["f1_50"] is None else f", F1@0.5 vs in-memory {found['f1_50']:.4f}"
        print(f"  {n}^3 {method} {row['path']}: {row['particles']} particles{f1}", flush=True)
    if not args.keep_outputs:
        for path in paths:
            shutil.rmtree(_output(args, n, method, path), ignore_errors=True)
    return rows


def _output(args, n: int, method: str, path: str) -> Path:
    """The label store of one run."""
    return args.work / "out" / f"{_tag(n, method, path)}.zarr"


def _tag(n: int, method: str, path: str) -> str:
    return f"{n}_{method}_{path.replace(', ', '_').replace(' ', '-')}"


def run_one(args, scans: dict, n: int, method: str, path: str, memory_limit_gb: float):
    """One measured run; its row, or None (recorded in ``args.failed``) when it failed."""
    output = _output(args, n, method, path)
    log = args.work / f"{_tag(n, method, path)}.log"
    cmd = segment_command(scan_path(args.work, n), output, method, scans[n]["particle_size_mm"], path,
                          args.chunk_size, memory_limit_gb)
    result = measure_command(cmd, log, dict(os.environ))
    name = f"{n}^3 {method} {path}"
    if result["returncode"] != 0:
        args.failed.append(f"{name} (exit {result['returncode']}, log {log})")
        print(f"{name}: FAILED, see {log}\n{log.read_text(errors='replace')[-1500:]}", flush=True)
        return None
    if path == "in-memory" and not ran_in_memory(log):
        args.failed.append(f"{name} (the CLI switched to blocks)")
        print(f"{name}: the CLI switched to blocks; not an in-memory run", flush=True)
        return None
    print(f"{name}: {result['seconds']:.1f} s, {n**3 / result['seconds'] / 1e6:.2f} Mvoxel/s, peak tree "
          f"{result['peak_tree_bytes'] / 2**30:.2f} GiB, CPU {result['cpu_seconds']:.1f} s, "
          f"maxrss {result['maxrss_bytes'] / 2**30:.2f} GiB", flush=True)
    return {"size": n, "voxels": n**3, "method": method, "path": path, "chunk_size": args.chunk_size,
            **result, "output": output}


if __name__ == "__main__":
    raise SystemExit(main())
