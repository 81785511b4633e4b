"""``segment(..., quality=True)``: a segmentation with its label-free quality estimate.

The estimate (:func:`~ps3d_toolkit.segmentation.quality.estimate_quality`) segments the
scan again under a few rescan stand-ins, so it sits above ``segment()`` itself; this
module joins the two and is what ``ps3d_toolkit.segment`` is.

- In memory the estimate runs on the whole scan.
- In blocks (``chunk_size=``, a ``roi``, :func:`~ps3d_toolkit.segmentation.chunked.segment_chunked`,
  Dask) it runs on a random sample of blocks (:func:`estimate_quality_blocks`): each
  sampled block is cut from the scan and from the stitched labels with a margin of about
  one particle, and the particles lying wholly inside such a crop are assessed. The
  record says ``"sampled_blocks": k, "of": n``; the particles outside the sample have no
  confidence (absent from ``QualityReport.confidence``, NaN in the measurement table).

Beside a label file the per-particle confidences are kept as ``<labels>.quality.csv``
(:func:`save_confidence`, :func:`read_confidence`), where ``ps3d measure`` and
``ps3d report`` find them.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ps3d_toolkit.core.checks import check_spacing
from ps3d_toolkit.core.errors import InputError
from ps3d_toolkit.core.progress import Stages
from ps3d_toolkit.segmentation import registry as _registry
from ps3d_toolkit.segmentation._checks import DEFAULT_CHUNK_SIZE, check_chunk_size, size_in_voxels
from ps3d_toolkit.segmentation.quality import QualityReport, estimate_quality
from ps3d_toolkit.segmentation.region import resolve_region

__all__ = ["CONFIDENCE_SUFFIX", "DEFAULT_SAMPLED_BLOCKS", "SampledQualityReport", "confidence_path",
           "estimate_quality_blocks", "read_confidence", "save_confidence", "segment"]

logger = logging.getLogger(__name__)

#: Blocks the estimate samples when the scan is segmented in blocks.
DEFAULT_SAMPLED_BLOCKS = 4
#: The per-particle confidences beside a label image: ``labels.tif`` -> ``labels.tif.quality.csv``.
CONFIDENCE_SUFFIX = ".quality.csv"
# Options of the block run only; the estimate's in-memory variants take none of them.
_BLOCK_ONLY = ("output", "resume", "overwrite", "zarr_format", "scheduler", "dask_timeout", "halo_diameters")
_QUALITY_KEYS = ("variants", "seed", "sampled_blocks", "calibration")


@dataclass
class SampledQualityReport(QualityReport):
    """A :class:`~ps3d_toolkit.segmentation.quality.QualityReport` made on a sample of blocks.

    Attributes
    ----------
    sampled_blocks : int
        Blocks assessed.
    of_blocks : int
        Blocks of the scan (inside the region of interest).
    """

    sampled_blocks: int = 0
    of_blocks: int = 0

    def record(self) -> dict:
        """The record of :meth:`QualityReport.record`, with ``"sampled_blocks"`` and ``"of"``."""
        return {**super().record(), "sampled_blocks": int(self.sampled_blocks), "of": int(self.of_blocks)}


def segment(image, *, quality=False, **arguments):
    """Segment every particle; with ``quality``, also estimate how right the particles are."""
    labels = _registry.segment(image, **arguments)
    if quality is False or quality is None:
        return labels
    return labels, assess(image, labels, quality=quality, **arguments)


def assess(image, labels, *, quality=True, spacing, particle_size_mm=None, method=None, grains="brighter",
           roi=None, mask=None, non_finite="refuse", progress=True, chunk_size=None, **options) -> QualityReport:
    """The quality estimate of a :func:`segment` run, made as the run was: whole or on sampled blocks.

    Parameters
    ----------
    image, labels : array_like
        The scan and the labels ``segment`` returned.
    quality : True or dict
        True, or the estimate's settings: ``variants`` (rescan stand-ins, 0 to 4), ``seed``,
        ``calibration`` (a calibration file), and for a run in blocks ``sampled_blocks``.
    spacing, particle_size_mm, method, grains, roi, mask, non_finite, progress, chunk_size, **options
        As given to :func:`segment`.

    Returns
    -------
    QualityReport
        A :class:`SampledQualityReport` for a run in blocks.
    """
    settings = _quality_settings(quality)
    options = {k: v for k, v in options.items() if k not in _BLOCK_ONLY}
    if non_finite != "refuse":
        options["non_finite"] = non_finite
    if chunk_size == "auto":
        chunk_size, _ = _registry.chunk_size_for(np.shape(image), _registry.check_method(method),
                                                 memory_limit_gb=options.get("memory_limit_gb"))
    region = resolve_region(image, roi=roi, mask=mask, spacing=check_spacing(spacing))
    shown = bool(progress)
    if chunk_size is None and (region is None or region.is_whole_box):
        mask_array = None if region is None else region.full()
        return estimate_quality(np.asarray(image), np.asarray(labels), spacing=spacing,
                                particle_size_mm=particle_size_mm, method=method, variants=settings["variants"],
                                grains=grains, mask=mask_array, progress=shown, seed=settings["seed"],
                                calibration=settings["calibration"], **options)
    return estimate_quality_blocks(image, labels, spacing=spacing, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                                   sampled_blocks=settings["sampled_blocks"], particle_size_mm=particle_size_mm,
                                   method=method, grains=grains, roi=roi, mask=mask, variants=settings["variants"],
                                   progress=shown, seed=settings["seed"],
                                   calibration=settings["calibration"], **options)


def _quality_settings(quality) -> dict:
    """``quality=`` of :func:`segment` as the estimate's settings, checked."""
    settings = {"variants": None, "seed": 0, "sampled_blocks": DEFAULT_SAMPLED_BLOCKS, "calibration": None}
    if quality is True:
        return settings
    if not isinstance(quality, dict):
        raise InputError(f"quality must be False, True or a dict of {', '.join(_QUALITY_KEYS)}, got {quality!r}")
    unknown = sorted(set(quality) - set(_QUALITY_KEYS))
    if unknown:
        raise InputError(f"quality takes the keys {', '.join(_QUALITY_KEYS)}, got {', '.join(map(repr, unknown))}")
    settings.update(quality)
    blocks = settings["sampled_blocks"]
    if not isinstance(blocks, (int, np.integer)) or isinstance(blocks, bool) or blocks < 1:
        raise InputError(f"quality['sampled_blocks'] must be a positive integer, got {blocks!r}")
    return settings


