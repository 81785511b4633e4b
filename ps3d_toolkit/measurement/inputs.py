"""The checks at the door of both measurement paths, and the sample region they measure in.

:func:`ps3d_toolkit.measurement.measure` (in memory) and
:func:`~ps3d_toolkit.measurement.chunked.measure_chunked` (block by block)
check their arguments with these functions, so that both refuse the same input
with the same message and measure in the same region.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

import numpy as np

from ps3d_toolkit.core.checks import check_same_shape, check_volume, count_non_finite
from ps3d_toolkit.core.errors import InputError, InputTypeError
from ps3d_toolkit.measurement import intensity as _intensity
from ps3d_toolkit.segmentation.region import SampleRegion, resolve_region

__all__ = ["add_particle_confidence", "auto_phase_names", "check_extra_images", "check_grey_values",
           "checked_extra_image", "checked_liberation", "checked_phases", "grey_value_reason", "refuse_grey_values",
           "region_mask", "resolve_workers", "sample_region", "split_confidence"]

# names of extra_images: they become part of column names
_EXTRA_IMAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# The grey-value test of a label image (see grey_value_reason): planes sampled,
# the evidence needed before judging, and the verdict's thresholds.
_GREY_PLANES = 16
_GREY_MIN_PAIRS = 4096
_GREY_MIN_IDS = 64
_GREY_MAX_AGREEMENT = 0.25


def region_mask(mask, old, *, old_name: str = "fov_mask", stacklevel: int = 3):
    """``mask``, or the array ``old`` given by its deprecated name ``old_name`` (with a :class:`DeprecationWarning`).

    Raises
    ------
    InputError
        If both are given.
    """
    if old is None:
        return mask
    warnings.warn(f"{old_name}= is deprecated and will be removed in the next release; pass the same array as "
                  "mask= (the sample region, as segment() takes it)", DeprecationWarning, stacklevel=stacklevel)
    if mask is not None:
        raise InputError(f"pass the sample region as mask= only; {old_name}= is its old name")
    return old


def sample_region(labels, image, *, roi, mask, spacing) -> SampleRegion | None:
    """The sample region to measure in, from ``roi`` and ``mask`` as :func:`~ps3d_toolkit.segmentation.segment`
    takes them (None when neither is given).

    ``mask="auto"`` finds the sample in ``image``. The region's shape is
    checked against ``image`` (``labels`` without one), both already checked.

    Raises
    ------
    InputError
        If ``mask="auto"`` comes without ``image``, or the region is invalid
        (see :func:`~ps3d_toolkit.segmentation.region.resolve_region`).
    """
    if isinstance(mask, str) and mask == "auto" and image is None:
        raise InputError("mask='auto' finds the sample in the grey values: pass image as well")
    return resolve_region(labels if image is None else image, roi=roi, mask=mask, spacing=spacing)


def auto_phase_names(phases, phase_names) -> list[str] | None:
    """The checked names of the automatic phases of ``phases="auto"``, one phase each; None without names.

    Raises
    ------
    InputError
        If names come with phases other than "auto", or are not 2 to 5 distinct
        names of letters, digits, ``_`` and ``-``.
    """
    if phase_names is None:
        return None
    if not (isinstance(phases, str) and phases == "auto"):
        raise InputError("phase_names names the phases of phases='auto'; a dict of phases is named by its keys")
    names = [n.strip() for n in phase_names.split(",")] if isinstance(phase_names, str) else list(phase_names)
    if not 2 <= len(names) <= 5:
        raise InputError(f"phase_names must name 2 to 5 phases (one automatic phase each, darkest first), "
                         f"got {names!r}")
    return _intensity.check_phase_names(names, len(names))


def checked_phases(phases, names, image, phase_map, propose) -> dict | None:
    """``phases`` checked against the image and phase map; ``"auto"`` proposed on the image by ``propose``.

    ``propose`` is :func:`~ps3d_toolkit.measurement.propose_phase_thresholds` (or its chunked twin)
    with the volumes bound, taking ``n_phases`` and ``names``; ``names`` are the checked
    :func:`auto_phase_names` (None: the proposal's default phases).
    """
    if isinstance(phases, str):
        if phases != "auto":
            raise InputError(f"phases must be a dict or 'auto', got {phases!r}")
        if image is None:
            raise InputError("phases='auto' needs the image")
        phases = propose(**({} if names is None else {"n_phases": len(names), "names": names}))
    return None if phases is None else _intensity.check_phases(phases, image, phase_map)


def check_extra_images(extra_images) -> dict | None:
    """The ``extra_images`` argument as a dict ``{name: array}`` with valid names (arrays not read yet)."""
    if extra_images is None:
        return None
    if not isinstance(extra_images, Mapping):
        raise InputTypeError("extra_images must be a dict {name: image} of grey-value images, got "
                             f"{type(extra_images).__name__}")
    for name in extra_images:
        if not isinstance(name, str) or not _EXTRA_IMAGE_NAME.fullmatch(name):
            raise InputError("extra_images names must be letters, digits and underscores, starting with a "
                             f"letter (they name the columns intensity_<name>_*), got {name!r}")
    return dict(extra_images)


def checked_extra_image(labels, array, name: str, non_finite: str, check=check_volume):
    """One extra grey-value image checked against ``labels`` like ``image``: read into memory, or kept
    lazy with ``check=check_lazy_volume`` (the chunked path)."""
    argument = f"extra_images[{name!r}]"
    if array is None:
        raise InputError(f"{argument} must be a 3D grey-value image of the shape of labels, got None")
    array = check(array, argument)
    check_same_shape(labels, array, "labels", argument)
    check_grey_values(array, non_finite, argument)
    return array


def check_grey_values(image, non_finite: str, name: str = "image") -> None:
    """Refuse non-finite grey values unless they are to be masked (complex ones are refused at the door)."""
    if non_finite == "mask":
        return
    count = count_non_finite(image)
    if count:
        raise InputError(
            f"{name} holds {count:,} NaN or infinite grey value{'s' if count > 1 else ''} (of {image.size:,} voxels); "
            "fix the scan, or pass non_finite='mask' to leave those voxels out of the grey-level statistics")


def grey_value_reason(labels) -> str | None:
    """Why a label image looks like a grey-value scan rather than labels; None when it looks like labels.

    In a label image every particle is a blob, so a particle voxel's neighbour
    along an axis holds the same id unless the voxel lies on the particle's far
    face: the share of such agreeing neighbours is ``1 - 1/chord`` along each
    axis, at least 50 % for particles 2 voxels across (1,000,000 cubes of 2^3
    voxels filling 200^3 give 50 %, the bundled sample's labels 91 %). In a
    grey-value scan noise makes neighbours differ (the bundled uint16 scan:
    0.01 %; the same scan in uint8: 4 %). The verdict is "grey values" when, in
    up to 16 sampled pairs of z-planes, at least 64 distinct values occur and
    neighbours agree in under 25 % of places along every axis. Few distinct
    values (fast to measure anyway) or too few foreground voxels to judge
    (under 4096 neighbour pairs) always pass.

    Parameters
    ----------
    labels : ndarray of int, 3D
        The label image.

    Returns
    -------
    str or None
        A one-line reason, or None.
    """
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    # a lazy array (zarr, dask) is read a pair of planes at a time below
    depth = labels.shape[0]
    planes = np.unique(np.linspace(0, max(depth - 2, 0), min(_GREY_PLANES, depth)).astype(np.int64))
    same, pairs, ids = np.zeros(3), np.zeros(3), set()
    for z in planes:
        block = np.asarray(labels[z:z + 2])
        for axis in range(3):
            if block.shape[axis] < 2:
                continue
            # in-plane pairs from the first plane only: each pair counted once
            along = np.moveaxis(block if axis == 0 else block[:1], axis, 0)
            low, high = along[:-1], along[1:]
            foreground = low != 0
            pairs[axis] += np.count_nonzero(foreground)
            same[axis] += np.count_nonzero(foreground & (low == high))
        if len(ids) < _GREY_MIN_IDS:
            ids.update(np.unique(block[0].reshape(-1)[:: 1 + block[0].size // 65536]).tolist())
    ids.discard(0)
    if pairs.sum() < _GREY_MIN_PAIRS or len(ids) < _GREY_MIN_IDS:
        return None
    agreement = max(same[a] / pairs[a] for a in range(3) if pairs[a])
    if agreement >= _GREY_MAX_AGREEMENT:
        return None
    return (f"only {100 * agreement:.2g} % of neighbouring voxels hold the same value (in a label image of "
            f"particles 2 or more voxels across: 50 % or more), among {len(ids):,} or more distinct values")


def refuse_grey_values(labels, name: str = "labels", *, force: bool = False) -> None:
    """Raise when ``labels`` look like a grey-value scan (see :func:`grey_value_reason`); warn with ``force``.

    Raises
    ------
    ps3d_toolkit.core.errors.InputError
        If the labels look like grey values and ``force`` is False.
    """
    reason = grey_value_reason(labels)
    if reason is None:
        return
    if force:
        warnings.warn(f"{name} looks like a grey-value scan, not a label image ({reason}); going on "
                      "as force=True asks", UserWarning, stacklevel=3)
        return
    raise InputError(f"{name} looks like a grey-value scan, not a label image: {reason}; if it is a "
                     "label image, pass force=True")


def checked_liberation(phases: dict, liberation_phase) -> list:
    """The phases of interest (default all), each with a ``liberation_<name>`` column."""
    if liberation_phase is None:
        wanted = list(phases)
    else:
        wanted = [liberation_phase] if isinstance(liberation_phase, str) else list(liberation_phase)
    unknown = [name for name in wanted if name not in phases]
    if unknown or not wanted:
        raise InputError(f"liberation_phase must name phases among {list(phases)}, got {liberation_phase!r}")
    return list(dict.fromkeys(wanted))


def resolve_workers(workers) -> int:
    """Number of threads: the given count, or the cores available to this process (at most 8)."""
    if workers is None:
        try:
            available = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            available = os.cpu_count() or 1
        return max(1, min(8, available))
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a positive integer or None, got {workers!r}")
    return int(workers)


def split_confidence(confidence):
    """``confidence=`` of :func:`~ps3d_toolkit.measurement.measure` as ``(per-voxel map, per-particle Series)``.

    A 3D array is a per-voxel map (the particles' mean becomes the column); a pandas Series
    or a mapping of label id -> confidence, or a
    :class:`~ps3d_toolkit.segmentation.quality.QualityReport` (its ``confidence``), is per
    particle. The other of the pair is None.

    Raises
    ------
    InputError
        If a per-particle confidence is outside [0, 1] or its ids are not integers.
    """
    import pandas as pd

    if confidence is None:
        return None, None
    per_particle = getattr(confidence, "confidence", confidence)  # a QualityReport carries its Series
    if isinstance(per_particle, Mapping):
        per_particle = pd.Series(dict(per_particle), dtype=np.float64)
    if not isinstance(per_particle, pd.Series):
        return confidence, None
    try:
        ids = np.asarray(per_particle.index, dtype=np.int64)
        values = np.asarray(per_particle, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("confidence per particle must map integer label ids to numbers in [0, 1]") from None
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InputError(f"confidence per particle must lie in [0, 1] (NaN: not assessed), got values from "
                         f"{finite.min():.3g} to {finite.max():.3g}")
    return None, pd.Series(values, index=pd.Index(ids, name="label"), name="confidence")


def add_particle_confidence(frame, per_particle):
    """The table with the ``confidence`` column of a per-particle Series (NaN for a particle it lacks)."""
    if per_particle is None:
        return frame
    frame["confidence"] = frame["label"].map(per_particle).astype(np.float64)
    return frame
