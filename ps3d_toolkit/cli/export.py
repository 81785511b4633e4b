"""Choose the core threshold on the validation scans and write a model file.

Export the weights of a training run (model.pt or best.pt from 'ps3d train'):
choose the core-probability threshold of the instance step on the validation scans
(never on test scans), store it in the weights' config with the run's provenance,
and write DST, a weight file for 'ps3d segment --weights' or to ship. DST is
checked before any work: not SRC, not an existing file unless --overwrite, writable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ps3d_toolkit.cli.args import add_overwrite, add_verbosity, check_output, command_line, positive, say


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability in (0, 1), got {text!r}")
    return value

EXAMPLES = """
ps3d export runs/mine/model.pt mine.pt --note 'fine-tuned on 4 labelled scans'
ps3d export runs/mine/model.pt mine.pt --inference-diameter-vox 20 --core-threshold 0.75
"""


def add_arguments(parser) -> None:
    parser.add_argument("src", type=Path, metavar="SRC", help="weights from a training run (model.pt or best.pt)")
    parser.add_argument("dst", type=Path, metavar="DST", help="weight file to write (.pt)")
    parser.add_argument("--note", help="free text stored in the metadata (e.g. how the run went)")
    parser.add_argument("--inference-diameter-vox", type=positive, default=None, metavar="VOX",
                        help="mean particle diameter in voxels on the network's grid at inference "
                             "(default: the source's, else its training diameter)")
    parser.add_argument("--core-threshold", type=_probability, default=None, metavar="T",
                        help="set the core threshold instead of choosing it on the validation scans")
    add_overwrite(parser, "DST")
    add_verbosity(parser)


def run(args) -> int:
    """Run ``ps3d export`` on parsed arguments."""
    from ps3d_toolkit.training.export import export_weights

    check_output(args.dst, None, "weight file", inputs=(args.src,), overwrite=args.overwrite)
    path = export_weights(args.src, args.dst, note=args.note, inference_diameter_vox=args.inference_diameter_vox,
                          core_threshold=args.core_threshold, command=command_line("export"))
    say(args, f"wrote {path}")
    return 0
