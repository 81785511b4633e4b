"""Interactive views for JupyterLab, plotly figures and shared slice rendering.

Modules
-------
slices
    Slice rendering shared with the HTML report: ``window_image``,
    ``default_window``, ``label_colors``, ``overlay_labels``, ``png_data_uri``.
viewer
    ``SliceViewer(image, labels=None, *, spacing, table=None, ...)``: three
    orthogonal slices with sliders, contrast window, label overlay and
    click-a-particle to see its table row.
mesh
    ``fig_particles_3d(labels, label_ids, *, spacing)``: marching-cubes
    surfaces of one or a few particles.
linked
    ``LinkedExplorer(image, labels, table, *, spacing=None, figure=None)``: a
    scatter of the particle table whose selection highlights grains in the viewer.
tuner
    ``SegmentationTuner(image, *, spacing, particle_size_mm=None, truth=None)``:
    sliders for the segmentation parameters with a live preview; ``settings()``
    and ``settings_code()`` copy the choice out.
figures
    The distribution figures: size histogram, cumulative PSD, sphericity, Zingg.

The logic behind each control is in plain functions (``orthogonal_slices``,
``window_image``, ``overlay_labels``, ``particle_at``, ``selection_to_labels``,
``preview_region``, ...) that work without a browser.
"""

from __future__ import annotations

from ps3d_toolkit.viz.figures import fig_cumulative_psd, fig_size_histogram, fig_sphericity_vs_size, fig_zingg
from ps3d_toolkit.viz.linked import LinkedExplorer, fig_scatter, point_labels, selection_mask, selection_to_labels
from ps3d_toolkit.viz.mesh import fig_particles_3d, mesh_trace
from ps3d_toolkit.viz.napari import to_napari
from ps3d_toolkit.viz.slices import (
                                     HIGHLIGHT_RGB,
                                     default_window,
                                     label_colors,
                                     overlay_labels,
                                     png_data_uri,
                                     window_image,
)
from ps3d_toolkit.viz.tuner import PARAMETERS, SegmentationTuner, available_methods, preview_region
from ps3d_toolkit.viz.viewer import PLANES, SliceViewer, orthogonal_slices, particle_at, particle_row, plane_to_voxel

__all__ = [
    "HIGHLIGHT_RGB", "LinkedExplorer", "PARAMETERS", "PLANES", "SegmentationTuner", "SliceViewer",
    "available_methods", "default_window", "fig_cumulative_psd", "fig_particles_3d", "fig_scatter",
    "fig_size_histogram", "fig_sphericity_vs_size", "fig_zingg", "label_colors", "mesh_trace",
    "orthogonal_slices", "overlay_labels", "particle_at", "particle_row", "plane_to_voxel", "png_data_uri",
    "point_labels", "preview_region", "selection_mask", "selection_to_labels", "to_napari", "window_image",
]
