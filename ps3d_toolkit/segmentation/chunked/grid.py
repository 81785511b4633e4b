"""Blocks of a scan: cores that tile it, and regions (core + halo) clipped to it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True)
class Grid:
    """Blocks of ``block`` voxels a side (smaller at the far edges), each read with ``halo`` voxels around."""

    shape: tuple
    block: tuple
    halo: tuple

    def counts(self) -> tuple:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block))

    def indices(self) -> list:
        """Block indices in raster order (z slowest)."""
        return list(itertools.product(*(range(c) for c in self.counts())))

    def core(self, index) -> tuple:
        return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block, self.shape))

    def region(self, index) -> tuple:
        return tuple(slice(max(0, c.start - h), min(n, c.stop + h))
                     for c, h, n in zip(self.core(index), self.halo, self.shape))

    def earlier_neighbours(self, index) -> list:
        """The (up to 13) face, edge and corner neighbours that come before ``index`` in raster order."""
        counts = self.counts()
        found = []
        for step in itertools.product((-1, 0, 1), repeat=3):
            other = tuple(i + s for i, s in zip(index, step))
            if other < index and all(0 <= o < c for o, c in zip(other, counts)):
                found.append(other)
        return found


def key(index) -> str:
    """A block index as the ledger's key, e.g. ``"0,1,2"``."""
    return ",".join(map(str, index))


def shared_box(a: tuple, b: tuple) -> tuple | None:
    """The intersection of two boxes (tuples of slices), None when empty."""
    box = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.stop <= s.start for s in box) else box


def within(box: tuple, outer: tuple) -> tuple:
    """``box`` in the coordinates of ``outer``'s corner."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
