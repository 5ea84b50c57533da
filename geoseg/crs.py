"""Coordinate reference systems as GIS users know them: by EPSG code where one fits.

Many files carry a CRS that *is* an EPSG CRS in all but name: the NC sample's "unnamed" Lambert
Conformal Conic on GRS 1980 with a null TOWGS84 is EPSG:32119 (NAD83 / North Carolina). Written
as is, QGIS shows it as a custom CRS and GeoParquet gets a BoundCRS; written with the code,
QGIS shows "EPSG:32119 - NAD83 / North Carolina" and GeoParquet gets plain PROJJSON.

Two files of one scene may then name different codes for what GDAL calls the same CRS (the NC
labels say EPSG:3358, NAD83(HARN) / North Carolina): grids are compared by where their CRSs put
the scene (:func:`same_place`), not by name.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from pyproj.exceptions import ProjError
from rasterio.crs import CRS

log = logging.getLogger(__name__)

#: left, bottom, right, top
Bounds = tuple[float, float, float, float]


def same_place(a: CRS, b: CRS, bounds: Bounds, tolerance: float) -> bool:
    """Whether ``a`` and ``b`` are the same CRS for the pixels within ``bounds``.

    The corners and centre of ``bounds`` (in ``a``) transformed from ``a`` to ``b`` must land
    within ``tolerance`` (``a``'s units) of themselves; a pair PROJ cannot transform is not the
    same. Cached: label readers ask for every window.
    """
    return _same_place(a.to_wkt(), b.to_wkt(), bounds, tolerance)


@functools.lru_cache(maxsize=256)
def _same_place(a: str, b: str, bounds: Bounds, tolerance: float) -> bool:
    left, bottom, right, top = bounds
    x = np.array([left, right, left, right, (left + right) / 2])
    y = np.array([bottom, bottom, top, top, (bottom + top) / 2])
    try:
        moved = Transformer.from_crs(a, b, always_xy=True).transform(x, y)
    except ProjError:
        return False
    deviation = float(np.max(np.hypot(moved[0] - x, moved[1] - y)))
    return bool(np.isfinite(deviation) and deviation <= tolerance)


def with_epsg_code(crs: CRS, bounds: Bounds, tolerance: float) -> CRS:
    """``crs``, or the EPSG CRS it is equivalent to over ``bounds`` (left, bottom, right, top).

    Equivalent means GDAL matches it to the code (rasterio's ``to_epsg``, 70 % confidence) and
    :func:`same_place` holds: a code whose datum or projection moves the scene is never
    substituted. A CRS already named by its EPSG code is returned as it is.
    """
    if ProjCRS.from_wkt(crs.to_wkt()).to_epsg(min_confidence=100) is not None:
        return crs
    code = crs.to_epsg()
    if code is None:
        return crs
    candidate = CRS.from_epsg(code)
    if not same_place(crs, candidate, bounds, tolerance):
        log.debug("CRS close to EPSG:%d but moves the scene: kept as it is", code)
        return crs
    return candidate
