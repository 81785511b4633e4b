"""``python -m ps3d_toolkit.model ARGS``: the same as ``ps3d train ARGS``."""

from .cli_train import main

raise SystemExit(main())
