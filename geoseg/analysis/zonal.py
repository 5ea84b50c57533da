"""Zonal statistics: area and share of each class inside district / parcel / field polygons.

Streamed over the class map chunk by chunk: each chunk rasterises only the zones whose bounding
box meets it (pixel centres) and counts (zone, class) pairs; the client sums the counts. A class
map that is already in memory (a field photo) is counted by the same :func:`count_in_zones`.
Areas are pixel counts times the pixel area in square metres (px² on a grid in pixel
coordinates). Zones are assumed not to overlap; where they do, the later feature wins the shared
pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray

from geoseg.analysis.instances import instances_per_zone
from geoseg.errors import CatalogError, ConfigError, GridMismatchError
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
    if not grid.same_crs(rasterio.crs.CRS.from_wkt(frame.crs.to_wkt())):
        raise GridMismatchError(
            f"zone layer {path} is in {frame.crs.to_string()}, the class map in "
            f"{grid.crs_name}; reproject the zones (ogr2ogr -t_srs)"
        )
    return frame


def field_layer(path: Path, field_id: str) -> gpd.GeoDataFrame:
    """Field polygons in the class maps' coordinates, each named by its ``field_id`` column."""
    if not path.exists():
        raise ConfigError(
            f"fields layer {path} does not exist: fix 'fields' in the predict_images step"
        )
    frame = gpd.read_file(path)
    if field_id not in frame.columns:
        raise ConfigError(
            f"fields layer {path} has no '{field_id}' column (it has "
            f"{', '.join(map(str, frame.columns))}): set 'field_id' in the predict_images step"
        )
    return frame


ZoneCounts = dict[tuple[int, int], int]


def count_in_zones(
    classes: NDArray[np.integer], transform: Affine, zones: gpd.GeoDataFrame
) -> ZoneCounts:
    """``{(zone index label, class code): pixels}`` of a class map under ``zones``.

    ``transform`` places the array; zones are rasterised on pixel centres, and the zone index
    labels (feature ids, integers >= 0) identify them in the result.
    """
    shapes = [
        (g, int(i) + 1)
        for i, g in zip(zones.index, zones.geometry.values, strict=True)
        if g is not None and not shapely.is_empty(g)
    ]
    if not shapes:
        return {}
    ids = rasterio.features.rasterize(
        shapes, out_shape=classes.shape, transform=transform, fill=0, dtype="int64"
    )
    inside = ids > 0
    values = ids[inside] * 256 + classes[inside].astype(np.int64)
    keys, counts = np.unique(values, return_counts=True)
    return {(int(k) // 256 - 1, int(k) % 256): int(n) for k, n in zip(keys, counts, strict=True)}


def zonal_chunk(job: ZonalJob, chunk: Chunk) -> ZoneCounts:
    """``{(zone fid, class code): pixels}`` inside one chunk."""
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
    return count_in_zones(read_window(job.classes, chunk.core), transform, zones)


def zonal_counts(job: ZonalJob, ex: Executor) -> ZoneCounts:
    """Pixel counts per (zone fid, class) over the whole class map."""
    total: ZoneCounts = {}
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
    ``nodata_m2`` (pixels without); ``_px2`` instead of ``_m2`` on a grid in pixel coordinates.
    """
    pixel = pixel_area_m2(grid)
    unit = "m2" if grid.is_georeferenced else "px2"
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
        out[f"area_{column_name(class_names[code])}_{unit}"] = areas[:, k]
    for code, k in column.items():
        out[f"share_{column_name(class_names[code])}"] = np.divide(
            areas[:, k], mapped, out=np.zeros(len(zones)), where=mapped > 0
        )
    out[f"mapped_{unit}"] = mapped
    out[f"nodata_{unit}"] = areas[:, len(codes)]
    return out


def without_absent_classes(table: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The table without the area and share columns of classes absent from every zone."""
    keep = [c for c in table.columns if not c.startswith(("area_", "share_")) or table[c].any()]
    return table[keep]


def field_statistics(
    classes: NDArray[np.integer],
    grid: Grid,
    fields: gpd.GeoDataFrame,
    class_names: Mapping[int, str],
    plants: gpd.GeoDataFrame,
    counted: Sequence[str],
    pressure: str,
) -> pd.DataFrame:
    """Per field of an in-memory class map: zonal statistics, plants and pressure.

    The columns of :func:`zonal_table`, ``plants_<name>`` for each class name in ``counted``
    (:func:`~geoseg.analysis.instances.instances_per_zone`), and ``weed_pressure``, the share
    of the ``pressure`` class; the fields' attributes are kept, their geometry is not.
    """
    table = zonal_table(fields, count_in_zones(classes, grid.transform, fields), class_names, grid)
    table = table.join(instances_per_zone(plants, fields, counted))
    table["weed_pressure"] = table[f"share_{column_name(pressure)}"]
    return table_frame(table)


def table_frame(table: gpd.GeoDataFrame) -> pd.DataFrame:
    """The attribute table without geometry (for CSV)."""
    return pd.DataFrame(table.drop(columns=table.geometry.name))
