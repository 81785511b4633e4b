"""Chunked segmentation: a scan of any size, block by block, with bounded memory.

The plan every block shares and the work on one region are the engine's
(:mod:`ps3d_toolkit.segmentation.engine`); this package tiles the scan and runs them over the blocks:

- :mod:`.grid`: blocks, their cores and regions (core + halo);
- :mod:`.stitch`: one id per particle across block faces (union-find);
- :mod:`.work`: the work folder and its ledger (resume);
- :mod:`.cluster`: the Dask scheduler, its client, and the scan as workers get it;
- :mod:`.run`: :func:`segment_chunked`, in this process or on Dask.

docs/scale.md explains the choices and the measurements behind them.
"""

from ps3d_toolkit.segmentation.chunked.run import segment_chunked

__all__ = ["segment_chunked"]
