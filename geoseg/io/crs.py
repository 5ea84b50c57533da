"""Coordinate reference systems as GIS users know them: by EPSG code where one fits.

Many files carry a CRS that *is* an EPSG CRS in all but name: the NC sample's "unnamed" Lambert
Conformal Conic on GRS 1980 with a null TOWGS84 is EPSG:32119 (NAD83 / North Carolina). Written
as is, QGIS shows it as a custom CRS and GeoParquet gets a BoundCRS; written with the code,
QGIS shows "EPSG:32119 - NAD83 / North Carolina" and GeoParquet gets plain PROJJSON.
"""

from __future__ import annotations

import logging

import numpy as np
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio.crs import CRS

log = logging.getLogger(__name__)


def with_epsg_code(crs: CRS, bounds: tuple[float, float, float, float], tolerance: float) -> CRS:
    """``crs``, or the EPSG CRS it is equivalent to over ``bounds`` (left, bottom, right, top).

    Equivalent means GDAL matches it to the code (rasterio's ``to_epsg``, 70 % confidence) and
    the corners and centre of ``bounds`` land within ``tolerance`` (CRS units) of themselves when
    transformed from one to the other: a code whose datum or projection differs is never
    substituted. A CRS already named by its EPSG code is returned as it is.
    """
    if ProjCRS.from_wkt(crs.to_wkt()).to_epsg(min_confidence=100) is not None:
        return crs
    code = crs.to_epsg()
    if code is None:
        return crs
    candidate = CRS.from_epsg(code)
    left, bottom, right, top = bounds
    x = np.array([left, right, left, right, (left + right) / 2])
    y = np.array([bottom, bottom, top, top, (bottom + top) / 2])
    moved = Transformer.from_crs(crs.to_wkt(), candidate.to_wkt(), always_xy=True).transform(x, y)
    deviation = float(np.max(np.hypot(moved[0] - x, moved[1] - y)))
    if not np.isfinite(deviation) or deviation > tolerance:
        log.debug("CRS close to EPSG:%d but %.3g units off: kept as it is", code, deviation)
        return crs
    return candidate
