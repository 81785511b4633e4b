"""The Dask side of a chunked run: the client for a scheduler, and the scan as workers get it.

An address is probed before any work (:func:`probe_scheduler`): a Dask scheduler sends its
handshake, a length-prefixed message, as soon as a connection opens. Something else at the address
(an HTTP server waits for a request; another service sends other bytes) would otherwise leave
``distributed.Client`` waiting forever or reading a garbage length (a 3 EiB allocation).
"""

from __future__ import annotations

import logging
import math
import pickle
import socket
import struct

import numpy as np

from ps3d_toolkit.core.errors import InputError, InputTypeError

logger = logging.getLogger(__name__)

#: Seconds to wait for a scheduler to answer, by default.
DEFAULT_DASK_TIMEOUT = 5.0
# A handshake is a few hundred bytes; more than this is not one.
_MAX_HANDSHAKE_BYTES = 1 << 20


def check_scheduler(scheduler, timeout=DEFAULT_DASK_TIMEOUT) -> float:
    """Refuse a scheduler that is neither None, a string nor a distributed.Client; the timeout, checked."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
            or timeout <= 0:
        raise InputError(f"dask_timeout must be a positive number of seconds, got {timeout!r}")
    if scheduler is None or isinstance(scheduler, str):
        return float(timeout)
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - only without dask.distributed
        Client = ()
    if not isinstance(scheduler, Client):
        raise InputTypeError(f"scheduler must be None, 'local', a scheduler address or a distributed.Client, "
                             f"got {type(scheduler).__name__}")
    return float(timeout)


def probe_scheduler(scheduler, timeout: float) -> None:
    """Refuse, in one line, a TCP address where no Dask scheduler answers within ``timeout`` seconds.

    Other schemes (``tls://``, ``ucx://``) and ``"local"`` or a Client are left to
    :func:`open_client`.

    Raises
    ------
    InputError
        When nothing listens at the address, nothing answers in time, or what answers is not
        a Dask handshake.
    """
    if not isinstance(scheduler, str) or scheduler == "local":
        return
    address = scheduler[len("tcp://"):] if scheduler.startswith("tcp://") else scheduler
    if "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"scheduler={scheduler!r} is not a Dask scheduler address; give tcp://HOST:PORT "
                         "(e.g. tcp://head:8786), or scheduler='local'")

    def refuse(why: str) -> InputError:
        return InputError(f"no Dask scheduler at scheduler={scheduler!r}: {why}; check the address, or pass "
                          "scheduler='local'")

    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as connection:
            connection.settimeout(timeout)
            head = _receive(connection, 8)
            (length,) = struct.unpack("<Q", head)
            if not 16 <= length <= _MAX_HANDSHAKE_BYTES:
                raise refuse("what answers there is not a Dask scheduler (it sent no Dask handshake)")
            frames = _receive(connection, length)
    except (TimeoutError, socket.timeout):
        raise refuse(f"nothing answered within {timeout:g} s (for a slow scheduler, raise dask_timeout)") from None
    except ConnectionError as error:
        raise refuse(f"the connection was refused or closed ({error.strerror or error})") from None
    except OSError as error:
        raise refuse(error.strerror or str(error)) from None
    (n_frames,) = struct.unpack_from("<Q", frames)
    if not 0 < n_frames <= (length - 8) // 8 or 8 + 8 * n_frames + sum(
            struct.unpack_from(f"<{n_frames}Q", frames, 8)) != length:
        raise refuse("what answers there is not a Dask scheduler (it sent no Dask handshake)")


def _receive(connection, size: int) -> bytes:
    """Exactly ``size`` bytes; ConnectionError when the other side closes first."""
    data = b""
    while len(data) < size:
        part = connection.recv(size - len(data))
        if not part:
            raise ConnectionError("closed by the other side")
        data += part
    return data


def open_client(scheduler, timeout: float = DEFAULT_DASK_TIMEOUT) -> tuple:
    """A distributed Client for ``scheduler`` and a function that closes what was opened here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise InputError("scheduler needs dask.distributed: pip install 'ps3d_toolkit[dask]'") from error
    if isinstance(scheduler, Client):
        return scheduler, lambda: None
    if scheduler == "local":
        import os

        # silence_logs: Dask's own notes (e.g. a worker killed at shutdown) are not the user's business
        cluster = LocalCluster(n_workers=max(1, min(4, os.cpu_count() or 1)), threads_per_worker=1,
                               processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
        client = Client(cluster)
        logger.info("Dask LocalCluster, dashboard: %s", client.dashboard_link)

        def close():
            client.close()
            cluster.close()

        return client, close
    probe_scheduler(scheduler, timeout)
    try:
        client = Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError, MemoryError) as error:
        raise InputError(f"cannot connect to the Dask scheduler at scheduler={scheduler!r} "
                         f"({' '.join(str(error).split())[:200]}); start it, or pass scheduler='local'") from error
    return client, client.close


def shippable(image, client):
    """The scan as workers get it: numpy scattered once; lazy arrays sent as they are (they must pickle)."""
    if isinstance(image, np.ndarray) and not isinstance(image, np.memmap):
        return client.scatter(image, broadcast=True)
    try:
        pickle.dumps(image)
    except Exception as error:
        raise InputError(f"this {type(image).__name__} scan cannot be sent to Dask workers ({error}); convert it "
                         "to zarr first (ps3d convert scan out.zarr) and segment that") from error
    return image
