"""Scans with exact answers: synthetic phantoms and the bundled sample.

Public API
----------
generate_scan(shape, mean_diameter_vox, *, seed, preset, ...) -> SyntheticScan
    A phantom of grains in an epoxy cylinder with exact instance labels.
load_sample() -> (Scan, labels)
    The bundled 128^3 sample and its ground truth.
"""

from __future__ import annotations

from ps3d_toolkit.data.sample import SAMPLE_PARAMS, load_sample, make_sample, sample_path
from ps3d_toolkit.data.synthetic import PRESETS, SHAPES, SyntheticScan, generate_scan, random_params

__all__ = ["PRESETS", "SAMPLE_PARAMS", "SHAPES", "SyntheticScan", "generate_scan", "load_sample",
           "make_sample", "random_params", "sample_path"]