def estimate_quality_blocks(image, labels, *, spacing, chunk_size: int = DEFAULT_CHUNK_SIZE,
                            sampled_blocks: int = DEFAULT_SAMPLED_BLOCKS, particle_size_mm=None, method=None,
                            grains="brighter", roi=None, mask=None, variants=None, progress=False, seed: int = 0,
                            calibration=None, **options) -> SampledQualityReport:
    """The label-free quality estimate of a scan segmented in blocks, on a random sample of its blocks.

    Each sampled block is cut, with a margin of about one particle diameter, from the scan and
    from the labels (both may be lazy: only the crops are read), and assessed by
    :func:`~ps3d_toolkit.segmentation.quality.estimate_quality` as a small scan of its own. A
    particle is assessed in the first crop that holds it whole (not cut by a face of the crop
    inside the scan); the estimated F1 is the crops' estimates averaged with their particle
    counts as weights.

    Parameters
    ----------
    image, labels : array_like
        The scan and its labels (numpy, zarr or any array with ``shape`` and slicing).
    spacing : float or tuple of 3 float
        Voxel size in mm.
    chunk_size : int
        The block edge the scan was segmented with.
    sampled_blocks : int
        Blocks to assess (all of them when the scan has fewer).
    roi, mask : optional
        The sample region, as given to ``segment``: only the blocks over its box are drawn.
    particle_size_mm, method, grains, variants, progress, seed, calibration, **options
        As for :func:`~ps3d_toolkit.segmentation.quality.estimate_quality`.

    Returns
    -------
    SampledQualityReport
        ``confidence`` holds the assessed particles only.

    Raises
    ------
    InputError
        If image and labels differ in shape, or an argument is invalid.
    """
    spacing = check_spacing(spacing)
    chunk_size = check_chunk_size(chunk_size)
    if tuple(image.shape) != tuple(labels.shape):
        raise InputError(f"image and labels must have the same shape, got {tuple(image.shape)} and "
                         f"{tuple(labels.shape)}")
    region = resolve_region(image, roi=roi, mask=mask, spacing=spacing)
    box = tuple(slice(0, n) for n in image.shape) if region is None else region.box
    starts = [range(b.start, b.stop, chunk_size) for b in box]
    tiles = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    size_vox = size_in_voxels(particle_size_mm, spacing)
    margin = int(math.ceil(size_vox)) if size_vox else chunk_size // 4
    order = np.random.default_rng(seed).permutation(len(tiles))
    stages = Stages("quality", enabled=bool(progress))
    parts, assessed = [], set()
    try:
        for position in order:
            if len(parts) >= sampled_blocks:
                break
            crop = tuple(slice(max(b.start, s - margin), min(b.stop, s + chunk_size + margin))
                         for s, b in zip(tiles[position], box))
            stages.start(f"block {len(parts) + 1}/{min(sampled_blocks, len(tiles))}")
            with _crop_messages_held():
                part = _assess_crop(image, labels, crop, region, assessed, spacing=spacing,
                                    particle_size_mm=particle_size_mm, method=method, grains=grains,
                                    variants=variants, seed=seed, options={**options, "calibration": calibration})
            if part is not None:
                parts.append(part)
    finally:
        stages.close()
    report = _merged(parts, len(tiles))
    for message in report.warnings:
        logger.warning("%s", message)
    logger.info("estimated F1@0.5 %.2f on %d of %d blocks", report.estimated_f1, report.sampled_blocks,
                report.of_blocks)
    return report


