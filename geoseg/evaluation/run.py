"""Evaluating a class map against reference labels, chunk by chunk, on the stitched scene.

Each chunk task reads the prediction and the reference (raster, or polygons rasterised on the
fly) over its core plus a halo of ``tolerance + 1`` px, and returns a 256 x 256 confusion matrix
of its core and per-class boundary counts; it also writes error-map and reference parts. Only
labelled, non-ignored reference pixels (and, with ``within``, pixels inside that mask) count.
Memory is one chunk, whatever the scene size. :func:`compare` is the per-window comparison, used
as well for whole photos of an image set.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.evaluation.boundary import boundary_counts
from geoseg.evaluation.metrics import Scores, scores
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
class Counts:
    """Counts of one comparison (a chunk, a photo), summed over many with ``+``.

    ``matrix`` is 256 x 256 confusion counts (reference row, prediction column; column 0:
    labelled pixels without a prediction); ``boundary`` is per-code boundary counts (256 x 4).
    """

    matrix: NDArray[np.int64]
    boundary: NDArray[np.int64]

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.matrix + other.matrix, self.boundary + other.boundary)

    @classmethod
    def zero(cls) -> Counts:
        """No pixels counted."""
        return cls(np.zeros((256, 256), dtype=np.int64), np.zeros((256, 4), dtype=np.int64))

    def scores(
        self, classes: Sequence[int] | None, ignore: Sequence[int], tolerance: int
    ) -> Scores:
        """The scores of these counts (:func:`summarise`)."""
        return summarise(self.matrix, self.boundary, classes, ignore, tolerance)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A window's counts, its error map and the reference as evaluated (core only, uint8)."""

    counts: Counts
    errors: NDArray[np.uint8]
    reference: NDArray[np.uint8]


def compare(
    reference: NDArray[np.int64],
    prediction: NDArray[np.int64],
    labelled: NDArray[np.bool_],
    inner: tuple[slice, slice],
    tolerance: int,
) -> Comparison:
    """Compare a prediction with reference codes over a window with a halo.

    ``labelled`` marks the reference pixels that count; ``inner`` selects the core inside the
    halo (boundary matches may reach ``tolerance`` px into the halo). Labelled pixels without a
    prediction (imagery nodata) never count in the metrics (GUIDE §4): they are counted apart
    (column 0) and shown as "missed" in the error map.
    """
    evaluated = labelled & (prediction > 0)
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
        boundary[codes] = boundary_counts(reference, prediction, evaluated, inner, codes, tolerance)
    errors = np.full(ref.shape, NODATA, dtype=np.uint8)
    errors[ok & (pred == ref)] = CORRECT
    errors[ok & (pred != ref)] = WRONG_CLASS
    errors[missed] = MISSED
    evaluated_reference = np.where(labelled[inner], ref, 0).astype(np.uint8)
    return Comparison(Counts(matrix, boundary), errors, evaluated_reference)


def evaluate_chunk(job: EvaluateJob, chunk: Chunk) -> Counts:
    """Confusion and boundary counts of one chunk's core; writes its error and reference parts."""
    h = job.tolerance + 1
    core = chunk.core
    halo = Window(core.row - h, core.col - h, core.height + 2 * h, core.width + 2 * h)
    reference = job.labels.read(halo).astype(np.int64)
    prediction = read_window(job.prediction, halo, 0).astype(np.int64)
    labelled = (reference > 0) & ~np.isin(reference, job.ignore)
    if job.within is not None:
        labelled &= read_window(job.within, halo, 0) > 0
    result = compare(reference, prediction, labelled, core.relative_to(halo).slices, job.tolerance)
    write_part(job.part("errors", chunk), result.errors, job.grid, core, NODATA)
    write_part(job.part("reference", chunk), result.reference, job.grid, core, 0)
    return result.counts


def evaluate(job: EvaluateJob, ex: Executor) -> Counts:
    """Confusion and boundary counts summed over every chunk."""
    job.parts_dir.mkdir(parents=True, exist_ok=True)
    total = Counts.zero()
    for counts in ex.imap(
        functools.partial(evaluate_chunk, job),
        job.plan.chunks(),
        "evaluate",
        Chunk.describe,
    ):
        total += counts
    return total


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


@dataclass(frozen=True, slots=True)
class ModelCoverage:
    """Which reference classes a model can predict, and the mIoU over those only."""

    miou: float | None
    unpredictable: dict[str, int]  # reference classes the model lacks: name -> labelled pixels


def model_coverage(
    result: Scores, model_codes: Sequence[int] | None, names: Mapping[int, str]
) -> ModelCoverage:
    """The mIoU over reference classes the model can predict, and the classes it cannot.

    With ``model_codes`` unknown (``None``) nothing can be said: the mIoU is the usual one.
    """
    present = [c for c in result.classes if c.support > 0]
    if model_codes is None:
        return ModelCoverage(result.miou, {})
    ious = [c.iou for c in present if c.code in model_codes and c.iou is not None]
    missing = {
        names.get(c.code, str(c.code)): c.support for c in present if c.code not in model_codes
    }
    return ModelCoverage(sum(ious) / len(ious) if ious else None, missing)


def missed_pixels(matrix: NDArray[np.int64]) -> dict[int, int]:
    """Labelled pixels per reference class that have no prediction (imagery nodata)."""
    return {int(c): int(n) for c, n in enumerate(matrix[:, 0]) if c > 0 and n > 0}
