"""ps3d_toolkit: find and measure individual particles in 3D micro-CT scans.

The public API is re-exported lazily here so that ``import ps3d_toolkit`` stays
fast (torch and MONAI load only when the model is used).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_scan": "ps3d_toolkit.io",
    "save_labels": "ps3d_toolkit.io",
    "Scan": "ps3d_toolkit.io",
    "segment": "ps3d_toolkit.segmentation",
    "measure": "ps3d_toolkit.measurement",
    "evaluate_instances": "ps3d_toolkit.analysis.evaluate",
    "generate_scan": "ps3d_toolkit.data.synthetic",
    "load_sample": "ps3d_toolkit.data",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ps3d_toolkit' has no attribute {name!r}")
