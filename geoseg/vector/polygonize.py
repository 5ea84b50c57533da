"""Second chunk pass: region-id image -> polygons; seam pieces merged; then map coordinates.

Polygons are traced by ``rasterio.features.shapes`` with 4-connectivity (valid rings, GUIDE §4)
in integer pixel coordinates of the whole image (shifted by ``TRACE_ORIGIN``). Pieces of a
region that crosses a seam are merged in those exact integer coordinates, and only the finished
region is mapped with the global affine (:func:`to_map`). Merging after mapping would be exact
for north-up grids only: under a rotated or sheared affine, points that are collinear in pixel
space are no longer exactly collinear, so pieces would not dissolve into one polygon.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import shapes
from shapely.geometry.base import BaseGeometry

from geoseg.tiling.grid import Chunk
from geoseg.vector.components import label_classes

TRACE_ORIGIN = 1


@dataclass(frozen=True, slots=True)
class Piece:
    """A region's polygon(s) inside one chunk, with that chunk's share of its confidence sum."""

    region: int
    geometry: BaseGeometry
    confidence_sum: float
    pixels: int


def region_image(
    classes: NDArray[np.uint8], local_to_region: NDArray[np.int64]
) -> NDArray[np.int32]:
    """Region id per pixel (0 = nodata), from the chunk's class map and its label->region map."""
    labels, _ = label_classes(classes)
    return local_to_region[labels].astype(np.int32)


def to_map(geometry: Any, transform: Affine) -> Any:
    """Pixel (col, row) coordinates -> map coordinates with ``transform`` (one or an array)."""
    t = transform
    return shapely.transform(
        geometry,
        lambda xy: np.column_stack(
            [t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f]
        ),
    )


@dataclass(frozen=True, slots=True)
class Outlines:
    """Polygons traced by GDAL as ragged arrays: one value per polygon, rings of integer corners.

    Cheap to store and to pickle (four arrays), and turned into shapely polygons in one call.
    """

    values: NDArray[np.int64]
    coords: NDArray[np.float64]
    ring_offsets: NDArray[np.int64]
    polygon_offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.values)

    def polygons(self) -> NDArray[Any]:
        """Shapely polygons, built in bulk (``from_ragged_array``)."""
        if not len(self.values):
            return np.zeros(0, dtype=object)
        return np.asarray(
            shapely.from_ragged_array(
                shapely.GeometryType.POLYGON,
                self.coords,
                (self.ring_offsets, self.polygon_offsets),
            )
        )


def trace_outlines(image: NDArray[np.int32], offset: Affine) -> Outlines:
    """Outlines of the 4-connected areas of equal non-zero value in ``image``, traced by GDAL.

    Coordinates are collected into one array: building geometries one GeoJSON dict at a time
    costs several times more than GDAL's tracing itself.
    """
    coords: list[tuple[float, float]] = []
    ring_ends: list[int] = []
    rings_per_polygon: list[int] = []
    values: list[int] = []
    for geojson, value in shapes(image, mask=image > 0, connectivity=4, transform=offset):
        rings = geojson["coordinates"]
        for ring in rings:
            coords.extend(ring)
            ring_ends.append(len(coords))
        rings_per_polygon.append(len(rings))
        values.append(int(value))
    return Outlines(
        np.asarray(values, dtype=np.int64),
        np.asarray(coords, dtype=np.float64).reshape(-1, 2),
        np.concatenate([[0], ring_ends]).astype(np.int64),
        np.concatenate([[0], np.cumsum(rings_per_polygon)]).astype(np.int64),
    )


def trace(regions: NDArray[np.int32], offset: Affine) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """Values and shapely polygons of the areas of ``regions`` (see :func:`trace_outlines`)."""
    outlines = trace_outlines(regions, offset)
    return outlines.values, outlines.polygons()


def trace_offset(chunk: Chunk) -> Affine:
    """The transform tracing a chunk's array in whole-image pixels shifted by ``TRACE_ORIGIN``.

    The top-left chunk's transform is then not the identity (rasterio warns about identity
    transforms, and silencing warnings is not thread-safe). Integer coordinates stay exact.
    """
    return Affine.translation(chunk.core.col + TRACE_ORIGIN, chunk.core.row + TRACE_ORIGIN)


