"""Areas and perimeters in metres, whatever the CRS's unit (metres, feet, degrees).

On a grid in pixel coordinates (no CRS) they are in pixels (px², px) instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Geod
from shapely.geometry.base import BaseGeometry

from geoseg.types import Grid


def measure(
    geometries: Sequence[BaseGeometry], grid: Grid
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(area_m2, perimeter_m)`` of each geometry (holes count in the perimeter)."""
    geoms = np.array(geometries, dtype=object)
    factor = grid.metres_per_unit
    if factor is not None:
        return shapely.area(geoms) * factor**2, shapely.length(geoms) * factor
    crs = grid.require_crs("measuring in metres")
    geod = ProjCRS.from_user_input(crs.to_wkt()).get_geod() or Geod(ellps="WGS84")
    pairs = [geod.geometry_area_perimeter(g) for g in geoms]
    area = np.array([abs(a) for a, _ in pairs], dtype=np.float64)
    perimeter = np.array([p for _, p in pairs], dtype=np.float64)
    return area, perimeter


def pixel_area_m2(grid: Grid) -> float:
    """Area of one pixel in square metres (at the scene centre for geographic CRSs; px² without)."""
    factor = grid.metres_per_unit
    if factor is not None:
        return grid.pixel_area * factor**2
    centre = grid.transform @ (grid.width / 2, grid.height / 2)
    pixel = shapely.box(
        centre[0], centre[1], centre[0] + grid.pixel_size[0], centre[1] + grid.pixel_size[1]
    )
    area, _ = measure([pixel], grid)
    return float(area[0])
