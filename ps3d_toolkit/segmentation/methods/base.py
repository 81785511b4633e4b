"""What a segmentation method is: one object with a name and a block function; the rest has defaults.

The smallest method, written anywhere::

    class Threshold:
        name = "threshold"

        def segment_block(self, block, *, plan, spacing, particle_size_vox):
            return scipy.ndimage.label(block > 0.5)[0].astype("uint32")

    method = Threshold()

registered by the entry point ``threshold = mypkg.segmenter:method`` in the group
``ps3d_toolkit.methods`` (docs/plugins.md). The toolkit then runs it in memory, in
blocks, on Dask, from ``ps3d segment --method threshold`` and in the tuner: every
block it gets holds grey values as the scan has them, grains already turned bright
and the outside of the sample region set to its matrix.

:class:`SegmentationMethod` is the base class of the built-in methods; it gives an
outside object the defaults it lacks (:func:`as_method`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from ps3d_toolkit.core.errors import InputError, InputTypeError

__all__ = ["SegmentationMethod", "as_method"]


class SegmentationMethod:
    """A segmentation method: its options, its plan over the whole scan and its block function.

    Subclasses set :attr:`name` and write :meth:`segment_block`; everything else has a default.

    Attributes
    ----------
    name : str
        The name ``segment(method=)`` and ``ps3d segment --method`` take.
    defaults : Mapping
        Option name -> default value: the one place a method's defaults live.
    block_defaults : Mapping
        Defaults that differ when the scan is segmented in several blocks.
    halo_diameters : float
        Context read around each block, in particle diameters (at least 8 voxels are read).
    bytes_per_voxel : float
        Peak memory of a run in one piece, bytes per scan voxel: whether a scan fits in memory.
    controls : Mapping
        Option name -> (kind, low, high, help) of the tuner's control (see
        :class:`~ps3d_toolkit.viz.tuner.parameters.Parameter`).
    tuner_defaults : Mapping
        Where the tuner starts elsewhere than :attr:`defaults`.
    options : dict
        The checked options of a configured method (:meth:`configure`).
    """

    name: str = ""
    defaults: Mapping = {}
    block_defaults: Mapping = {}
    halo_diameters: float = 1.0
    bytes_per_voxel: float = 64.0
    controls: Mapping = {}
    tuner_defaults: Mapping = {}
    options: dict = {}

    def available(self) -> bool:
        """Whether the method can run here (its packages and files are installed)."""
        return True

    def require(self) -> None:
        """Raise when the method cannot run here, saying what to install."""

    def check_options(self, options: dict) -> dict:
        """The options with their defaults, each checked; a TypeError names an unknown one."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise InputTypeError(f"method {self.name!r} got unexpected option(s) {unknown}; its options are "
                                 f"{sorted(self.defaults)}")
        return {**self.defaults, **options}

    def configure(self, **options) -> SegmentationMethod:
        """A copy of the method that holds these options (checked, defaults filled in)."""
        configured = copy.copy(self)
        configured.options = self.check_options(options)
        return configured

    def plan(self, sample: np.ndarray, *, spacing: tuple, particle_size_vox: float) -> dict:
        """What every block shares, from a sample of the whole scan (thresholds, percentiles)."""
        return {}

    def check_scale(self, block_shape: tuple, spacing: tuple, particle_size_mm: float, *, estimated: bool) -> None:
        """Refuse a particle size the method cannot work at on blocks of ``block_shape`` (e.g. memory)."""

    def plan_scan(self, samples, *, spacing: tuple, particle_size_vox: float) -> dict:
        """:meth:`plan` on the raw sample (``samples.raw``, a
        :class:`~ps3d_toolkit.segmentation.engine.ScanSamples`); the built-in methods also read the smoothed one."""
        return self.plan(samples.raw, spacing=spacing, particle_size_vox=particle_size_vox)

    def segment_block(self, block: np.ndarray, *, plan: dict, spacing: tuple,
                      particle_size_vox: float) -> np.ndarray:
        """uint32 labels of one block (its core and halo), 0 = background."""
        raise NotImplementedError(f"method {self.name!r} has no segment_block")

    def __repr__(self) -> str:
        return f"<segmentation method {self.name!r}>"


class _Outside(SegmentationMethod):
    """An object that holds only part of the protocol, with the defaults of the rest."""

    def __init__(self, method):
        self.method = method
        self.name = method.name
        for attribute in ("defaults", "block_defaults", "halo_diameters", "bytes_per_voxel", "controls", "tuner_defaults"):
            if hasattr(method, attribute):
                setattr(self, attribute, getattr(method, attribute))

    def check_options(self, options: dict) -> dict:
        check = getattr(self.method, "check_options", None)
        return check(options) if check is not None else super().check_options(options)

    def configure(self, **options) -> SegmentationMethod:
        configured = copy.copy(self)
        configured.options = self.check_options(options)
        if hasattr(self.method, "configure"):
            configured.method = self.method.configure(**options)
        return configured

    def plan(self, sample, *, spacing, particle_size_vox) -> dict:
        plan = getattr(self.method, "plan", None)
        return {} if plan is None else dict(plan(sample, spacing=spacing, particle_size_vox=particle_size_vox))

    def segment_block(self, block, *, plan, spacing, particle_size_vox) -> np.ndarray:
        labels = np.asarray(self.method.segment_block(block, plan=plan, spacing=spacing,
                                                      particle_size_vox=particle_size_vox))
        if labels.shape != block.shape or labels.dtype.kind not in "iub":
            raise InputError(f"method {self.name!r} returned {labels.dtype} labels of shape {labels.shape} for a "
                             f"block of shape {block.shape}; segment_block must return integer labels of the "
                             "block's shape")
        return labels.astype(np.uint32, copy=False)


def as_method(method) -> SegmentationMethod:
    """``method`` as a :class:`SegmentationMethod`: itself, or an outside object with the defaults added.

    Raises
    ------
    InputTypeError
        If it has no ``name`` string or no ``segment_block``.
    """
    if isinstance(method, SegmentationMethod):
        return method
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name or not callable(getattr(method, "segment_block", None)):
        raise InputTypeError(f"a segmentation method is an object with a 'name' string and a 'segment_block' "
                             f"function; got {method!r}")
    return _Outside(method)