def traced_to_map(transform: Affine) -> Affine:
    """The affine from traced coordinates (pixels + ``TRACE_ORIGIN``) to map coordinates."""
    return transform @ Affine.translation(-TRACE_ORIGIN, -TRACE_ORIGIN)


def chunk_pieces(
    regions: NDArray[np.int32],
    confidence: NDArray[np.float32],
    chunk: Chunk,
    simplify_tolerance: float = 0.0,
) -> list[Piece]:
    """Polygons of every region present in the chunk, in traced pixel coordinates, by region.

    ``simplify_tolerance`` is in pixels.
    """
    values, polygons = trace(regions, trace_offset(chunk))
    if len(values) == 0:
        return []
    flat = regions.ravel()
    size = int(values.max()) + 1
    weights = np.nan_to_num(confidence.ravel())
    sums = np.asarray(np.bincount(flat, weights=weights, minlength=size), dtype=np.float64)
    pixels = np.bincount(flat, minlength=size).astype(np.int64)
    return group_pieces(values, polygons, sums, pixels, simplify_tolerance)


def group_pieces(
    values: NDArray[np.int64],
    polygons: NDArray[Any],
    sums: NDArray[np.float64],
    pixels: NDArray[np.int64],
    simplify_tolerance: float = 0.0,
) -> list[Piece]:
    """One piece per region: its polygons (region ``values``), confidence sum and pixel count.

    ``sums`` and ``pixels`` are indexed by region id; a region's polygons keep their traced
    order and become a MultiPolygon when there are several.
    """
    if simplify_tolerance > 0:
        # A vertex at every pixel corner: neighbours then share identical vertices along their
        # common edges, which coverage simplification requires (a valid coverage).
        polygons = shapely.segmentize(polygons, 1.0)
    order = np.argsort(values, kind="stable")
    ids, starts = np.unique(values[order], return_index=True)
    groups = np.split(polygons[order], starts[1:])
    geoms = {
        int(rid): group[0] if len(group) == 1 else shapely.multipolygons(group)
        for rid, group in zip(ids, groups, strict=True)
    }
    if simplify_tolerance > 0:
        geoms = simplify_coverage(geoms, simplify_tolerance)
    return [Piece(int(rid), geoms[int(rid)], float(sums[rid]), int(pixels[rid])) for rid in ids]


def simplify_coverage(geoms: dict[int, BaseGeometry], tolerance: float) -> dict[int, BaseGeometry]:
    """Simplify a chunk's polygons as one coverage with its outer boundary held fixed.

    Neighbours keep sharing their edges, and the chunk's edges stay exact, so pieces of regions
    crossing seams still meet exactly.
    """
    keys = list(geoms)
    simplified = shapely.coverage_simplify(
        np.array([geoms[k] for k in keys], dtype=object), tolerance, simplify_boundary=False
    )
    return {
        k: shapely.make_valid(g) if not g.is_valid else g
        for k, g in zip(keys, simplified, strict=True)
    }


def merge_group(group: Sequence[Piece]) -> Piece:
    """Union the pieces of one region (from different chunks) into one polygon."""
    return Piece(
        group[0].region,
        shapely.union_all([p.geometry for p in group]),
        sum(p.confidence_sum for p in group),
        sum(p.pixels for p in group),
    )


class SeamMerger:
    """Collects pieces of regions that span chunks; releases a region once all its pieces came.

    Memory holds only regions still waiting for a chunk, not the whole layer: in row-major
    chunk order that is about one row of chunks' seam-crossing regions.
    """

    def __init__(self, chunk_count: NDArray[np.int64]) -> None:
        self.chunk_count = chunk_count
        self.waiting: dict[int, list[Piece]] = {}

    def add(self, piece: Piece) -> Piece | None:
        """Take one chunk's piece; return the merged region when it is complete."""
        group = self.waiting.setdefault(piece.region, [])
        group.append(piece)
        if len(group) < self.chunk_count[piece.region]:
            return None
        del self.waiting[piece.region]
        return merge_group(group)
