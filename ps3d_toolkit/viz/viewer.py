"""Three orthogonal slices of a scan with a label overlay, as an ipywidgets viewer.

The picture logic lives in plain functions that work on numpy arrays and that
the tests call without a browser: :func:`orthogonal_slices` (the three planes
through a voxel), the slice rendering of :mod:`ps3d_toolkit.viz.slices`
(contrast window, label colours and overlays), :func:`plane_to_voxel` (a click on a plane to a voxel)
and :func:`particle_at` / :func:`particle_row` (which particle is there and its
table row). :class:`SliceViewer` wires them to sliders and a plotly
``FigureWidget``; every slider callback calls a public method, so that a test
can drive the viewer exactly as a user's slider would.
"""

from __future__ import annotations

import html
from functools import partial

import numpy as np

from ps3d_toolkit.core.arrays import strided_sample
from ps3d_toolkit.core.checks import check_labels, check_lazy_volume, check_same_shape, check_spacing, check_table
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.viz.slices import (
    default_window,
    draw_region_edge,
    overlay_labels,
    png_data_uri,
    value_colors,
    window_image,
)

__all__ = ["PLANES", "SliceViewer", "orthogonal_slices", "particle_at", "particle_row", "plane_to_voxel"]

#: The three planes, named by the axis they cut: plane ``"z"`` shows (y, x) at one z.
PLANES = ("z", "y", "x")


def _check_position(position, shape) -> tuple:
    try:
        values = tuple(int(v) for v in position)
    except (TypeError, ValueError):
        raise InputTypeError(f"position must be 3 integers (z, y, x), got {position!r}") from None
    if len(values) != 3 or not all(0 <= v < s for v, s in zip(values, shape)):
        raise InputError(f"position must be 3 voxel indices (z, y, x) inside the shape {tuple(shape)}, "
                         f"got {position!r}")
    return values


def orthogonal_slices(volume, position) -> tuple:
    """The three axis-aligned planes of ``volume`` through one voxel.

    Parameters
    ----------
    volume : array_like, 3D
        Any (z, y, x) array (grey values or labels); lazy arrays (zarr, dask)
        are read one plane at a time.
    position : 3 ints
        The voxel (z, y, x) the planes go through.

    Returns
    -------
    tuple of 3 np.ndarray
        The z plane ``volume[z]`` with axes (y, x), the y plane ``volume[:, y]``
        with axes (z, x) and the x plane ``volume[:, :, x]`` with axes (z, y).

    Raises
    ------
    ValueError
        If ``volume`` is not 3D or ``position`` is outside it.
    """
    shape = getattr(volume, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(f"volume must be a 3D (z, y, x) array, got shape {shape}")
    z, y, x = _check_position(position, shape)
    return (np.asarray(volume[z, :, :]), np.asarray(volume[:, y, :]), np.asarray(volume[:, :, x]))


def plane_to_voxel(plane: str, index: int, row: int, col: int) -> tuple:
    """The voxel (z, y, x) shown at pixel (row, col) of a plane.

    Parameters
    ----------
    plane : {"z", "y", "x"}
        The plane clicked (see :func:`orthogonal_slices` for its axes).
    index : int
        The plane's position along its own axis.
    row, col : int
        Pixel in the plane.

    Returns
    -------
    tuple of 3 int
    """
    if plane not in PLANES:
        raise InputError(f"plane must be one of {PLANES}, got {plane!r}")
    index, row, col = int(index), int(row), int(col)
    if plane == "z":
        return (index, row, col)
    if plane == "y":
        return (row, index, col)
    return (row, col, index)


def particle_at(labels, position) -> int:
    """The label id at voxel ``position`` (z, y, x); 0 is background."""
    shape = getattr(labels, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(f"labels must be a 3D (z, y, x) array, got shape {shape}")
    return int(labels[_check_position(position, shape)])


def particle_row(table, label: int):
    """The row of particle ``label`` in a particle table (see ``ps3d_toolkit.measurement``).

    Returns
    -------
    pandas.DataFrame
        The matching row (empty when the label is 0 or not in the table).
    """
    check_table(table, ("label",))
    return table[table["label"] == int(label)]


def _column_colors(table, column):
    """The ``colors`` of :func:`overlay_labels` for ``SliceViewer(color_by=column)`` (None: a colour per id)."""
    if column is None:
        return None
    if table is None:
        raise InputError(f"color_by={column!r} colours the particles by a column of the table: pass table= too")
    check_table(table, ("label", column))
    values = table[column]
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"color_by must name a numeric column of the table, got {column!r} ({values.dtype})")
    series = values.astype(np.float64).set_axis(table["label"].to_numpy(np.int64))
    finite = series[np.isfinite(series)]
    low, high = (0.0, 1.0) if column == "confidence" or finite.empty else (float(finite.min()), float(finite.max()))
    return partial(value_colors, values=series, low=low, high=high)


def _row_html(row, columns=None) -> str:
    """A particle's row as a compact grid of name: value pairs (a table has ~40 columns)."""
    if row is None or len(row) == 0:
        return ""
    series = row.iloc[0]
    names = [c for c in (columns or series.index) if c in series.index]
    cells = []
    for name in names:
        value = series[name]
        text = f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)
        cells.append(f"<span><span style='color:#666'>{html.escape(str(name))}</span> {html.escape(text)}</span>")
    return ("<div style='display:grid;grid-template-columns:repeat(auto-fill,minmax(15em,1fr));"
            "gap:0 1em;font-size:0.85em;line-height:1.4'>" + "".join(cells) + "</div>")


