"""Chunked prediction of a whole source: Dask tasks per chunk, parts on disk, COG assembly.

A :class:`PredictJob` is everything a chunk task needs, all of it picklable: the opened source
description (paths, not datasets), a factory that returns the process-wide model, the inference
spec and the folder for part files.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np
from dask.delayed import delayed

from geoseg.classes import class_codes_tag
from geoseg.executor import Executor
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import ConfidenceStorage, assemble_cog, write_part
from geoseg.io.source import RasterSource
from geoseg.stitch.predict import InferenceSpec, TileModel, WindowPrediction, predict_window
from geoseg.stitch.seams import Sharing, release_shared_tiles, seam_order, shared_tiles
from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.vector.prepared import prepare_chunk, prepared_path, save_prepared

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
    confidence: ConfidenceStorage = field(default_factory=ConfidenceStorage)
    # What the chunk tasks prepare for vectorising (geoseg.vector.prepared): nothing, the
    # components, or the components and their outlines (when regions are components).
    vectors: Literal["none", "components", "outlines"] = "none"
    # The run's chunk plan: with it, chunk tasks share the tiles on their seams
    # (geoseg.stitch.seams) instead of each running them, under a token of this job's own.
    plan: ChunkPlan | None = None
    run_token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def sharing(self) -> Sharing | None:
        """The process's access to the run's shared seam tiles, when the job has a plan."""
        if self.plan is None:
            return None
        return Sharing(shared_tiles(self.run_token), self.plan)

    def part_paths(self, chunk: Chunk) -> tuple[Path, Path]:
        """Class-map and confidence part files of ``chunk``."""
        return (
            self.parts_dir / f"classes-{chunk.key}.tif",
            self.parts_dir / f"confidence-{chunk.key}.tif",
        )

    def files(self, chunk: Chunk) -> list[Path]:
        """Every file a finished chunk has besides its record."""
        prepared = [prepared_path(self.parts_dir, chunk)] if self.vectors != "none" else []
        return [*self.part_paths(chunk), *prepared]

    def record_path(self, chunk: Chunk) -> Path:
        """The chunk's outcome record, written last: its presence marks the chunk finished."""
        return self.parts_dir / f"{chunk.key}.json"


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What a chunk task reports; saved beside its parts, it marks the chunk as finished."""

    key: str
    tiles_run: int
    class_counts: dict[int, int]
    seconds: dict[str, float]

    def to_json(self) -> str:
        """The record written to ``parts/KEY.json``."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ChunkOutcome:
        """Read a record back."""
        data = json.loads(text)
        data["class_counts"] = {int(k): int(v) for k, v in data["class_counts"].items()}
        return cls(**data)


def predict_source_window(job: PredictJob, chunk: Chunk) -> WindowPrediction:
    """Predict one chunk's core window."""
    return predict_window(
        chunk.core, job.source.grid.shape, job.source.read, job.model(), job.spec, job.sharing()
    )


def predict_chunk(job: PredictJob, chunk: Chunk) -> ChunkOutcome:
    """Predict one chunk, write its two part files, then its record (the completion marker)."""
    start = time.perf_counter()
    prediction = predict_source_window(job, chunk)
    clock = time.perf_counter()
    class_path, confidence_path = job.part_paths(chunk)
    grid = job.source.grid
    write_part(class_path, prediction.classes, grid, chunk.core, CLASS_NODATA)
    stored = job.confidence.encode(prediction.confidence)
    write_part(confidence_path, stored, grid, chunk.core, job.confidence.nodata)
    seconds = {**prediction.seconds, "write": time.perf_counter() - clock}
    if job.vectors != "none":
        clock = time.perf_counter()
        values = job.confidence.decode(stored)  # as the confidence raster is read back
        prepared = prepare_chunk(
            prediction.classes, values, chunk, grid.width, job.vectors == "outlines"
        )
        with atomic_path(prepared_path(job.parts_dir, chunk), overwrite=True) as tmp:
            save_prepared(prepared, tmp)
        seconds["vectors"] = time.perf_counter() - clock
    codes, counts = np.unique(prediction.classes, return_counts=True)
    seconds["total"] = time.perf_counter() - start
    outcome = ChunkOutcome(
        chunk.key,
        prediction.tiles_run,
        {int(c): int(n) for c, n in zip(codes, counts, strict=True) if c != CLASS_NODATA},
        seconds,
    )
    with atomic_path(job.record_path(chunk), overwrite=True) as tmp:
        tmp.write_text(outcome.to_json(), encoding="utf-8")
    return outcome


def finished_chunks(job: PredictJob, chunks: Sequence[Chunk]) -> dict[str, ChunkOutcome]:
    """Outcomes of the chunks whose parts are complete on disk (their record exists)."""
    done = {}
    for chunk in chunks:
        record = job.record_path(chunk)
        if record.exists() and all(p.exists() for p in job.files(chunk)):
            done[chunk.key] = ChunkOutcome.from_json(record.read_text(encoding="utf-8"))
    return done


def predict_chunks(job: PredictJob, chunks: Sequence[Chunk], ex: Executor) -> list[ChunkOutcome]:
    """Predict ``chunks`` on ``ex``; parts and records land in ``job.parts_dir``."""
    job.parts_dir.mkdir(parents=True, exist_ok=True)
    try:
        return ex.map(
            functools.partial(predict_chunk, job),
            seam_order(chunks) if job.plan is not None else chunks,
            "predict chunks",
            Chunk.describe,
        )
    finally:
        release_shared_tiles()


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
        class_codes_tag(job.spec.codes),
    )
    assemble_cog(
        [(c.core, job.part_paths(c)[1]) for c in chunks],
        grid,
        confidence_path,
        job.confidence.dtype,
        job.confidence.nodata,
        "average",
        None,
        "top-class probability",
        overwrite,
        scale=job.confidence.scale,
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
