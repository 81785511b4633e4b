"""Scan-matched phantoms: generated scans that look like the user's, with exact labels.

The first pass's particles say where grains and matrix are; from them the scan's
grain size and its spread, packing, grain shape, phases, noise, blur and contrast
are measured (:func:`measure_appearance`). Noise and blur are then matched by
measuring a probe phantom the same way and correcting its settings by the
ratio (the measurement's own bias cancels), and phantoms are generated with
:func:`~ps3d_toolkit.data.synthetic.generate_scan` at those settings
(:func:`matched_settings`, :func:`matched_phantom`).
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from ps3d_toolkit.core.geometry import equivalent_diameter
from ps3d_toolkit.data.synthetic import generate_scan
from ps3d_toolkit.training.volumes import prepare_volume

__all__ = ["matched_phantom", "matched_settings", "measure_appearance"]

logger = logging.getLogger(__name__)

# Gaussian scale (voxels) of the residual that isolates the noise and of the gradient at edges.
_NOISE_SMOOTH = 1.5
_EDGE_SMOOTH = 1.0
# Phantom edge on the training grid (voxels): big enough for 64-voxel patches and many grains.
_PHANTOM_GRID_EDGE = 88


# Values used for a measurement that failed (e.g. a first pass without particles).
_TYPICAL = {"diameter_vox": 20.0, "size_sigma": 0.25, "packing": 0.45, "compactness": 1.2, "phase_spread": 0.2,
            "noise_ratio": 0.1, "edge_sigma": 1.5}


def _robust_std(values: np.ndarray) -> float:
    values = np.asarray(values, np.float64)
    return float(1.4826 * np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def _matrix_and_air(image: np.ndarray, background: np.ndarray, between: np.ndarray,
                    grain_level: float) -> tuple[np.ndarray, float | None]:
    """The air (a mask of the whole scan) and its grey value when air is in view, else ``None, None``.

    The matrix between the grains (``between``) cannot be air. Air is the lower
    of two Otsu classes of the (2-voxel smoothed) background when that class
    lies below the matrix between the grains by more than a third of the
    grain-matrix contrast; on a scan without air the lower class is the lower
    half of the matrix's noise, which smoothing brings close to its median.
    """
    from skimage.filters import threshold_otsu

    smooth = ndimage.gaussian_filter(image, 2.0)
    values = smooth[background]
    if values.size < 100 or not between.any():
        return None, None
    cut = float(threshold_otsu(values))
    low = values[values < cut]
    matrix_level = float(np.median(smooth[between]))
    if low.size > 0.05 * values.size and matrix_level - np.median(low) > (grain_level - matrix_level) / 3:
        air = (smooth < cut) & ~ndimage.binary_dilation(~background, iterations=2)
        return air, float(np.median(image[background & (smooth < cut)]))
    return None, None


def measure_appearance(image, labels, *, particle_size_mm: float, spacing) -> dict:
    """Measure what a phantom must share with the scan, from its grains and matrix.

    Parameters
    ----------
    image, labels : np.ndarray
        The scan and its particles (a first pass, or a phantom's exact labels).
    particle_size_mm : float
        Mean particle diameter in mm.
    spacing : tuple of 3 float
        Voxel size in mm.

    Returns
    -------
    dict
        ``diameter_vox``, ``size_sigma``, ``packing``, ``compactness`` (equivalent
        over inscribed diameter), ``phase_spread``, ``noise_ratio`` (noise over
        contrast), ``edge_sigma`` (the edges' Gaussian width in voxels),
        ``contrast_ratio`` (grain-matrix over matrix-air; NaN without air in view).
    """
    image = np.asarray(image, np.float32)
    labels = np.asarray(labels)
    grains = labels > 0
    away = ndimage.distance_transform_edt(~grains)
    depth = ndimage.distance_transform_edt(grains)
    interior = depth >= (2 if np.count_nonzero(depth >= 2) > 1000 else 1)
    grain_level = float(np.median(image[interior]))
    # dense small grains leave little matrix far from them: come closer when needed
    far = away >= (3 if np.count_nonzero(away >= 3) > 1000 else 1.5)
    air_mask, air = _matrix_and_air(image, far, (away >= 1.5) & (away < 3), grain_level)
    matrix = far if air_mask is None else far & ~air_mask
    inside = grains.size if air_mask is None else grains.size - int(np.count_nonzero(air_mask))
    matrix_level = float(np.median(image[matrix]))
    contrast = max(grain_level - matrix_level, 1e-12)
    residual = image - ndimage.gaussian_filter(image, _NOISE_SMOOTH)
    gradient = ndimage.gaussian_gradient_magnitude(image, _EDGE_SMOOTH)
    surface = grains & ndimage.binary_dilation(~grains) & (away <= 1) & ndimage.binary_dilation(matrix, iterations=3)
    edge_gradient = float(np.median(gradient[surface])) if surface.any() else contrast
    ids = np.flatnonzero(np.bincount(labels.ravel())[1:]) + 1
    counts = np.bincount(labels.ravel())[ids]
    diameters = equivalent_diameter(counts)
    inscribed = 2 * np.asarray(ndimage.maximum(depth, labels, ids))
    medians = np.asarray(ndimage.median(image, labels, ids))
    big = counts >= 0.2 * np.median(counts)
    return {
        "diameter_vox": float(particle_size_mm / float(np.mean(spacing))),
        "size_sigma": float(np.std(np.log(diameters[big]))) if big.sum() > 2 else 0.25,
        "packing": float(grains.sum() / max(1, inside)),
        "compactness": float(np.median(diameters[big] / np.maximum(inscribed[big], 1))) if big.any() else 1.2,
        "phase_spread": float((np.percentile(medians, 90) - np.percentile(medians, 10)) / contrast)
        if medians.size > 4 else 0.0,
        "noise_ratio": _robust_std(residual[matrix]) / contrast,
        "edge_sigma": float(contrast / (np.sqrt(2 * np.pi) * max(edge_gradient, 1e-12))),
        "contrast_ratio": float(contrast / (matrix_level - air)) if air is not None and matrix_level > air
        else float("nan"),
    }


def _first_guess(appearance: dict) -> dict:
    """Generator settings read from the measurements, before the probe corrects noise and blur."""
    compact = appearance["compactness"]
    if compact < 1.15:
        shapes = dict(sphere=3, ellipsoid=2, irregular=1, angular=0, flaky=0)
    elif compact < 1.35:
        shapes = dict(sphere=1, ellipsoid=2, irregular=2, angular=2, flaky=1)
    else:
        shapes = dict(sphere=0, ellipsoid=1, irregular=2, angular=3, flaky=2)
    multiphase = appearance["phase_spread"] > 0.35
    ratio = appearance["contrast_ratio"]
    return dict(
        size_sigma=float(np.clip(appearance["size_sigma"], 0.1, 0.45)),
        packing=float(np.clip(appearance["packing"], 0.25, 0.62)),
        shape_weights=shapes, n_phases=3 if multiphase else 1,
        multiphase_fraction=0.3 if multiphase else 0.0,
        # the generator's epoxy lies at ~0.275 in air-to-epoxy units, its phases 0.7-2.2 x contrast above it
        contrast=float(np.clip(ratio * 0.275 / 1.2, 0.08, 0.7)) if np.isfinite(ratio) else 0.3,
        cylinder_radius_fraction=0.5 if np.isfinite(ratio) else 0.75,
        blur_sigma=1.0, noise=0.1)


def _phantom_edge(diameter_vox: float, network: dict) -> int:
    return int(np.clip(_PHANTOM_GRID_EDGE * diameter_vox / network["train_diameter_vox"], 40, 160))


def matched_settings(image, labels, *, particle_size_mm: float, spacing, network: dict, seed: int = 0) -> dict:
    """Settings of :func:`~ps3d_toolkit.data.synthetic.generate_scan` for phantoms like the scan.

    A probe phantom at a first guess is measured as the scan was, and its noise
    and blur are corrected by the ratio of the two measurements.

    Parameters
    ----------
    image, labels, particle_size_mm, spacing
        As for :func:`measure_appearance`.
    network : dict
        The weights' config (the probe has the phantoms' size on the training grid).
    seed : int
        The probe's seed.

    Returns
    -------
    dict
        ``diameter_vox``, ``request_diameter_vox`` (asked of the generator) and the
        generator's keyword overrides, plus ``measured``
        (the scan's measurements) and ``probe`` (the probe's), for the record.
    """
    appearance = measure_appearance(image, labels, particle_size_mm=particle_size_mm, spacing=spacing)
    unmeasured = [k for k, v in appearance.items() if not np.isfinite(v) and k != "contrast_ratio"]
    if unmeasured:
        logger.warning("could not measure the scan's %s from its first pass; phantoms use typical values",
                       ", ".join(unmeasured))
        appearance.update({k: _TYPICAL[k] for k in unmeasured})
    settings = _first_guess(appearance)
    diameter = appearance["diameter_vox"]
    edge = _phantom_edge(diameter, network)
    probe = generate_scan((edge, edge, edge), diameter, seed=seed, preset="medium", **settings)
    probed = measure_appearance(probe.image, probe.labels, particle_size_mm=probe.particle_size_mm,
                                spacing=probe.spacing)
    noise_ratio = appearance["noise_ratio"] / probed["noise_ratio"] if probed["noise_ratio"] > 0 else 1.0
    settings["noise"] = float(np.clip(settings["noise"] * noise_ratio if np.isfinite(noise_ratio) else 0.1,
                                      0.005, 0.4))
    # edges: measured width^2 = blur^2 + what the measurement itself adds (the same for both)
    added = probed["edge_sigma"] ** 2 - settings["blur_sigma"] ** 2
    blur = np.sqrt(np.clip(appearance["edge_sigma"] ** 2 - added, 0.1, 16.0))
    settings["blur_sigma"] = float(blur) if np.isfinite(blur) else 1.0
    # grains come out smaller than asked (cut by each other and the border): ask for more
    settings["request_diameter_vox"] = float(diameter * diameter / max(probed["diameter_vox"], 1.0))
    logger.debug("matched phantom settings %s (scan %s, probe %s)", settings, appearance, probed)
    return {"diameter_vox": diameter, **settings, "measured": appearance, "probe": probed}


def matched_phantom(settings: dict, network: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One phantom with ``settings`` (from :func:`matched_settings`), on the training grid with its targets."""
    overrides = {k: v for k, v in settings.items()
                 if k not in ("diameter_vox", "request_diameter_vox", "measured", "probe")}
    edge = _phantom_edge(settings["diameter_vox"], network)
    scan = generate_scan((edge, edge, edge), settings["request_diameter_vox"], seed=seed, preset="medium",
                         **overrides)
    return prepare_volume(scan.image, scan.labels, scan.spacing, scan.particle_size_mm, network)
