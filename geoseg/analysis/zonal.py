"""Zonal statistics: area and share of each class inside district / parcel polygons.

Streamed over the class map chunk by chunk: each chunk rasterises only the zones whose bounding
box meets it (pixel centres) and counts (zone, class) pairs; the client sums the counts. Areas
are pixel counts times the pixel area in square metres. Zones are assumed not to overlap; where
they do, the later feature wins the shared pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio.features
import shapely
from numpy.typing import NDArray

from geoseg.errors import CatalogError, GridMismatchError
from geoseg.executor import Executor
from geoseg.io.raster import read_window
from geoseg.tiling.grid import Chunk, ChunkPlan
from geoseg.types import Grid
from geoseg.vector.measure import pixel_area_m2


@dataclass(frozen=True, slots=True)
class ZonalJob:
    """The class map, the zone layer and the chunking."""

    classes: Path
    zones: Path
    layer: str | None
    grid: Grid
    plan: ChunkPlan


def zone_layer(path: Path, layer: str | None, grid: Grid) -> gpd.GeoDataFrame:
    """The zones, checked to be polygons in the class map's CRS."""
    if not path.exists():
        raise CatalogError(f"zone layer {path} does not exist")
    frame = pyogrio.read_dataframe(path, layer=layer, fid_as_index=True)
    if frame.crs is None:
        raise CatalogError(f"zone layer {path} has no CRS; set one (ogr2ogr -a_srs)")
    if rasterio.crs.CRS.from_wkt(frame.crs.to_wkt()) != grid.crs:
        raise GridMismatchError(
            f"zone layer {path} is in {frame.crs.to_string()}, the class map in "
            f"{grid.crs.to_string()}; reproject the zones (ogr2ogr -t_srs)"
        )
    return frame


def zonal_chunk(job: ZonalJob, chunk: Chunk) -> dict[tuple[int, int], int]:
    """``{(zone index, class code): pixels}`` inside one chunk."""
    transform = job.grid.window_transform(chunk.core)
    corners = [transform @ (c, r) for c in (0, chunk.core.width) for r in (0, chunk.core.height)]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    zones = pyogrio.read_dataframe(
        job.zones,
        layer=job.layer,
        columns=[],
        bbox=(min(xs), min(ys), max(xs), max(ys)),
        fid_as_index=True,
    )
    if zones.empty:
        return {}
    shapes = [
        (g, int(i) + 1)
        for i, g in zip(zones.index, zones.geometry.values, strict=True)
        if g is not None and not shapely.is_empty(g)
    ]
    if not shapes:
        return {}
    ids = rasterio.features.rasterize(
        shapes, out_shape=chunk.core.shape, transform=transform, fill=0, dtype="int64"
    )
    classes = read_window(job.classes, chunk.core).astype(np.int64)
    inside = ids > 0
    keys, counts = np.unique(ids[inside] * 256 + classes[inside], return_counts=True)
    return {(int(k) // 256 - 1, int(k) % 256): int(n) for k, n in zip(keys, counts, strict=True)}


def zonal_counts(job: ZonalJob, ex: Executor) -> dict[tuple[int, int], int]:
    """Pixel counts per (zone fid, class) over the whole class map."""
    total: dict[tuple[int, int], int] = {}
    for part in ex.imap(
        functools.partial(zonal_chunk, job),
        job.plan.chunks(),
        "zonal",
        Chunk.describe,
    ):
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def column_name(name: str) -> str:
    """A class name as a column-name fragment (``built-up`` -> ``built_up``)."""
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")


def zonal_table(
    zones: gpd.GeoDataFrame,
    counts: Mapping[tuple[int, int], int],
    class_names: Mapping[int, str],
    grid: Grid,
) -> gpd.GeoDataFrame:
    """The zones with added area and share columns.

    ``area_<class>_m2`` and ``share_<class>`` per class, ``mapped_m2`` (pixels with a class) and
    ``nodata_m2`` (pixels without).
    """
    pixel = pixel_area_m2(grid)
    out = zones.copy()
    index = {fid: row for row, fid in enumerate(zones.index)}
    codes = sorted(class_names)
    areas: NDArray[np.float64] = np.zeros((len(zones), len(codes) + 1))
    column = {c: k for k, c in enumerate(codes)}
    for (fid, code), n in counts.items():
        if fid in index:
            areas[index[fid], column.get(code, len(codes)) if code else len(codes)] += n * pixel
    mapped = areas[:, : len(codes)].sum(axis=1)
    for code, k in column.items():
        out[f"area_{column_name(class_names[code])}_m2"] = areas[:, k]
    for code, k in column.items():
        out[f"share_{column_name(class_names[code])}"] = np.divide(
            areas[:, k], mapped, out=np.zeros(len(zones)), where=mapped > 0
        )
    out["mapped_m2"] = mapped
    out["nodata_m2"] = areas[:, len(codes)]
    return out


def table_frame(table: gpd.GeoDataFrame) -> pd.DataFrame:
    """The attribute table without geometry (for CSV)."""
    return pd.DataFrame(table.drop(columns=table.geometry.name))
