"""The tuner widget: sliders for the parameters that matter and a live preview.

Every control calls :meth:`SegmentationTuner.update`, which tests call
directly, without a browser.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.core.checks import check_labels, check_positive, check_same_shape, check_spacing, check_volume
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.viz.slices import default_window, overlay_labels, png_data_uri, window_image
from ps3d_toolkit.viz.tuner.parameters import auto_values, available_methods, check_value, defaults, parameters
from ps3d_toolkit.viz.tuner.runner import preview_region, run_preview, settings_code
from ps3d_toolkit.viz.viewer import _NotebookView

__all__ = ["SegmentationTuner"]

# The particle size slider spans this factor either side of the starting size.
_SIZE_RANGE = 4.0
_STYLE = {"description_width": "initial"}


class SegmentationTuner(_NotebookView):
    """Sliders for the segmentation parameters that matter, with a live preview.

    The preview segments a small region of the scan (a slab a few particle
    diameters thick, see :func:`~ps3d_toolkit.viz.tuner.preview_region`) every
    time a slider moves and shows one slice with the particles coloured, the
    particle count, the size distribution and, with a ground truth, the
    instance F1 scores.

    Parameters
    ----------
    image : array_like, 3D
        Grey-value scan (z, y, x).
    spacing : float or 3 floats
        Voxel size in mm.
    particle_size_mm : float, optional
        Starting mean particle diameter; estimated from the scan when omitted.
    truth : array_like of int, 3D, optional
        Ground-truth labels of the scan: the preview then shows F1 scores.
    method : str, optional
        Starting method (default: the package's default method).
    region : tuple of 3 slice, optional
        The sub-volume to preview; default :func:`~ps3d_toolkit.viz.tuner.preview_region`.
    weights : str or Path, optional
        Model weights for ``method="model"`` (default: the shipped ones);
        with them the model is offered even when no weights ship.
    estimate_quality : bool
        Also estimate every preview's quality without labels (about 2x the time; the
        widget's "estimate quality" checkbox): the summary shows the estimated F1 of each
        setting tried.

    Attributes
    ----------
    crop : np.ndarray
        The preview sub-volume.
    params : dict
        Current settings: ``method``, ``particle_size_mm`` and the method's options.
    result : dict or None
        The last preview (see :meth:`update`).
    tried : list of dict
        Every setting previewed with its label-free estimate: ``settings``, ``n_particles``,
        ``estimated_f1`` (NaN when not estimated).
    """

    def __init__(self, image, *, spacing, particle_size_mm=None, truth=None, method: str | None = None,
                 region=None, weights=None, estimate_quality: bool = False):
        from ps3d_toolkit.segmentation import default_method

        image = check_volume(image, "image")
        self.spacing = check_spacing(spacing)
        if truth is not None:
            truth = check_labels(truth, "truth")
            check_same_shape(image, truth, "image", "truth")
        if particle_size_mm is None:
            from ps3d_toolkit.segmentation import estimate_particle_size

            particle_size_mm = estimate_particle_size(image, spacing=self.spacing).particle_size_mm
        particle_size_mm = check_positive(particle_size_mm, "particle_size_mm")
        self.methods = available_methods()
        if weights is not None and "model" not in self.methods:
            self.methods = ("model", *self.methods)
        method = method or default_method()
        if method not in self.methods:
            raise InputError(f"method must be one of {self.methods}, got {method!r}")
        if region is None:
            from ps3d_toolkit.segmentation._checks import size_in_voxels

            region = preview_region(image.shape, size_in_voxels(particle_size_mm, self.spacing))
        self.region = tuple(region)
        self.crop = np.ascontiguousarray(image[self.region])
        if self.crop.ndim != 3 or self.crop.size == 0:
            raise InputError(f"region must select a non-empty 3D sub-volume, got {region!r}")
        self.truth = None if truth is None else np.ascontiguousarray(truth[self.region])
        self.weights = weights
        self.initial_size_mm = float(particle_size_mm)
        self.params = defaults(method, particle_size_mm)
        self.result = None
        self.estimate_quality = bool(estimate_quality)
        self.tried: list = []
        self.preview_index = self.crop.shape[0] // 2
        self._widget = None
        self._building = False
        self._controls: dict = {}
        self._options_method = None

    # --- logic ---------------------------------------------------------------------------------
    def settings(self) -> dict:
        """The chosen settings as keyword arguments of :func:`ps3d_toolkit.segmentation.segment`."""
        out = dict(self.params)
        if out["method"] == "model" and self.weights is not None:
            out["weights"] = str(self.weights)
        return out

    def settings_code(self, *, scan_name: str = "scan", scan_path: str = "SCAN") -> str:
        """The settings as Python to paste into a notebook, and the matching command line.

        See :func:`ps3d_toolkit.viz.tuner.settings_code`.
        """
        return settings_code(self.settings(), self.spacing, scan_name=scan_name, scan_path=scan_path)

    def update(self, **changes) -> dict:
        """Apply parameter changes and segment the preview region: what a slider move does.

        Parameters
        ----------
        **changes
            ``method``, ``particle_size_mm`` or any option of the method (see
            :data:`ps3d_toolkit.viz.tuner.PARAMETERS`). Changing the method
            resets the options to its defaults (keeping the particle size).

        Returns
        -------
        dict
            The preview (see :func:`ps3d_toolkit.viz.tuner.run_preview`).
        """
        method = changes.pop("method", self.params["method"])
        if method not in self.methods:
            raise InputError(f"method must be one of {self.methods}, got {method!r}")
        params = dict(self.params) if method == self.params["method"] else \
            defaults(method, self.params["particle_size_mm"])
        for name, value in changes.items():
            params[name] = check_value(name, value, method)
        self.params = params
        self.result = run_preview(self.crop, spacing=self.spacing, settings=self.settings(), truth=self.truth,
                                  quality=self.estimate_quality)
        quality = self.result.get("quality") or {}
        self.tried.append({"settings": self.settings(), "n_particles": self.result["n_particles"],
                           "estimated_f1": quality.get("estimated_f1", float("nan"))})
        self._refresh()
        return self.result

    def summary_html(self) -> str:
        """The preview's numbers as HTML."""
        r = self.result
        if r is None:
            return "Move a slider (or press <i>preview</i>) to segment the preview region."
        shape = "x".join(str(s) for s in self.crop.shape)
        text = (f"<b>{r['n_particles']}</b> particles in the {shape} preview "
                f"({r['n_inside']} not cut by its edge), {r['seconds']:.2f} s")
        if r["n_inside"]:
            text += (f"<br>equivalent diameter d10 / d50 / d90 by volume: {r['d10_mm']:.4g} / {r['d50_mm']:.4g} / "
                     f"{r['d90_mm']:.4g} mm")
        if "scores" in r:
            s = r["scores"]
            text += (f"<br>against the ground truth: F1@0.5 <b>{s['f1_50']:.3f}</b>, F1@0.75 {s['f1_75']:.3f}, "
                     f"PQ {s['pq']:.3f}")
        return text + _quality_html(r.get("quality"), self.tried)

    def preview_rgb(self) -> np.ndarray:
        """The preview slice (``preview_index`` of the crop) with the particles coloured."""
        grey = window_image(self.crop[self.preview_index], *default_window(self.crop))
        if self.result is None:
            return np.repeat(grey[..., None], 3, axis=2)
        return overlay_labels(grey, self.result["labels"][self.preview_index], opacity=0.45, outline=True)

    def set_preview_index(self, index: int) -> None:
        """Show another slice of the preview (no new segmentation)."""
        index = int(index)
        if not 0 <= index < self.crop.shape[0]:
            raise InputError(f"preview index must be in [0, {self.crop.shape[0]}), got {index}")
        self.preview_index = index
        self._refresh()

    # --- widgets -------------------------------------------------------------------------------
    def _control(self, name: str, spec, auto=None):
        import ipywidgets as w

        value = self.params.get(name, spec.default)
        layout = w.Layout(width="420px")
        common = dict(description=name, style=_STYLE, layout=layout, continuous_update=False)
        if spec.kind == "log":
            control = w.FloatLogSlider(value=value, base=10, min=np.log10(spec.low), max=np.log10(spec.high),
                                       step=0.05, readout_format=".2g", **common)
        elif spec.kind == "float":
            control = w.FloatSlider(value=value, min=spec.low, max=spec.high, step=(spec.high - spec.low) / 100,
                                    readout_format=".3g", **common)
        elif spec.kind == "int":
            control = w.IntSlider(value=value, min=spec.low, max=spec.high, **common)
        elif spec.kind == "bool":
            control = w.Checkbox(value=value, description=name, style=_STYLE, indent=False)
        else:
            # A dropdown's value None means "nothing chosen", so the choices travel as positions.
            auto_label = "auto" if auto is None else f"auto ({auto:g})"
            options = [(auto_label if c is None else str(c), k) for k, c in enumerate(spec.low)]
            control = w.Dropdown(options=options, value=spec.low.index(value), description=name, style=_STYLE)
        control.tooltip = spec.help
        control.observe(lambda change: self._on_change(name, change["new"]), names="value")
        return control

    def _control_value(self, name: str):
        """The value a control shows for the current ``params`` (positions for choices)."""
        value = self.params[name]
        spec = parameters(self.params["method"]).get(name)
        return spec.low.index(value) if spec is not None and spec.kind == "choice" else value

    def _option_controls(self):
        method = self._options_method = self.params["method"]
        auto = auto_values(method, self.weights)
        controls = {name: self._control(name, spec, auto.get(name)) for name, spec in parameters(method).items()}
        self._controls = {name: c for name, c in self._controls.items() if name in ("method", "particle_size_mm")}
        self._controls.update(controls)
        return list(controls.values())

    def _on_change(self, name, value) -> None:
        if self._building:
            return
        spec = parameters(self.params["method"]).get(name)
        if spec is not None and spec.kind == "choice":
            value = spec.low[value]
        if name == "method" or self._auto.value:
            self.update(**{name: value})
        else:
            self.params[name] = check_value(name, value, self.params["method"])
            self._code.value = self.settings_code()

    def _preview_figure(self):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], horizontal_spacing=0.12,
                            subplot_titles=["preview slice", "equivalent diameter (not cut by the edge)"])
        dy, dx = self.spacing[1], self.spacing[2]
        fig.add_trace(go.Image(source=png_data_uri(self.preview_rgb()), dx=dx, dy=dy, hoverinfo="x+y"),
                      row=1, col=1)
        fig.add_trace(go.Histogram(x=[], nbinsx=20, marker_color="#4c78a8", name="eq_diameter_mm"), row=1, col=2)
        fig.update_layout(height=360, showlegend=False, margin=dict(l=40, r=10, t=40, b=40), bargap=0.05)
        fig.update_yaxes(scaleanchor="x", row=1, col=1)
        fig.update_xaxes(title_text="x (mm)", row=1, col=1)
        fig.update_xaxes(title_text="eq_diameter_mm", row=1, col=2)
        fig.update_yaxes(title_text="particles", row=1, col=2)
        return go.FigureWidget(fig)

    def _build(self):
        import ipywidgets as w

        self._building = True
        method = w.Dropdown(options=list(self.methods), value=self.params["method"], description="method",
                            style=_STYLE)
        method.observe(lambda change: self._on_change("method", change["new"]), names="value")
        size = w.FloatLogSlider(value=self.params["particle_size_mm"], base=10,
                                min=np.log10(self.initial_size_mm / _SIZE_RANGE),
                                max=np.log10(self.initial_size_mm * _SIZE_RANGE), step=0.02,
                                description="particle_size_mm", readout_format=".3g", style=_STYLE,
                                layout=w.Layout(width="420px"), continuous_update=False)
        size.observe(lambda change: self._on_change("particle_size_mm", change["new"]), names="value")
        self._controls = {"method": method, "particle_size_mm": size}
        self._options_box = w.VBox(self._option_controls())
        self._auto = w.Checkbox(value=True, description="update on every change", indent=False)
        quality = w.Checkbox(value=self.estimate_quality, description="estimate quality (~2x time)", indent=False)
        quality.observe(lambda change: setattr(self, "estimate_quality", bool(change["new"])), names="value")
        run = w.Button(description="preview", icon="play")
        run.on_click(lambda _button: self.update())
        self._index = w.IntSlider(value=self.preview_index, min=0, max=self.crop.shape[0] - 1,
                                  description="slice", continuous_update=False)
        self._index.observe(lambda change: self.set_preview_index(change["new"]), names="value")
        self._figure = self._preview_figure()
        self._summary = w.HTML(self.summary_html())
        self._code = w.Textarea(value=self.settings_code(), description="settings",
                                layout=w.Layout(width="95%", height="9em"), style=_STYLE)
        controls = w.VBox([method, size, self._options_box, w.HBox([self._auto, quality, run])])
        self._widget = w.VBox([controls, self._index, self._figure, self._summary, self._code])
        self._building = False
        self._refresh()

    def _refresh(self) -> None:
        if self._widget is None:
            return
        # Settings changed from code (update(...)) show in the controls; no control fires meanwhile.
        self._building = True
        try:
            if self._options_method != self.params["method"]:
                self._options_box.children = self._option_controls()
            for name, control in self._controls.items():
                value = self._control_value(name)
                if control.value != value:
                    control.value = value
            self._index.value = self.preview_index
        finally:
            self._building = False
        with self._figure.batch_update():
            self._figure.data[0].source = png_data_uri(self.preview_rgb())
            self._figure.data[1].x = self.result["eq_diameter_mm"] if self.result is not None else []
        self._summary.value = self.summary_html()
        self._code.value = self.settings_code()


