"""Class maps as labelling tools see them: regions with outlines, and outlines back to pixels.

A *region* is one 4-connected patch of one class. Its outline is exact: made of pixel edges, in
pixel coordinates (``x`` = column, ``y`` = row, the image's top-left corner at 0, 0), holes kept.
Tools that cannot draw holes get the region's exterior, and every region inside a hole is
exported as its own shape drawn on top: painting the exteriors from the largest to the smallest
(:func:`paint`) gives back the class map exactly, because a shape inside another's hole always
has the smaller exterior. Background regions (the class left unannotated) are exported only
where they are holes of another region.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from scipy import ndimage

#: 4-connectivity: regions touching only at a corner are two regions (as GDAL polygonizes).
FOUR = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True, slots=True)
class Region:
    """One 4-connected patch of one class: its outline, pixel count and mean confidence."""

    code: int
    polygon: shapely.Polygon  # pixel coordinates, exact pixel edges, holes kept
    pixels: int
    score: float | None = None  # mean confidence of its pixels

    @property
    def exterior(self) -> shapely.Polygon:
        """The outline without its holes."""
        return shapely.Polygon(self.polygon.exterior)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(x, y, width, height)`` in pixels (COCO's box)."""
        x0, y0, x1, y1 = self.polygon.bounds
        return (x0, y0, x1 - x0, y1 - y0)


def regions(
    classes: NDArray[np.integer],
    confidence: NDArray[np.floating] | None = None,
    background: int | None = None,
) -> list[Region]:
    """The regions of a class map, in painting order (see the module docstring).

    Code 0 (no data) is never a region. With ``background``, that class's regions are kept only
    where they fill another region's hole. Each region's score is the mean of ``confidence``
    over its pixels (``None`` without it).
    """
    labels = np.zeros(classes.shape, dtype=np.int32)
    codes: list[int] = [0]
    for code in (int(c) for c in np.unique(classes) if c != 0):
        found, count = ndimage.label(classes == code, structure=FOUR)
        labels[found > 0] = found[found > 0] + len(codes) - 1
        codes += [code] * count
    counts = np.bincount(labels.ravel(), minlength=len(codes))
    sums = (
        np.bincount(
            labels.ravel(), weights=confidence.ravel().astype(np.float64), minlength=len(codes)
        )
        if confidence is not None
        else None
    )
    found_regions = []
    for geometry, value in rasterio.features.shapes(
        labels, mask=labels > 0, connectivity=4, transform=Affine.identity()
    ):
        index = int(value)
        score = float(sums[index] / counts[index]) if sums is not None else None
        polygon = shapely.geometry.shape(geometry)
        found_regions.append(Region(codes[index], polygon, int(counts[index]), score))
    if background is not None:
        found_regions = _only_enclosed(found_regions, background)
    return sorted(found_regions, key=lambda r: -r.exterior.area)


def _only_enclosed(found: Sequence[Region], background: int) -> list[Region]:
    """``found`` without the background regions that are not a hole of another region."""
    holes = shapely.STRtree(
        [
            shapely.Polygon(ring)
            for r in found
            if r.code != background
            for ring in r.polygon.interiors
        ]
    )
    kept = []
    for region in found:
        if region.code != background:
            kept.append(region)
            continue
        inside = holes.query(region.exterior, predicate="covered_by")
        if len(inside):
            kept.append(region)
    return kept


def paint(
    shapes: Iterable[tuple[shapely.Polygon, int]],
    shape: tuple[int, int],
    fill: int = 0,
) -> NDArray[np.uint8]:
    """Burn ``(polygon, code)`` pairs into a class map of ``shape``, later ones on top.

    Pixel centres inside a polygon take its code (``all_touched`` off), so exact pixel-edge
    outlines give back exactly their pixels. Pass the shapes largest exterior first (as
    :func:`regions` orders them) for outlines without holes to nest correctly.
    """
    out = np.full(shape, fill, dtype=np.uint8)
    for polygon, code in shapes:  # one at a time: rasterize would merge overlaps arbitrarily
        if polygon.is_empty:
            continue
        rasterio.features.rasterize(
            [(polygon, code)], out=out, transform=Affine.identity(), all_touched=False
        )
    return out
