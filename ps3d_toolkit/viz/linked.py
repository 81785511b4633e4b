"""Linked views: select grains in a scatter of the particle table, see them in the scan.

A box or lasso selection in a scatter plot (particle size against sphericity,
the Zingg diagram of ``ps3d_toolkit.viz.figures``, or any two table columns) turns
into label ids (:func:`selection_to_labels`), those ids into a mask
(:func:`selection_mask`), and the slice viewer highlights them and moves to the
largest one; a button shows the selected grains in 3D.
"""

from __future__ import annotations

import html

import numpy as np

from ps3d_toolkit.core.checks import check_labels, check_table
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.viz.viewer import _NotebookView

__all__ = ["LinkedExplorer", "fig_scatter", "point_labels", "selection_mask", "selection_to_labels"]

#: Grains drawn in 3D at most, the largest of the selection first.
MAX_3D = 8


def fig_scatter(table, *, x: str = "eq_diameter_mm", y: str = "sphericity", color: str | None = None,
                log_x: bool = False, title: str | None = None):
    """A scatter of two particle-table columns, one point per particle, ready for selection.

    Each point carries its particle's label as ``customdata`` so that a
    selection maps back to particles whatever the order of the rows.

    Parameters
    ----------
    table : pandas.DataFrame
        Particle table with a ``label`` column and the named columns.
    x, y : str
        Columns on the axes.
    color : str, optional
        Numeric column that colours the points.
    log_x : bool
        Logarithmic x axis (sizes spanning decades).
    title : str, optional
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace with box selection as the drag mode.
    """
    import plotly.graph_objects as go

    check_table(table, ("label", x, y) + ((color,) if color else ()))
    marker = dict(size=7, opacity=0.8, line=dict(width=0.5, color="white"))
    if color:
        marker.update(color=table[color].to_numpy(), colorscale="Viridis", showscale=True,
                      colorbar=dict(title=color))
    fig = go.Figure(go.Scatter(
        x=table[x].to_numpy(), y=table[y].to_numpy(), mode="markers", marker=marker,
        customdata=table["label"].to_numpy(), name="particles",
        hovertemplate=f"particle %{{customdata}}<br>{x} %{{x:.4g}}<br>{y} %{{y:.4g}}<extra></extra>"))
    fig.update_layout(title=title or f"{y} against {x} (drag a box or lasso to select grains)",
                      xaxis_title=x, yaxis_title=y, dragmode="select", height=400,
                      margin=dict(l=50, r=10, t=50, b=45))
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def point_labels(trace, table=None) -> np.ndarray:
    """The label id of every point of a scatter trace.

    Taken from the trace's ``customdata`` (its first column when 2D); a trace
    without customdata and with one point per table row is taken to follow the
    table's row order.

    Returns
    -------
    np.ndarray of int64
    """
    custom = getattr(trace, "customdata", None)
    if custom is not None and len(custom):
        custom = np.asarray(custom)
        return (custom[:, 0] if custom.ndim == 2 else custom).astype(np.int64)
    n_points = len(trace.x) if getattr(trace, "x", None) is not None else 0
    if table is not None and n_points == len(table):
        check_table(table, ("label",))
        return table["label"].to_numpy().astype(np.int64)
    raise InputError("the trace carries no particle labels (customdata) and does not have one point "
                     "per table row")


def selection_to_labels(points, point_ids) -> np.ndarray:
    """Label ids of the selected points of a scatter.

    Parameters
    ----------
    points : plotly Points, dict or sequence of int
        The selection: a plotly callback's ``points`` (its ``point_inds``), a
        ``{"point_inds": [...]}`` or ``{"points": [{"pointIndex": ...}]}``
        event dict, or the point indices themselves.
    point_ids : array_like of int
        The label of every point of the trace (see :func:`point_labels`).

    Returns
    -------
    np.ndarray of uint32
        The selected labels, sorted, without repeats or background.
    """
    if hasattr(points, "point_inds"):
        indices = points.point_inds
    elif isinstance(points, dict):
        if "point_inds" in points:
            indices = points["point_inds"]
        else:
            indices = [p.get("pointIndex", p.get("pointNumber")) for p in points.get("points", [])]
    else:
        indices = points
    indices = np.asarray(list(indices) if indices is not None else [], dtype=np.int64).ravel()
    point_ids = np.asarray(point_ids, dtype=np.int64).ravel()
    if indices.size and (indices.min() < 0 or indices.max() >= point_ids.size):
        raise InputError(f"selected point indices must be in [0, {point_ids.size}), "
                         f"got {indices.min()}..{indices.max()}")
    ids = np.unique(point_ids[indices])
    return ids[ids > 0].astype(np.uint32)


def selection_mask(labels, ids) -> np.ndarray:
    """Boolean mask of the voxels of the given particles."""
    labels = check_labels(labels, "labels")
    ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel()
    return np.isin(labels, ids[ids > 0])


