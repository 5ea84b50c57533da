"""Per-chunk 4-connected components of a class map, and what neighbouring chunks need to know.

A chunk's summary holds, for each local component: class, pixel count and anchor (the global
raster-order index of its first pixel, an id that does not depend on chunking); adjacency pairs
inside the chunk; and the component labels along the chunk's four edges, from which the global
step (:mod:`geoseg.vector.regions`) joins components across seams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.tiling.grid import Chunk

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def label_classes(classes: NDArray[np.uint8]) -> tuple[NDArray[np.int32], NDArray[np.uint8]]:
    """4-connected components of equal non-zero class: labels (0 = nodata) and class per label."""
    labels = np.zeros(classes.shape, dtype=np.int32)
    label_class = [0]
    for code in np.unique(classes):
        if code == 0:
            continue
        found, count = ndimage.label(classes == code, structure=FOUR_CONNECTED, output=np.int32)
        mask = found > 0
        labels[mask] = found[mask] + (len(label_class) - 1)
        label_class.extend([int(code)] * count)
    return labels, np.asarray(label_class, dtype=np.uint8)


def pair_keys(a: NDArray[np.int32], b: NDArray[np.int32]) -> NDArray[np.int64]:
    """``low << 32 | high`` for each place where ``a`` and ``b`` touch with different labels.

    One int64 key per pair makes deduplication a 1-D unique, far faster than
    ``np.unique(axis=0)``.
    """
    keep = (a != b) & (a > 0) & (b > 0)
    low = np.minimum(a[keep], b[keep]).astype(np.int64)
    high = np.maximum(a[keep], b[keep]).astype(np.int64)
    return np.asarray(low << 32 | high)


def first_pixels(labels: NDArray[np.int32], n: int) -> NDArray[np.int64]:
    """Raster-order index (within ``labels``) of each label's first pixel; -1 where absent.

    Only the starts of runs of equal labels along rows can be first pixels, so the search runs
    over run starts (a fraction of the pixels) instead of sorting every pixel.
    """
    flat = labels.ravel()
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]]))
    first = np.full(n, -1, dtype=np.int64)
    values, index = np.unique(flat[starts], return_index=True)
    first[values] = starts[index]
    return first


@dataclass(frozen=True, slots=True)
class ChunkComponents:
    """The components of one chunk. Arrays indexed by local label (index 0 = nodata, unused)."""

    chunk: Chunk
    classes: NDArray[np.uint8]
    counts: NDArray[np.int64]
    anchors: NDArray[np.int64]
    pairs: NDArray[np.int64]
    top: NDArray[np.int32]
    bottom: NDArray[np.int32]
    left: NDArray[np.int32]
    right: NDArray[np.int32]

    @property
    def size(self) -> int:
        """Number of components (labels 1..size)."""
        return len(self.classes) - 1


def chunk_components(classes: NDArray[np.uint8], chunk: Chunk, width: int) -> ChunkComponents:
    """Summarise the components of ``classes``, the class map inside ``chunk`` (image ``width``)."""
    return components_of(*label_classes(classes), chunk, width)


def components_of(
    labels: NDArray[np.int32], label_class: NDArray[np.uint8], chunk: Chunk, width: int
) -> ChunkComponents:
    """Summarise a chunk's labelled components (:func:`label_classes` of its class map)."""
    n = len(label_class)
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.int64)
    first = first_pixels(labels, n)
    rows, cols = np.divmod(first, labels.shape[1])
    anchors = np.where(first >= 0, (rows + chunk.core.row) * width + cols + chunk.core.col, -1)
    keys = np.unique(
        np.concatenate(
            [pair_keys(labels[:, :-1], labels[:, 1:]), pair_keys(labels[:-1], labels[1:])]
        )
    )
    pairs = np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1)
    return ChunkComponents(
        chunk=chunk,
        classes=label_class,
        counts=counts,
        anchors=anchors,
        pairs=pairs,
        top=labels[0].copy(),
        bottom=labels[-1].copy(),
        left=labels[:, 0].copy(),
        right=labels[:, -1].copy(),
    )