@contextlib.contextmanager
def _crop_messages_held():
    """Hold back each crop's own warnings: the merged report says them once, for the whole sample."""
    estimate_logger = logging.getLogger("ps3d_toolkit.segmentation.quality.estimate")
    level = estimate_logger.level
    estimate_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        estimate_logger.setLevel(level)


def _assess_crop(image, labels, crop, region, assessed: set, *, spacing, particle_size_mm, method, grains,
                 variants, seed, options):
    """One sampled crop's estimate and the ids it assesses (those whole in it, not assessed before)."""
    crop_labels = np.asarray(labels[crop])
    ids, local = np.unique(crop_labels, return_inverse=True)
    local = local.reshape(crop_labels.shape).astype(np.uint32)
    if ids[0] != 0:  # no background in the crop: the local ids stay 1..n
        ids, local = np.concatenate([[0], ids]), local + 1
    if ids.size < 2:
        return None
    cut = _cut_ids(local, crop, image.shape)
    mask = np.ones(local.shape, bool) if region is None else region.at(crop)
    if cut:
        # the particles cut by the crop are left out of it, as if outside the sample: their pieces
        # would read as fragments
        outside = np.isin(local, np.fromiter(cut, np.int64))
        mask &= ~outside
        local[outside] = 0
    report = estimate_quality(np.asarray(image[crop]), local, spacing=spacing, particle_size_mm=particle_size_mm,
                              method=method, variants=variants, grains=grains, mask=mask, progress=False,
                              seed=seed, **options)
    whole = [i for i in report.confidence.index if i not in cut and int(ids[i]) not in assessed]
    assessed.update(int(ids[i]) for i in whole)
    confidence = report.confidence.loc[whole]
    confidence.index = pd.Index(ids[confidence.index.to_numpy(np.int64)].astype(np.int64), name="label")
    particles = report.particles.loc[whole].set_axis(confidence.index)
    return report, confidence, particles


def _cut_ids(local: np.ndarray, crop, shape) -> set:
    """The local ids on a face of the crop that lies inside the scan (their particles go on beyond it)."""
    cut = set()
    for axis, (s, n) in enumerate(zip(crop, shape)):
        for index, inner in ((0, s.start > 0), (-1, s.stop < n)):
            if inner:
                cut.update(np.unique(np.take(local, index, axis=axis)).tolist())
    cut.discard(0)
    return cut


def _merged(parts: list, of_blocks: int) -> SampledQualityReport:
    """The sampled crops' estimates as one report."""
    if not parts:
        return SampledQualityReport(estimated_f1=0.0, confidence=pd.Series([], dtype=np.float64, name="confidence",
                                                                           index=pd.Index([], name="label")),
                                    particles=pd.DataFrame(), signals={}, variants=(), seconds=0.0, calibration="",
                                    warnings=["no particles to assess in the sampled blocks"], sampled_blocks=0,
                                    of_blocks=of_blocks)
    reports = [p[0] for p in parts]
    weights = np.array([max(len(r.confidence), 1) for r in reports], np.float64)
    estimated = float(np.average([r.estimated_f1 for r in reports], weights=weights))
    signals = {}
    for name in reports[0].signals:
        values = np.array([r.signals.get(name, math.nan) for r in reports], np.float64)
        finite = np.isfinite(values)
        signals[name] = float(np.average(values[finite], weights=weights[finite])) if finite.any() else math.nan
    warnings = _merged_warnings([r.warnings for r in reports], estimated)
    confidence = pd.concat([p[1] for p in parts]).sort_index().rename("confidence")
    particles = pd.concat([p[2] for p in parts]).sort_index()
    return SampledQualityReport(estimated_f1=estimated, confidence=confidence, particles=particles, signals=signals,
                                variants=reports[0].variants, warnings=warnings,
                                seconds=float(sum(r.seconds for r in reports)), calibration=reports[0].calibration,
                                sampled_blocks=len(parts), of_blocks=of_blocks)


