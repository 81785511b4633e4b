"""Chunked segmentation: a scan of any size, block by block, with bounded memory.

- :mod:`.plan`: what every block shares (thresholds, size, settings), from the whole scan;
- :mod:`.grid`: blocks, their cores and regions (core + halo);
- :mod:`.blocks`: one block segmented by the plan's method (the model's windows are the whole scan's);
- :mod:`.stitch`: one id per particle across block faces (union-find);
- :mod:`.work`: the work folder and its ledger (resume);
- :mod:`.run`: :func:`segment_chunked`, in this process or on Dask.

docs/scale.md explains the choices and the measurements behind them.
"""

from ps3d_toolkit.segmentation.chunked.plan import DEFAULT_HALO_DIAMETERS
from ps3d_toolkit.segmentation.chunked.run import segment_chunked

__all__ = ["DEFAULT_HALO_DIAMETERS", "segment_chunked"]
