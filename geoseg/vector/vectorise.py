"""The vectorise stage: class map + confidence COGs -> region polygons with attributes.

Pass 1 (per chunk, parallel): components. Global step: seams, minimum mapping unit, region ids.
Pass 2 (per chunk, parallel): polygons. Regions inside one chunk are final at once; pieces of
regions that span chunks are merged at the end.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from geoseg.executor import Executor
from geoseg.io.raster import read_values, read_window
from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.types import Grid
from geoseg.vector.components import ChunkComponents, chunk_components
from geoseg.vector.measure import measure, pixel_area_m2
from geoseg.vector.polygonize import (
    Piece,
    SeamMerger,
    chunk_pieces,
    group_pieces,
    region_image,
    to_map,
    traced_to_map,
)
from geoseg.vector.prepared import load_components, load_traced, prepared_path
from geoseg.vector.regions import RegionTable, build_regions

COLUMNS = [
    "region_id",
    "class_id",
    "class_name",
    "area_m2",
    "perimeter_m",
    "mean_confidence",
    "pixels",
]


@dataclass(frozen=True, slots=True)
class VectorSettings:
    """Minimum mapping unit (m², applied in raster space) and simplification tolerance (m)."""

    min_area_m2: float = 0.0
    simplify_m: float = 0.0

    def min_pixels(self, grid: Grid) -> int:
        """The MMU as a pixel count: components with fewer pixels are merged away."""
        if self.min_area_m2 <= 0:
            return 0
        return math.ceil(self.min_area_m2 / pixel_area_m2(grid) - 1e-9)

    def tolerance(self, grid: Grid) -> float:
        """Simplification tolerance in CRS units."""
        factor = grid.metres_per_unit
        if factor is None:  # degrees: metres -> degrees at ~111 km per degree
            return self.simplify_m / 111_320.0
        return self.simplify_m / factor

    def tolerance_px(self, grid: Grid) -> float:
        """Simplification tolerance in pixels (polygons are simplified before mapping)."""
        return self.tolerance(grid) / max(grid.pixel_size)


@dataclass(frozen=True, slots=True)
class VectoriseJob:
    """Everything the chunk tasks need (picklable: paths, grid, plan, settings).

    ``prepared``: the folder where predict's chunk tasks left each chunk's components (and
    outlines) for this plan (:mod:`geoseg.vector.prepared`); None to compute them here.
    """

    classes: Path
    confidence: Path | None
    grid: Grid
    plan: ChunkPlan
    settings: VectorSettings
    prepared: Path | None = None

    def prepared_path(self, chunk: Chunk) -> Path | None:
        """Where ``chunk``'s prepared file is, when the job has them."""
        return None if self.prepared is None else prepared_path(self.prepared, chunk)


def components_task(job: VectoriseJob, chunk: Chunk) -> ChunkComponents:
    """Pass 1 for one chunk (read back from its prepared file when there is one)."""
    prepared = job.prepared_path(chunk)
    if prepared is not None:
        return load_components(prepared, chunk)
    return chunk_components(read_window(job.classes, chunk.core), chunk, job.grid.width)


def pieces_task(job: VectoriseJob, chunk: Chunk, local_to_region: np.ndarray) -> list[Piece]:
    """Pass 2 for one chunk: from its traced outlines when prepared, else from its pixels."""
    prepared = job.prepared_path(chunk)
    traced = load_traced(prepared) if prepared is not None else None
    if traced is not None:
        if not len(traced.outlines):
            return []
        size = int(local_to_region.max()) + 1
        sums = np.bincount(local_to_region, weights=traced.confidence_sums, minlength=size)
        pixels = np.bincount(local_to_region, weights=traced.pixels, minlength=size)
        return group_pieces(
            local_to_region[traced.outlines.values],
            traced.outlines.polygons(),
            np.asarray(sums, dtype=np.float64),
            pixels.astype(np.int64),
            job.settings.tolerance_px(job.grid),
        )
    classes = read_window(job.classes, chunk.core)
    regions = region_image(classes, local_to_region)
    confidence = (
        read_values(job.confidence, chunk.core)
        if job.confidence is not None
        else np.zeros(classes.shape, np.float32)
    )
    return chunk_pieces(regions, confidence, chunk, job.settings.tolerance_px(job.grid))


def find_regions(job: VectoriseJob, ex: Executor) -> RegionTable:
    """Pass 1 and the global step."""
    chunks = job.plan.chunks()
    parts = ex.map(functools.partial(components_task, job), chunks, "components", Chunk.describe)
    return build_regions(job.plan, parts, job.settings.min_pixels(job.grid))


def vectorise(
    job: VectoriseJob, class_names: Mapping[int, str], ex: Executor
) -> Iterator[gpd.GeoDataFrame]:
    """Polygons with attributes, streamed in batches as chunks finish.

    A chunk's batch holds the regions it contains entirely and every seam-crossing region whose
    last piece it delivered; nothing waits for the whole layer.
    """
    table = find_regions(job, ex)
    chunks = job.plan.chunks()
    tasks = [(chunk, table.local_to_region[chunk.index]) for chunk in chunks]
    merger = SeamMerger(table.chunk_count)
    for pieces in ex.imap(
        functools.partial(_pieces, job), tasks, "polygons", lambda t: t[0].describe()
    ):
        ready = [p for p in pieces if table.chunk_count[p.region] == 1]
        ready += [m for p in pieces if table.chunk_count[p.region] > 1 and (m := merger.add(p))]
        if ready:
            yield features(ready, table, job.grid, class_names)
    if merger.waiting:  # every region's pieces come from the chunks counted for it
        raise RuntimeError(f"regions {sorted(merger.waiting)[:5]} never received all pieces")


def _pieces(job: VectoriseJob, task: tuple[Chunk, np.ndarray]) -> list[Piece]:
    return pieces_task(job, *task)


def features(
    pieces: list[Piece], table: RegionTable, grid: Grid, class_names: Mapping[int, str]
) -> gpd.GeoDataFrame:
    """A GeoDataFrame of finished regions with geoseg's attribute schema, in map coordinates."""
    traced = np.array([p.geometry for p in pieces], dtype=object)
    geoms = list(to_map(traced, traced_to_map(grid.transform)))
    area, perimeter = measure(geoms, grid)
    class_ids = [int(table.classes[p.region]) for p in pieces]
    frame = pd.DataFrame(
        {
            "region_id": np.array([p.region for p in pieces], dtype=np.int64),
            "class_id": np.array(class_ids, dtype=np.int32),
            "class_name": [class_names.get(c, f"class {c}") for c in class_ids],
            "area_m2": area,
            "perimeter_m": perimeter,
            "mean_confidence": np.array(
                [p.confidence_sum / p.pixels if p.pixels else np.nan for p in pieces]
            ),
            "pixels": np.array([p.pixels for p in pieces], dtype=np.int64),
        }
    )
    return gpd.GeoDataFrame(frame, geometry=geoms, crs=grid.crs_wkt)


def empty_features(grid: Grid) -> gpd.GeoDataFrame:
    """A valid empty layer with the schema and the CRS."""
    frame = pd.DataFrame(
        {
            c: pd.Series(dtype=t)
            for c, t in zip(
                COLUMNS,
                ["int64", "int32", "object", "float64", "float64", "float64", "int64"],
                strict=True,
            )
        }
    )
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries([], crs=grid.crs_wkt))
