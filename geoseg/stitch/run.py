"""Chunked prediction of a whole source: Dask tasks per chunk, parts on disk, COG assembly.

A :class:`PredictJob` is everything a chunk task needs, all of it picklable: the opened source
description (paths, not datasets), a factory that returns the process-wide model, the inference
spec and the folder for part files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
from dask.delayed import delayed

from geoseg.executor import ExecutorSpec, map_tasks
from geoseg.export.raster import assemble_cog, write_part
from geoseg.io.source import RasterSource
from geoseg.stitch.predict import InferenceSpec, TileModel, WindowPrediction, predict_window
from geoseg.tiling.grid import Chunk, ChunkPlan

ModelFactory = Callable[[], TileModel]

CLASS_NODATA = 0
CONFIDENCE_NODATA = float("nan")


@dataclass(frozen=True, slots=True)
class PredictJob:
    """A whole-source prediction: source, model factory, inference spec, part-file folder."""

    source: RasterSource
    model: ModelFactory
    spec: InferenceSpec
    parts_dir: Path

    def part_paths(self, chunk: Chunk) -> tuple[Path, Path]:
        """Class-map and confidence part files of ``chunk``."""
        return (
            self.parts_dir / f"classes-{chunk.key}.tif",
            self.parts_dir / f"confidence-{chunk.key}.tif",
        )


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What a chunk task reports: where its parts are and what it found."""

    chunk: Chunk
    tiles_run: int
    class_counts: dict[int, int]
    seconds: float


def predict_source_window(job: PredictJob, chunk: Chunk) -> WindowPrediction:
    """Predict one chunk's core window."""
    return predict_window(chunk.core, job.source.grid.shape, job.source.read, job.model(), job.spec)


def predict_chunk(job: PredictJob, chunk: Chunk) -> ChunkOutcome:
    """Predict one chunk and write its two part files."""
    start = time.perf_counter()
    prediction = predict_source_window(job, chunk)
    class_path, confidence_path = job.part_paths(chunk)
    grid = job.source.grid
    write_part(class_path, prediction.classes, grid, chunk.core, CLASS_NODATA)
    write_part(confidence_path, prediction.confidence, grid, chunk.core, CONFIDENCE_NODATA)
    codes, counts = np.unique(prediction.classes, return_counts=True)
    return ChunkOutcome(
        chunk,
        prediction.tiles_run,
        {int(c): int(n) for c, n in zip(codes, counts, strict=True) if c != CLASS_NODATA},
        time.perf_counter() - start,
    )


def predict_chunks(
    job: PredictJob, plan: ChunkPlan, executor: ExecutorSpec, show_progress: bool = True
) -> list[ChunkOutcome]:
    """Run every chunk of ``plan`` on ``executor``; parts land in ``job.parts_dir``."""
    job.parts_dir.mkdir(parents=True, exist_ok=True)

    def task(chunk: Chunk) -> ChunkOutcome:
        return predict_chunk(job, chunk)

    return map_tasks(task, plan.chunks(), executor, "predict chunks", show_progress)


def assemble_outputs(
    job: PredictJob,
    plan: ChunkPlan,
    class_path: Path,
    confidence_path: Path,
    colormap: Mapping[int, tuple[int, int, int, int]],
    overwrite: bool,
) -> None:
    """Assemble the parts into the class-map and confidence COGs."""
    chunks = plan.chunks()
    grid = job.source.grid
    assemble_cog(
        [(c.core, job.part_paths(c)[0]) for c in chunks],
        grid,
        class_path,
        "uint8",
        CLASS_NODATA,
        "mode",
        colormap,
        "class code (0 = nodata)",
        overwrite,
    )
    assemble_cog(
        [(c.core, job.part_paths(c)[1]) for c in chunks],
        grid,
        confidence_path,
        "float32",
        CONFIDENCE_NODATA,
        "average",
        None,
        "top-class probability",
        overwrite,
    )


def predict_arrays(job: PredictJob, plan: ChunkPlan) -> tuple[da.Array, da.Array]:
    """The class map and confidence as lazy Dask arrays with ``plan``'s chunks (no files)."""
    rows: list[list[da.Array]] = []
    conf_rows: list[list[da.Array]] = []
    for chunk in plan.chunks():
        if chunk.index[1] == 0:
            rows.append([])
            conf_rows.append([])
        result = delayed(predict_source_window, pure=True)(job, chunk)
        rows[-1].append(da.from_delayed(result.classes, chunk.core.shape, dtype=np.uint8))
        conf_rows[-1].append(da.from_delayed(result.confidence, chunk.core.shape, np.float32))
    return da.block(rows), da.block(conf_rows)
