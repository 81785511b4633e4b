"""The network grid's memory: refuse a run whose grid would not fit, before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ps3d_toolkit.core.errors import ResourceError
from ps3d_toolkit.segmentation._checks import DEFAULT_CHUNK_SIZE, check_particle_size
from ps3d_toolkit.segmentation.normalize import grid_shape, zoom_factors

__all__ = ["GridCheck"]

# Peak memory of the network pass per voxel of the network's grid: the float32
# input (4 B), MONAI's sliding-window output and weight buffers, the softmax
# probabilities and their mean (3 classes x float32 each). Measured with
# ru_maxrss on the shipped network (CPU, 96^3 windows, batch 2): +751 MB for a
# 256^3 grid and +1351 MB for 320^3, i.e. 37.5 B a voxel on top of the input
# and ~0.1 GB for the windows themselves; test-time augmentation (a flipped
# copy of input and output, a running sum) added 34 B a voxel (256^3).
_GRID_BYTES_PER_VOXEL = 42
_GRID_BYTES_PER_VOXEL_TTA = 78
@dataclass
class GridCheck:
    """The network grid's shape and memory at a particle size, checked against the budget.

    Attributes
    ----------
    scan_shape, spacing
        The scan's shape and voxel size (mm).
    inference_diameter_vox : float
        Particle diameter on the network's grid.
    tta : bool
        Whether the mirrorings are averaged (more memory a voxel).
    budget : (float, str)
        Bytes allowed and how that was set (:func:`memory_budget_bytes`).
    """

    scan_shape: tuple
    spacing: tuple
    inference_diameter_vox: float
    tta: bool
    budget: tuple

    def shape(self, particle_size_mm: float) -> tuple:
        """The network grid's shape at ``particle_size_mm``."""
        return grid_shape(self.scan_shape, zoom_factors(self.spacing, particle_size_mm, self.inference_diameter_vox))

    def check(self, particle_size_mm: float, *, estimated: bool = False) -> float:
        """Refuse a size whose grid would not fit in the budget (and an estimate out of scale)."""
        if estimated:
            check_particle_size(particle_size_mm, self.spacing, self.scan_shape, estimated=True)
        zoom = zoom_factors(self.spacing, particle_size_mm, self.inference_diameter_vox)
        # floats: an absurd size must give a refusal, not an overflow
        grid = [max(1.0, float(np.rint(n * z))) for n, z in zip(self.scan_shape, zoom)]
        per_voxel = _GRID_BYTES_PER_VOXEL_TTA if self.tta else _GRID_BYTES_PER_VOXEL
        needed = math.prod(grid) * per_voxel
        limit, how = self.budget
        if needed > limit or not math.isfinite(needed):
            what = "the estimated particle size" if estimated else "particle_size_mm"
            raise ResourceError(
                f"at {what} {particle_size_mm:.4g} mm the model's network grid would be "
                f"{' x '.join(f'{g:.0f}' for g in grid)} voxels ({self.inference_diameter_vox:g} voxels a particle) and "
                f"need ~{needed / 1e9:.3g} GB ({per_voxel} bytes a voxel), above the memory budget of "
                f"{limit / 1e9:.3g} GB ({how}); segment it block by block with chunk_size={DEFAULT_CHUNK_SIZE} (a smaller "
                "chunk_size if it already is), or use a larger particle size, a smaller inference_diameter_vox, "
                "or crop the scan")
        return particle_size_mm
