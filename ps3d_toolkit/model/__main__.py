"""``python -m ps3d_toolkit.model``: the training command (same as ``ps3d train``)."""

from ..cli import main

if __name__ == "__main__":
    raise SystemExit(main(["train", *__import__("sys").argv[1:]]))
