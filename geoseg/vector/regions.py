"""The global step between the two chunk passes.

It joins components across seams, applies the minimum mapping unit, and numbers the regions.

Everything here works on per-component numbers (class, count, anchor, adjacency), never on pixels,
so its memory grows with the number of components, not with the scene's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.tiling.grid import ChunkPlan
from geoseg.vector.components import ChunkComponents


@dataclass(frozen=True, slots=True)
class RegionTable:
    """Final regions (polygons to be) and, per chunk, the map from local label to region id.

    Region ids are 1-based and ordered by anchor (first pixel in raster order), so they are the
    same whatever the chunking.
    """

    classes: NDArray[np.uint8]
    counts: NDArray[np.int64]
    anchors: NDArray[np.int64]
    chunk_count: NDArray[np.int64]
    local_to_region: dict[tuple[int, int], NDArray[np.int64]]

    @property
    def size(self) -> int:
        """Number of regions (ids 1..size)."""
        return len(self.classes) - 1


def _components(n: int, edges: NDArray[np.int64]) -> NDArray[np.int64]:
    """Connected-component id of each of ``n`` nodes under undirected ``edges``."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n)
    )
    _, ids = connected_components(graph, directed=False)
    return ids.astype(np.int64)


def _seam_edges(
    a: NDArray[np.int32], b: NDArray[np.int32], off_a: int, off_b: int
) -> NDArray[np.int64]:
    """Node pairs of labels facing each other across a seam (both non-nodata)."""
    keep = (a > 0) & (b > 0)
    return np.stack([a[keep] + off_a - 1, b[keep] + off_b - 1], axis=1).astype(np.int64)


def _group(ids: NDArray[np.int64], values: NDArray[np.int64], how: str) -> NDArray[np.int64]:
    """Per-group sum or min of ``values`` (groups are ``ids`` 0..max)."""
    size = int(ids.max()) + 1 if len(ids) else 0
    if how == "sum":
        return np.bincount(ids, weights=values, minlength=size).astype(np.int64)
    out = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, ids, values)
    return out


def build_regions(
    plan: ChunkPlan, parts: Sequence[ChunkComponents], min_pixels: int = 0
) -> RegionTable:
    """Join ``parts`` (one per chunk of ``plan``) into regions.

    Components under ``min_pixels`` merge into their largest neighbour that is not itself under
    it (docs/DESIGN.md §4).
    """
    by_index = {p.chunk.index: p for p in parts}
    offsets: dict[tuple[int, int], int] = {}
    total = 0
    for part in parts:
        offsets[part.chunk.index] = total
        total += part.size
    node_class = np.concatenate([p.classes[1:] for p in parts]).astype(np.int64)
    node_count = np.concatenate([p.counts[1:] for p in parts])
    node_anchor = np.concatenate([p.anchors[1:] for p in parts])
    node_chunk = np.concatenate([np.full(p.size, i) for i, p in enumerate(parts)])

    seams = []
    for (i, j), part in by_index.items():
        right, below = by_index.get((i, j + 1)), by_index.get((i + 1, j))
        if right is not None:
            seams.append(_seam_edges(part.right, right.left, offsets[(i, j)], offsets[(i, j + 1)]))
        if below is not None:
            seams.append(_seam_edges(part.bottom, below.top, offsets[(i, j)], offsets[(i + 1, j)]))
    seam = np.concatenate(seams) if seams else np.zeros((0, 2), dtype=np.int64)
    inner = [p.pairs + offsets[p.chunk.index] - 1 for p in parts if len(p.pairs)]
    inner_pairs = np.concatenate(inner) if inner else np.zeros((0, 2), dtype=np.int64)

    same = node_class[seam[:, 0]] == node_class[seam[:, 1]]
    comp = _components(total, seam[same])
    comp_count = _group(comp, node_count, "sum")
    comp_anchor = _group(comp, node_anchor, "min")
    comp_class = np.zeros(len(comp_count), dtype=np.int64)
    comp_class[comp] = node_class

    adjacency = comp[np.concatenate([inner_pairs, seam[~same]])]
    adjacency = adjacency[adjacency[:, 0] != adjacency[:, 1]]
    new_class = _sieve(comp_class, comp_count, comp_anchor, adjacency, min_pixels)

    keep = new_class[adjacency[:, 0]] == new_class[adjacency[:, 1]]
    region_raw = _components(len(comp_count), adjacency[keep])
    region_anchor = _group(region_raw, comp_anchor, "min")
    rank = np.empty(len(region_anchor), dtype=np.int64)
    rank[np.argsort(region_anchor, kind="stable")] = np.arange(1, len(region_anchor) + 1)
    region = rank[region_raw]  # 1-based, ordered by anchor

    n_regions = len(region_anchor)
    classes = np.zeros(n_regions + 1, dtype=np.uint8)
    classes[region] = new_class
    counts = np.zeros(n_regions + 1, dtype=np.int64)
    counts[1:] = _group(region - 1, comp_count, "sum")
    anchors = np.full(n_regions + 1, -1, dtype=np.int64)
    anchors[1:] = np.sort(region_anchor)
    node_region = region[comp]
    pairs = np.unique(np.stack([node_region, node_chunk], axis=1), axis=0)
    chunk_count = np.zeros(n_regions + 1, dtype=np.int64)
    chunk_count[1:] = np.bincount(pairs[:, 0], minlength=n_regions + 1)[1:]
    local = {
        p.chunk.index: np.concatenate(
            [[0], node_region[offsets[p.chunk.index] : offsets[p.chunk.index] + p.size]]
        ).astype(np.int64)
        for p in parts
    }
    return RegionTable(classes, counts, anchors, chunk_count, local)


def _sieve(
    comp_class: NDArray[np.int64],
    comp_count: NDArray[np.int64],
    comp_anchor: NDArray[np.int64],
    adjacency: NDArray[np.int64],
    min_pixels: int,
) -> NDArray[np.int64]:
    """New class per component: small ones take their largest non-small neighbour's class."""
    new_class = comp_class.copy()
    if min_pixels <= 1 or len(adjacency) == 0:
        return new_class
    small = comp_count < min_pixels
    both = np.concatenate([adjacency, adjacency[:, ::-1]])
    both = both[small[both[:, 0]] & ~small[both[:, 1]]]
    if len(both) == 0:
        return new_class
    # Sort by target, then largest neighbour first, then smallest anchor: first row per target wins.
    order = np.lexsort((comp_anchor[both[:, 1]], -comp_count[both[:, 1]], both[:, 0]))
    both = both[order]
    first = np.ones(len(both), dtype=bool)
    first[1:] = both[1:, 0] != both[:-1, 0]
    winners = both[first]
    new_class[winners[:, 0]] = comp_class[winners[:, 1]]
    return new_class
