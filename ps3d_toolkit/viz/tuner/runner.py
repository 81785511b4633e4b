"""What the tuner runs: the preview region, one preview segmentation and its numbers, the settings as code."""

from __future__ import annotations

import time

import numpy as np

from ps3d_toolkit.core.checks import check_positive
from ps3d_toolkit.core.errors import InputError

__all__ = ["preview_region", "run_preview", "settings_code"]

# The preview slab is this many mean particle diameters thick (at least 24 voxels).
_SLAB_DIAMETERS = 2.5


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
        raise InputError(f"shape must be 3 positive ints (z, y, x), got {shape!r}")
    particle_size_vox = check_positive(particle_size_vox, "particle_size_vox")
    if int(max_voxels) < 1:
        raise InputError(f"max_voxels must be a positive integer, got {max_voxels!r}")
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


def run_preview(crop: np.ndarray, *, spacing: tuple, settings: dict, truth=None, quality: bool = False) -> dict:
    """Segment the preview region with ``settings`` and measure what came out.

    The tuner checked every argument; this function trusts them.

    Parameters
    ----------
    crop : np.ndarray
        The preview sub-volume.
    spacing : tuple of 3 float
        Voxel size in mm.
    settings : dict
        Keyword arguments of :func:`ps3d_toolkit.segmentation.segment`
        (``method``, ``particle_size_mm`` and the method's options).
    truth : np.ndarray, optional
        Ground-truth labels of the crop.
    quality : bool
        Also estimate the preview's quality without labels (``segment(..., quality=True)``,
        about 2x the time).

    Returns
    -------
    dict
        ``labels``, ``n_particles``, ``n_inside`` (particles not touching the
        preview's edge), ``eq_diameter_mm`` (of those), ``d10_mm``, ``d50_mm``,
        ``d90_mm`` (volume-weighted, NaN when none), ``seconds``, with a
        ground truth ``scores``, and with ``quality`` the ``quality`` record
        (``QualityReport.record()``: ``estimated_f1``, ``low_confidence_share``, ``warnings``, ...).
    """
    from ps3d_toolkit.analysis.stats import percentiles
    from ps3d_toolkit.measurement import measure
    from ps3d_toolkit.segmentation import segment

    start = time.perf_counter()
    labels = segment(crop, spacing=spacing, progress=False, quality=bool(quality), **settings)
    labels, report = labels if quality else (labels, None)
    seconds = time.perf_counter() - start
    result = {"labels": labels, "n_particles": int(labels.max()), "seconds": seconds,
              "eq_diameter_mm": np.zeros(0), "n_inside": 0, "d10_mm": np.nan, "d50_mm": np.nan, "d90_mm": np.nan}
    if labels.any():
        table = measure(labels, spacing=spacing, shape=False, progress=False)
        # Grains cut by the preview's edge look smaller than they are.
        inside = table[~table["touches_border"].to_numpy(dtype=bool)]
        result.update(eq_diameter_mm=inside["eq_diameter_mm"].to_numpy(), n_inside=len(inside))
        if len(inside):
            result.update(percentiles(inside, weight="volume"))
    if report is not None:
        result["quality"] = report.record()
    if truth is not None:
        from ps3d_toolkit.analysis.evaluate import evaluate_instances

        result["scores"] = evaluate_instances(truth, labels)
    return result


def settings_code(settings: dict, spacing: tuple, *, scan_name: str = "scan", scan_path: str = "SCAN") -> str:
    """Settings as Python to paste into a notebook, and the matching command line.

    Parameters
    ----------
    settings : dict
        Keyword arguments of :func:`ps3d_toolkit.segmentation.segment`.
    spacing : tuple of 3 float
        The scan's voxel size in mm.
    scan_name : str
        Name of the :class:`ps3d_toolkit.io.Scan` variable in the snippet.
    scan_path : str
        Scan path in the command line.

    Returns
    -------
    str
    """
    args = ", ".join(f"{k}={_python_literal(v)}" for k, v in settings.items())
    spacing_text = ",".join(f"{s:g}" for s in spacing) if len(set(spacing)) > 1 else f"{spacing[0]:g}"
    grains = f"--grains {settings['grains']} " if settings.get("grains", "brighter") != "brighter" else ""
    cli = (f"ps3d segment {scan_path} --spacing {spacing_text} --particle-size {settings['particle_size_mm']:.4g} "
           f"--method {settings['method']} {grains}--output labels.tif")
    extra = [k for k in settings if k not in ("method", "particle_size_mm", "grains")]
    lines = [
        "from ps3d_toolkit.segmentation import segment",
        "",
        f"labels = segment({scan_name}.image, spacing={scan_name}.spacing, {args})",
        "",
        "# command line:",
        f"# {cli}",
    ]
    if extra:
        lines.append(f"# (the command line takes --method, --particle-size and --grains only; {', '.join(extra)} "
                     "are set from Python)")
    return "\n".join(lines)


def _python_literal(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)
