"""Reading a few values of a (possibly lazy) volume."""

from __future__ import annotations

import numpy as np


def strided_sample(image, max_values: int = 2_000_000) -> np.ndarray:
    """An even strided sub-sample of at most ~``max_values`` values, same number of axes.

    Only the sampled values are read from a lazy array (zarr, dask, memory map),
    so the grey-value statistics of a huge scan cost a few million reads.

    Examples
    --------
    >>> strided_sample(np.zeros((100, 100, 100)), max_values=1000).shape
    (10, 10, 10)
    """
    ndim = len(image.shape)
    size = int(np.prod(image.shape))
    stride = max(1, int(np.ceil((size / max_values) ** (1 / max(1, ndim)))))
    return np.asarray(image[(slice(None, None, stride),) * ndim])
