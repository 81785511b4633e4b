"""``estimate_quality``: how right a segmentation is, without labels.

The scan is segmented again under a few variants of what a rescan would change
(:mod:`.variants`); each particle's best IoU in every variant says how stable it is.
With shape cues of merged grains, the particle size set against the grains found,
and the labelled volume set against the Otsu grain mask, a calibrated map
(:mod:`.calibration`) gives every particle a confidence and the scan an estimated
instance F1@0.5.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import check_labels, check_same_shape, check_spacing, check_volume
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.progress import Stages
from ps3d_toolkit.segmentation.quality import signals as _signals
from ps3d_toolkit.segmentation.quality.calibration import apply_map, load_calibration
from ps3d_toolkit.segmentation.quality.variants import VARIANTS, noise_level

__all__ = ["QualityReport", "QualitySignals", "estimate_quality", "measure_signals", "quality_features"]

logger = logging.getLogger(__name__)

#: A particle counts as stable in a variant when its best IoU there reaches this.
STABLE_IOU = 0.5
#: Outside [1 / SIZE_WARN_RATIO, SIZE_WARN_RATIO] the given particle size "looks wrong".
SIZE_WARN_RATIO = 1.45
#: A particle under this confidence is "low confidence" in the record.
LOW_CONFIDENCE = 0.5


@dataclass
class QualitySignals:
    """What :func:`measure_signals` measured, before any calibration.

    Attributes
    ----------
    ids : np.ndarray
        Particle ids.
    voxels : np.ndarray
        Voxels per particle.
    solidity, cores : np.ndarray
        Voxels over convex-hull volume; separate deep cores.
    variant_iou : np.ndarray
        (particles, variants): each particle's best IoU in each variant.
    variants : tuple of str
        The variants' names.
    scan : dict
        Scan-level measurements: ``found_over_given``, ``estimate_over_given``,
        ``volume_agreement``, ``noise_level``.
    seconds : dict
        Seconds per part: ``signals`` and one entry per variant.
    """

    ids: np.ndarray
    voxels: np.ndarray
    solidity: np.ndarray
    cores: np.ndarray
    variant_iou: np.ndarray
    variants: tuple
    scan: dict
    seconds: dict = field(default_factory=dict)


@dataclass
class QualityReport:
    """A label-free quality estimate of one segmentation.

    Attributes
    ----------
    estimated_f1 : float
        Estimated instance F1 at IoU 0.5 against the (unknown) truth, in [0, 1].
    confidence : pandas.Series
        Per particle (index: label id), the estimated chance in [0, 1] that it matches
        a true grain at IoU >= 0.5.
    particles : pandas.DataFrame
        Per particle (index: label id), the signals its confidence is made of.
    signals : dict
        Scan-level signals, name -> value.
    variants : tuple of str
        The variants segmented (none: shape, size and volume cues only).
    warnings : list of str
        What looks wrong, in words (e.g. the particle size).
    seconds : float
        Time the estimate took.
    calibration : str
        The command that fitted the calibration used.
    """

    estimated_f1: float
    confidence: pd.Series
    particles: pd.DataFrame
    signals: dict
    variants: tuple
    warnings: list
    seconds: float
    calibration: str

    @property
    def n_variants(self) -> int:
        """How many variants were segmented."""
        return len(self.variants)

    @property
    def low_confidence_share(self) -> float:
        """Share of the particles with a confidence under :data:`LOW_CONFIDENCE` (NaN without particles)."""
        return float(np.mean(self.confidence.to_numpy() < LOW_CONFIDENCE)) if len(self.confidence) else math.nan

    def record(self) -> dict:
        """A JSON-ready summary, for the labels' ``.ps3d.json`` under ``"quality"``."""
        return {"estimated_f1": round(float(self.estimated_f1), 4),
                "low_confidence_share": _rounded(self.low_confidence_share),
                "n_particles": int(len(self.confidence)), "n_variants": self.n_variants,
                "variants": list(self.variants), "signals": {k: _rounded(v) for k, v in self.signals.items()},
                "warnings": list(self.warnings), "seconds": round(float(self.seconds), 2),
                "calibration": self.calibration}


