"""One writer per output: a lock file beside it, naming the run that holds it.

``<output>.ps3d-lock`` holds JSON (``pid``, ``host``, ``started``, a random ``token``). It is
created with ``O_CREAT | O_EXCL``, so of two runs that start at once exactly one gets it; the
other is refused, naming the first. A lock whose process is gone (same host, no such pid) is
stale: it is taken over with a logged warning. The lock goes when the run ends, also on an error
and on SIGTERM (which raises ``SystemExit(143)`` while the lock is held, as for
:func:`~ps3d_toolkit.core.atomic.atomic_path`). A lock of another host is never taken over: the
refusal says to delete it when that run is known to be gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path

from ps3d_toolkit.core.atomic import sigterm_raises
from ps3d_toolkit.core.errors import OutputError

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".ps3d-lock"


def lock_path(output) -> Path:
    """The lock file of ``output``: beside it, ``<output>.ps3d-lock``."""
    output = Path(output)
    return output.with_name(output.name + LOCK_SUFFIX)


@contextlib.contextmanager
def output_lock(output):
    """Hold the lock of ``output`` for the duration; yield the lock file's path.

    Raises
    ------
    OutputError
        When another live run holds the lock (the message names its pid, host and start
        time), or the lock file cannot be read or written.
    """
    path = lock_path(output)
    token = _take(path, Path(output))
    try:
        with sigterm_raises():
            yield path
    finally:
        _release(path, token)


def _take(path: Path, output: Path) -> str:
    """Create the lock file (taking over a stale one); its token."""
    token = uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is None or not _stale(holder):
                raise _held_error(output, path, holder) from None
            _take_over(path, holder)
            continue
        except OSError as error:
            raise OutputError(f"cannot create the lock {path} for {output}: {error.strerror or error}; "
                              "choose another output") from error
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), "token": token}
        with os.fdopen(fd, "w") as file:
            json.dump(record, file)
        return token
    raise _held_error(output, path, _read(path))


def _read(path: Path) -> dict | None:
    """The lock's record; None when it cannot be read (gone meanwhile, or not a lock this toolkit wrote)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        return None
    return record


def _stale(holder: dict) -> bool:
    """Whether the run holding a lock is gone: on this host, and no process has its pid."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _take_over(path: Path, holder: dict) -> None:
    """Remove a stale lock, unless another run replaced it meanwhile (then it is left in place)."""
    aside = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another run took it over first
        return
    moved = _read(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        # not the stale lock any more, but a live run's new one: put it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
    else:
        logger.warning("took over the lock %s of pid %s on %s (since %s): that process is gone", path,
                       holder.get("pid"), holder.get("host"), holder.get("started"))
    aside.unlink(missing_ok=True)


def _held_error(output: Path, path: Path, holder: dict | None) -> OutputError:
    if holder is None:
        return OutputError(f"{output} is being written by another run (its lock {path} exists but cannot be "
                           f"read); if no run is writing {output}, delete {path}")
    return OutputError(f"{output} is being written by pid {holder['pid']} on host {holder.get('host')} since "
                       f"{holder.get('started')}; wait for that run to end, or choose another output (if that "
                       f"run is gone, delete {path})")


def _release(path: Path, token: str) -> None:
    """Remove the lock if it is still this run's."""
    holder = _read(path)
    if holder is not None and holder.get("token") == token:
        path.unlink(missing_ok=True)