# As in the whole-scan estimate: under this estimated F1 the record warns.
_LOW_ESTIMATE = 0.8
_LOW_ESTIMATE_WARNING = "the estimated F1@0.5 is"


def _merged_warnings(lists, estimated: float) -> list:
    """The crops' warnings, each kind once (its first wording), and the low-estimate one for the merged estimate."""
    kinds = {}
    for message in (m for one in lists for m in one):
        if not message.startswith(_LOW_ESTIMATE_WARNING):
            kinds.setdefault(message.split(":")[0], message)
    out = list(kinds.values())
    if estimated < _LOW_ESTIMATE:
        out.append(f"{_LOW_ESTIMATE_WARNING} {estimated:.2f} on the sampled blocks: check the particles before "
                   "trusting the statistics")
    return out


def confidence_path(labels_path) -> Path:
    """Where the per-particle confidences of a label image lie: ``labels.tif`` -> ``labels.tif.quality.csv``."""
    path = Path(labels_path)
    return path.with_name(path.name.rstrip("/") + CONFIDENCE_SUFFIX)


def save_confidence(confidence, labels_path) -> Path:
    """Write a run's per-particle confidences beside its labels (``label,confidence``), atomically.

    Parameters
    ----------
    confidence : pandas.Series or QualityReport
        Confidence by label id (``QualityReport.confidence``).
    labels_path : str or Path
        The label image they belong to.

    Returns
    -------
    Path
        The CSV file (:func:`confidence_path`).
    """
    from ps3d_toolkit.core.atomic import atomic_path

    series = getattr(confidence, "confidence", confidence)
    frame = pd.DataFrame({"label": np.asarray(series.index, np.int64), "confidence": np.asarray(series, np.float64)})
    path = confidence_path(labels_path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4f")
    return path


def read_confidence(labels_path) -> pd.Series | None:
    """The per-particle confidences saved beside a label image (None when there are none).

    Raises
    ------
    InputError
        If the file is there but is not a ``label,confidence`` table.
    """
    if labels_path is None:
        return None
    path = confidence_path(labels_path)
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if list(frame.columns) != ["label", "confidence"]:
        raise InputError(f"{path} must hold the columns label,confidence (written by ps3d segment --quality), "
                         f"got {','.join(map(str, frame.columns))}; delete it or segment again with --quality")
    return pd.Series(frame["confidence"].to_numpy(np.float64), name="confidence",
                     index=pd.Index(frame["label"].to_numpy(np.int64), name="label"))


def _documented():
    """``segment``'s signature and docstring: those of the registry's, with ``quality`` added."""
    base = inspect.signature(_registry.segment)
    parameters = list(base.parameters.values())
    quality = inspect.Parameter("quality", inspect.Parameter.KEYWORD_ONLY, default=False)
    parameters.insert(len(parameters) - 1, quality)  # before **options
    segment.__signature__ = base.replace(parameters=parameters, return_annotation=inspect.Signature.empty)
    doc = inspect.getdoc(_registry.segment) or ""
    text = """quality : bool or dict
    Also estimate, without labels, how right the particles are
    (:func:`~ps3d_toolkit.segmentation.quality.estimate_quality`; about 2x the run's time):
    ``segment`` then returns ``(labels, QualityReport)``. A dict sets the estimate:
    ``variants`` (0 to 4 rescan stand-ins), ``seed``, ``calibration`` (a calibration
    file) and ``sampled_blocks``: in blocks (``chunk_size``, a ``roi``) the estimate
    runs on this many blocks drawn at random (4 by default), the record says
    ``"sampled_blocks": k, "of": n``, and the particles outside them get no confidence.
"""
    doc = doc.replace("**options\n", text + "**options\n", 1)
    doc = doc.replace("Returns\n-------\n", "Returns\n-------\nlabels, or (labels, QualityReport) with ``quality``\n"
                      "    The labels as below, and with ``quality`` the estimate "
                      "(``.estimated_f1``, ``.confidence``, ``.record()``).\n", 1)
    segment.__doc__ = doc


_documented()
