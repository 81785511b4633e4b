"""The ``train`` subcommand: argument parser and runner (registered by ``ps3d``)."""

from __future__ import annotations

import argparse
import shlex
import sys

from ps3d_toolkit.training.loop import TrainingConfig, train

__all__ = ["add_train_parser", "run_train", "main"]


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``train`` to a ``ps3d`` subparsers object and return its parser."""
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the border-core U-Net",
        description=(
            "Train the border-core U-Net on synthetic scans drawn fresh from the generator, "
            "and/or on your own label sets (--data). Resumes from OUTPUT/last.pt when it "
            "exists. Fine-tune the shipped model on a few labelled scans with "
            "`ps3d train --data my_labels --init default --steps 300 --output runs/mine`."),
    )
    parser.add_argument("--output", default="runs/default", help="run folder (checkpoints, log, model.pt)")
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps (default 3000)")
    parser.add_argument("--batch-size", type=int, default=4, help="patches per step (default 4)")
    parser.add_argument("--patch-size", type=int, default=64, help="patch edge in voxels (default 64)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--data", action="append", default=[], metavar="FOLDER",
                        help="user label set folder (repeatable); see docs/model_card.md")
    parser.add_argument("--synthetic-fraction", type=float, default=0.3,
                        help="share of synthetic scans when --data is given (default 0.3)")
    parser.add_argument("--init", default=None, metavar="WEIGHTS",
                        help="start from weights ('default' = the shipped model)")
    parser.add_argument("--pool-size", type=int, default=24, help="training volumes in memory")
    parser.add_argument("--refresh-every", type=int, default=8,
                        help="steps between replacing one pool volume with a fresh one")
    parser.add_argument("--val-every", type=int, default=250, help="validation interval (0 = never)")
    parser.add_argument("--preset-weights", type=float, nargs=3, default=(0.2, 0.4, 0.4),
                        metavar=("EASY", "MEDIUM", "HARD"),
                        help="how often synthetic scans come from each difficulty preset")
    parser.add_argument("--stress-fraction", type=float, default=0.0,
                        help="share of synthetic scans pushed past the hard preset "
                             "(lower contrast, stronger rings/cupping, wider holders, one shape)")
    parser.add_argument("--target-diameter", type=float, default=None, metavar="VOX",
                        help="mean particle diameter in voxels that training scans are resampled "
                             "to (default: 18, or that of the --init weights)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes generating synthetic scans ahead of the training loop "
                             "(default 0: in the loop; use most CPU cores when training on a GPU)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after this much training time; the learning rate decays over "
                             "whichever of --steps and this is reached first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_train)
    return parser


def run_train(args) -> int:
    """Run a training from parsed arguments; print where the weights went."""
    config = TrainingConfig(
        output_dir=args.output, steps=args.steps, batch_size=args.batch_size,
        patch_size=args.patch_size, learning_rate=args.lr, seed=args.seed,
        data_dirs=list(args.data), synthetic_fraction=args.synthetic_fraction,
        init_weights=args.init, pool_size=args.pool_size, refresh_every=args.refresh_every,
        val_every=args.val_every, threads=args.threads, device=args.device,
        preset_weights=tuple(args.preset_weights), stress_fraction=args.stress_fraction,
        workers=args.workers,
        network={} if args.target_diameter is None else {"target_diameter_vox": args.target_diameter},
        time_limit_s=None if args.max_minutes is None else 60.0 * args.max_minutes)
    # `ps3d train ARGS` and `python -m ps3d_toolkit.segmentation.model ARGS` record the same command
    words = sys.argv[1:]
    if words[:1] != ["train"]:
        words = ["train", *words]
    command = "ps3d " + " ".join(shlex.quote(a) for a in words)
    path = train(config, progress=not args.quiet, command=command)
    print(f"ps3d train: wrote {path}")
    return 0


def main(argv=None) -> int:
    """``python -m ps3d_toolkit.segmentation.model ...``: the same as ``ps3d train ...``."""
    parser = argparse.ArgumentParser(prog="ps3d")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
