"""The border-core 3D U-Net: network, weight files, sliding-window inference, shipped weights."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "ps3d_default.pt"


def weights_available(path=None) -> bool:
    """Whether the shipped (or given) weight file exists."""
    return Path(path or DEFAULT_WEIGHTS).is_file()
