"""Tiles on chunk seams, computed once: a chunk keeps them for the neighbours that need them.

A tile that straddles a seam overlaps two (at a corner, four) chunk cores, and each of those
chunks would run it through the network again. The chunk that runs it first offers its
probabilities here; the other chunks take them instead of running it. A tile's probabilities do
not depend on the chunk that computed them (fixed-size batches, the same input pixels;
docs/DESIGN.md §3), so outputs are bit-identical with or without sharing.

The store is per process and per run: keyed by a token made for each run (never by its
folder, which the next run into the same output reuses, possibly with another model), so a
worker process that outlives a run (a remote cluster) or a task still finishing after an
interrupted run cannot hand its tiles to another run; a run's first task in a process drops
any other run's store there. It is thread-safe and capped in bytes: a tile that does not fit is
simply computed again by the next chunk. An entry leaves as soon as every chunk that needs it
has taken it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.types import Window

#: The most bytes of tile probabilities one process keeps for neighbouring chunks.
SHARED_TILES_BYTES = 64 * 2**20


@dataclass
class SharedTiles:
    """Probabilities of seam tiles waiting for the chunks that still need them."""

    limit_bytes: int = SHARED_TILES_BYTES
    _tiles: dict[tuple[int, int], tuple[NDArray[np.float32], int]] = field(default_factory=dict)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, tile: Window) -> NDArray[np.float32] | None:
        """The tile's probabilities when a neighbour left them (one fewer chunk now waits)."""
        key = (tile.row, tile.col)
        with self._lock:
            entry = self._tiles.get(key)
            if entry is None or entry[0].shape[-2:] != tile.shape:
                return None
            probs, waiting = entry
            if waiting <= 1:
                del self._tiles[key]
                self._bytes -= probs.nbytes
            else:
                self._tiles[key] = (probs, waiting - 1)
            return probs

    def offer(self, tile: Window, probs: NDArray[np.float32], waiting: int) -> None:
        """Keep a tile just computed for ``waiting`` other chunks (dropped when over the cap)."""
        key = (tile.row, tile.col)
        with self._lock:
            if waiting < 1 or key in self._tiles:
                return
            if self._bytes + probs.nbytes > self.limit_bytes:
                return
            self._tiles[key] = (probs.copy(), waiting)
            self._bytes += probs.nbytes

    @property
    def size(self) -> int:
        """Tiles held."""
        return len(self._tiles)


_STORES: dict[str, SharedTiles] = {}
_STORES_LOCK = threading.Lock()


def release_shared_tiles() -> None:
    """Drop the process's store (a run calls it when its chunks are done)."""
    with _STORES_LOCK:
        _STORES.clear()


def shared_tiles(run: str) -> SharedTiles:
    """The process's store for ``run`` (a new run's store replaces the previous one)."""
    with _STORES_LOCK:
        store = _STORES.get(run)
        if store is None:
            _STORES.clear()
            store = _STORES[run] = SharedTiles()
        return store


@dataclass(frozen=True)
class Sharing:
    """A chunk task's access to the run's shared seam tiles: the store and the chunk plan."""

    store: SharedTiles
    plan: ChunkPlan

    def take(self, tile: Window) -> NDArray[np.float32] | None:
        """A neighbour's probabilities for ``tile``, if it left them."""
        return self.store.take(tile)

    def offer(self, tile: Window, probs: NDArray[np.float32]) -> None:
        """Leave ``tile``'s probabilities for the other chunks whose cores it overlaps."""
        self.store.offer(tile, probs, self.plan.cores_overlapping(tile) - 1)


def seam_order(chunks: Sequence[Chunk]) -> list[Chunk]:
    """Chunks in the order that lets most seam tiles be shared.

    Row by row, every other chunk first (two workers then never run neighbours side by side),
    then the chunks between them, which find both neighbours' seam tiles left for them.
    """
    return sorted(chunks, key=lambda c: (c.index[0], c.index[1] % 2, c.index[1]))
