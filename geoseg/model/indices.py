"""Spectral indices: input channels derived from named bands, computed pixel by pixel.

A bundle lists the indices its network takes after its bands (``BundleMeta.indices``); training
and prediction both compute them with :func:`derive` from the bands in the source's units,
before the bands are normalised, so prediction feeds the network exactly what training did.
Each index is a function of one pixel's bands only, so it cannot depend on chunking.

Normalised differences lie in [-1, 1] and enter the network as they are; the chromatic
excess-green and excess-red indices (for RGB photos) lie in [-1, 2] and [-1, 1.4]. Where a
denominator is 0 (every band involved is 0) an index is 0; a nodata input (NaN) gives NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

IndexName = Literal["ndvi", "ndwi", "mndwi", "ndbi", "exg", "exr"]

Bands = dict[str, NDArray[np.float32]]


def _ratio(top: NDArray[np.float32], bottom: NDArray[np.float32]) -> NDArray[np.float32]:
    """``top / bottom``, 0 where ``bottom`` is 0 (NaN stays NaN)."""
    zero = bottom == 0
    out = np.divide(top, np.where(zero, np.float32(1), bottom))
    out[zero] = 0
    return out.astype(np.float32, copy=False)


def _difference(a: str, b: str) -> Callable[[Bands], NDArray[np.float32]]:
    """The normalised difference ``(a - b) / (a + b)``."""
    return lambda x: _ratio(x[a] - x[b], x[a] + x[b])


def _chromatic(x: Bands) -> tuple[NDArray[np.float32], ...]:
    """Chromatic coordinates ``r, g, b`` (each band over their sum)."""
    total = x["red"] + x["green"] + x["blue"]
    return _ratio(x["red"], total), _ratio(x["green"], total), _ratio(x["blue"], total)


def _exg(x: Bands) -> NDArray[np.float32]:
    r, g, b = _chromatic(x)
    return 2 * g - r - b


def _exr(x: Bands) -> NDArray[np.float32]:
    r, g, _ = _chromatic(x)
    return np.float32(1.4) * r - g


@dataclass(frozen=True, slots=True)
class SpectralIndex:
    """An index: its name, the bands it reads and how it is computed."""

    name: IndexName
    bands: tuple[str, ...]
    formula: str
    compute: Callable[[Bands], NDArray[np.float32]]


#: Every index geoseg computes, by name.
INDICES: dict[str, SpectralIndex] = {
    i.name: i
    for i in (
        SpectralIndex(
            "ndvi", ("nir", "red"), "(nir - red) / (nir + red)", _difference("nir", "red")
        ),
        SpectralIndex(
            "ndwi", ("green", "nir"), "(green - nir) / (green + nir)", _difference("green", "nir")
        ),
        SpectralIndex(
            "mndwi",
            ("green", "swir1"),
            "(green - swir1) / (green + swir1)",
            _difference("green", "swir1"),
        ),
        SpectralIndex(
            "ndbi", ("swir1", "nir"), "(swir1 - nir) / (swir1 + nir)", _difference("swir1", "nir")
        ),
        SpectralIndex("exg", ("red", "green", "blue"), "2g - r - b (chromatic r, g, b)", _exg),
        SpectralIndex("exr", ("red", "green", "blue"), "1.4r - g (chromatic r, g)", _exr),
    )
}


def missing_bands(indices: Sequence[str], bands: Sequence[str]) -> list[str]:
    """What each index in ``indices`` needs but ``bands`` lacks, as ``index: band`` strings."""
    return [f"{i}: {b}" for i in indices for b in INDICES[i].bands if b not in bands]


def derive(
    data: NDArray[np.float32], bands: Sequence[str], indices: Sequence[str]
) -> NDArray[np.float32]:
    """The ``indices`` of a ``(band, y, x)`` array whose bands are named ``bands``.

    Returns ``(len(indices), y, x)`` float32, computed in float32 from the values as given (the
    source's units, before any normalisation).
    """
    named = {name: data[k].astype(np.float32, copy=False) for k, name in enumerate(bands)}
    out = np.empty((len(indices), *data.shape[1:]), dtype=np.float32)
    for k, name in enumerate(indices):
        out[k] = INDICES[name].compute(named)
    return out
