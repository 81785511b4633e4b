"""Fine-tune the model on your own unlabelled scan, without labels.

Self-training on one scan: a first pass segments it and scores it without
labels; phantoms generated to look like the scan (its grain size, packing,
phases, noise, blur and contrast measured from the first pass), and with
--targets pseudo the scan's own confident particles (uncertain voxels left out),
are the training targets; the shipped (or --weights) model is fine-tuned on
them for --minutes, in --rounds rounds. The
adapted weights are written only when the label-free estimate says they are
better; otherwise OUTPUT holds the starting weights, and the last line says so.
Either way OUTPUT's metadata records what was done. Use OUTPUT with
`ps3d segment SCAN --weights OUTPUT`. No label file is read. The arguments and
OUTPUT (not an existing file unless --overwrite, writable) are checked before any work.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (
    CLIError,
    add_overwrite,
    add_particle_size,
    add_spacing,
    add_verbosity,
    check_output,
    command_line,
    positive,
    whole_number,
)

EXAMPLES = """
ps3d adapt scan.tif --spacing 0.01 --particle-size 0.2 --output adapted.pt --minutes 6
ps3d segment scan.tif --spacing 0.01 --particle-size 0.2 --weights adapted.pt --output labels.tif
"""

_TARGETS = ("pseudo", "matched")


def add_arguments(parser) -> None:
    parser.add_argument("scan", type=Path, metavar="SCAN", help="the scan to adapt the model to")
    add_spacing(parser, "the scan")
    add_particle_size(parser, "needed when none is stored")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="W.pt",
                        help="weight file to write (.pt)")
    add_overwrite(parser, "--output")
    parser.add_argument("--minutes", type=positive, default=6.0,
                        help="training time over all rounds (default 6; the passes over the scan come on top)")
    parser.add_argument("--weights", type=Path, metavar="PT", default=None,
                        help="starting weights (default: the shipped model)")
    parser.add_argument("--rounds", type=whole_number(1), default=1,
                        help="rounds of targets, training and a new pass (default 1)")
    parser.add_argument("--targets", nargs="+", choices=_TARGETS, default=["matched"],
                        help="scan-matched phantoms (the default), pseudo-labels of the scan's confident "
                             "particles, or both; see docs/adapt.md for what each did")
    parser.add_argument("--max-steps", type=whole_number(1), default=None,
                        help="stop after this many optimiser steps over all rounds (default: time only)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--threads", type=whole_number(1), default=None, help="torch CPU threads")
    add_verbosity(parser)


def _check_arguments(args) -> None:
    """The output, the scan and the starting weights, before any work."""
    if not args.output.name.lower().endswith(".pt"):
        raise CLIError(f"--output must be a .pt weight file, got {args.output}")
    if not args.scan.exists():
        raise CLIError(f"scan not found: {args.scan}")
    if args.weights is not None and not args.weights.is_file():
        raise CLIError(f"--weights file not found: {args.weights}")
    check_output(args.output, (".pt",), "weight file", inputs=(args.scan, args.weights),
                 overwrite=args.overwrite)


def run(args) -> int:
    """Run ``ps3d adapt`` on parsed arguments; print the decision on one line."""
    _check_arguments(args)
    import numpy as np

    from ps3d_toolkit.io import load_scan
    from ps3d_toolkit.training import adapt

    scan = load_scan(args.scan, spacing=args.spacing)
    size = args.particle_size_mm or scan.particle_size_mm
    if size is None:
        raise CLIError(f"{args.scan} stores no particle size: pass --particle-size MM")
    result = adapt(np.asarray(scan.image), spacing=scan.spacing, particle_size_mm=size, minutes=args.minutes,
                   weights=args.weights, output=args.output, progress=not args.quiet, seed=args.seed,
                   targets=args.targets, rounds=args.rounds, max_steps=args.max_steps, threads=args.threads,
                   scan_name=args.scan.name, command=command_line("adapt"))
    # the decision is the command's result: one line, shown even with --quiet
    print(f"ps3d adapt: {result.message}; wrote {result.weights}")
    return 0
