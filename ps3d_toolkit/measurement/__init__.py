"""Per-particle measurements: one table row per particle, in physical units.

Public API
----------
measure(labels, image=None, *, spacing, phases, ..., chunk_size=None) -> pandas.DataFrame
    The particle table (volumes, centroids, bounding boxes, surface area,
    sphericity, axes, Feret diameter, border flags, grey levels, phases).
    Lazy inputs (zarr, dask, memory maps) or ``chunk_size=`` measure block by
    block, with the same table.
    Save and read it with :func:`ps3d_toolkit.io.save_table` and
    :func:`ps3d_toolkit.io.read_table`.
propose_phase_thresholds(image, labels=None, *, n_phases=2) -> dict
    Grey-level intervals for ``phases=`` from the particles' histogram.
liberation_class(fraction, thresholds=LIBERATION_THRESHOLDS, *, min_phase_fraction=MIN_PHASE_FRACTION)
    barren / locked / middling / liberated, per phase (columns ``liberation_<phase>``).
rename_phases(table, names) -> pandas.DataFrame
    Give the phases their mineral names (``phase_1`` -> ``quartz``...).
particle_mesh(labels, label, *, spacing) -> (vertices_mm, faces)
    Marching-cubes surface of one particle, for 3D views.

Modules
-------
table
    :func:`measure`, one private function per column group.
chunked
    The same table block by block, with memory bounded by the block and the
    largest particle (:func:`~ps3d_toolkit.measurement.chunked.measure_chunked`).
surface
    Surface area and Feret diameter (the per-particle loop) and particle meshes.
intensity
    Grey levels, phase fractions, liberation classes, phase thresholds.
mesh
    :func:`particle_mesh`.
"""

from __future__ import annotations

from ps3d_toolkit.measurement.intensity import (
    LIBERATION_CLASSES,
    LIBERATION_THRESHOLDS,
    MIN_PHASE_FRACTION,
    liberation_class,
    propose_phase_thresholds,
    rename_phases,
)
from ps3d_toolkit.measurement.mesh import particle_mesh
from ps3d_toolkit.measurement.table import measure

__all__ = [
    "LIBERATION_CLASSES",
    "LIBERATION_THRESHOLDS",
    "MIN_PHASE_FRACTION",
    "liberation_class",
    "measure",
    "particle_mesh",
    "propose_phase_thresholds",
    "rename_phases",
]
