"""3D views of individual particles: marching-cubes surfaces as plotly meshes.

The surface of each particle comes from
:func:`ps3d_toolkit.measurement.particle_mesh` (scikit-image's marching cubes on
the lightly smoothed mask, in mm), the same surface whose convex hull gives the
table's Feret diameter; each particle keeps the colour it has in the slice
viewer (:func:`ps3d_toolkit.viz.slices.label_colors`).
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.core.checks import check_labels, check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.viz.slices import label_colors

__all__ = ["fig_particles_3d", "mesh_trace"]

#: More particles than this make a slow, unreadable 3D view.
MAX_PARTICLES = 50


def mesh_trace(vertices, faces, *, color=(200, 200, 200), name: str = "", opacity: float = 1.0):
    """A plotly ``Mesh3d`` of a triangle mesh given in (z, y, x) order.

    Parameters
    ----------
    vertices : array_like, shape (n, 3)
        Vertex coordinates (z, y, x), e.g. in mm.
    faces : array_like of int, shape (m, 3)
        Triangles as vertex indices.
    color : 3 ints
        RGB colour.
    name : str
        Trace name (legend and hover).
    opacity : float
        In (0, 1].

    Returns
    -------
    plotly.graph_objects.Mesh3d
        With plotly's x, y, z set to the mesh's x, y, z.
    """
    import plotly.graph_objects as go

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError(f"vertices and faces must be (n, 3) arrays, got {vertices.shape} and {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError("faces must index vertices")
    if not 0 < float(opacity) <= 1:
        raise InputError(f"opacity must be in (0, 1], got {opacity!r}")
    r, g, b = (int(c) for c in color)
    return go.Mesh3d(x=vertices[:, 2], y=vertices[:, 1], z=vertices[:, 0],
                     i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                     color=f"rgb({r},{g},{b})", opacity=float(opacity), name=name, showlegend=bool(name),
                     flatshading=False, lighting=dict(ambient=0.45, diffuse=0.8, specular=0.2, roughness=0.6),
                     hovertemplate=f"{name}<br>x %{{x:.4g}}<br>y %{{y:.4g}}<br>z %{{z:.4g}}<extra></extra>")


def fig_particles_3d(labels, label_ids, *, spacing=1.0, opacity: float = 1.0, smooth_vox: float | None = None,
                     title: str | None = None):
    """A 3D view of one or a few particles as shaded surfaces.

    Parameters
    ----------
    labels : array_like of int, 3D
        Label image (z, y, x).
    label_ids : int or iterable of int
        The particles to show (at most :data:`MAX_PARTICLES`).
    spacing : float or 3 floats
        Voxel size in mm; the axes are in mm in the scan's frame, to scale.
    opacity : float
        Surface opacity in (0, 1]; below 1 shows particles behind others.
    smooth_vox : float, optional
        Gaussian smoothing (voxels) of the mask before marching cubes; default:
        that of :func:`ps3d_toolkit.measurement.particle_mesh`.
    title : str, optional
        Figure title; default lists the particles.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Mesh3d`` trace per particle, named ``"particle <id>"``.

    Raises
    ------
    ValueError
        If no id is given, too many are, or one is not in ``labels``.
    """
    import plotly.graph_objects as go

    from ps3d_toolkit.measurement import particle_mesh

    labels = check_labels(labels, "labels")
    spacing = check_spacing(spacing)
    ids = [int(i) for i in np.atleast_1d(np.asarray(label_ids, dtype=np.int64))]
    if not ids:
        raise InputError("label_ids must name at least one particle")
    if len(ids) > MAX_PARTICLES:
        raise InputError(f"label_ids names {len(ids)} particles; show at most {MAX_PARTICLES} at once")
    options = {} if smooth_vox is None else {"smooth_vox": float(smooth_vox)}
    colors = label_colors(ids)
    fig = go.Figure()
    for label, color in zip(ids, colors):
        vertices, faces = particle_mesh(labels, label, spacing=spacing, **options)
        fig.add_trace(mesh_trace(vertices, faces, color=color, name=f"particle {label}", opacity=opacity))
    shown = ", ".join(str(i) for i in ids[:8]) + (" ..." if len(ids) > 8 else "")
    fig.update_layout(
        title=title if title is not None else f"particle{'s' if len(ids) > 1 else ''} {shown}",
        scene=dict(aspectmode="data", xaxis_title="x (mm)", yaxis_title="y (mm)", zaxis_title="z (mm)"),
        margin=dict(l=0, r=0, t=40, b=0), height=450)
    return fig
