"""Spatial hold-out: validation is whole square blocks of the scene, not random pixels.

Neighbouring pixels are strongly correlated, so a random-pixel split reports accuracy the model
will not reach on new ground. Blocks are drawn with a seed; a buffer of pixels around validation
blocks is excluded from training labels too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.errors import TrainingError


@dataclass(frozen=True, slots=True)
class Split:
    """Boolean masks over the scene: pixels whose labels train, and pixels that validate."""

    train: NDArray[np.bool_]
    validation: NDArray[np.bool_]
    blocks: tuple[tuple[int, int], ...]


def spatial_split(
    labels: NDArray[np.uint8], block_size: int, fraction: float, buffer: int, seed: int
) -> Split:
    """Hold out about ``fraction`` of the labelled blocks (seeded), buffered by ``buffer`` px."""
    labelled = labels > 0
    if not labelled.any():
        raise TrainingError("the label layer has no labelled pixels (all 0 / nodata)")
    rows = range(0, labels.shape[0], block_size)
    cols = range(0, labels.shape[1], block_size)
    candidates = [
        (r, c)
        for r in rows
        for c in cols
        if labelled[r : r + block_size, c : c + block_size].mean() > 0.25
    ]
    if len(candidates) < 2:
        raise TrainingError(
            f"the scene has {len(candidates)} block(s) of {block_size} px with labels; lower "
            "validation.block_size so at least two blocks exist (one to train, one to validate)"
        )
    rng = np.random.default_rng(seed)
    count = min(len(candidates) - 1, max(1, round(fraction * len(candidates))))
    chosen = sorted(candidates[i] for i in rng.choice(len(candidates), count, replace=False))
    validation_blocks = np.zeros(labels.shape, dtype=bool)
    for r, c in chosen:
        validation_blocks[r : r + block_size, c : c + block_size] = True
    grown = (
        ndimage.binary_dilation(validation_blocks, iterations=buffer)
        if buffer
        else validation_blocks
    )
    train = labelled & ~grown
    if not train.any():
        raise TrainingError("no training pixels remain outside the validation blocks and buffer")
    return Split(train, labelled & validation_blocks, tuple(chosen))