def _rounded(value) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else round(value, 4)


def estimate_quality(image, labels, *, spacing, particle_size_mm=None, method=None, variants: int | None = None,
                     grains="brighter", mask=None, progress=False, seed: int = 0, calibration=None,
                     **options) -> QualityReport:
    """Estimate how right a segmentation is, without labels.

    Parameters
    ----------
    image : array_like
        The grey-value scan that was segmented (z, y, x).
    labels : array_like of int
        Its particles (0 = background), as returned by :func:`~ps3d_toolkit.segmentation.segment`.
    spacing : float or tuple of 3 float
        Voxel size in mm.
    particle_size_mm : float, optional
        The particle size the segmentation was run with (e.g. ``ModelRun.particle_size_mm``);
        None when it was estimated: the variants then estimate it too.
    method : str, optional
        The method that made ``labels`` (default: the default method); the variants are
        segmented with it, ``grains``, ``mask`` and ``**options``.
    variants : int, optional
        How many rescan stand-ins to segment (0 to 4; each costs about one more run, the
        first less); default: the calibration's, chosen by ``benchmarks/quality.py``.
    grains : {"brighter", "darker", "auto"}
        As for :func:`~ps3d_toolkit.segmentation.segment`.
    mask : array_like of bool, optional
        The sample mask the segmentation used, as an array (for ``mask="auto"`` or a file,
        pass the array it resolved to); it is turned with every variant.
    progress : bool
        Show a bar over the stages.
    seed : int
        Seed of the variants' added noise.
    calibration : str or Path, optional
        A calibration file (default: the shipped one).
    **options
        Options of the method (e.g. ``weights``), as given to ``segment``.

    Returns
    -------
    QualityReport

    Raises
    ------
    InputError
        If image and labels differ in shape, ``variants`` is out of range, or an
        argument of ``segment`` is invalid.
    """
    start = time.perf_counter()
    calibration = load_calibration(calibration)
    n = calibration["default_variants"] if variants is None else variants
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 <= n <= len(VARIANTS):
        raise InputError(f"variants must be an integer from 0 to {len(VARIANTS)}, got {variants!r}")
    measured = measure_signals(image, labels, spacing=spacing, particle_size_mm=particle_size_mm,
                               method=method, variants=int(n), grains=grains, mask=mask, progress=progress,
                               seed=seed, **options)
    maps = calibration["maps"][str(int(n))]
    particle_features, scan_features = quality_features(measured, maps["particle"])
    confidence = pd.Series(apply_map(maps["particle"], particle_features) if measured.ids.size else [],
                           index=pd.Index(measured.ids, name="label"), name="confidence", dtype=np.float64)
    estimated = float(apply_map(maps["scan"], scan_features)) if measured.ids.size else 0.0
    report = QualityReport(
        estimated_f1=estimated, confidence=confidence,
        particles=pd.DataFrame(particle_features, index=confidence.index),
        signals={**measured.scan, **scan_features}, variants=measured.variants,
        warnings=_warnings(measured, estimated), seconds=time.perf_counter() - start,
        calibration=calibration["command"])
    for message in report.warnings:
        logger.warning("%s", message)
    logger.info("estimated F1@0.5 %.2f from %d variant(s)", estimated, report.n_variants)
    return report


def measure_signals(image, labels, *, spacing, particle_size_mm=None, method=None, variants: int = len(VARIANTS),
                    grains="brighter", mask=None, progress=False, seed: int = 0, **options) -> QualitySignals:
    """The uncalibrated signals of :func:`estimate_quality` (the calibration benchmark fits on these).

    Parameters are those of :func:`estimate_quality`; ``variants`` defaults to all.

    Returns
    -------
    QualitySignals
    """
    image = check_volume(image, "image")
    labels = check_labels(labels, "labels")
    check_same_shape(image, labels, "image", "labels")
    spacing = check_spacing(spacing)
    if "roi" in options:
        raise InputError("estimate_quality takes no roi: pass the box's scan and labels instead")
    stages = Stages("quality", enabled=bool(progress))
    try:
        stages.start("signals")
        measured = _static_signals(np.asarray(image), np.asarray(labels, np.uint32), spacing, particle_size_mm,
                                   grains, mask)
        ious = []
        for k, variant in enumerate(VARIANTS[:variants]):
            stages.start(f"variant {k + 1}/{variants}")
            ious.append(_variant_iou(variant, image, labels, measured, spacing, particle_size_mm, method,
                                     grains, mask, seed + k, options))
    finally:
        stages.close()
    measured.variant_iou = np.stack(ious, axis=1) if ious else np.zeros((measured.ids.size, 0))
    measured.variants = tuple(v.name for v in VARIANTS[:variants])
    measured.seconds = dict(stages.seconds)
    return measured


