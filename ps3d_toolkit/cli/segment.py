"""Find every particle in a scan and write a uint32 label image.

Segment every particle of a 3D scan into a label image (uint32, 0 = background,
one id per particle). Input: .tif/.tiff, a folder of TIFF slices, .zarr,
.nii/.nii.gz or .npy. The output format follows the extension of --output.
Before any work the device, the output (not the scan itself, not an existing
file unless --overwrite, writable, and for .npy/.nii room for 4 bytes a voxel)
and the scan's values are checked. With --chunk-size the scan is segmented block
by block into a .zarr store (memory bounded by the block), and --resume continues
an interrupted run from its first unfinished block.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import time
from pathlib import Path

from ps3d_toolkit.cli import batch
from ps3d_toolkit.cli.args import (
    CLIError,
    add_allow_missing_chunks,
    add_method,
    add_non_finite,
    add_overwrite,
    add_particle_size,
    add_sample_region,
    add_spacing,
    add_verbosity,
    check_method,
    check_output,
    check_sample_region,
    label_formats,
    missing_chunks,
    positive,
    say,
    uncompressed_bytes,
    write_record,
)

EXAMPLES = """
ps3d segment scan.tif --spacing 0.01 --output labels.tif
ps3d segment scan.zarr --particle-size 0.2 --method snow --output labels.zarr
ps3d segment big.zarr --chunk-size 128 --output labels.zarr   (again with --resume after a kill)
ps3d segment concrete_neutrons.tif --grains darker --mask auto --output labels.tif
ps3d segment scan.tif --roi 100:400,50:450,50:450 --output labels.tif
ps3d segment scan.tif --spacing 0.01 --quality --output labels.tif   (+ a label-free estimate of how right it is)
ps3d segment dataset/ --output-layout particleseg3d --output predictions/   (images/*.zarr + metadata.json)
"""

logger = logging.getLogger("ps3d_toolkit.cli.segment")

#: Bytes a voxel of the uint32 label image takes.
LABEL_BYTES = 4


def add_arguments(parser) -> None:
    parser.add_argument("scan", type=Path, metavar="SCAN",
                        help="the scan to segment, or a folder of scans or a ParticleSeg3D dataset "
                             "(images/*.zarr + metadata.json): every scan, into the folder --output")
    add_spacing(parser, "the scan")
    add_particle_size(parser, "else estimated")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="PATH",
                        help="label image to write (.tif, .zarr, .npy, .nii.gz, ...); a folder when SCAN is one")
    add_overwrite(parser, "--output")
    batch.add_output_layout(parser)
    add_method(parser)
    add_sample_region(parser, "segment")
    chunked = parser.add_argument_group("scans larger than memory")
    chunked.add_argument("--chunk-size", type=_chunk_size, default=None, metavar="VOX",
                         help="segment block by block, blocks of VOX^3 voxels read with a halo and "
                              "stitched, into a .zarr --output (OME-Zarr; every method)")
    chunked.add_argument("--resume", action="store_true",
                         help="with --chunk-size: continue an interrupted run from its first unfinished block")
    chunked.add_argument("--dask-scheduler", default=None, metavar="local|ADDRESS",
                         help="with --chunk-size: run the blocks on Dask, on a new local cluster ('local') "
                              "or on the scheduler at ADDRESS (e.g. tcp://head:8786; its workers must see "
                              "the --output folder)")
    chunked.add_argument("--dask-timeout", type=positive, default=None, metavar="SECONDS",
                         help="with --dask-scheduler ADDRESS: seconds to wait for the scheduler to answer "
                              "(default 5); an address where no Dask scheduler answers is refused at once")
    add_non_finite(parser, "they count as background")
    add_allow_missing_chunks(parser)
    model = parser.add_argument_group("model options (with the default method)")
    model.add_argument("--weights", type=Path, metavar="PT", default=None,
                       help="weight file, e.g. a fine-tuned runs/mine/model.pt (default: shipped)")
    model.add_argument("--device", default=None,
                       help="auto (GPU when present; the default), cpu, cuda or mps; checked before the "
                            "scan is read")
    model.add_argument("--overlap", type=float, default=0.25,
                       help="sliding-window overlap in [0, 1) (default 0.25)")
    model.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                       help="average over 8 mirrorings of the scan (default: on a GPU only; "
                            "8x the network time)")
    model.add_argument("--inference-diameter-vox", type=positive, default=None, metavar="VOX",
                       help="mean particle diameter in voxels on the network's grid (default: the "
                            "weights' own, 20 for the shipped model; larger is slower)")
    model.add_argument("--memory-limit-gb", type=positive, default=None, metavar="GB",
                       help="refuse a run whose network grid would need more memory than this "
                            "(default: 80%% of the memory available when the run starts)")
    parser.add_argument("--quality", action="store_true",
                        help="also estimate, without labels, how right the particles are (about 2x the time): "
                             "the estimated F1 and the warnings go in the record <output>.ps3d.json, each "
                             "particle's confidence in <output>.quality.csv (ps3d measure and ps3d report read "
                             "them); with --chunk-size on a sample of blocks")
    add_verbosity(parser)


def _model_options(args, method: str) -> dict:
    """The keyword arguments of the model, its device checked now; refuse them with another method."""
    if method == "model":
        device = args.device or "auto"
        if device != "auto":
            from ps3d_toolkit.segmentation.model.device import select_device

            select_device(device)  # a DeviceError now, not after reading the scan
        return dict(weights=args.weights, device=device, overlap=args.overlap,
                    tta="auto" if args.tta is None else args.tta,
                    inference_diameter_vox=args.inference_diameter_vox, memory_limit_gb=args.memory_limit_gb)
    if (args.weights is not None or args.tta is not None or args.inference_diameter_vox is not None
            or args.device is not None or args.memory_limit_gb is not None):
        raise CLIError("--weights, --device, --tta, --inference-diameter-vox and --memory-limit-gb apply to "
                       f"the model, not to --method {method}")
    return {}


def run(args) -> int:
    """Run ``ps3d segment`` on parsed arguments."""
    code = batch.run_if_folder(args, run)  # a folder of scans: this function, once a scan
    if code is not None:
        return code
    import importlib

    import numpy as np

    from ps3d_toolkit.core.progress import Stages
    from ps3d_toolkit.io import load_scan, save_labels
    from ps3d_toolkit.segmentation import segment

    method = check_method(args.method)
    options = _model_options(args, method)
    _check_chunked(args)
    # --resume continues into a new output: a finished one is replaced only with --overwrite
    check_output(args.output, label_formats(), "label image", inputs=(args.scan,), overwrite=args.overwrite)
    scan = load_scan(args.scan, spacing=args.spacing, missing_chunks=missing_chunks(args))
    size = uncompressed_bytes(args.output, scan.image.size, LABEL_BYTES)
    if size is not None:
        # the shape is known now (zarr without reading it): room for the labels before the work
        check_output(args.output, None, "label image", inputs=(args.scan,), overwrite=args.overwrite,
                     expected_bytes=size)
    start = time.perf_counter()
    size_mm = args.particle_size_mm or scan.particle_size_mm
    if args.chunk_size is None:
        args.chunk_size = _chunk_size_when_too_big(args, scan.image.shape, method)
    check_sample_region(args, scan.image.shape)
    sample = _resolve_sample(args, scan, size_mm)
    if args.chunk_size is not None:
        code = _run_chunked(args, scan, size_mm, method, {**options, **sample}, start)
        quality = _chunked_quality(args, scan, size_mm, method, {**options, **sample}) if args.quality else None
        write_record(args.output, _record(args, method, size_mm, sample, quality))
        _keep_quality(args, quality, args.output)
        return code
    _check_before_the_work(scan, size_mm, method, options)
    stages = Stages(method, enabled=not args.quiet)
    try:
        stages.start("read")
        image = np.asarray(scan.image)  # in memory: read here, by its own stage, not inside a later one
        if method == "model":
            stages.start("load model")
            importlib.import_module("ps3d_toolkit.segmentation.model.windows")  # torch and MONAI load here
        labels = segment(image, spacing=scan.spacing, particle_size_mm=size_mm, method=method,
                         non_finite=args.non_finite, progress=stages, quality=args.quality, **sample, **options)
        labels, quality = labels if args.quality else (labels, None)
        stages.start("write")
        path = save_labels(labels, args.output, spacing=scan.spacing, zarr_format=getattr(args, "zarr_format", None))
        write_record(path, _record(args, method, size_mm, sample, quality))
    finally:
        stages.close()
    seconds = time.perf_counter() - start
    say(args, f"{method}: {int(labels.max())} particles in {seconds:.1f} s; wrote {path}")
    _keep_quality(args, quality, path)
    logger.debug("stages: %s", ", ".join(f"{name} {t:.1f} s" for name, t in stages.seconds.items()))
    return 0


#: The library loggers of the decisions that ps3d segment says itself on stdout (the grain polarity
#: and the automatic sample mask): shown on stderr as well, each reason came twice.
_DECISION_LOGGERS = ("ps3d_toolkit.segmentation.region", "ps3d_toolkit.segmentation.sample_mask")


@contextlib.contextmanager
def _decisions_said_here():
    """Hold back the library's INFO lines on the decisions this command says itself; warnings pass."""
    loggers = [logging.getLogger(name) for name in _DECISION_LOGGERS]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for one, level in zip(loggers, levels):
            one.setLevel(level)


def _resolve_sample(args, scan, size_mm) -> dict:
    """--grains, --roi and --mask resolved once, before the work: segment()'s grains, roi and mask.

    ``grains`` comes back decided ("auto" says which and why), the automatic mask computed.
    """
    from ps3d_toolkit.segmentation._checks import size_in_voxels
    from ps3d_toolkit.segmentation.region import decide_grains, resolve_region

    with _decisions_said_here():
        region = resolve_region(scan.image, roi=args.roi, mask=args.mask, spacing=scan.spacing)
        grains, args.grains_reason = decide_grains(scan.image, args.grains, region=region,
                                                   particle_size_vox=size_in_voxels(size_mm, scan.spacing))
    if args.grains == "auto":
        args.grains_reason = f"auto: {args.grains_reason}"
        say(args, f"grains {grains} ({args.grains_reason})")
    if region is None:
        return {"grains": grains}
    say(args, f"sample region: {region}")
    args.region_text = str(region)
    return {"grains": grains, "roi": region.box, "mask": region.mask}


def _record(args, method: str, size_mm, sample: dict, quality=None) -> dict:
    """How the labels were made, for the record beside them (see :func:`write_record`); with --quality the
    estimate's record under ``"quality"``."""
    record = {"scan": str(args.scan), "method": method, "particle_size_mm": size_mm, "grains": sample["grains"],
              "grains_reason": args.grains_reason, "roi": args.roi,
              "mask": None if args.mask is None else str(args.mask),
              "sample_region": getattr(args, "region_text", None)}
    if quality is not None:
        record["quality"] = quality.record()
    return record


def _chunked_quality(args, scan, size_mm, method: str, options: dict):
    """--quality with --chunk-size: the estimate on a sample of the written blocks, also in the store's attributes."""
    import zarr

    from ps3d_toolkit.segmentation.assess import estimate_quality_blocks
    from ps3d_toolkit.segmentation.chunked.run import open_labels

    quality = estimate_quality_blocks(scan.image, open_labels(args.output), spacing=scan.spacing,
                                      chunk_size=args.chunk_size, particle_size_mm=size_mm, method=method,
                                      progress=not args.quiet, **options)
    zarr.open_group(str(args.output), mode="r+").attrs["quality"] = quality.record()
    return quality


def _keep_quality(args, quality, labels_path) -> None:
    """--quality: the per-particle confidences beside the labels, and the estimate in one line."""
    if quality is None:
        return
    from ps3d_toolkit.segmentation.assess import save_confidence

    where = save_confidence(quality, labels_path)
    share = quality.low_confidence_share
    low = "no particle assessed" if math.isnan(share) else f"{100 * share:.0f} % of particles low confidence"
    blocks = getattr(quality, "sampled_blocks", None)
    sampled = f", on {blocks} of {quality.of_blocks} blocks" if blocks is not None else ""
    say(args, f"estimated F1@0.5 {quality.estimated_f1:.2f} (label-free{sampled}; {low}); "
              f"per-particle confidence in {where}")


def _check_before_the_work(scan, size_mm, method: str, options: dict) -> None:
    """The particle size against the scan, and the model's weights, before any progress is shown.

    A refusal is then the only line the command prints.
    """
    if size_mm is not None:
        from ps3d_toolkit.segmentation._checks import check_particle_size

        check_particle_size(size_mm, scan.spacing, scan.image.shape)
    if method == "model":
        from ps3d_toolkit.segmentation.model.device import load_model, select_device

        load_model(options["weights"], device=select_device(options["device"]))  # kept for the run


def _writes_zarr(args) -> bool:
    """Whether --output is a .zarr store, the only output the chunked path writes."""
    return str(args.output).lower().rstrip("/").endswith(".zarr")


def _check_chunked(args) -> None:
    """--chunk-size writes a .zarr store; --resume needs it."""
    if args.resume and args.chunk_size is None:
        raise CLIError("--resume continues a chunked run: give the --chunk-size of the interrupted run")
    if args.dask_scheduler is not None and args.chunk_size is None:
        raise CLIError("--dask-scheduler runs the blocks of a chunked run: give a --chunk-size too")
    if args.dask_timeout is not None and args.dask_scheduler is None:
        raise CLIError("--dask-timeout applies to --dask-scheduler ADDRESS")
    if args.dask_scheduler is not None:
        from ps3d_toolkit.segmentation.chunked.cluster import check_scheduler, probe_scheduler

        probe_scheduler(args.dask_scheduler, check_scheduler(args.dask_scheduler, _dask_timeout(args)))
    if args.chunk_size is not None and not _writes_zarr(args):
        raise CLIError(f"--chunk-size writes a .zarr store block by block; got --output {args.output}")


def _chunk_size_when_too_big(args, shape, method: str):
    """``None`` when the scan fits the memory budget in one piece; else the library's block edge.

    The decision is the library's (:func:`~ps3d_toolkit.segmentation.chunk_size_for`); the command
    only refuses an output the chunked path cannot write.

    Raises
    ------
    CLIError
        When the scan does not fit and the output is not a .zarr store.
    """
    from ps3d_toolkit.segmentation import chunk_size_for

    chunk_size, why = chunk_size_for(shape, method, memory_limit_gb=getattr(args, "memory_limit_gb", None))
    if chunk_size is not None:
        if not _writes_zarr(args):
            raise CLIError(f"{why}: segment it block by block with --chunk-size {chunk_size} into a .zarr --output")
        logger.info("%s: segmenting it block by block (--chunk-size %d)", why, chunk_size)
    return chunk_size


def _chunk_size(text: str) -> int:
    """``--chunk-size``: the library's check of a block edge."""
    from ps3d_toolkit.segmentation._checks import check_chunk_size

    try:
        return check_chunk_size(int(text) if text.strip().isdigit() else text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).replace("chunk_size", "--chunk-size")) from None


def _dask_timeout(args) -> float:
    from ps3d_toolkit.segmentation.chunked.cluster import DEFAULT_DASK_TIMEOUT

    return DEFAULT_DASK_TIMEOUT if args.dask_timeout is None else args.dask_timeout


def _run_chunked(args, scan, size_mm, method: str, options: dict, start: float) -> int:
    from ps3d_toolkit.segmentation import segment_chunked

    labels = segment_chunked(scan.image, spacing=scan.spacing, output=args.output, chunk_size=args.chunk_size,
                             particle_size_mm=size_mm, method=method, resume=args.resume,
                             overwrite=args.overwrite, non_finite=args.non_finite,
                             scheduler=args.dask_scheduler, dask_timeout=_dask_timeout(args),
                             progress=not args.quiet, **options)
    seconds = time.perf_counter() - start
    count = int(labels.attrs.get("n_particles", -1)) if hasattr(labels, "attrs") else -1
    found = f"{count} particles" if count >= 0 else "labels"
    say(args, f"{method}, blocks of {args.chunk_size}: {found} in {seconds:.1f} s; wrote {args.output}")
    return 0

