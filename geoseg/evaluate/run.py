"""Evaluating a class map against reference labels, chunk by chunk, on the stitched scene.

Each chunk task reads the prediction and the reference (raster, or polygons rasterised on the
fly) over its core plus a halo of ``tolerance + 1`` px, and returns a 256 x 256 confusion matrix
of its core and per-class boundary counts; it also writes error-map and reference parts. Only
labelled, non-ignored reference pixels (and, with ``within``, pixels inside that mask) count.
Memory is one chunk, whatever the scene size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.evaluate.boundary import boundary_counts
from geoseg.evaluate.metrics import Scores, scores
from geoseg.executor import Executor
from geoseg.export.raster import write_part
from geoseg.io.labels import Labels
from geoseg.io.raster import read_window
from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.types import Grid, Window

#: Error-map codes.
NODATA, CORRECT, WRONG_CLASS, MISSED = 0, 1, 2, 3
ERROR_NAMES = {CORRECT: "correct", WRONG_CLASS: "wrong class", MISSED: "missed (no prediction)"}
ERROR_COLOURS = {CORRECT: "#4daf4a", WRONG_CLASS: "#e41a1c", MISSED: "#984ea3"}


@dataclass(frozen=True, slots=True)
class EvaluateJob:
    """What every chunk task needs: paths, the label reader, grid, plan and settings."""

    prediction: Path
    labels: Labels
    grid: Grid
    plan: ChunkPlan
    ignore: tuple[int, ...]
    tolerance: int
    within: Path | None
    parts_dir: Path

    def part(self, kind: str, chunk: Chunk) -> Path:
        """Part file of ``kind`` (``errors`` or ``reference``) for ``chunk``."""
        return self.parts_dir / f"{kind}-{chunk.key}.tif"


@dataclass(frozen=True, slots=True)
class ChunkEvaluation:
    """One chunk's counts.

    ``matrix`` is 256 x 256 confusion counts (reference row, prediction column); ``boundary`` is
    per-code boundary counts (256 x 4).
    """

    matrix: NDArray[np.int64]
    boundary: NDArray[np.int64]


def evaluate_chunk(job: EvaluateJob, chunk: Chunk) -> ChunkEvaluation:
    """Confusion and boundary counts of one chunk's core; writes its error and reference parts."""
    h = job.tolerance + 1
    core = chunk.core
    halo = Window(core.row - h, core.col - h, core.height + 2 * h, core.width + 2 * h)
    reference = job.labels.read(halo).astype(np.int64)
    prediction = read_window(job.prediction, halo, 0).astype(np.int64)
    labelled = (reference > 0) & ~np.isin(reference, job.ignore)
    if job.within is not None:
        labelled &= read_window(job.within, halo, 0) > 0
    # Pixels without a prediction (nodata in the imagery) never count in the metrics (GUIDE §4);
    # they are counted apart and shown as "missed" in the error map.
    evaluated = labelled & (prediction > 0)
    inner = core.relative_to(halo).slices
    ref, pred, ok = reference[inner], prediction[inner], evaluated[inner]
    missed = labelled[inner] & (pred == 0)
    matrix = (
        np.bincount(ref[ok] * 256 + pred[ok], minlength=256 * 256)
        .reshape(256, 256)
        .astype(np.int64)
    )
    matrix[:, 0] = np.bincount(ref[missed], minlength=256)  # column 0: labelled, no prediction
    codes = [int(c) for c in np.union1d(np.unique(ref[ok]), np.unique(pred[ok])) if c > 0]
    boundary = np.zeros((256, 4), dtype=np.int64)
    if codes:
        boundary[codes] = boundary_counts(
            reference, prediction, evaluated, inner, codes, job.tolerance
        )
    errors = np.full(core.shape, NODATA, dtype=np.uint8)
    errors[ok & (pred == ref)] = CORRECT
    errors[ok & (pred != ref)] = WRONG_CLASS
    errors[missed] = MISSED
    write_part(job.part("errors", chunk), errors, job.grid, core, NODATA)
    write_part(
        job.part("reference", chunk),
        np.where(labelled[inner], ref, 0).astype(np.uint8),
        job.grid,
        core,
        0,
    )
    return ChunkEvaluation(matrix, boundary)


def evaluate(job: EvaluateJob, ex: Executor) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Summed 256 x 256 confusion counts and 256 x 4 boundary counts over every chunk."""
    job.parts_dir.mkdir(parents=True, exist_ok=True)
    matrix = np.zeros((256, 256), dtype=np.int64)
    boundary = np.zeros((256, 4), dtype=np.int64)
    for result in ex.imap(
        functools.partial(evaluate_chunk, job),
        job.plan.chunks(),
        "evaluate",
        Chunk.describe,
    ):
        matrix += result.matrix
        boundary += result.boundary
    return matrix, boundary


def summarise(
    matrix: NDArray[np.int64],
    boundary: NDArray[np.int64],
    classes: Sequence[int] | None,
    ignore: Sequence[int],
    tolerance: int,
) -> Scores:
    """Scores over ``classes`` plus every code seen in the reference or the prediction.

    Listing ``classes`` (e.g. the model's) reports those absent from both as absent. Column 0
    of ``matrix`` (labelled pixels without a prediction) is left out of the scores: nodata never
    counts in metrics; :func:`missed_pixels` reports it.
    """
    counted = matrix.copy()
    counted[:, 0] = 0
    seen = {int(c) for c in np.flatnonzero(counted.sum(axis=1) + counted.sum(axis=0))} - {0}
    codes = sorted((set(classes or ()) | seen) - set(ignore))
    square = counted[np.ix_(codes, codes)]
    other = counted[codes].sum(axis=1) - square.sum(axis=1)
    confusion = np.concatenate([square, other[:, None]], axis=1)
    return scores(confusion, codes, boundary[codes], tolerance)


def missed_pixels(matrix: NDArray[np.int64]) -> dict[int, int]:
    """Labelled pixels per reference class that have no prediction (imagery nodata)."""
    return {int(c): int(n) for c, n in enumerate(matrix[:, 0]) if c > 0 and n > 0}
