"""Atomic writes: write under a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the target's extension (readers and writers often
    choose the format from it). On an exception the temporary file or folder is
    removed and any existing ``path`` is left untouched.

    Parameters
    ----------
    path : str or Path
        Final destination (file or directory, e.g. a ``.zarr`` store).
    suffix : str, optional
        Extension to keep on the temporary name; defaults to the target's
        full suffix (``.nii.gz`` stays ``.nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            # A directory cannot be replaced in one step: move the old one
            # aside first so that it is only deleted once the new one is in place.
            old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
