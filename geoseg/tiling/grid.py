"""The global inference-tile grid and the chunk plan (pure integer arithmetic, no I/O).

Tile ``i`` along an axis covers ``[i*S - O/2, i*S - O/2 + T)`` with stride ``S = T - O``, for
``i = 0 .. ceil(n/S) - 1``. The grid depends only on the image size, never on the Dask chunking,
which is what makes stitched results independent of chunk size (docs/DESIGN.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geoseg.types import Window


@dataclass(frozen=True, slots=True)
class TileGrid:
    """Square inference tiles of ``size`` px overlapping by ``overlap`` px (even, < size)."""

    size: int
    overlap: int

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"tile size must be at least 8 px, got {self.size}")
        if self.overlap < 0 or self.overlap % 2 or self.overlap >= self.size:
            raise ValueError(
                f"tile overlap must be even, >= 0 and < tile size {self.size}, got {self.overlap}"
            )

    @property
    def stride(self) -> int:
        """Distance between consecutive tile origins."""
        return self.size - self.overlap

    def count(self, length: int) -> int:
        """Number of tiles along an axis of ``length`` px."""
        return math.ceil(length / self.stride)

    def start(self, index: int) -> int:
        """First pixel (possibly negative) of tile ``index`` along an axis."""
        return index * self.stride - self.overlap // 2

    def indices_overlapping(self, begin: int, end: int, length: int) -> range:
        """Indices of the tiles (of an axis of ``length`` px) that overlap ``[begin, end)``."""
        half = self.overlap // 2
        first = max(0, (begin + half - self.size) // self.stride + 1)
        last = min(self.count(length) - 1, (end - 1 + half) // self.stride)
        return range(first, last + 1)

    def tiles_overlapping(self, core: Window, shape: tuple[int, int]) -> list[Window]:
        """Tiles overlapping ``core``, in global row-major order (the blending order)."""
        rows = self.indices_overlapping(core.row, core.row_end, shape[0])
        cols = self.indices_overlapping(core.col, core.col_end, shape[1])
        return [
            Window(self.start(r), self.start(c), self.size, self.size) for r in rows for c in cols
        ]

    def taper(self) -> NDArray[np.float32]:
        """Blending weights of one tile, ``(size, size)``, positive everywhere."""
        t = np.arange(self.size, dtype=np.float64) + 0.5
        ramp = (
            np.ones(self.size)
            if self.overlap == 0
            else np.minimum(1.0, np.minimum(t, self.size - t) / self.overlap)
        )
        return np.outer(ramp, ramp).astype(np.float32)


def halo_window(tiles: list[Window]) -> Window:
    """The smallest window holding every tile in ``tiles``."""
    row, col = min(t.row for t in tiles), min(t.col for t in tiles)
    row_end, col_end = max(t.row_end for t in tiles), max(t.col_end for t in tiles)
    return Window(row, col, row_end - row, col_end - col)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One Dask chunk of the output: its position in the chunk grid and its core window."""

    index: tuple[int, int]
    core: Window

    @property
    def key(self) -> str:
        """A stable file-name-safe id, e.g. ``r0003-c0012``."""
        return f"r{self.index[0]:04d}-c{self.index[1]:04d}"

    def describe(self) -> str:
        """How progress and errors name the chunk: its key and core window."""
        return f"chunk {self.key} ({self.core})"


def axis_chunks(length: int, size: int) -> tuple[int, ...]:
    """Chunk lengths along an axis: ``size`` each, the last one smaller (they sum to ``length``)."""
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    full, rest = divmod(length, size)
    return (size,) * full + ((rest,) if rest else ())


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """A regular chunking of a ``shape`` image; edge chunks are smaller; chunks sum to the image."""

    shape: tuple[int, int]
    chunk_shape: tuple[int, int]

    @classmethod
    def on_blocks(cls, shape: tuple[int, int], target: int, block: int) -> ChunkPlan:
        """Square chunks of about ``target`` px, a multiple of ``block`` (at least one block)."""
        edge = max(block, target // block * block)
        return cls(shape, (min(edge, shape[0]), min(edge, shape[1])))

    @property
    def row_chunks(self) -> tuple[int, ...]:
        """Chunk heights."""
        return axis_chunks(self.shape[0], self.chunk_shape[0])

    @property
    def col_chunks(self) -> tuple[int, ...]:
        """Chunk widths."""
        return axis_chunks(self.shape[1], self.chunk_shape[1])

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Number of chunks along rows and columns."""
        return (len(self.row_chunks), len(self.col_chunks))

    def cores_overlapping(self, window: Window) -> int:
        """How many chunk cores ``window`` overlaps (0 when it lies outside the image)."""
        counts = []
        for begin, end, length, size in (
            (window.row, window.row_end, self.shape[0], self.chunk_shape[0]),
            (window.col, window.col_end, self.shape[1], self.chunk_shape[1]),
        ):
            begin, end = max(begin, 0), min(end, length)
            counts.append(0 if end <= begin else (end - 1) // size - begin // size + 1)
        return counts[0] * counts[1]

    def chunks(self) -> list[Chunk]:
        """Every chunk, row-major."""
        out = []
        row = 0
        for i, height in enumerate(self.row_chunks):
            col = 0
            for j, width in enumerate(self.col_chunks):
                out.append(Chunk((i, j), Window(row, col, height, width)))
                col += width
            row += height
        return out
