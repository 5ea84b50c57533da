"""Training chips: class-balanced sampling of chip windows, and flips/rotations."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from geoseg.types import Window

ScalarT = TypeVar("ScalarT", bound=np.generic)


def sample_chip_windows(
    labels: NDArray[np.int64], chip: int, count: int, rng: np.random.Generator
) -> list[Window]:
    """``count`` chip windows centred on training pixels, classes drawn uniformly.

    ``labels`` holds class indexes with -1 where a pixel does not train. Drawing the centre's class
    uniformly first counters class imbalance (rare classes are seen as often as common ones).
    """
    present = [k for k in np.unique(labels) if k >= 0]
    by_class = {k: np.flatnonzero(labels.ravel() == k) for k in present}
    width = labels.shape[1]
    windows = []
    for k in rng.choice(present, size=count):
        flat = int(rng.choice(by_class[int(k)]))
        row, col = divmod(flat, width)
        jitter = rng.integers(-(chip // 4), chip // 4 + 1, size=2)
        windows.append(
            Window(int(row - chip // 2 + jitter[0]), int(col - chip // 2 + jitter[1]), chip, chip)
        )
    return windows


def cut(array: NDArray[ScalarT], window: Window, fill: float) -> NDArray[ScalarT]:
    """``array[..., window]`` where ``window`` may reach outside: outside becomes ``fill``."""
    out = np.full((*array.shape[:-2], window.height, window.width), fill, dtype=array.dtype)
    height, width = array.shape[-2:]
    inside = window.intersection(Window(0, 0, height, width))
    if inside is not None:
        out[(..., *inside.relative_to(window).slices)] = array[(..., *inside.slices)]
    return out


def augment(
    image: NDArray[np.float32], target: NDArray[np.int64], rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """A random rotation by a multiple of 90 degrees and a random horizontal flip."""
    turns = int(rng.integers(4))
    image, target = np.rot90(image, turns, axes=(-2, -1)), np.rot90(target, turns, axes=(-2, -1))
    if rng.random() < 0.5:
        image, target = image[..., ::-1], target[..., ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(target)
