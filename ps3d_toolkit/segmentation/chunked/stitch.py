"""Stitching: one id per particle across block faces (union-find, as dask-image's ``ndmeasure.label``).

Each block keeps its core, with local ids 1..m for the particles present in
it, and its labels over the parts of its halo that lie in the cores of
earlier blocks (raster order): its *shells*. Blocks never read each other, so
they can run in any order and on any worker.

Once every block is done, the local ids get global offsets (block by block in
raster order), and over each shell a block's particle and the earlier
block's particle are the same one when each holds the majority of the other's
voxels there (mutual majority: a one-to-one match, so that a particle merged by
one block's view never chains two particles of the other). Finally the
union-find's sets are numbered 1..n in the order of their smallest id.

Owner by centroid (cellpose's and stardist's tiled modes) was not chosen: it
needs a halo as wide as the largest particle and writes into the neighbours'
cores, which makes resuming and running blocks in parallel harder.
"""

from __future__ import annotations

import numpy as np

from ps3d_toolkit.segmentation.chunked.grid import Grid, key, shared_box, within


def local_ids(labels: np.ndarray, grid: Grid, index) -> tuple:
    """A block's core with local ids 1..m, its shells {earlier neighbour's key: ids}, and m.

    ``labels`` are the block's labels over its whole region; particles seen
    only in the halo get no id (0).
    """
    region = grid.region(index)
    inner = within(grid.core(index), region)
    present = np.unique(labels[inner])
    present = present[present > 0]
    lut = np.zeros(int(labels.max()) + 1, np.uint32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint32)
    shells = {}
    for other in grid.earlier_neighbours(index):
        box = shared_box(grid.core(other), region)
        if box is not None:
            shells[key(other)] = lut[labels[within(box, region)]]
    return lut[labels[inner]], shells, int(present.size)


def offsets(grid: Grid, counts: dict) -> dict:
    """Block key -> the offset of its local ids (cumulative counts in raster order)."""
    found, total = {}, 0
    for index in grid.indices():
        found[key(index)] = total
        total += counts[key(index)]
    return found


def matches(grid: Grid, counts: dict, read_core, read_shells) -> list:
    """Pairs of global ids that are one particle, over every block's shells.

    ``read_core(box)`` gives the local ids stored over a box of the scan;
    ``read_shells(key)`` a block's shells.
    """
    start = offsets(grid, counts)
    pairs = []
    for index in grid.indices():
        shells = read_shells(key(index))
        for name, mine in shells.items():
            other = tuple(int(i) for i in name.split(","))
            box = shared_box(grid.core(other), grid.region(index))
            theirs = np.asarray(read_core(box)).astype(np.int64)
            mine = mine.astype(np.int64)
            mine[mine > 0] += start[key(index)]
            theirs[theirs > 0] += start[name]
            pairs += mutual_majority(mine.ravel(), theirs.ravel())
    return pairs


def mutual_majority(mine: np.ndarray, theirs: np.ndarray) -> list:
    """Pairs (a, b) of ids, a from ``mine`` and b from ``theirs``, where each holds over half of the other's voxels."""
    both = (mine > 0) & (theirs > 0)
    if not both.any():
        return []
    pairs, overlap = np.unique(np.stack([mine[both], theirs[both]]), axis=1, return_counts=True)
    ids_a, size_a = np.unique(mine[mine > 0], return_counts=True)
    ids_b, size_b = np.unique(theirs[theirs > 0], return_counts=True)
    total_a = size_a[np.searchsorted(ids_a, pairs[0])]
    total_b = size_b[np.searchsorted(ids_b, pairs[1])]
    keep = (2 * overlap > total_a) & (2 * overlap > total_b)
    return [(int(a), int(b)) for a, b in pairs[:, keep].T]


def final_ids(n: int, pairs: list) -> np.ndarray:
    """Global id 0..n -> final id: union-find over the pairs, sets numbered 1.. by their smallest id."""
    parent = np.arange(n + 1, dtype=np.int64)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n + 1)], dtype=np.int64)
    is_root = roots == np.arange(n + 1)
    is_root[0] = False
    number = np.zeros(n + 1, np.uint32)
    number[is_root] = np.arange(1, int(is_root.sum()) + 1, dtype=np.uint32)
    return number[roots]


def block_lookup(final: np.ndarray, offset: int, count: int) -> np.ndarray:
    """A block's local id -> final id (0 stays 0)."""
    lut = np.zeros(count + 1, np.uint32)
    lut[1:] = final[offset + 1: offset + count + 1]
    return lut
