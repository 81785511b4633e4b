"""OME-Zarr (OME-NGFF) multiscale images: the attributes, the pyramid, the writer, and the spacing a reader finds.

A store written here is a zarr group with one array per resolution level
(``"0"`` full resolution, ``"1"`` half of it along every axis, ...) and the
NGFF ``multiscales`` attributes that viewers (napari, Fiji's MoBIE/BigDataViewer,
neuroglancer, the ``ome-zarr`` package) read: axes z, y, x in millimetres and
a scale per level. Zarr v2 stores follow NGFF 0.4, zarr v3 stores NGFF 0.5.
Every level is written block by block, so a base larger than memory is fine.

A scan written together with its label images (``label_images=``), or a
label image added later to a scan's store (:func:`add_labels`), follows the
NGFF labels layout: a ``labels`` group beside the image's levels lists the
label images by name (``{"labels": ["particles"]}``), and each
``labels/<name>`` is a multiscale label image of the scan's shape, with the
``image-label`` attributes pointing back at the image (``source: {image: "../../"}``).
Viewers that know NGFF (napari's OME-Zarr readers, the ``ome-zarr`` package,
MoBIE) then show the particles on the scan.

Examples
--------
>>> save_ome_zarr(labels, "labels.ome.zarr", spacing=(0.01, 0.01, 0.01), labels=True)  # doctest: +SKIP
PosixPath('labels.ome.zarr')
>>> save_ome_zarr(image, "scan.ome.zarr", spacing=(0.01, 0.01, 0.01),
...               label_images={"particles": labels})  # doctest: +SKIP
PosixPath('scan.ome.zarr')
>>> label_paths("scan.ome.zarr")  # doctest: +SKIP
{'particles': PosixPath('scan.ome.zarr/labels/particles')}
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers
import re
import shutil
from pathlib import Path

import numpy as np

from ps3d_toolkit.core.atomic import atomic_path
from ps3d_toolkit.core.checks import check_lazy_volume, check_spacing
from ps3d_toolkit.core.errors import InputError, InputTypeError, MissingInputError, OutputError, Ps3dError
from ps3d_toolkit.io._formats import suffix
from ps3d_toolkit.io._zarr import WRITTEN_BY, toolkit_mark, written_by_toolkit
from ps3d_toolkit.io.metadata import unit_in_mm, warn_unknown_unit
from ps3d_toolkit.io.outputs import output_error_from, replaceable_directory

__all__ = ["add_labels", "label_paths", "ngff_attributes", "ngff_spacing", "save_ome_zarr", "write_pyramid"]

logger = logging.getLogger(__name__)

NGFF_VERSIONS = {2: "0.4", 3: "0.5"}
# the NGFF spec assumes micrometres where an axis names no unit (and so did the toolkit before)
_DEFAULT_UNIT = "micrometer"
# bytes of input one copy or downsampling step reads at once: bounded memory whatever the level's size
_BLOCK_BYTES = 64 * 2**20
# a level is added below each level whose smallest axis still has at least this many voxels
_MIN_LEVEL_VOXELS = 64
# chunk edge of level 0 when none is given (as the plain zarr writer)
_DEFAULT_CHUNK = 64
_UINT32_MAX = np.iinfo(np.uint32).max
# the group that holds a scan's label images, beside its levels (NGFF "labels")
_LABELS_GROUP = "labels"
# a label image's name is one path segment of the store: letters, digits, _ . - (not starting with a dot)
_LABEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def ngff_attributes(spacing_mm, *, n_levels: int, zarr_format: int = 2, name: str | None = None,
                    downscale: int = 2, labels: bool = False) -> dict:
    """The root-group attributes of an NGFF multiscale image with axes z, y, x in millimetres.

    Parameters
    ----------
    spacing_mm : float or sequence of 3 float
        Voxel size of level 0 in mm, (z, y, x).
    n_levels : int
        Number of levels, level 0 included; level ``k`` is the array ``"k"``.
    zarr_format : {2, 3}
        2: NGFF 0.4 (a top-level ``multiscales`` key); 3: NGFF 0.5 (under ``ome``,
        with its ``version``).
    name : str, optional
        The image's name in the metadata.
    downscale : int
        Factor between consecutive levels along every axis (z too).
    labels : bool
        Whether the levels were made by taking one voxel per block (labels)
        rather than the block's mean (grey values); sets the ``type`` and the
        translation (see Notes).

    Returns
    -------
    dict
        JSON-serialisable attributes to merge into the group's.

    Notes
    -----
    Level ``k`` has scale ``spacing_mm * downscale**k``. A mean over a block of
    ``downscale`` voxels is centred half a block past the block's first voxel,
    so grey-value levels carry the translation NGFF recommends,
    ``(downscale**k - 1) / 2 * spacing_mm``, which keeps every level on top of
    level 0. Label levels keep the block's first voxel, whose centre is that
    voxel's own centre: they need (and get) no translation.
    """
    spacing = check_spacing(spacing_mm, "spacing_mm")
    n_levels = _check_count(n_levels, "n_levels", minimum=1)
    downscale = _check_count(downscale, "downscale", minimum=2)
    zarr_format = check_zarr_format(zarr_format)
    datasets = []
    for level in range(n_levels):
        factor = downscale**level
        transforms = [{"type": "scale", "scale": [s * factor for s in spacing]}]
        if level and not labels:
            transforms.append({"type": "translation", "translation": [(factor - 1) / 2 * s for s in spacing]})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    how = (f"the first voxel of each {downscale}x{downscale}x{downscale} block (exact label values)" if labels
           else f"the mean of each {downscale}x{downscale}x{downscale} block")
    multiscale = {"axes": [{"name": axis, "type": "space", "unit": "millimeter"} for axis in "zyx"],
                  "datasets": datasets, "type": "nearest" if labels else "mean",
                  "metadata": {"description": f"each level holds {how} of the level above", "method": "ps3d_toolkit"}}
    if name is not None:
        multiscale["name"] = str(name)
    if zarr_format == 2:
        return {"multiscales": [{"version": NGFF_VERSIONS[2], **multiscale}]}
    return {"ome": {"version": NGFF_VERSIONS[3], "multiscales": [multiscale]}}


def write_pyramid(group, *, n_levels: int | None = None, labels: bool = True, block=None) -> int:
    """Write levels ``"1"``, ``"2"``, ... of a multiscale group from its array ``"0"``, block by block.

    Each level halves the one above along every axis (a size ``n`` becomes
    ``ceil(n / 2)``). Only one block of the level above is in memory at a time,
    so the base may be far larger than memory. Existing level arrays are
    replaced, and deeper ones removed; the group's attributes are left as they
    are (see :func:`ngff_attributes`).

    Parameters
    ----------
    group : zarr.Group or str or Path
        The group (opened for writing) or its path.
    n_levels : int, optional
        Levels in all, level 0 included. Default: a level is added below each
        level whose smallest axis still has 64 voxels or more, so the last
        level's smallest axis is under 64 (a 4000^3 base gets 7 levels, down to
        63^3; a base thinner than 64 voxels gets none).
    labels : bool
        True: a level keeps the first voxel of each 2x2x2 block (level ``k`` is
        exactly ``base[::2**k, ::2**k, ::2**k]``, label values unchanged).
        False: the block's mean (rounded for integer types; the mean of the
        voxels that exist at an odd edge).
    block : int or sequence of 3 int, optional
        Voxels of a level written per step (rounded up to whole chunks of that
        level). Default: as many whole chunks as keep the block of the level
        above that is read under 64 MiB.

    Returns
    -------
    int
        The number of levels, level 0 included.

    Raises
    ------
    InputError
        If the group has no 3D array ``"0"``, or ``n_levels`` or ``block`` are
        not positive integers.
    """
    import zarr

    if isinstance(group, (str, Path)):
        group = zarr.open_group(str(group), mode="r+")
    if "0" not in group or len(group["0"].shape) != 3:
        raise InputError("write_pyramid needs a group holding a 3D array named '0' (level 0)")
    base = group["0"]
    shapes = _level_shapes(tuple(base.shape), n_levels)
    block = None if block is None else _check_shape(block, "block")
    for level in range(1, len(shapes)):
        chunks = tuple(min(c, s) for c, s in zip(base.chunks, shapes[level]))
        target = group.create_array(str(level), shape=shapes[level], chunks=chunks, dtype=base.dtype,
                                    fill_value=base.fill_value, overwrite=True, config={"write_empty_chunks": True},
                                    **_naming_of(base))
        _downsample_level(group[str(level - 1)], target, labels, block)
        logger.debug("wrote level %d of %s: shape %s", level, group.store, shapes[level])
    for name in [n for n in group.array_keys() if n.isdigit() and int(n) >= len(shapes)]:
        del group[name]  # a deeper level left by an earlier pyramid would no longer match level 0
    return len(shapes)


def save_ome_zarr(array, path, *, spacing, labels: bool = False, label_images: dict | None = None,
                  zarr_format: int = 2, chunks=None, overwrite: bool = False, attributes: dict | None = None,
                  progress: bool = False) -> Path:
    """Write a 3D image or label image as an OME-Zarr multiscale group, atomically and block by block.

    Parameters
    ----------
    array : array_like
        3D, (z, y, x): numpy, or anything lazy with ``shape``, ``dtype`` and
        slicing (zarr, dask, a reader's lazy volume), copied a block at a time.
    path : str or Path
        The store to write, ending with ``.zarr`` (``.ome.zarr`` by convention).
    spacing : float or sequence of 3 float
        Voxel size in mm, (z, y, x).
    labels : bool
        True: non-negative integer labels stored as uint32, with a pyramid that
        keeps exact label values; False: grey values (dtype kept, bool as
        uint8) with a mean pyramid. See :func:`write_pyramid`.
    label_images : dict of str to array_like, optional
        Label images of the scan, by name (e.g. ``{"particles": labels}``),
        each of the scan's shape, written beside it by the NGFF labels
        convention (``labels/<name>``, see :func:`add_labels`), in the same
        atomic write: the store appears with its labels or not at all.
    zarr_format : {2, 3}
        2: NGFF 0.4, which most viewers read today; 3: NGFF 0.5.
    chunks : int or sequence of 3 int, optional
        Chunk shape of level 0 (and at most that of every level); default 64^3.
    overwrite : bool
        Whether an existing store may be replaced. A directory is replaced only
        when it is a zarr store that ps3d_toolkit wrote, even then.
    attributes : dict, optional
        More root attributes (JSON-serialisable), e.g. ``particle_size_mm``.
    progress : bool
        Show a progress bar while level 0 is copied.

    Returns
    -------
    Path
        The store.

    Raises
    ------
    InputError
        For an image that is not 3D, labels that are negative or above the
        uint32 range (found while copying: nothing is left behind), a path that
        does not end with ``.zarr``, attributes that would replace the NGFF
        ones or disagree with ``spacing``, or label images whose name or shape
        do not fit (or given with ``labels=True``: a label image has no labels of its own).
    InputTypeError
        For non-numeric data, or non-integer labels.
    OutputError
        Before anything is written, if ``path`` exists and ``overwrite`` is
        False, or is a directory ps3d_toolkit did not write; while writing, on
        a full or read-only disk (no temporary store is left).
    """
    path = _check_target(path, overwrite)
    spacing = check_spacing(spacing)
    zarr_format = check_zarr_format(zarr_format)
    array = _check_source(array, labels)
    dtype = np.dtype(np.uint32) if labels else _stored_dtype(array.dtype)
    chunks = _check_chunks(chunks, tuple(array.shape))
    extra = _check_attributes(attributes, spacing)
    label_images = _check_label_images(label_images, tuple(array.shape), labels)
    try:
        with atomic_path(path, replace_directory=path.is_dir() and replaceable_directory(path)) as tmp:
            n_levels = _write_store(array, tmp, spacing, labels, zarr_format, chunks, dtype, extra, progress)
            for name, values in label_images.items():
                _write_label_image(tmp, name, values, spacing, zarr_format, chunks, n_levels, progress)
    except Ps3dError:
        raise
    except OSError as error:  # a full or read-only disk, a removed folder...
        raise output_error_from(path, error) from error
    return path


def add_labels(path, labels, *, name: str = "particles", chunks=None, overwrite: bool = False,
               progress: bool = False) -> Path:
    """Add a label image to an OME-Zarr scan's store, by the NGFF labels convention.

    The labels are written as ``<store>/labels/<name>``: a multiscale label
    image (exact label values at every level, as many levels as the scan has,
    in the scan's spacing), with ``image-label`` attributes whose ``source``
    is the scan, and ``name`` is added to the ``labels`` group's list. The
    label image is written under a temporary name and renamed into place
    before it is listed, so a failed write leaves the store as it was.

    Parameters
    ----------
    path : str or Path
        An OME-Zarr multiscale image (NGFF 0.4 or 0.5, e.g. written by
        :func:`save_ome_zarr`) whose full resolution is 3D.
    labels : array_like of int
        Non-negative labels of the scan's shape, stored as uint32; may be
        lazy (copied block by block).
    name : str
        The label image's name: letters, digits, ``_``, ``-`` and ``.``, not
        starting with a dot.
    chunks : int or sequence of 3 int, optional
        Chunk shape of level 0; default 64^3.
    overwrite : bool
        Whether a label image of that name that ps3d_toolkit wrote may be replaced.
    progress : bool
        Show a progress bar while level 0 is copied.

    Returns
    -------
    Path
        The label image, ``<path>/labels/<name>``.

    Raises
    ------
    InputError
        If ``path`` is not an OME-Zarr image with a stored spacing, the labels
        are not of its shape, are negative or beyond uint32, or the name does
        not fit.
    OutputError
        If the label image exists and ``overwrite`` is False, or ps3d_toolkit
        did not write it; on a full or read-only disk.
    """
    path = Path(path).expanduser()
    shape, spacing, n_levels, zarr_format = _scan_store(path)
    (name, labels), = _check_label_images({name: labels}, shape, False).items()
    target = path / _LABELS_GROUP / name
    if target.exists() and not overwrite:
        raise OutputError(f"{target} exists; pass overwrite=True to replace it")
    try:
        return _write_label_image(path, name, labels, spacing, zarr_format, _check_chunks(chunks, shape), n_levels,
                                  progress)
    except Ps3dError:
        raise
    except OSError as error:
        raise output_error_from(target, error) from error


def label_paths(path) -> dict:
    """The NGFF label images of an OME-Zarr store, by name; empty for anything else.

    Parameters
    ----------
    path : str or Path
        Any path; a zarr store with a ``labels`` group listing label images
        gives them (NGFF 0.4 ``labels`` or 0.5 ``ome.labels``).

    Returns
    -------
    dict of str to Path
        Name -> the label image's group (``<path>/labels/<name>``), for the
        listed names whose group exists, in the listed order.
    """
    path = Path(path)
    if not (path / _LABELS_GROUP).is_dir():
        return {}
    try:
        import zarr

        attrs = dict(zarr.open_group(str(path / _LABELS_GROUP), mode="r").attrs)
    except Exception as error:  # noqa: BLE001 - a store without readable labels simply has none
        logger.debug("no NGFF labels in %s: %s", path, error)
        return {}
    names = attrs.get("labels") or attrs.get("ome", {}).get("labels") or []
    found = {str(name): path / _LABELS_GROUP / str(name) for name in names if isinstance(name, str)}
    return {name: where for name, where in found.items() if where.is_dir()}


def ngff_spacing(attrs: dict, where: str):
    """Spacing in mm of level 0 of the NGFF multiscale image described by ``attrs``, or None.

    Reads NGFF 0.4 (``multiscales``) and 0.5 (``ome.multiscales``): the scale
    of the first dataset times any scale of the whole multiscale, on the last
    three space axes, each converted from its own unit. An axis with no unit is
    taken as micrometres (the NGFF default, logged); an unknown unit gives None
    with a warning.
    """
    found = _first_multiscale_scale(attrs)
    if found is None:
        return None
    scale, axes = found
    units = [axis.get("unit") if isinstance(axis, dict) else None for axis in axes]
    if not all(units):
        logger.info("%s names no unit for some of its axes: their scale is taken as %ss", where, _DEFAULT_UNIT)
    factors = [unit_in_mm(unit or _DEFAULT_UNIT) for unit in units]
    unknown = [unit for unit, factor in zip(units, factors) if factor is None]
    if unknown:
        warn_unknown_unit(unknown[0], where)
        return None
    return check_spacing(tuple(float(s) * f for s, f in zip(scale, factors)), f"NGFF scale of {where}")


def ngff_problem(attrs: dict) -> str | None:
    """Why NGFF ``multiscales`` attributes give no scale to read; None when there are none, or they do."""
    ome = attrs.get("ome")
    if attrs.get("multiscales") is None and not (isinstance(ome, dict) and ome.get("multiscales") is not None):
        return None
    if _first_multiscale_scale(attrs) is not None:
        return None
    return ("its OME-Zarr 'multiscales' metadata is malformed (expected a list whose first entry has 'datasets', "
            "each with a 'scale' transformation, and at least 3 axes)")


def ngff_level0_path(attrs: dict) -> str | None:
    """The path of the full-resolution array of an NGFF multiscale image, or None."""
    try:
        return str(_multiscales(attrs)[0]["datasets"][0]["path"])
    except (AttributeError, KeyError, IndexError, TypeError):
        return None


def check_zarr_format(zarr_format) -> int:
    """``zarr_format`` if it is 2 or 3."""
    if zarr_format not in (2, 3) or isinstance(zarr_format, bool):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    return int(zarr_format)


# --------------------------------------------------------------------------- writing


def _write_store(array, tmp: Path, spacing, labels, zarr_format, chunks, dtype, extra, progress) -> int:
    """The image's levels and attributes in a new group at ``tmp``; the number of levels."""
    group = _levels(array, tmp, labels, zarr_format, chunks, dtype, progress)
    n_levels = write_pyramid(group, labels=labels)
    group.attrs.update({**extra, **toolkit_mark(),
                        **ngff_attributes(spacing, n_levels=n_levels, zarr_format=zarr_format, labels=labels)})
    return n_levels


def _levels(array, where: Path, labels: bool, zarr_format: int, chunks, dtype, progress):
    """A new zarr group at ``where`` holding level ``"0"``, copied from ``array`` block by block."""
    import zarr

    group = zarr.open_group(str(where), mode="w", zarr_format=zarr_format)
    # NGFF 0.4 asks for "/" between chunk indices in zarr v2 keys, NGFF 0.5 for the axis names in v3 arrays
    names = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2 else \
        {"dimension_names": ("z", "y", "x")}
    # every chunk is stored, even an empty one, so that a missing chunk always means damage
    base = group.create_array("0", shape=tuple(array.shape), chunks=chunks, dtype=dtype, fill_value=0,
                              config={"write_empty_chunks": True}, **names)
    _copy_level0(array, base, labels, progress)
    return group


def _scan_store(path: Path) -> tuple:
    """(shape, spacing in mm, number of levels, zarr format) of the OME-Zarr image at ``path``."""
    import zarr

    if not path.is_dir():
        raise MissingInputError(f"{path} is not an OME-Zarr store; write the scan first (save_ome_zarr)")
    refusal = InputError(f"{path} is not an OME-Zarr multiscale image with a stored spacing; "
                         "write the scan with save_ome_zarr first")
    try:
        root = zarr.open_group(str(path), mode="r+")
    except (ValueError, OSError, zarr.errors.BaseZarrError) as error:  # an array, not a group; not zarr at all
        raise refusal from error
    attrs = dict(root.attrs)
    level0, spacing = ngff_level0_path(attrs), ngff_spacing(attrs, str(path))
    if level0 is None or level0 not in root or spacing is None or len(root[level0].shape) != 3:
        raise refusal
    return tuple(root[level0].shape), spacing, len(_multiscales(attrs)[0]["datasets"]), root.metadata.zarr_format


def _write_label_image(store: Path, name: str, values, spacing, zarr_format: int, chunks, n_levels: int,
                       progress: bool) -> Path:
    """``store/labels/<name>``, written under a temporary name, then listed in the labels group."""
    import zarr

    target = store / _LABELS_GROUP / name
    new_folder = not target.parent.exists()
    try:
        with atomic_path(target, replace_directory=target.is_dir() and written_by_toolkit(target)) as tmp:
            group = _levels(values, tmp, True, zarr_format, chunks, np.dtype(np.uint32), progress)
            levels = write_pyramid(group, n_levels=n_levels, labels=True)
            group.attrs.update({**toolkit_mark(), **_image_label_attributes(spacing, levels, zarr_format, name)})
    except BaseException:
        if new_folder:  # the labels folder this write made for its temporary group, now empty
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    labels_group = zarr.open_group(str(store), mode="r+").require_group(_LABELS_GROUP)
    _list_label(labels_group, name, zarr_format)
    return target


def _image_label_attributes(spacing, n_levels: int, zarr_format: int, name: str) -> dict:
    """A label image's attributes: its multiscales and the NGFF ``image-label`` naming its image."""
    attrs = ngff_attributes(spacing, n_levels=n_levels, zarr_format=zarr_format, name=name, labels=True)
    # the label image's group is <image>/labels/<name>: its image is two levels up
    image_label = {"source": {"image": "../../"}}
    if zarr_format == 2:
        return {**attrs, "image-label": {"version": NGFF_VERSIONS[2], **image_label}}
    attrs["ome"]["image-label"] = image_label
    return attrs


def _list_label(labels_group, name: str, zarr_format: int) -> None:
    """Add ``name`` to the labels group's NGFF list (``labels``; under ``ome`` in NGFF 0.5)."""
    attrs = dict(labels_group.attrs)
    holder = attrs if zarr_format == 2 else {"version": NGFF_VERSIONS[3], **attrs.get("ome", {})}
    names = [n for n in holder.get("labels", []) if n != name]
    holder["labels"] = [*names, name]
    if zarr_format == 2:
        labels_group.attrs["labels"] = holder["labels"]
    else:
        labels_group.attrs["ome"] = holder


def _copy_level0(array, base, labels: bool, progress: bool) -> None:
    from tqdm.auto import tqdm

    budget = max(1, _BLOCK_BYTES // max(np.dtype(array.dtype).itemsize, base.dtype.itemsize))
    boxes = list(_boxes(base.shape, _block_shape(base.shape, base.chunks, budget)))
    for box in tqdm(boxes, disable=not progress, desc="writing", unit="block"):
        values = np.asarray(array[box])
        base[box] = _label_values(values, box) if labels else values.astype(base.dtype, copy=False)


def _label_values(values: np.ndarray, box) -> np.ndarray:
    """A block of labels as uint32, or InputError naming where a value does not fit."""
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        raise InputError(f"labels must be non-negative, got {values.min()} in the block {_box_text(box)}")
    if values.dtype.itemsize > 4 and values.size and values.max() > _UINT32_MAX:
        raise InputError(f"labels must fit in uint32 (at most {_UINT32_MAX}), got {values.max()} "
                         f"in the block {_box_text(box)}")
    return values.astype(np.uint32, copy=False)


def _downsample_level(source, target, labels: bool, block) -> None:
    """Fill ``target`` (half of ``source`` along every axis) one block at a time."""
    itemsize = np.dtype(source.dtype).itemsize
    if block is None:
        # a voxel of the level below reads 8 from the level above and sums them in a float64
        block = _block_shape(target.shape, target.chunks, max(1, _BLOCK_BYTES // (8 * itemsize + 16)))
    else:
        block = tuple(min(math.ceil(b / c) * c, s) for b, c, s in zip(block, target.chunks, target.shape))
    for box in _boxes(target.shape, block):
        above = tuple(slice(2 * b.start, min(2 * b.stop, n)) for b, n in zip(box, source.shape))
        target[box] = _halve(np.asarray(source[above]), labels)


def _halve(values: np.ndarray, labels: bool) -> np.ndarray:
    """One voxel per 2x2x2 block: the block's first (labels) or its mean (grey values)."""
    if labels:
        return np.ascontiguousarray(values[::2, ::2, ::2])
    shape = tuple(math.ceil(n / 2) for n in values.shape)
    sums = np.zeros(shape)
    # eight strided views added in place: no float copy of the whole block
    for offset in itertools.product((0, 1), repeat=3):
        part = values[tuple(slice(o, None, 2) for o in offset)]
        sums[tuple(slice(0, n) for n in part.shape)] += part
    # voxels per block: 8 inside, fewer in the last block along an odd axis
    counts = [np.full(n, 2.0) for n in shape]
    for count, n in zip(counts, values.shape):
        count[-1] -= n % 2
    sums /= counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    if values.dtype.kind in "iub":
        np.rint(sums, out=sums)
    return sums.astype(values.dtype)


def _level_shapes(shape: tuple, n_levels) -> list:
    """The shape of every level, level 0 first."""
    if n_levels is not None:
        n_levels = _check_count(n_levels, "n_levels", minimum=1)
    shapes = [shape]
    while (len(shapes) < n_levels) if n_levels is not None else (min(shapes[-1]) >= _MIN_LEVEL_VOXELS):
        shapes.append(tuple(math.ceil(n / 2) for n in shapes[-1]))
    return shapes


def _block_shape(shape, chunks, budget_voxels: int) -> tuple:
    """Whole chunks, grown along x, then y, then z while the block holds at most ``budget_voxels``."""
    block = [min(c, s) for c, s in zip(chunks, shape)]
    for axis in (2, 1, 0):
        others = math.prod(block) // block[axis]
        fit = budget_voxels // others // block[axis] * block[axis]
        block[axis] = min(shape[axis], max(block[axis], fit))
    return tuple(block)


def _boxes(shape, block):
    """The boxes (tuples of slices) of ``block`` that tile ``shape``, clipped at its far edges."""
    starts = [range(0, n, b) for n, b in zip(shape, block)]
    for corner in itertools.product(*starts):
        yield tuple(slice(c, min(c + b, n)) for c, b, n in zip(corner, block, shape))


def _naming_of(base) -> dict:
    """The chunk key encoding and axis names of ``base``, for the levels below it."""
    metadata = base.metadata
    if metadata.zarr_format == 2:
        return {"chunk_key_encoding": {"name": "v2", "separator": metadata.dimension_separator or "."}}
    return {"chunk_key_encoding": metadata.chunk_key_encoding, "dimension_names": metadata.dimension_names}


# --------------------------------------------------------------------------- checks


def _check_target(path, overwrite: bool) -> Path:
    if path is None:
        raise InputTypeError("path must be a .zarr store path, got None")
    path = Path(path).expanduser()
    if suffix(path) != ".zarr":
        raise InputError(f"an OME-Zarr store must end with .ome.zarr (or .zarr), got {path}")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} exists; pass overwrite=True to replace it")
    return path


def _check_source(array, labels: bool):
    array = check_lazy_volume(array, "labels" if labels else "image")
    if labels and np.dtype(array.dtype).kind not in "iub":
        raise InputTypeError(f"labels must hold integers, got {np.dtype(array.dtype)}")
    return array


def _check_label_images(label_images, shape: tuple, labels: bool) -> dict:
    """The label images to write beside a scan, by name: each named as a store path allows, of the scan's shape."""
    if label_images is None:
        return {}
    if not isinstance(label_images, dict):
        raise InputTypeError("label_images must be a dict of name -> label image, e.g. {'particles': labels}, "
                             f"got {type(label_images).__name__}")
    if labels and label_images:
        raise InputError("label_images belong beside a scan (labels=False); a label image has none of its own")
    checked = {}
    for name, values in label_images.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name):
            raise InputError(f"a label image's name must be letters, digits, '_', '-' or '.' (not starting with "
                             f"'.'), as it names a folder of the store; got {name!r}")
        values = _check_source(values, labels=True)
        if tuple(values.shape) != shape:
            raise InputError(f"label image {name!r} must have the scan's shape {shape}, got {tuple(values.shape)}")
        checked[name] = values
    return checked


def _stored_dtype(dtype) -> np.dtype:
    return np.dtype(np.uint8) if np.dtype(dtype) == bool else np.dtype(dtype)


def _check_chunks(chunks, shape: tuple) -> tuple:
    chunks = (_DEFAULT_CHUNK,) * 3 if chunks is None else _check_shape(chunks, "chunks")
    return tuple(min(c, s) for c, s in zip(chunks, shape))


def _check_shape(value, name: str) -> tuple:
    values = (value,) * 3 if isinstance(value, numbers.Integral) else tuple(value)
    if len(values) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
                                   for v in values):
        raise InputError(f"{name} must be a positive integer or 3 positive integers (z, y, x), got {value!r}")
    return tuple(int(v) for v in values)


def _check_count(value, name: str, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


def _check_attributes(attributes, spacing) -> dict:
    """The extra root attributes, refused when they would replace the NGFF ones or contradict ``spacing``."""
    extra = dict(attributes or {})
    reserved = sorted(set(extra) & {"multiscales", "ome", WRITTEN_BY})
    if reserved:
        raise InputError(f"attributes must not set {reserved}: save_ome_zarr writes them itself")
    if extra.get("spacing") is not None and not np.allclose(check_spacing(extra["spacing"]), spacing, rtol=1e-9):
        raise InputError(f"attributes['spacing'] = {extra['spacing']} disagrees with spacing={spacing}; "
                         "give one spacing")
    return extra


def _box_text(box) -> str:
    return "[" + ", ".join(f"{b.start}:{b.stop}" for b in box) + "]"


# --------------------------------------------------------------------------- reading


def _multiscales(attrs: dict):
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def _first_multiscale_scale(attrs: dict):
    """(scale of level 0 on the last three space axes, those axes) or None where there is none to read."""
    try:
        multiscale = _multiscales(attrs)[0]
        scale = np.asarray(_scale_of(multiscale["datasets"][0]), dtype=float)
        if multiscale.get("coordinateTransformations"):
            scale = scale * np.asarray(_scale_of(multiscale), dtype=float)
        axes = multiscale.get("axes") or [{}] * len(scale)  # NGFF 0.1 and 0.2 name no axes
    except (AttributeError, KeyError, IndexError, StopIteration, TypeError, ValueError):
        return None
    if len(axes) != len(scale) or len(scale) < 3:
        return None
    space = [i for i, axis in enumerate(axes) if not isinstance(axis, dict) or axis.get("type", "space") == "space"]
    keep = (space if len(space) >= 3 else list(range(len(axes))))[-3:]
    return scale[keep], [axes[i] for i in keep]


def _scale_of(node: dict) -> list:
    return next(t["scale"] for t in node["coordinateTransformations"] if t.get("type") == "scale")
