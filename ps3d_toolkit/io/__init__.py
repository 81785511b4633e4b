"""Scan, label and table readers/writers, and the metadata that goes with them.

A scan is a 3D grey-value volume in (z, y, x) order with a voxel spacing in mm.
Supported formats (chosen by extension): a folder of TIFF slices, a 3D or
multi-page TIFF (ImageJ hyperstacks written, OME-TIFF read), zarr (v2 and v3,
read lazily), OME-Zarr (``.ome.zarr``: a multiscale image with its axes in mm),
NIfTI and ``.npy``; particle tables are CSV or Parquet.

Modules
-------
scan
    The :class:`Scan` (image + spacing + name).
metadata
    Length units and the sidecar JSON (:func:`read_metadata`, :func:`write_metadata`).
readers
    :func:`load_scan`, :func:`load_labels`; lazy zarr input comes as a
    :class:`CheckedZarrArray`, which names a chunk that cannot be decoded.
writers
    :func:`save_scan`, :func:`save_labels`, :func:`convert`.
ome_zarr
    :func:`save_ome_zarr`, :func:`write_pyramid`, :func:`ngff_attributes`:
    OME-NGFF multiscale stores written block by block.
outputs
    :func:`check_output_path`: an output checked before any heavy work.
tables
    :func:`save_table`, :func:`read_table`.
particleseg3d
    ParticleSeg3D datasets (``images/<name>.zarr`` + ``metadata.json``):
    :func:`is_particleseg3d_dataset`, :func:`list_scans`, :func:`scan_metadata`,
    :func:`save_particleseg3d_labels` (its ``<output>/<name>/<name>.zarr`` layout).
"""

from __future__ import annotations

from ps3d_toolkit.io._formats import SUPPORTED_FORMATS
from ps3d_toolkit.io._zarr import CheckedZarrArray
from ps3d_toolkit.io.metadata import read_metadata, write_metadata
from ps3d_toolkit.io.ome_zarr import ngff_attributes, save_ome_zarr, write_pyramid
from ps3d_toolkit.io.outputs import check_output_path
from ps3d_toolkit.io.particleseg3d import is_particleseg3d_dataset, save_particleseg3d_labels
from ps3d_toolkit.io.readers import load_labels, load_scan
from ps3d_toolkit.io.scan import Scan
from ps3d_toolkit.io.tables import TABLE_FORMATS, read_table, save_table
from ps3d_toolkit.io.writers import convert, save_labels, save_scan

__all__ = [
    "SUPPORTED_FORMATS",
    "TABLE_FORMATS",
    "CheckedZarrArray",
    "Scan",
    "check_output_path",
    "convert",
    "is_particleseg3d_dataset",
    "load_labels",
    "load_scan",
    "ngff_attributes",
    "read_metadata",
    "read_table",
    "save_labels",
    "save_ome_zarr",
    "save_particleseg3d_labels",
    "save_scan",
    "save_table",
    "write_metadata",
    "write_pyramid",
]
