"""Fill values that no nodata tag declares: the likely case, found in a cheap sample.

A reprojected or clipped scene often has a constant border (0 in every band) that the file does
not tag as nodata; left alone it is classified and vectorised as a real class. Natural pixels are
almost never exactly equal in every band, and never over a large share of a scene's edge, so a
value that is (:func:`likely_fill`) is reported with the setting that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: A value must fill at least this share of the sampled pixels (in every band) ...
MIN_SHARE = 0.005
#: ... and at least this share of the sample's outer ring of pixels.
MIN_EDGE_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class FillGuess:
    """A value that looks like an undeclared fill: itself and the shares it covers."""

    value: float
    share: float  # of all sampled pixels
    edge_share: float  # of the sample's outer ring


def likely_fill(sample: NDArray[np.float32]) -> FillGuess | None:
    """The value equal in every band over much of a ``(band, y, x)`` sample and its edge, if any.

    NaN (declared nodata) never counts. A single-band sample is judged by its edge alone
    being one value, since "equal in every band" says nothing there.
    """
    if sample.ndim != 3 or sample.shape[1] < 3 or sample.shape[2] < 3:
        return None
    first = sample[0]
    same = np.isfinite(first) & np.all(sample == first, axis=0)
    if not same.any():
        return None
    values, counts = np.unique(first[same], return_counts=True)
    value = values[np.argmax(counts)]
    hit = same & (first == value)
    ring = np.ones(first.shape, dtype=bool)
    ring[1:-1, 1:-1] = False
    share = float(hit.mean())
    edge_share = float(hit[ring].mean())
    if share < MIN_SHARE or edge_share < MIN_EDGE_SHARE:
        return None
    if sample.shape[0] == 1 and edge_share < 0.5:
        return None
    return FillGuess(float(value), share, edge_share)
