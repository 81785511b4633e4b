"""Tune segmentation parameters with sliders and a live preview on a sub-volume.

:class:`SegmentationTuner` segments a small region of the scan (a slab a few
particle diameters thick, see :func:`preview_region`) every time a slider
moves, and shows the result: one slice with the particles coloured, the
particle count, the size distribution, and, when a ground truth is given, the
instance F1 scores. :meth:`SegmentationTuner.settings` returns the chosen
parameters as a dict for :func:`ps3d_toolkit.segmentation.segment`, and
:meth:`SegmentationTuner.settings_code` as Python and command-line text to copy.

Every control calls :meth:`SegmentationTuner.update`, which tests call
directly, without a browser.
"""

from __future__ import annotations

import time

import numpy as np

from ps3d_toolkit.core.checks import check_labels, check_positive, check_same_shape, check_spacing, check_volume
from ps3d_toolkit.viz.viewer import _NotebookView

__all__ = ["PARAMETERS", "SegmentationTuner", "available_methods", "preview_region"]

#: The tunable options of each method: name -> (kind, default, low, high, help).
#: ``kind`` is "log" (log-scale slider), "float", "int", "bool" or "choice" (then
#: ``low`` holds the choices). Defaults are those of the segmenters themselves.
PARAMETERS: dict = {
    "otsu-watershed": {
        "min_particle_fraction": ("log", 0.005, 1e-4, 0.3, "drop particles below this fraction of the mean volume"),
        "n_classes": ("choice", None, (None, 2, 3, 4), None, "Otsu classes (threshold): auto, or 2 for a crop without air"),
        "min_distance_fraction": ("float", 0.6, 0.2, 1.5, "seed spacing / mean radius: lower splits more"),
    },
    "snow": {
        "min_particle_fraction": ("log", 0.005, 1e-4, 0.3, "drop particles below this fraction of the mean volume"),
        "n_classes": ("choice", None, (None, 2, 3, 4), None, "Otsu classes (threshold): auto, or 2 for a crop without air"),
        "sigma": ("float", 0.4, 0.0, 2.0, "blur of the distance map (voxels) before the peak search"),
    },
    "model": {
        "min_particle_fraction": ("log", 0.02, 1e-4, 0.3, "drop particles below this fraction of the expected volume"),
        "min_core_voxels": ("int", 8, 1, 200, "smallest core (network voxels) that seeds a particle"),
        "overlap": ("float", 0.25, 0.0, 0.75, "overlap of the sliding windows"),
        "target_diameter_vox": ("choice", None, (None, 16, 18, 20, 22, 24), None,
                                "particle diameter on the network's grid (voxels): auto = the "
                                "weights' own (20); larger is slower"),
        "core_threshold": ("choice", None, (None, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9), None,
                           "core probability that seeds a particle: auto = the weights' own "
                           "(0.75); higher splits touching grains, lower keeps small ones"),
        "tta": ("bool", False, None, None, "average over mirrored inputs (8x slower)"),
    },
}

# The particle size slider spans this factor either side of the starting size.
_SIZE_RANGE = 4.0
# The preview slab is this many mean particle diameters thick (at least 24 voxels).
_SLAB_DIAMETERS = 2.5


def available_methods() -> tuple:
    """The methods the tuner offers: the model only when its weights ship."""
    from ps3d_toolkit.segmentation.model import weights_available
    from ps3d_toolkit.segmentation import METHODS

    return tuple(m for m in METHODS if m != "model" or weights_available())


