"""Test-time augmentation: a tile's probabilities averaged over flipped and transposed views.

Each view is a composition of self-inverse steps on the tile axes (flip x, flip y, transpose), so
its result is mapped back by the same steps in reverse order. ``flips`` uses the 4 flips; ``d4``
all 8 symmetries of the square (flips and transposes). The average is per tile, so outputs stay
independent of chunking; it costs one forward pass per view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Augment = Literal["none", "flips", "d4"]
Step = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def _flip_x(a: NDArray[np.float32]) -> NDArray[np.float32]:
    return a[..., ::-1]


def _flip_y(a: NDArray[np.float32]) -> NDArray[np.float32]:
    return a[..., ::-1, :]


def _transpose(a: NDArray[np.float32]) -> NDArray[np.float32]:
    return a.swapaxes(-1, -2)


_FLIPS: tuple[tuple[Step, ...], ...] = ((), (_flip_x,), (_flip_y,), (_flip_x, _flip_y))
VIEWS: dict[str, tuple[tuple[Step, ...], ...]] = {
    "none": ((),),
    "flips": _FLIPS,
    "d4": _FLIPS + tuple((_transpose, *steps) for steps in _FLIPS),
}


def _apply(steps: tuple[Step, ...], a: NDArray[np.float32]) -> NDArray[np.float32]:
    for step in steps:
        a = step(a)
    return a


def predict_views(
    predict: Callable[[NDArray[np.float32]], NDArray[np.float32]],
    batch: NDArray[np.float32],
    augment: Augment,
) -> NDArray[np.float32]:
    """Mean of ``predict`` over the views of ``batch`` ``(n, bands, T, T)``, mapped back."""

    def view(steps: tuple[Step, ...]) -> NDArray[np.float32]:
        probs = predict(np.ascontiguousarray(_apply(steps, batch)))
        return _apply(tuple(reversed(steps)), probs)

    first, *rest = VIEWS[augment]
    if not rest:
        return predict(batch)
    total = view(first).astype(np.float32)
    for steps in rest:
        total += view(steps)
    return total / np.float32(1 + len(rest))
