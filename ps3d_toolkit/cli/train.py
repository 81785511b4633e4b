"""Train or fine-tune the border-core U-Net.

Train the border-core U-Net on synthetic scans drawn fresh from the generator,
and/or on your own label sets (--data). Resumes from OUTPUT/last.pt when it exists.
OUTPUT is a run folder that this command owns: it is checked before any work (a
folder, not one of the --data folders, writable), and a run in it is resumed,
never replaced.
"""

from __future__ import annotations

from pathlib import Path

from ps3d_toolkit.cli.args import (CLIError, check_output, command_line, fraction, non_negative, positive,
                                   whole_number)

EXAMPLES = """
ps3d train --output runs/mine --steps 3000
ps3d train --data my_labels --init default --steps 300 --output runs/mine
ps3d export runs/mine/model.pt mine.pt
"""


def add_arguments(parser) -> None:
    parser.add_argument("--output", default="runs/default", help="run folder (checkpoints, log, model.pt)")
    parser.add_argument("--steps", type=whole_number(1), default=3000, help="optimiser steps (default 3000)")
    parser.add_argument("--batch-size", type=whole_number(1), default=4, help="patches per step (default 4)")
    parser.add_argument("--patch-size", type=whole_number(16), default=64,
                        help="patch edge in voxels, at least 16 (default 64)")
    parser.add_argument("--lr", type=positive, default=2e-3, help="peak learning rate (default 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--data", action="append", default=[], metavar="FOLDER",
                        help="user label set folder (repeatable); see docs/model_card.md")
    parser.add_argument("--synthetic-fraction", type=fraction, default=0.3,
                        help="share of synthetic scans when --data is given (default 0.3)")
    parser.add_argument("--init", default=None, metavar="WEIGHTS",
                        help="start from weights ('default' = the shipped model)")
    parser.add_argument("--pool-size", type=whole_number(1), default=24, help="training volumes in memory")
    parser.add_argument("--refresh-every", type=whole_number(1), default=8,
                        help="steps between replacing one pool volume with a fresh one")
    parser.add_argument("--val-every", type=whole_number(0), default=250,
                        help="validation interval (0 = never)")
    parser.add_argument("--preset-weights", type=non_negative, nargs=3, default=(0.2, 0.4, 0.4),
                        metavar=("EASY", "MEDIUM", "HARD"),
                        help="how often synthetic scans come from each difficulty preset")
    parser.add_argument("--stress-fraction", type=fraction, default=0.0,
                        help="share of synthetic scans pushed past the hard preset "
                             "(lower contrast, stronger rings/cupping, wider holders, one shape)")
    parser.add_argument("--train-diameter-vox", type=positive, default=None, metavar="VOX",
                        help="mean particle diameter in voxels that training scans are resampled "
                             "to (default: 18, or that of the --init weights)")
    parser.add_argument("--workers", type=whole_number(0), default=0,
                        help="processes generating synthetic scans ahead of the training loop "
                             "(default 0: in the loop; use most CPU cores when training on a GPU)")
    parser.add_argument("--max-minutes", type=positive, default=None,
                        help="stop after this much training time; the learning rate decays over "
                             "whichever of --steps and this is reached first")
    parser.add_argument("--threads", type=whole_number(1), default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps; checked before any work")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the library's debug messages")


def _check_arguments(args) -> None:
    """Refuse bad preset weights, a missing device and a bad run folder before any work.

    The run folder must not be a file or one of the --data folders, and must be writable.
    """
    if not sum(args.preset_weights) > 0:
        raise CLIError(f"--preset-weights must not all be 0, got {' '.join(map(str, args.preset_weights))}")
    if args.device not in (None, "auto"):
        from ps3d_toolkit.segmentation.model.device import select_device

        select_device(args.device)
    folder = Path(args.output).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--output must be a run folder, but {folder} is a file")
    inputs = [Path(d).expanduser() for d in args.data]
    if any(folder.resolve() == d.resolve() for d in inputs):
        raise CLIError(f"--output {folder} is one of the --data folders; choose a separate run folder")
    if args.init not in (None, "default"):
        inputs.append(Path(args.init).expanduser())
    # the run replaces its own model.pt; the probe shows whether the folder can be written at all
    check_output(folder / "model.pt", None, "weight file", inputs=inputs, overwrite=True)


def run(args) -> int:
    """Run a training from parsed arguments; print where the weights went."""
    from ps3d_toolkit.training import loop

    _check_arguments(args)
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
