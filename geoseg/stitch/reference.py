"""A plain in-memory sliding-window pass over a whole image: the oracle for chunked prediction.

It shares no windowing code with :mod:`geoseg.stitch.predict` beyond the tile grid and the
batching rule, and holds full-scene arrays, so it is only meant for small scenes and tests.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from geoseg.stitch.predict import (
    InferenceSpec,
    TileModel,
    WindowPrediction,
    finish,
    run_batches,
    valid_mask,
)
from geoseg.types import Window


def predict_in_memory(
    data: NDArray[np.float32], model: TileModel, spec: InferenceSpec
) -> WindowPrediction:
    """Predict a whole ``(band, y, x)`` image held in memory (NaN = nodata)."""
    tiling = spec.tiling
    bands, height, width = data.shape
    pad = tiling.size  # enough to hold every tile's reach past the image edges
    padded = np.full((bands, height + 2 * pad, width + 2 * pad), np.nan, dtype=np.float32)
    padded[:, pad : pad + height, pad : pad + width] = data
    origin = Window(-pad, -pad, height + 2 * pad, width + 2 * pad)
    valid_padded = valid_mask(padded)
    tiles = [
        Window(tiling.start(r), tiling.start(c), tiling.size, tiling.size)
        for r in range(tiling.count(height))
        for c in range(tiling.count(width))
    ]
    live = [t for t in tiles if valid_padded[t.relative_to(origin).slices].any()]
    acc = np.zeros((len(spec.codes), height + 2 * pad, width + 2 * pad), dtype=np.float32)
    weight = np.zeros((height + 2 * pad, width + 2 * pad), dtype=np.float32)
    taper = tiling.taper()
    for tile, probs in run_batches(live, spec.normalise(padded), origin, model, spec):
        rows, cols = tile.relative_to(origin).slices
        acc[:, rows, cols] += probs * taper
        weight[rows, cols] += taper
    inner = (slice(pad, pad + height), slice(pad, pad + width))
    classes, confidence = finish(
        acc[(slice(None), *inner)], weight[inner], valid_padded[inner], spec.codes
    )
    return WindowPrediction(classes, confidence, len(live))
