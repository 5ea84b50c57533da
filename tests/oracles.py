"""Independent references for invariant tests: plain whole-scene versions of what geoseg chunks.

Nothing here uses geoseg's own region builder: a test's reference must not be the code under
test (GUIDE §6).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


def components(classes: NDArray[np.integer]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """4-connected components of each class (0 = nodata): a label image and each label's class."""
    labels = np.zeros(classes.shape, dtype=np.int64)
    label_class = [0]
    for code in np.unique(classes[classes > 0]):
        found, count = ndimage.label(classes == code)  # the default structure is 4-connected
        labels[found > 0] = found[found > 0] + len(label_class) - 1
        label_class += [int(code)] * count
    return labels, np.array(label_class, dtype=np.int64)


def neighbours(labels: NDArray[np.int64]) -> set[tuple[int, int]]:
    """Pairs of different labels that share a pixel edge (both orders)."""
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs |= {(int(x), int(y)) for x, y in zip(a[edge], b[edge], strict=True)}
    return pairs | {(y, x) for x, y in pairs}


def sieve(classes: NDArray[np.integer], min_pixels: int) -> NDArray[np.integer]:
    """The minimum mapping unit as docs/DESIGN.md §4 states it, on the whole scene at once.

    A component smaller than ``min_pixels`` takes the class of its largest neighbour that is not
    itself smaller (ties: the one whose first pixel in raster order comes first); a small
    component without such a neighbour keeps its class.
    """
    labels, label_class = components(classes)
    sizes = np.bincount(labels.ravel(), minlength=len(label_class))
    first = np.full(len(label_class), labels.size)
    np.minimum.at(first, labels.ravel(), np.arange(labels.size))
    new = label_class.copy()
    pairs = neighbours(labels)
    for label in range(1, len(label_class)):
        if sizes[label] >= min_pixels:
            continue
        large = [b for a, b in pairs if a == label and sizes[b] >= min_pixels]
        if large:
            new[label] = label_class[min(large, key=lambda b: (-sizes[b], first[b]))]
    return np.where(labels > 0, new[labels], 0).astype(classes.dtype)