# The settings tried that the summary lists with their estimate, newest first.
_TRIED_SHOWN = 6


def _quality_html(record, tried: list) -> str:
    """The preview's label-free estimate and those of the settings tried before, as HTML."""
    import html
    import math

    text = ""
    if record:
        share = record.get("low_confidence_share")
        low = "" if share is None else f", {100 * share:.0f} % of particles low confidence"
        text += f"<br>label-free estimate: F1@0.5 <b>{record['estimated_f1']:.2f}</b>{low}"
        text += "".join(f"<br>&#9888; {html.escape(w)}" for w in record.get("warnings", []))
    estimated = [t for t in tried if not math.isnan(t["estimated_f1"])][-_TRIED_SHOWN:]
    if len(estimated) > 1:
        rows = "".join(f"<tr><td>{html.escape(_setting_text(t['settings']))}</td><td>{t['n_particles']}</td>"
                       f"<td>{t['estimated_f1']:.2f}</td></tr>" for t in reversed(estimated))
        text += ("<br><table><tr><th>setting tried</th><th>particles</th><th>estimated F1@0.5</th></tr>"
                 f"{rows}</table>")
    return text


def _setting_text(settings: dict) -> str:
    """A setting tried, in one line: ``method=snow, particle_size_mm=0.12, ...``."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
