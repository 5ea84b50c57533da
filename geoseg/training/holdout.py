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
from geoseg.training.config import ValidationConfig


@dataclass(frozen=True, slots=True)
class Split:
    """Boolean masks over the scene: pixels whose labels train, and pixels that validate."""

    train: NDArray[np.bool_]
    validation: NDArray[np.bool_]
    blocks: tuple[tuple[int, int], ...]


def spatial_split(labels: NDArray[np.uint8], validation: ValidationConfig, seed: int) -> Split:
    """Hold out blocks as ``validation`` says (a seeded fraction, or one fold), buffered."""
    block_size, buffer = validation.block_size, validation.buffer
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
    needed = validation.folds or 2
    if len(candidates) < needed:
        raise TrainingError(
            f"the scene has {len(candidates)} block(s) of {block_size} px with labels; lower "
            f"validation.block_size so at least {needed} blocks exist "
            + ("(one per fold)" if validation.folds else "(one to train, one to validate)")
        )
    chosen = [candidates[i] for i in validation.held_out(len(candidates), seed)]
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
