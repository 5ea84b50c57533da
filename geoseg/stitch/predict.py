"""Predicting one output window (a Dask chunk's core) from the tiles of the global grid.

The function reads the halo it needs itself, runs only tiles with valid pixels, in fixed-size
batches, and blends them in global tile order, so its output for a pixel does not depend on which
window the pixel was computed in (docs/DESIGN.md §3).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from geoseg.model.bundle import BundleMeta, InputProfile
from geoseg.model.indices import derive, missing_bands
from geoseg.stitch.augment import Augment, predict_views
from geoseg.stitch.seams import Sharing
from geoseg.tiling.grid import TileGrid, halo_window
from geoseg.types import Window

ReadFn = Callable[[Window], NDArray[np.float32]]


class TileModel(Protocol):
    """Anything that turns normalised tiles ``(n, bands, T, T)`` into probabilities."""

    def predict_tiles(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Class probabilities ``(n, classes, T, T)``."""
        ...


@dataclass(frozen=True, slots=True)
class InferenceSpec:
    """How tiles are cut, normalised, batched and turned into class codes."""

    tiling: TileGrid
    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    codes: tuple[int, ...]
    augment: Augment = "none"
    # The bands' names (in order) and the spectral indices computed from them as extra
    # channels (geoseg.model.indices); no indices: the bands alone.
    bands: tuple[str, ...] = ()
    indices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need one value per band")
        missing = missing_bands(self.indices, self.bands)
        if missing:
            raise ValueError(f"indices need bands that are not given: {', '.join(missing)}")

    @classmethod
    def of(
        cls,
        meta: BundleMeta,
        profile: InputProfile,
        tiling: TileGrid,
        batch_size: int,
        augment: Augment = "none",
    ) -> InferenceSpec:
        """The spec for a bundle's network, normalising with ``profile``'s statistics."""
        return cls(
            tiling,
            batch_size,
            tuple(b.mean for b in profile.bands),
            tuple(b.std for b in profile.bands),
            meta.class_codes,
            augment,
            tuple(b.name for b in profile.bands),
            tuple(meta.indices),
        )

    @property
    def channels(self) -> int:
        """Channels the network gets: the bands, then the indices."""
        return len(self.mean) + len(self.indices)

    def normalise(self, data: NDArray[np.float32], in_place: bool = False) -> NDArray[np.float32]:
        """``(x - mean) / std`` per band, then the spectral indices; nodata (NaN) becomes 0.

        ``in_place`` overwrites a float32 ``data`` (a chunk's halo: one copy fewer in memory).
        """
        derived = derive(data, self.bands, self.indices) if self.indices else None
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        out = np.subtract(data, mean, out=data if in_place else None)
        np.divide(out, std, out=out)
        if derived is not None:  # computed from the values in units, before normalising
            out = np.concatenate([out, derived])
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return out.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class WindowPrediction:
    """Class codes (uint8, 0 = nodata) and top-class probability (float32, NaN = nodata)."""

    classes: NDArray[np.uint8]
    confidence: NDArray[np.float32]
    tiles_run: int
    seconds: dict[str, float] = field(default_factory=dict)


def valid_mask(data: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Pixels where every band of a ``(band, y, x)`` array is valid (not NaN)."""
    return np.asarray(np.isfinite(data).all(axis=0))


def batched(items: Sequence[Window], size: int) -> list[Sequence[Window]]:
    """Consecutive groups of ``size`` items (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_batches(
    tiles: Sequence[Window],
    image: NDArray[np.float32],
    origin: Window,
    model: TileModel,
    spec: InferenceSpec,
) -> Iterator[tuple[Window, NDArray[np.float32]]]:
    """Probabilities of each tile, cut from ``image`` (which starts at ``origin``), in order.

    Every forward pass has exactly ``spec.batch_size`` tiles (the last batch is zero-padded), so a
    tile's result does not depend on which other tiles share its batch. Batches are computed as
    the results are consumed, so only one batch of probabilities is held at a time.
    """
    size = spec.tiling.size
    for group in batched(tiles, spec.batch_size):
        batch = np.zeros((spec.batch_size, image.shape[0], size, size), dtype=np.float32)
        for slot, tile in enumerate(group):
            rows, cols = tile.relative_to(origin).slices
            batch[slot] = image[:, rows, cols]
        probs = predict_views(model.predict_tiles, batch, spec.augment)
        yield from zip(group, probs[: len(group)], strict=True)


def finish(
    acc: NDArray[np.float32],
    weight: NDArray[np.float32],
    valid: NDArray[np.bool_],
    codes: tuple[int, ...],
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """Blended probabilities -> (class codes, confidence); invalid pixels become nodata.

    ``acc`` is divided by ``weight`` in place (the caller has no further use for it).
    """
    probs = np.divide(acc, np.where(weight > 0, weight, np.float32(1)), out=acc)  # acc is spent
    index = np.argmax(probs, axis=0)
    confidence = np.take_along_axis(probs, index[None], axis=0)[0]
    classes = np.asarray(codes, dtype=np.uint8)[index]
    classes[~valid] = 0
    confidence = np.where(valid, confidence, np.float32(np.nan)).astype(np.float32)
    return classes, confidence


def predict_window(
    core: Window,
    shape: tuple[int, int],
    read: ReadFn,
    model: TileModel,
    spec: InferenceSpec,
    sharing: Sharing | None = None,
) -> WindowPrediction:
    """Predict the pixels of ``core`` in an image of ``shape`` (rows, cols).

    With ``sharing``, tiles a neighbouring chunk already ran are taken from it, and tiles this
    chunk runs on a seam are left for the neighbours (:mod:`geoseg.stitch.seams`).
    """
    clock = time.perf_counter()
    tiles = spec.tiling.tiles_overlapping(core, shape)
    halo = halo_window(tiles)
    data = read(halo)
    valid_halo = valid_mask(data)
    valid = valid_halo[core.relative_to(halo).slices]
    seconds = {"read": time.perf_counter() - clock, "infer": 0.0}
    classes = np.zeros(core.shape, dtype=np.uint8)
    confidence = np.full(core.shape, np.nan, dtype=np.float32)
    if not valid.any():
        return WindowPrediction(classes, confidence, 0, seconds)
    clock = time.perf_counter()
    live = [t for t in tiles if valid_halo[t.relative_to(halo).slices].any()]
    taken: dict[Window, NDArray[np.float32]] = {}
    if sharing is not None:
        taken = {t: p for t in live if (p := sharing.take(t)) is not None}
    to_run = [t for t in live if t not in taken]
    computed = run_batches(to_run, spec.normalise(data, in_place=True), halo, model, spec)
    taper = spec.tiling.taper()
    acc = np.zeros((len(spec.codes), *core.shape), dtype=np.float32)
    weight = np.zeros(core.shape, dtype=np.float32)
    for tile in live:  # blended in global tile order, whichever chunk ran the tile
        probs = taken.get(tile)
        if probs is None:
            start = time.perf_counter()
            _, probs = next(computed)
            seconds["infer"] += time.perf_counter() - start
            if sharing is not None:
                sharing.offer(tile, probs)
        part = tile.intersection(core)
        if part is None:
            continue
        in_tile, in_core = part.relative_to(tile).slices, part.relative_to(core).slices
        w = taper[in_tile]
        acc[(slice(None), *in_core)] += probs[(slice(None), *in_tile)] * w
        weight[in_core] += w
    classes, confidence = finish(acc, weight, valid, spec.codes)
    seconds["blend"] = time.perf_counter() - clock - seconds["infer"]
    return WindowPrediction(classes, confidence, len(to_run), seconds)
