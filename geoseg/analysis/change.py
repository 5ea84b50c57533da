"""Change between two class maps of the same grid: a transition matrix and change polygons.

Streamed chunk by chunk: each chunk counts (before, after) pairs of pixels valid in both maps and
writes a change-code part where the class changed (optionally only into ``to_classes``). A change
code packs the transition as ``before * 16 + after``, so transitions between class codes 1..15
(the common codes are 1..8) fit one byte; the change map is then vectorised like a class map.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from geoseg.errors import ConfigError
from geoseg.executor import Executor
from geoseg.export.raster import write_part
from geoseg.io.raster import read_window
from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.types import Grid
from geoseg.vector.vectorise import empty_features

MAX_CODE = 15


def change_code(before: Any, after: Any) -> Any:
    """The one-byte code of a transition (of class codes, or of arrays of them)."""
    return before * 16 + after


def transition(code: int) -> tuple[int, int]:
    """``(before, after)`` of a change code."""
    return code // 16, code % 16


@dataclass(frozen=True, slots=True)
class ChangeJob:
    """Two class maps on one grid, the chunking and where change parts go."""

    before: Path
    after: Path
    grid: Grid
    plan: ChunkPlan
    to_classes: tuple[int, ...]
    parts_dir: Path

    def part(self, chunk: Chunk) -> Path:
        """The change-code part of ``chunk``."""
        return self.parts_dir / f"change-{chunk.key}.tif"


def change_chunk(job: ChangeJob, chunk: Chunk) -> NDArray[np.int64]:
    """256 x 256 (before, after) pixel counts of one chunk; writes its change-code part."""
    before = read_window(job.before, chunk.core).astype(np.int64)
    after = read_window(job.after, chunk.core).astype(np.int64)
    valid = (before > 0) & (after > 0)
    counts = np.bincount(before[valid] * 256 + after[valid], minlength=65536)
    changed = valid & (before != after)
    if job.to_classes:
        changed &= np.isin(after, job.to_classes)
    if changed.any() and max(int(before[changed].max()), int(after[changed].max())) > MAX_CODE:
        raise ConfigError(
            f"change polygons support class codes 1..{MAX_CODE}; chunk {chunk.key} has higher codes"
        )
    codes = np.where(changed, change_code(before, after), 0).astype(np.uint8)
    write_part(job.part(chunk), codes, job.grid, chunk.core, 0)
    return counts.reshape(256, 256).astype(np.int64)


def transitions(job: ChangeJob, ex: Executor) -> NDArray[np.int64]:
    """Summed (before, after) pixel counts; change parts are left in ``job.parts_dir``."""
    job.parts_dir.mkdir(parents=True, exist_ok=True)
    total = np.zeros((256, 256), dtype=np.int64)
    for counts in ex.imap(
        functools.partial(change_chunk, job),
        job.plan.chunks(),
        "change",
        Chunk.describe,
    ):
        total += counts
    return total


def transition_table(
    counts: NDArray[np.int64], names: Mapping[int, str], pixel_m2: float
) -> pd.DataFrame:
    """Area (m²) from each class (rows, before) to each class (columns, after)."""
    seen = sorted({int(c) for c in np.flatnonzero(counts.sum(axis=0) + counts.sum(axis=1))} - {0})
    labels = [names.get(c, f"class {c}") for c in seen]
    return pd.DataFrame(counts[np.ix_(seen, seen)] * pixel_m2, index=labels, columns=labels)


def changed_area(table: pd.DataFrame) -> float:
    """Area that changed class, from a :func:`transition_table` (off-diagonal sum)."""
    matrix = table.to_numpy()
    return float(matrix.sum() - np.trace(matrix))


def change_names(names: Mapping[int, str]) -> dict[int, str]:
    """Names of every possible change code, e.g. ``tree -> built-up``."""

    def name(code: int) -> str:
        return names.get(code, f"class {code}")

    return {
        change_code(b, a): f"{name(b)} -> {name(a)}"
        for b in range(1, MAX_CODE + 1)
        for a in range(1, MAX_CODE + 1)
        if b != a
    }


def mapped_transitions(
    counts: NDArray[np.int64], to_classes: Iterable[int]
) -> list[tuple[int, int, int]]:
    """``(before, after, pixels)`` of every change the change map shows.

    Those are all changes between two different classes, or only those into ``to_classes``
    when it lists any, ordered by change code.
    """
    into = set(to_classes)
    found = []
    for key in np.flatnonzero(counts):
        before, after = divmod(int(key), 256)
        if before != after and (not into or after in into):
            found.append((before, after, int(counts.flat[key])))
    return sorted(found, key=lambda t: change_code(t[0], t[1]))


def change_features(frames: Iterable[gpd.GeoDataFrame]) -> Iterator[gpd.GeoDataFrame]:
    """Vectorised change regions with ``from_class`` and ``to_class`` (no confidence)."""
    for frame in frames:
        pairs = [transition(int(c)) for c in frame.class_id]
        frame.insert(2, "from_class", [p[0] for p in pairs])
        frame.insert(3, "to_class", [p[1] for p in pairs])
        yield frame.drop(columns=["mean_confidence"])


def empty_change_features(grid: Grid) -> gpd.GeoDataFrame:
    """The change layer's schema, without features (an empty result is still a valid layer)."""
    empty = empty_features(grid).drop(columns=["mean_confidence"])
    empty.insert(2, "from_class", pd.Series(dtype="int64"))
    empty.insert(3, "to_class", pd.Series(dtype="int64"))
    return empty
