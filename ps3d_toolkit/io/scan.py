"""The :class:`Scan`: grey values in (z, y, x) order plus their voxel spacing in mm."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.checks import check_positive, check_spacing


@dataclass
class Scan:
    """A 3D scan: grey values in (z, y, x) order plus its voxel spacing in mm.

    Unpacks as ``image, spacing = load_scan(path)``.

    Attributes
    ----------
    image : numpy.ndarray or a lazy array
        Grey values, (z, y, x). What :func:`~ps3d_toolkit.io.load_scan` returns
        stays lazy (read block by block when sliced; ``np.asarray`` reads it all).
    spacing : tuple of 3 float
        Voxel size in mm, (z, y, x).
    name : str
        Scan name, the file name without its extension.
    particle_size_mm : float or None
        Rough mean particle diameter in mm, when the metadata gives one.
    path : Path or None
        Where the scan was read from.
    """

    image: object
    spacing: tuple
    name: str = "scan"
    particle_size_mm: float | None = None
    path: Path | None = None

    def __post_init__(self):
        self.spacing = check_spacing(self.spacing)
        self.particle_size_mm = check_positive(self.particle_size_mm, "particle_size_mm", allow_none=True)

    @property
    def shape(self) -> tuple:
        """Shape of the image, (z, y, x)."""
        return tuple(self.image.shape)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the image."""
        return np.dtype(self.image.dtype)

    def __iter__(self):
        return iter((self.image, self.spacing))

    def __repr__(self) -> str:
        return (
            f"Scan(name={self.name!r}, shape={self.shape}, dtype={self.dtype}, "
            f"spacing={self.spacing}, particle_size_mm={self.particle_size_mm})"
        )
