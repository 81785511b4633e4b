"""Interactive views for JupyterLab: slice viewer, 3D particles, linked scatter, tuner.

Public API
----------
SliceViewer(image, labels=None, *, spacing, table=None, ...)
    Three orthogonal slices with sliders, contrast window, label overlay and
    click-a-particle to see its table row.
fig_particles_3d(labels, label_ids, *, spacing) -> plotly Figure
    Marching-cubes surfaces of one or a few particles.
LinkedExplorer(image, labels, table, *, spacing=None, figure=None)
    A scatter of the particle table whose selection highlights grains in the viewer.
SegmentationTuner(image, *, spacing, particle_size_mm=None, truth=None)
    Sliders for the segmentation parameters with a live preview; ``settings()``
    and ``settings_code()`` copy the choice out.

The logic behind each control is in plain functions (``orthogonal_slices``,
``window_image``, ``overlay_labels``, ``particle_at``, ``selection_to_labels``,
``preview_region``, ...) that work without a browser. The distribution figures
(size histogram, cumulative PSD, sphericity, Zingg) are in
:mod:`ps3d_toolkit.analysis.stats`.
"""

from __future__ import annotations

from ps3d_toolkit.viz.linked import LinkedExplorer, fig_scatter, point_labels, selection_mask, selection_to_labels
from ps3d_toolkit.viz.mesh import fig_particles_3d, mesh_trace
from ps3d_toolkit.viz.tuner import PARAMETERS, SegmentationTuner, available_methods, preview_region
from ps3d_toolkit.viz.viewer import (
    HIGHLIGHT_RGB,
    PLANES,
    SliceViewer,
    default_window,
    label_colors,
    orthogonal_slices,
    overlay_labels,
    particle_at,
    particle_row,
    plane_to_voxel,
    png_data_uri,
    window_image,
)

__all__ = [
    "HIGHLIGHT_RGB",
    "LinkedExplorer",
    "PARAMETERS",
    "PLANES",
    "SegmentationTuner",
    "SliceViewer",
    "available_methods",
    "default_window",
    "fig_particles_3d",
    "fig_scatter",
    "label_colors",
    "mesh_trace",
    "orthogonal_slices",
    "overlay_labels",
    "particle_at",
    "particle_row",
    "plane_to_voxel",
    "png_data_uri",
    "point_labels",
    "preview_region",
    "selection_mask",
    "selection_to_labels",
    "window_image",
]