def preview_region(shape, particle_size_vox: float, *, max_voxels: int = 1_500_000) -> tuple:
    """The sub-volume the tuner segments: a central slab a few particles thick.

    A slab across the whole field of view keeps the scan's mix of air, epoxy
    and grains, so that automatic thresholds behave as on the full scan; when
    the full slab holds more than ``max_voxels`` its y and x extent shrink
    around the centre.

    Parameters
    ----------
    shape : 3 ints
        Scan shape (z, y, x).
    particle_size_vox : float
        Mean particle diameter in voxels (along z).
    max_voxels : int
        Largest preview, in voxels.

    Returns
    -------
    tuple of 3 slice
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive ints (z, y, x), got {shape!r}")
    particle_size_vox = check_positive(particle_size_vox, "particle_size_vox")
    if int(max_voxels) < 1:
        raise ValueError(f"max_voxels must be a positive integer, got {max_voxels!r}")
    depth = min(shape[0], max(24, int(np.ceil(_SLAB_DIAMETERS * particle_size_vox))))
    side_y, side_x = shape[1], shape[2]
    area = max_voxels / depth
    if side_y * side_x > area:
        scale = np.sqrt(area / (side_y * side_x))
        side_y = max(1, min(shape[1], int(side_y * scale)))
        side_x = max(1, min(shape[2], int(side_x * scale)))

    def centred(length, total):
        start = (total - length) // 2
        return slice(start, start + length)

    return (centred(depth, shape[0]), centred(side_y, shape[1]), centred(side_x, shape[2]))


class SegmentationTuner(_NotebookView):
    """Sliders for the segmentation parameters that matter, with a live preview.

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
        The sub-volume to preview; default :func:`preview_region`.
    weights : str or Path, optional
        Model weights for ``method="model"`` (default: the shipped ones);
        with them the model is offered even when no weights ship.

    Attributes
    ----------
    crop : np.ndarray
        The preview sub-volume.
    params : dict
        Current settings: ``method``, ``particle_size_mm`` and the method's options.
    result : dict or None
        The last preview (see :meth:`update`).
    """

    def __init__(self, image, *, spacing, particle_size_mm=None, truth=None, method: str | None = None,
                 region=None, weights=None):
        from ps3d_toolkit.segmentation import default_method

        image = check_volume(image, "image")
        self.spacing = check_spacing(spacing)
        if truth is not None:
            truth = check_labels(truth, "truth")
            check_same_shape(image, truth, "image", "truth")
        if particle_size_mm is None:
            from ps3d_toolkit.segmentation.normalize import estimate_particle_size

            particle_size_mm = estimate_particle_size(image, spacing=self.spacing).particle_size_mm
        particle_size_mm = check_positive(particle_size_mm, "particle_size_mm")
        self.methods = available_methods()
        if weights is not None and "model" not in self.methods:
            self.methods = ("model", *self.methods)
        method = method or default_method()
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        if region is None:
            region = preview_region(image.shape, particle_size_mm / self.spacing[0])
        self.region = tuple(region)
        self.crop = np.ascontiguousarray(image[self.region])
        if self.crop.ndim != 3 or self.crop.size == 0:
            raise ValueError(f"region must select a non-empty 3D sub-volume, got {region!r}")
        self.truth = None if truth is None else np.ascontiguousarray(truth[self.region])
        self.weights = weights
        self.initial_size_mm = float(particle_size_mm)
        self.params = self._defaults(method, particle_size_mm)
        self.result = None
        self.preview_index = self.crop.shape[0] // 2
        self._widget = None
        self._building = False
        self._controls: dict = {}
        self._options_method = None

    # --- logic ---------------------------------------------------------------------------------
    @staticmethod
    def _defaults(method: str, particle_size_mm: float) -> dict:
        params = {"method": method, "particle_size_mm": float(particle_size_mm)}
        params.update({name: spec[1] for name, spec in PARAMETERS[method].items()})
        return params

    def _check_change(self, name: str, value, method: str):
        if name == "particle_size_mm":
            return check_positive(value, "particle_size_mm")
        spec = PARAMETERS[method].get(name)
        if spec is None:
            raise ValueError(f"{name!r} is not a parameter of method {method!r}; "
                             f"parameters: particle_size_mm, {', '.join(PARAMETERS[method])}")
        kind, _, low, high, _ = spec
        if kind == "choice":
            if value not in low:
                raise ValueError(f"{name} must be one of {low}, got {value!r}")
            return value
        if kind == "bool":
            return bool(value)
        number = int(value) if kind == "int" else float(value)
        if not low <= number <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
        return number

    def settings(self) -> dict:
        """The chosen settings as keyword arguments of :func:`ps3d_toolkit.segmentation.segment`."""
        out = dict(self.params)
        if out["method"] == "model" and self.weights is not None:
            out["weights"] = str(self.weights)
        return out

    def settings_code(self, *, scan_name: str = "scan", scan_path: str = "SCAN") -> str:
        """The settings as Python to paste into a notebook, and the matching command line.

        Parameters
        ----------
        scan_name : str
            Name of the :class:`ps3d_toolkit.io.Scan` variable in the snippet.
        scan_path : str
            Scan path in the command line.

        Returns
        -------
        str
        """
        settings = self.settings()
        args = ", ".join(f"{k}={_python_literal(v)}" for k, v in settings.items())
        spacing = ",".join(f"{s:g}" for s in self.spacing) if len(set(self.spacing)) > 1 else f"{self.spacing[0]:g}"
        cli = (f"ps3d segment {scan_path} --spacing {spacing} --particle-size {settings['particle_size_mm']:.4g} "
               f"--method {settings['method']} --output labels.tif")
        extra = [k for k in settings if k not in ("method", "particle_size_mm")]
        lines = [
            "from ps3d_toolkit.segmentation import segment",
            "",
            f"labels = segment({scan_name}.image, spacing={scan_name}.spacing, {args})",
            "",
            "# command line:",
            f"# {cli}",
        ]
        if extra:
            lines.append(f"# (the command line takes --method and --particle-size only; {', '.join(extra)} "
                         "are set from Python)")
        return "\n".join(lines)

    def update(self, **changes) -> dict:
        """Apply parameter changes and segment the preview region: what a slider move does.

        Parameters
        ----------
        **changes
            ``method``, ``particle_size_mm`` or any option of the method (see
            :data:`PARAMETERS`). Changing the method resets the options to its
            defaults (keeping the particle size).

        Returns
        -------
        dict
            ``labels`` (the preview's labels), ``n_particles``,
            ``n_inside`` (particles not touching the preview's edge),
            ``eq_diameter_mm`` (array, particles not touching the edge),
            ``d10_mm``, ``d50_mm``, ``d90_mm`` (volume-weighted, of those
            particles; NaN when none),
            ``seconds`` and, with a ground truth, ``scores``
            (:func:`ps3d_toolkit.analysis.evaluate.evaluate_instances`).
        """
        method = changes.pop("method", self.params["method"])
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        params = dict(self.params) if method == self.params["method"] else \
            self._defaults(method, self.params["particle_size_mm"])
        for name, value in changes.items():
            params[name] = self._check_change(name, value, method)
        self.params = params
        self.result = self._run()
        self._refresh()
        return self.result

    def _run(self) -> dict:
        from ps3d_toolkit.measurement import measure
        from ps3d_toolkit.segmentation import segment
        from ps3d_toolkit.analysis.stats import percentiles

        options = self.settings()
        method = options.pop("method")
        size = options.pop("particle_size_mm")
        start = time.perf_counter()
        labels = segment(self.crop, spacing=self.spacing, particle_size_mm=size, method=method, progress=False,
                         **options)
        seconds = time.perf_counter() - start
        result = {"labels": labels, "n_particles": int(labels.max()), "seconds": seconds}
        inside = None
        if labels.any():
            table = measure(labels, spacing=self.spacing, shape=False, progress=False)
            # Grains cut by the preview's edge look smaller than they are.
            inside = table[~table["touches_border"].to_numpy(dtype=bool)]
        diameters = inside["eq_diameter_mm"].to_numpy() if inside is not None else np.zeros(0)
        result["eq_diameter_mm"] = diameters
        result["n_inside"] = int(diameters.size)
        if diameters.size:
            result.update(percentiles(inside, weight="volume"))
        else:
            result.update(d10_mm=np.nan, d50_mm=np.nan, d90_mm=np.nan)
        if self.truth is not None:
            from ps3d_toolkit.analysis.evaluate import evaluate_instances

            result["scores"] = evaluate_instances(self.truth, labels)
        return result

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
        return text

    def preview_rgb(self) -> np.ndarray:
        """The preview slice (``preview_index`` of the crop) with the particles coloured."""
        from ps3d_toolkit.viz.viewer import default_window, overlay_labels, window_image

        grey = window_image(self.crop[self.preview_index], *default_window(self.crop))
        if self.result is None:
            return np.repeat(grey[..., None], 3, axis=2)
        return overlay_labels(grey, self.result["labels"][self.preview_index], opacity=0.45, outline=True)

    def set_preview_index(self, index: int) -> None:
        """Show another slice of the preview (no new segmentation)."""
        index = int(index)
        if not 0 <= index < self.crop.shape[0]:
            raise ValueError(f"preview index must be in [0, {self.crop.shape[0]}), got {index}")
        self.preview_index = index
        self._refresh()

    # --- widgets -------------------------------------------------------------------------------
    def _control(self, name: str, spec):
        import ipywidgets as w

        kind, default, low, high, help_text = spec
        value = self.params.get(name, default)
        style = {"description_width": "initial"}
        layout = w.Layout(width="420px")
        if kind == "log":
            control = w.FloatLogSlider(value=value, base=10, min=np.log10(low), max=np.log10(high), step=0.05,
                                       readout_format=".2g", description=name, style=style, layout=layout,
                                       continuous_update=False)
        elif kind == "float":
            control = w.FloatSlider(value=value, min=low, max=high, step=(high - low) / 100, description=name,
                                    style=style, layout=layout, continuous_update=False, readout_format=".3g")
        elif kind == "int":
            control = w.IntSlider(value=value, min=low, max=high, description=name, style=style, layout=layout,
                                  continuous_update=False)
        elif kind == "bool":
            control = w.Checkbox(value=value, description=name, style=style, indent=False)
        else:
            # A dropdown's value None means "nothing chosen", so the choices travel as positions.
            options = [("auto" if c is None else str(c), k) for k, c in enumerate(low)]
            control = w.Dropdown(options=options, value=low.index(value), description=name, style=style)
        control.tooltip = help_text
        control.observe(lambda change: self._on_change(name, change["new"]), names="value")
        return control

    def _control_value(self, name: str):
        """The value a control shows for the current ``params`` (positions for choices)."""
        value = self.params[name]
        spec = PARAMETERS[self.params["method"]].get(name)
        return spec[2].index(value) if spec is not None and spec[0] == "choice" else value

    def _option_controls(self):
        self._options_method = self.params["method"]
        controls = {name: self._control(name, spec) for name, spec in PARAMETERS[self._options_method].items()}
        self._controls = {name: c for name, c in self._controls.items() if name in ("method", "particle_size_mm")}
        self._controls.update(controls)
        return list(controls.values())

    def _on_change(self, name, value) -> None:
        if self._building:
            return
        spec = PARAMETERS[self.params["method"]].get(name)
        if spec is not None and spec[0] == "choice":
            value = spec[2][value]
        if name == "method" or self._auto.value:
            self.update(**{name: value})
        else:
            self.params[name] = self._check_change(name, value, self.params["method"])
            self._code.value = self.settings_code()

    def _build(self):
        import ipywidgets as w
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from ps3d_toolkit.viz.viewer import png_data_uri

        self._building = True
        style = {"description_width": "initial"}
        method = w.Dropdown(options=list(self.methods), value=self.params["method"], description="method",
                            style=style)
        method.observe(lambda change: self._on_change("method", change["new"]), names="value")
        size = w.FloatLogSlider(value=self.params["particle_size_mm"], base=10,
                                min=np.log10(self.initial_size_mm / _SIZE_RANGE),
                                max=np.log10(self.initial_size_mm * _SIZE_RANGE), step=0.02,
                                description="particle_size_mm", readout_format=".3g", style=style,
                                layout=w.Layout(width="420px"), continuous_update=False)
        size.observe(lambda change: self._on_change("particle_size_mm", change["new"]), names="value")
        self._controls = {"method": method, "particle_size_mm": size}
        self._options_box = w.VBox(self._option_controls())
        self._auto = w.Checkbox(value=True, description="update on every change", indent=False)
        run = w.Button(description="preview", icon="play")
        run.on_click(lambda _button: self.update())
        self._index = w.IntSlider(value=self.preview_index, min=0, max=self.crop.shape[0] - 1,
                                  description="slice", continuous_update=False)
        self._index.observe(lambda change: self.set_preview_index(change["new"]), names="value")

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
        self._figure = go.FigureWidget(fig)
        self._summary = w.HTML(self.summary_html())
        self._code = w.Textarea(value=self.settings_code(), description="settings",
                                layout=w.Layout(width="95%", height="9em"), style=style)
        controls = w.VBox([method, size, self._options_box, w.HBox([self._auto, run])])
        self._widget = w.VBox([controls, self._index, self._figure, self._summary, self._code])
        self._building = False
        self._refresh()

    def _refresh(self) -> None:
        if self._widget is None:
            return
        from ps3d_toolkit.viz.viewer import png_data_uri

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

    @property
    def widget(self):
        """The tuner as one ipywidgets box."""
        if self._widget is None:
            self._build()
        return self._widget


def _python_literal(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)
