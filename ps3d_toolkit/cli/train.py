"""Train or fine-tune the border-core U-Net.

Train the border-core U-Net on synthetic scans drawn fresh from the generator,
and/or on your own label sets (--data). Resumes from OUTPUT/last.pt when it exists.
"""

from __future__ import annotations

from ps3d_toolkit.cli.args import command_line, positive

EXAMPLES = """
ps3d train --output runs/mine --steps 3000
ps3d train --data my_labels --init default --steps 300 --output runs/mine
ps3d export runs/mine/model.pt mine.pt
"""


def add_arguments(parser) -> None:
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
    parser.add_argument("--train-diameter-vox", type=positive, default=None, metavar="VOX",
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
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the library's debug messages")


def run(args) -> int:
    """Run a training from parsed arguments; print where the weights went."""
    from ps3d_toolkit.training import loop

    config = loop.TrainingConfig(
        output_dir=args.output, steps=args.steps, batch_size=args.batch_size,
        patch_size=args.patch_size, learning_rate=args.lr, seed=args.seed,
        data_dirs=list(args.data), synthetic_fraction=args.synthetic_fraction,
        init_weights=args.init, pool_size=args.pool_size, refresh_every=args.refresh_every,
        val_every=args.val_every, threads=args.threads, device=args.device,
        preset_weights=tuple(args.preset_weights), stress_fraction=args.stress_fraction,
        workers=args.workers,
        network={} if args.train_diameter_vox is None else {"train_diameter_vox": args.train_diameter_vox},
        time_limit_s=None if args.max_minutes is None else 60.0 * args.max_minutes)
    # the run records the command that made it (quoted back to the model card)
    path = loop.train(config, progress=not args.quiet, command=command_line("train"))
    print(f"ps3d train: wrote {path}")
    return 0