class _NotebookView:
    """Base of the interactive views: a view that is the value of a notebook cell shows its ``widget``.

    A subclass builds its widgets in ``_build``, which sets ``_widget``.
    """

    _widget = None

    def _build(self) -> None:
        raise NotImplementedError

    @property
    def widget(self):
        """The view as one ipywidgets box, built on first use."""
        if self._widget is None:
            self._build()
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class SliceViewer(_NotebookView):
    """Three orthogonal slices of a scan, with sliders, a contrast window and a label overlay.

    Click a particle in any plane to move the other planes there and to see its
    row of the particle table. Display it as the last expression of a notebook
    cell (or ``display(viewer.widget)``).

    Parameters
    ----------
    image : array_like, 3D
        Grey values (z, y, x).
    labels : array_like of int, 3D, optional
        Particle labels of the same shape, drawn over the grey values.
    spacing : float or 3 floats
        Voxel size in mm; the planes are drawn to scale, axes in mm.
    table : pandas.DataFrame, optional
        Particle table (``ps3d_toolkit.measurement``) whose row is shown on click.
    position : 3 ints, optional
        Starting voxel; default: the centre.
    window : 2 floats, optional
        Starting contrast window; default: :func:`default_window`.
    opacity : float
        Starting overlay opacity.
    outline : bool
        Draw particle outlines.
    height_px : int
        Height of the figure in pixels.
    sample_region : array_like of bool, 3D, optional
        The sample region (``segment(..., mask=)``: e.g. the automatic sample mask), same shape;
        its edge is drawn in blue.
    color_by : str, optional
        Colour each particle by this numeric column of ``table`` instead of a colour per
        particle: red at its lowest, green at its highest, grey where it is NaN.
        ``"confidence"`` (``measure(..., confidence=report)`` of ``segment(..., quality=True)``)
        goes from red at 0 to green at 1, so the particles to doubt stand out.

    Attributes
    ----------
    position : tuple of 3 int
    window : tuple of 2 float
    opacity : float
    highlight : set of int
        Particles drawn highlighted (see :func:`overlay_labels`).
    selected : int
        The particle last clicked (0 = none).
    """

    def __init__(self, image, labels=None, *, spacing=1.0, table=None, position=None, window=None,
                 opacity: float = 0.4, outline: bool = False, height_px: int = 400, sample_region=None,
                 color_by: str | None = None):
        self.image = check_lazy_volume(image, "image")
        if labels is not None:
            labels = check_labels(labels, "labels")
            check_same_shape(self.image, labels, "image", "labels")
        self.labels = labels
        if sample_region is not None:
            check_same_shape(self.image, sample_region, "image", "sample_region")
        self.sample_region = sample_region
        self.spacing = check_spacing(spacing)
        self.table = table
        self._colors = _column_colors(table, color_by)
        shape = self.image.shape
        self.position = _check_position(position if position is not None else [s // 2 for s in shape], shape)
        self.window = tuple(window) if window is not None else default_window(self.image)
        window_image(np.zeros(1), *self.window)  # validates the window
        self.opacity = float(opacity)
        self.outline = bool(outline)
        self.highlight: set = set()
        self.selected = 0
        self.height_px = int(height_px)
        self._figure = None
        self._controls = None
        self._widget = None
        self._syncing = False

    # --- logic: what each control computes ---------------------------------------------------
    def render(self) -> tuple:
        """The three planes at the current settings as RGB uint8 arrays (z, y, x planes)."""
        greys = orthogonal_slices(self.image, self.position)
        label_planes = orthogonal_slices(self.labels, self.position) if self.labels is not None else (None,) * 3
        regions = (orthogonal_slices(self.sample_region, self.position) if self.sample_region is not None
                   else (None,) * 3)
        out = []
        for grey, lab, region in zip(greys, label_planes, regions):
            g = window_image(grey, *self.window)
            if lab is None:
                rgb = np.repeat(g[..., None], 3, axis=2)
            else:
                rgb = overlay_labels(g, lab, opacity=self.opacity, highlight=self.highlight or None,
                                     outline=self.outline, colors=self._colors)
            out.append(rgb if region is None else draw_region_edge(rgb, region))
        return tuple(out)

    def set_position(self, z=None, y=None, x=None) -> None:
        """Move the planes to voxel (z, y, x); ``None`` keeps a coordinate."""
        new = [old if v is None else v for old, v in zip(self.position, (z, y, x))]
        self.position = _check_position(new, self.image.shape)
        self._refresh()

    def set_window(self, low: float, high: float) -> None:
        """Set the contrast window (grey values mapped to black and white)."""
        window_image(np.zeros(1), low, high)
        self.window = (float(low), float(high))
        self._refresh()

    def set_opacity(self, opacity: float) -> None:
        """Set the overlay opacity in [0, 1]."""
        opacity = float(opacity)
        if not 0 <= opacity <= 1:
            raise InputError(f"opacity must be in [0, 1], got {opacity!r}")
        self.opacity = opacity
        self._refresh()

    def set_highlight(self, ids) -> None:
        """Highlight these particles (an empty selection clears the highlight)."""
        self.highlight = {int(i) for i in np.asarray(list(ids) if ids is not None else [], dtype=np.int64).ravel()}
        self._refresh()

    def click(self, plane: str, row: int, col: int) -> int:
        """What a click on pixel (row, col) of a plane does.

        The other two planes move to the clicked voxel, the particle there
        becomes :attr:`selected` and its table row is shown.

        Returns
        -------
        int
            The particle's id (0 for background or when there are no labels).
        """
        index = self.position[PLANES.index(plane)]
        voxel = plane_to_voxel(plane, index, row, col)
        voxel = _check_position(voxel, self.image.shape)
        self.selected = particle_at(self.labels, voxel) if self.labels is not None else 0
        self.position = voxel
        self._refresh()
        return self.selected

    def selected_row(self):
        """The table row of the selected particle (None without a table)."""
        if self.table is None:
            return None
        return particle_row(self.table, self.selected)

    def info_html(self) -> str:
        """The text under the planes: the voxel, its grey value, the particle and its row."""
        z, y, x = self.position
        mm = tuple(round(p * s, 6) for p, s in zip(self.position, self.spacing))
        grey = self.image[z, y, x]
        text = f"<b>voxel</b> (z, y, x) = ({z}, {y}, {x}) = {mm} mm; grey value {grey}"
        if self.labels is not None:
            text += f"; <b>particle</b> {self.selected or 'none'}"
        row = self.selected_row() if self.selected else None
        if row is not None:
            text += _row_html(row) if len(row) else " (not in the table)"
        return text

    # --- widgets -------------------------------------------------------------------------------
    def _plane_extent(self, k: int) -> tuple:
        """(row spacing, col spacing) of plane k in mm."""
        axes = [a for a in range(3) if a != k]
        return self.spacing[axes[0]], self.spacing[axes[1]]

    def _build(self):
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        shape = self.image.shape
        fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                            subplot_titles=[f"{p} = {self.position[i]}" for i, p in enumerate(PLANES)])
        for k, rgb in enumerate(self.render()):
            dy, dx = self._plane_extent(k)
            fig.add_trace(go.Image(source=png_data_uri(rgb), dx=dx, dy=dy, x0=0, y0=0, name=PLANES[k],
                                   hoverinfo="x+y"), row=1, col=k + 1)
        names = ("y", "x"), ("z", "x"), ("z", "y")
        for k, (rows, cols) in enumerate(names):
            suffix = "" if k == 0 else str(k + 1)
            fig.layout[f"xaxis{suffix}"].update(title_text=f"{cols} (mm)", constrain="domain")
            fig.layout[f"yaxis{suffix}"].update(title_text=f"{rows} (mm)", scaleanchor=f"x{suffix}",
                                                constrain="domain")
        fig.update_layout(height=self.height_px, margin=dict(l=40, r=10, t=40, b=40))
        self._figure = go.FigureWidget(fig)
        for k, trace in enumerate(self._figure.data):
            trace.on_click(self._on_click_factory(k))

        sliders = [w.IntSlider(value=self.position[k], min=0, max=shape[k] - 1, description=PLANES[k],
                               continuous_update=False, layout=w.Layout(width="32%")) for k in range(3)]
        for k, slider in enumerate(sliders):
            slider.observe(lambda change, k=k: self._on_slider(k, change["new"]), names="value")
        sample = strided_sample(self.image)
        lo, hi = float(sample.min()), float(sample.max())
        lo, hi = min(lo, self.window[0]), max(hi, self.window[1])
        window = w.FloatRangeSlider(value=self.window, min=lo, max=hi, step=(hi - lo) / 500 or 1,
                                    description="contrast", continuous_update=False, readout_format=".4g",
                                    layout=w.Layout(width="48%"))
        window.observe(lambda change: self.set_window(*change["new"]), names="value")
        controls = [w.HBox(sliders), w.HBox([window])]
        if self.labels is not None:
            opacity = w.FloatSlider(value=self.opacity, min=0, max=1, step=0.05, description="overlay",
                                    continuous_update=False, layout=w.Layout(width="30%"))
            opacity.observe(lambda change: self.set_opacity(change["new"]), names="value")
            outline = w.Checkbox(value=self.outline, description="outlines", indent=False)
            outline.observe(lambda change: self._set_outline(change["new"]), names="value")
            controls[1].children += (opacity, outline)
        self._info = w.HTML(self.info_html())
        self._sliders = sliders
        self._controls = controls
        self._widget = w.VBox([*controls, self._figure, self._info])

    def _on_slider(self, k: int, value: int) -> None:
        if not self._syncing:
            self.set_position(**{PLANES[k]: value})

    def _set_outline(self, value: bool) -> None:
        self.outline = bool(value)
        self._refresh()

    def _on_click_factory(self, k: int):
        def on_click(trace, points, selector):
            if not points.xs:
                return
            dy, dx = self._plane_extent(k)
            self.click(PLANES[k], round(points.ys[0] / dy), round(points.xs[0] / dx))
        return on_click

    def _refresh(self) -> None:
        if self._figure is None:
            return
        with self._figure.batch_update():
            for k, rgb in enumerate(self.render()):
                self._figure.data[k].source = png_data_uri(rgb)
                self._figure.layout.annotations[k].text = f"{PLANES[k]} = {self.position[k]}"
        # Moving a slider to follow a click must not re-render once per slider.
        self._syncing = True
        try:
            for k, slider in enumerate(self._sliders):
                slider.value = self.position[k]
        finally:
            self._syncing = False
        self._info.value = self.info_html()

    @property
    def figure(self):
        """The plotly ``FigureWidget`` holding the three planes."""
        if self._figure is None:
            self._build()
        return self._figure
