"""3D views of particles (ps3d_toolkit.viz.mesh)."""

from __future__ import annotations

import numpy as np
import pytest

from ps3d_toolkit.viz.mesh import fig_particles_3d, mesh_trace
from ps3d_toolkit.viz.slices import label_colors


def test_mesh_trace_maps_zyx_vertices_to_plotly_xyz():
    vertices = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], float)
    trace = mesh_trace(vertices, [[0, 1, 2]], color=(1, 2, 3), name="p")
    assert list(trace.x) == [2, 5, 8] and list(trace.z) == [0, 3, 6]
    assert trace.color == "rgb(1,2,3)"
    with pytest.raises(ValueError, match="index"):
        mesh_trace(vertices, [[0, 1, 3]])


def test_fig_particles_3d_draws_each_particle_to_scale(two_balls):
    _, labels = two_balls
    fig = fig_particles_3d(labels, [1, 2], spacing=(2.0, 1.0, 1.0))
    assert [t.name for t in fig.data] == ["particle 1", "particle 2"]
    first = fig.data[0]
    # Radius 5 voxels: ~10 mm across in x, ~20 mm in z (2 mm voxels along z).
    assert np.ptp(first.x) == pytest.approx(10, abs=2)
    assert np.ptp(first.z) == pytest.approx(20, abs=4)
    assert np.mean(fig.data[1].x) - np.mean(first.x) == pytest.approx(18, abs=1)
    assert fig.data[1].color == "rgb({},{},{})".format(*label_colors([2])[0])
    with pytest.raises(ValueError, match="at least one"):
        fig_particles_3d(labels, [])
    with pytest.raises(ValueError):
        fig_particles_3d(labels, [7])
    with pytest.raises(ValueError, match="at most"):
        fig_particles_3d(labels, range(1, 100))