class LinkedExplorer(_NotebookView):
    """A particle-table scatter linked to a slice viewer and a 3D view.

    Select points (box or lasso) in the scatter: the viewer highlights those
    grains and jumps to the largest; "show in 3D" draws up to :data:`MAX_3D`
    of them.

    Parameters
    ----------
    image : array_like, 3D
        Grey values.
    labels : array_like of int, 3D
        The labels the table was measured on.
    table : pandas.DataFrame
        Particle table (``ps3d_toolkit.measurement.measure``).
    spacing : float or 3 floats, optional
        Voxel size in mm; default ``table.attrs["spacing_mm"]``.
    figure : plotly figure, optional
        The scatter to select in, e.g. ``ps3d_toolkit.viz.figures.fig_zingg(table)``;
        default :func:`fig_scatter` of ``x`` against ``y``.
    x, y : str
        Columns of the default scatter.
    """

    def __init__(self, image, labels, table, *, spacing=None, figure=None, x: str = "eq_diameter_mm",
                 y: str = "sphericity"):
        from ps3d_toolkit.viz.viewer import SliceViewer

        check_table(table, ("label",))
        if spacing is None:
            spacing = table.attrs.get("spacing_mm")
            if spacing is None:
                raise InputError("spacing is required when the table does not record spacing_mm")
        self.table = table
        self.labels = check_labels(labels, "labels")
        self.viewer = SliceViewer(image, self.labels, spacing=spacing, table=table)
        self._source_figure = figure if figure is not None else fig_scatter(table, x=x, y=y)
        self.selected = np.zeros(0, np.uint32)
        self._scatter = None
        self._widget = None

    def select(self, ids) -> np.ndarray:
        """What a selection does: highlight these grains and move the viewer to the largest.

        A selection made from code is also marked in the scatter.

        Returns
        -------
        np.ndarray of uint32
            The selected ids that are particles of the table.
        """
        return self._select(ids, mark_scatter=True)

    def _select(self, ids, mark_scatter: bool) -> np.ndarray:
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel()
        known = self.table["label"].to_numpy().astype(np.int64)
        self.selected = np.unique(ids[np.isin(ids, known)]).astype(np.uint32)
        viewer = self.viewer
        viewer.highlight = {int(i) for i in self.selected}
        target = None
        if self.selected.size:
            rows = self.table[self.table["label"].isin(self.selected)]
            row = rows.loc[rows["voxel_count"].idxmax()] if "voxel_count" in rows else rows.iloc[0]
            viewer.selected = int(row["label"])
            if all(f"centroid_{a}" in row for a in "zyx"):
                target = tuple(int(round(row[f"centroid_{a}"])) for a in "zyx")
            # A concave grain's centroid may lie outside it: then go to one of its voxels.
            if target is None or self.labels[target] != viewer.selected:
                target = tuple(np.argwhere(self.labels == viewer.selected)[0])
        if target is not None:
            viewer.set_position(*target)      # redraws with the new highlight
        else:
            viewer.set_highlight([])
        if mark_scatter and self._scatter is not None:
            with self._scatter.batch_update():
                for trace in self._selectable_traces():
                    chosen = np.flatnonzero(np.isin(point_labels(trace, self.table), self.selected))
                    trace.selectedpoints = chosen.tolist() if self.selected.size else None
        self._refresh_summary()
        return self.selected

    def summary_html(self) -> str:
        """Count and size of the selection, as HTML."""
        n = self.selected.size
        if n == 0:
            return "No grains selected: drag a box or lasso in the scatter."
        rows = self.table[self.table["label"].isin(self.selected)]
        text = f"<b>{n}</b> grain{'s' if n > 1 else ''} selected"
        if "eq_diameter_mm" in rows:
            text += f"; mean equivalent diameter {rows['eq_diameter_mm'].mean():.4g} mm"
        if "volume_mm3" in rows and "volume_mm3" in self.table:
            share = rows["volume_mm3"].sum() / max(self.table["volume_mm3"].sum(), 1e-300)
            text += f"; {100 * share:.1f} % of the particle volume"
        shown = ", ".join(str(i) for i in self.selected[:20])
        return text + f"<br>ids: {html.escape(shown)}{' ...' if n > 20 else ''}"

    def fig_selection_3d(self):
        """3D view of the largest selected grains (at most :data:`MAX_3D`)."""
        from ps3d_toolkit.viz.mesh import fig_particles_3d

        if not self.selected.size:
            raise InputError("no grains are selected")
        rows = self.table[self.table["label"].isin(self.selected)]
        if "voxel_count" in rows:
            rows = rows.sort_values("voxel_count", ascending=False)
        ids = rows["label"].to_numpy()[:MAX_3D]
        return fig_particles_3d(self.labels, ids, spacing=self.viewer.spacing)

    def _on_selection_factory(self, trace_index: int):
        def on_selection(trace, points, selector):
            ids = selection_to_labels(points, point_labels(trace, self.table))
            self._select(ids, mark_scatter=False)
        return on_selection

    def _selectable_traces(self):
        return [t for t in self._scatter.data if getattr(t, "type", "") in ("scatter", "scattergl")]

    def _refresh_summary(self) -> None:
        if self._widget is not None:
            self._summary.value = self.summary_html()

    def _show_3d(self, _button=None) -> None:
        """What the "show in 3D" button does: draw the selection, or say to select first."""
        from IPython.display import display

        self._output.clear_output()
        if not self.selected.size:
            self._summary.value = ("<b>Select grains in the scatter first</b> (drag a box or lasso), "
                                   "then show them in 3D.")
            return
        with self._output:
            display(self.fig_selection_3d())

    @property
    def scatter(self):
        """The scatter as a plotly ``FigureWidget``."""
        if self._scatter is None:
            import plotly.graph_objects as go

            self._scatter = go.FigureWidget(self._source_figure)
            for k, trace in enumerate(self._selectable_traces()):
                trace.on_selection(self._on_selection_factory(k))
            if not self._scatter.layout.dragmode:
                self._scatter.layout.dragmode = "select"
        return self._scatter

    @property
    def widget(self):
        """Scatter, selection summary, viewer and 3D button as one ipywidgets box."""
        if self._widget is None:
            import ipywidgets as w

            self._summary = w.HTML(self.summary_html())
            button = w.Button(description="show in 3D", icon="cube")
            button.on_click(self._show_3d)
            self._output = w.Output()
            self._widget = w.VBox([self.scatter, w.HBox([button, self._summary]), self.viewer.widget,
                                   self._output])
        return self._widget
