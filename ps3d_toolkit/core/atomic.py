"""Atomic writes: write under a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
import uuid
from pathlib import Path

from ps3d_toolkit.core.errors import OutputError

# the exit status of a process ended by SIGTERM, as shells report it
_SIGTERM_EXIT = 128 + signal.SIGTERM


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None, *, replace_directory: bool = False):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the target's extension (readers and writers often
    choose the format from it). On an exception, and on SIGTERM, the temporary
    file or folder is removed and any existing ``path`` is left untouched.

    Parameters
    ----------
    path : str or Path
        Final destination (file or directory, e.g. a ``.zarr`` store).
    suffix : str, optional
        Extension to keep on the temporary name; defaults to the target's
        full suffix (``.nii.gz`` stays ``.nii.gz``).
    replace_directory : bool
        Whether an existing directory at ``path`` may be replaced; only the
        caller knows that it wrote it (a zarr store it marked).

    Raises
    ------
    OutputError
        Before anything is written, if ``path`` is an existing directory and
        ``replace_directory`` is False.

    Notes
    -----
    While the temporary path exists, SIGTERM (in the main thread, where the
    default handler was in place) raises ``SystemExit(143)`` so that the
    temporary file is removed before the process ends; the previous handler
    is restored afterwards.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink() and not replace_directory:
        raise foreign_directory_error(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    with sigterm_raises() as handled:
        try:
            yield tmp
            # a SIGTERM between the two renames of a directory would lose the old one
            with _sigterm_deferred(handled):
                _replace(tmp, path)
        except BaseException:
            with _sigterm_deferred(handled):
                _remove(tmp, settle=True)
            raise
        finally:
            with _sigterm_deferred(handled):
                _remove(tmp)


def _remove(tmp: Path, settle: bool = False) -> None:
    """Remove a temporary file or folder; with ``settle``, also what a writer's I/O thread adds just after.

    An interrupted zarr write can still finish a chunk from zarr's own I/O
    thread, which brings the folder back: look again until it stays gone (2 s
    at most).
    """
    for _ in range(10 if settle else 1):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            tmp.unlink(missing_ok=True)
        if not settle:
            return
        time.sleep(0.2)
        if not os.path.lexists(tmp):
            return


def _replace(tmp: Path, path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # A directory cannot be replaced in one step: move the old one
        # aside first so that it is only deleted once the new one is in place.
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def foreign_directory_error(path) -> OutputError:
    """The refusal to write onto a directory that the toolkit did not write."""
    return OutputError(f"{path} is an existing directory that ps3d_toolkit did not write; "
                       "choose another output or remove it yourself")


def _raise_system_exit(signum, frame):
    raise SystemExit(_SIGTERM_EXIT)


@contextlib.contextmanager
def sigterm_raises():
    """Turn SIGTERM into SystemExit for the duration, so that ``finally`` blocks run; yield whether it does.

    Only in the main thread (the only one that may set handlers) and only over
    the default handler: a program that handles SIGTERM itself keeps its handler.
    Nested inside another ``sigterm_raises`` it yields True and leaves the outer one in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    if signal.getsignal(signal.SIGTERM) is _raise_system_exit:
        yield True
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield False
        return
    signal.signal(signal.SIGTERM, _raise_system_exit)
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _sigterm_deferred(handled: bool):
    """Hold a SIGTERM back (it is delivered at the end) while renames and clean-up must finish."""
    if not (handled and hasattr(signal, "pthread_sigmask")):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
