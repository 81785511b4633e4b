"""Segment and measure the bundled sample scan; write labels, a table, an HTML report and a workbook.

Run the whole pipeline on the bundled sample (a 128^3 synthetic micro-CT scan of
mineral grains in epoxy, 0.01 mm voxels, with exact ground-truth labels):
segment it, measure every particle (with two mineral phases split by grey level),
score the result against the ground truth and write labels.tif, particles.csv,
report.html (opens offline) and report.xlsx (every table of the report) into DIR.
Running it again replaces those four files in DIR and leaves anything else there alone.
"""

from __future__ import annotations

import time
from pathlib import Path

from ps3d_toolkit.cli.args import CLIError, add_method, add_verbosity, check_excel, check_method, check_output, say

EXAMPLES = """
ps3d demo --output ps3d_demo_output
"""

#: The files the demo writes into its folder: the only ones a new run replaces.
DEMO_FILES = ("labels.tif", "particles.csv", "report.html", "report.xlsx")


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("ps3d_demo_output"), metavar="DIR",
                        help="folder for the results (created if needed); a new run replaces "
                             f"{', '.join(DEMO_FILES)} there and nothing else")
    add_method(parser)
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d demo`` on parsed arguments."""
    from ps3d_toolkit.analysis.evaluate import evaluate_instances
    from ps3d_toolkit.data import load_sample
    from ps3d_toolkit.io import save_labels, save_table
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.report import export_tables, write_report
    from ps3d_toolkit.segmentation import segment

    method = check_method(args.method)
    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"--output must be a folder, but {args.output} is a file")
    # the demo's own files are replaced: re-running 'ps3d demo' must work
    for name in DEMO_FILES:
        if name.endswith(".xlsx"):
            check_excel(args.output / name, overwrite=True)
        else:
            check_output(args.output / name, None, "demo output", overwrite=True)
    scan, truth = load_sample()
    say(args, f"sample: {' x '.join(map(str, scan.shape))} voxels of {scan.spacing[0]:g} mm, "
              f"segmenting with {method}")
    start = time.perf_counter()
    labels = segment(scan.image, spacing=scan.spacing, particle_size_mm=scan.particle_size_mm,
                     method=method, progress=not args.quiet)
    seconds = time.perf_counter() - start
    table = measure(labels, image=scan.image, spacing=scan.spacing, phases="auto", progress=not args.quiet)
    metrics = evaluate_instances(truth, labels)
    notes = {"method": method, "segmentation time, s": round(seconds, 1)}

    written = {
        "labels": save_labels(labels, args.output / "labels.tif", spacing=scan.spacing),
        "particle table": save_table(table, args.output / "particles.csv"),
        "report": write_report(
            table, args.output / "report.html", scan=scan, labels=labels, metrics=metrics,
            title="ps3d demo: the bundled sample", notes=notes,
        ),
        "tables (Excel)": export_tables(table, args.output / "report.xlsx", scan=scan, notes=notes)[0],
    }
    say(args, f"found {len(table)} particles ({metrics['n_gt']} in the ground truth) in {seconds:.1f} s; "
              f"F1 at IoU > 0.5 = {metrics['f1_50']:.3f}, PQ = {metrics['pq']:.3f}")
    for what, path in written.items():
        print(f"wrote {what}: {path}")
    return 0
