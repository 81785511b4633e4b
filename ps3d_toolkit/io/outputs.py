"""Outputs checked at the door: not the input, not a foreign directory, writable, with room.

:func:`check_output_path` is what a command calls for every file it will write,
before any heavy work, so that a read-only, full or wrong destination is found
in a second rather than after an hour of segmentation. The writers apply the
same rules again when they write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from ps3d_toolkit.core.atomic import foreign_directory_error
from ps3d_toolkit.core.errors import InputTypeError, OutputError
from ps3d_toolkit.io._formats import suffix
from ps3d_toolkit.io._zarr import written_by_toolkit

__all__ = ["check_free_space", "check_output_path", "output_error_from", "replaceable_directory"]


def check_output_path(path, *, inputs=(), overwrite: bool = False, expected_bytes: int | None = None) -> Path:
    """Check that ``path`` may be written, before any work is done; return it expanded.

    Parameters
    ----------
    path : str or Path
        The file (or zarr store) to be written.
    inputs : iterable of str or Path
        The files and folders the run reads (``None`` entries are skipped). The
        output must not be one of them, lie inside one (a zarr store or a TIFF
        folder) or contain one.
    overwrite : bool
        Whether an existing output may be replaced. A directory is replaced
        only when it is a zarr store that ps3d_toolkit wrote, even then.
    expected_bytes : int, optional
        Bytes the output will need; refused when the destination has less free.

    Returns
    -------
    Path
        ``path`` with ``~`` expanded.

    Raises
    ------
    OutputError
        If the output is an input, exists without ``overwrite``, is a directory
        ps3d_toolkit did not write, lies in a folder that cannot be written
        (probed by creating and removing a small file; missing parent folders
        are created for the probe and removed again), or needs more space than
        is free there.
    InputTypeError
        If ``path`` is None.

    Examples
    --------
    >>> check_output_path("labels.tif", inputs=["scan.tif"], overwrite=True)  # doctest: +SKIP
    PosixPath('labels.tif')
    """
    if path is None:
        raise InputTypeError("the output path must be a file path, got None")
    path = Path(path).expanduser()
    for source in inputs:
        if source is not None:
            _check_not_input(path, Path(source).expanduser())
    if path.is_dir() and not path.is_symlink() and not replaceable_directory(path):
        raise foreign_directory_error(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    _probe_writable(path.parent)
    if expected_bytes is not None:
        check_free_space(path, expected_bytes)
    return path


def replaceable_directory(path: Path) -> bool:
    """Whether the existing directory ``path`` may be replaced: a ``.zarr`` store ps3d_toolkit wrote."""
    return suffix(path) == ".zarr" and written_by_toolkit(path)


def check_free_space(path: Path, expected_bytes: int) -> None:
    """Raise OutputError when the file system of ``path`` has fewer than ``expected_bytes`` free."""
    folder = _nearest_existing(Path(path).parent)
    free = shutil.disk_usage(folder).free
    if expected_bytes > free:
        raise OutputError(f"not enough space to write {path}: it needs {_bytes_text(expected_bytes)} but "
                          f"{folder} has {_bytes_text(free)} free; free some space or choose another output")


def output_error_from(path: Path, error: OSError) -> OutputError:
    """The one-line OutputError for an OSError met while writing ``path``."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        with contextlib.suppress(OSError):
            reason += f" ({_bytes_text(shutil.disk_usage(_nearest_existing(path.parent)).free)} free)"
        return OutputError(f"cannot write {path}: {reason}; free some space or choose another output")
    return OutputError(f"cannot write {path}: {reason}; choose another output")


def _check_not_input(path: Path, source: Path) -> None:
    output, given = path.resolve(), source.resolve()
    if output == given or _same_existing_file(path, source):
        raise OutputError(f"the output {path} is the input {source}; choose another output")
    if output.is_relative_to(given):
        raise OutputError(f"the output {path} lies inside the input {source}; choose another output")
    if given.is_relative_to(output):
        raise OutputError(f"the output {path} contains the input {source}; choose another output")


def _same_existing_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _probe_writable(folder: Path) -> None:
    """Create and remove a small file in ``folder`` (making missing parents, then removing them)."""
    created = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for parent in reversed(missing):
            parent.mkdir()
            created.append(parent)
        handle, name = tempfile.mkstemp(prefix=".ps3d-probe-", dir=folder)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputError(f"cannot write to the folder {folder}: {reason}; choose another output") from error
    finally:
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()


def _nearest_existing(folder: Path) -> Path:
    return next((p for p in (folder, *folder.parents) if p.exists()), Path(folder.anchor or "."))


def _bytes_text(count: int) -> str:
    size, unit = float(count), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{count:,} bytes" if unit == "bytes" else f"{count:,} bytes ({size:.1f} {unit})"
