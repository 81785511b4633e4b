"""The Dask side of a chunked run: the client for a scheduler, and the scan as workers get it."""

from __future__ import annotations

import logging
import pickle

import numpy as np

from ps3d_toolkit.core.errors import InputError, InputTypeError

logger = logging.getLogger(__name__)


def check_scheduler(scheduler) -> None:
    """Refuse a scheduler that is neither None, a string nor a distributed.Client."""
    if scheduler is None or isinstance(scheduler, str):
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - only without dask.distributed
        Client = ()
    if not isinstance(scheduler, Client):
        raise InputTypeError(f"scheduler must be None, 'local', a scheduler address or a distributed.Client, "
                             f"got {type(scheduler).__name__}")


def open_client(scheduler) -> tuple:
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
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler!r} ({error}); start it, or pass "
                         "scheduler='local'") from error
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