def quality_features(measured: QualitySignals, particle_map: dict | None = None) -> tuple[dict, dict]:
    """The named features the calibration maps read: per particle, and per scan.

    Parameters
    ----------
    measured : QualitySignals
        From :func:`measure_signals`.
    particle_map : dict, optional
        The calibration's particle map: with it the scan features include the
        particles' mean confidence (count- and volume-weighted).

    Returns
    -------
    particle : dict
        Feature name -> array over the particles.
    scan : dict
        Feature name -> float.
    """
    n = measured.ids.size
    voxels = measured.voxels.astype(np.float64)
    weights = voxels / voxels.sum() if n else voxels
    size_off = _abs_log(measured.scan["found_over_given"])
    estimate_off = _abs_log(measured.scan["estimate_over_given"])
    log_volume = np.log(voxels / np.median(voxels)) if n else voxels
    particle = {"solidity": measured.solidity, "extra_cores": np.clip(measured.cores - 1, 0, 3).astype(np.float64),
                "volume_oddness": np.abs(log_volume),
                "size_disagreement": np.full(n, size_off), "estimate_disagreement": np.full(n, estimate_off)}
    iou = measured.variant_iou
    if iou.shape[1]:
        particle.update(stable_fraction=np.mean(iou >= STABLE_IOU, axis=1), mean_iou=iou.mean(axis=1),
                        min_iou=iou.min(axis=1))
    scan = {"size_disagreement": size_off, "estimate_disagreement": estimate_off,
            "volume_disagreement": _abs_log(measured.scan["volume_agreement"]),
            "noise_to_contrast": measured.scan["noise_to_contrast"],
            "merged_share": _weighted(particle["extra_cores"] > 0, weights),
            "mean_solidity": _weighted(particle["solidity"], weights),
            "small_share": float(np.mean(log_volume < _SMALL)) if n else math.nan}
    if iou.shape[1]:
        scan.update(stable_share=_weighted(particle["stable_fraction"] > 0.5, weights),
                    stable_count_share=float(np.mean(particle["stable_fraction"] > 0.5)) if n else math.nan,
                    mean_iou=float(np.mean(particle["mean_iou"])) if n else math.nan)
    if particle_map is not None:
        confidence = apply_map(particle_map, particle) if n else np.zeros(0)
        scan.update(mean_confidence=float(np.mean(confidence)) if n else math.nan,
                    volume_confidence=_weighted(confidence, weights),
                    confidence_f1=_confidence_f1(confidence, measured.scan))
    return particle, scan


def _confidence_f1(confidence: np.ndarray, scan: dict) -> float:
    """F1 from the confidences as true positives, against a grain count guessed from the Otsu mask.

    The grains expected over the particles found: the grain-mask volume over the labelled
    volume, times the cube of the particles' median diameter over the scan's own size
    estimate (merged grains are larger and fewer than the grains).
    """
    ratio = scan["found_mm"] / scan["estimated_mm"]
    if not confidence.size or not (math.isfinite(ratio) and ratio > 0 and scan["volume_agreement"] > 0):
        return math.nan
    expected_over_found = ratio ** 3 / scan["volume_agreement"]
    return float(2 * np.mean(confidence) / (1 + expected_over_found))


# A particle under a tenth of the median volume is "small" (a speck, a fragment of a split grain).
_SMALL = math.log(0.1)


def _abs_log(ratio: float) -> float:
    return abs(math.log(ratio)) if math.isfinite(ratio) and ratio > 0 else math.nan


def _weighted(values, weights) -> float:
    return float(np.sum(np.asarray(values, np.float64) * weights)) if len(weights) else math.nan


def _static_signals(image: np.ndarray, labels: np.ndarray, spacing: tuple, particle_size_mm, grains,
                    mask) -> QualitySignals:
    """The signals that need no second segmentation: shape, size and the Otsu grain volume."""
    from ps3d_toolkit.segmentation.foreground import estimate_particle_size
    from ps3d_toolkit.segmentation.foreground import grain_mask

    ids, voxels = _signals.particle_ids(labels)
    bright = _grains_bright(image, grains)
    grain = grain_mask(bright)
    if mask is not None:
        grain &= _mask_array(mask, image.shape)
    try:
        estimated = estimate_particle_size(bright, spacing=spacing, foreground=grain).particle_size_mm
    except InputError:
        estimated = None
    reference = estimated if particle_size_mm is None else particle_size_mm
    scan = _signals.size_ratios(voxels, spacing, reference, estimated)
    sigma = noise_level(image)
    inside, outside = (np.median(bright[grain]), np.median(bright[~grain])) if grain.any() and not grain.all() \
        else (math.nan, math.nan)
    scan.update(volume_agreement=_signals.volume_agreement(labels, grain), noise_sigma=sigma,
                noise_to_contrast=sigma / abs(inside - outside) if inside != outside else math.nan)
    return QualitySignals(ids=ids, voxels=voxels, solidity=_signals.solidity(labels, ids),
                          cores=_signals.core_counts(labels, ids, spacing),
                          variant_iou=np.zeros((ids.size, 0)), variants=(), scan=scan)


def _grains_bright(image: np.ndarray, grains) -> np.ndarray:
    """The scan with its grains brighter than their matrix."""
    if grains == "auto":
        from ps3d_toolkit.segmentation.polarity import grain_polarity

        grains = grain_polarity(image).grains
    if grains not in ("brighter", "darker"):
        raise InputError(f"grains must be 'brighter', 'darker' or 'auto', got {grains!r}")
    return -image.astype(np.float32) if grains == "darker" else image


def _mask_array(mask, shape) -> np.ndarray:
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        raise InputError("estimate_quality needs mask as a boolean array of the scan's shape "
                         f"(e.g. sample_mask(image).mask), got {mask!r}")
    mask = np.asarray(mask, dtype=bool)
    check_same_shape(np.empty(shape, bool), mask, "image", "mask")
    return mask


def _variant_iou(variant, image, labels, measured, spacing, particle_size_mm, method, grains, mask, seed,
                 options) -> np.ndarray:
    """Segment one variant with the same settings; each particle's best IoU in it."""
    from ps3d_toolkit.segmentation.registry import segment

    moved, moved_spacing = variant.forward(np.asarray(image), spacing, measured.scan["noise_sigma"], seed)
    moved_mask = None if mask is None else variant.orient(_mask_array(mask, image.shape))
    size = None if particle_size_mm is None else float(particle_size_mm) * variant.size_factor
    other = segment(moved, spacing=moved_spacing, particle_size_mm=size, method=method, grains=grains,
                    mask=moved_mask, progress=False, **options)
    return _signals.best_iou(labels, variant.back(np.asarray(other)), measured.ids)


def _warnings(measured: QualitySignals, estimated: float) -> list:
    """What looks wrong, in words."""
    out = []
    found = measured.scan["found_over_given"]
    if measured.ids.size and math.isfinite(found) and not 1 / SIZE_WARN_RATIO <= found <= SIZE_WARN_RATIO:
        out.append(f"the particle size looks wrong: the grains found are {found:.2g}x the given size "
                   f"(median {measured.scan['found_mm']:.3g} mm); segment again with a size nearer "
                   f"{measured.scan['estimated_mm']:.3g} mm (the scan's own estimate) or check it")
    if measured.ids.size == 0:
        out.append("no particles to assess")
    elif estimated < _LOW_ESTIMATE:
        out.append(f"the estimated F1@0.5 is {estimated:.2f}: check the particles before trusting the statistics")
    return out


_LOW_ESTIMATE = 0.8
