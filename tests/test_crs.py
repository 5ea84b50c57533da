"""Outputs carry the EPSG code of a CRS that is one in all but name (geoseg.crs)."""

from __future__ import annotations

import rasterio
from rasterio.crs import CRS

from geoseg.crs import with_epsg_code
from tests.conftest import REPO

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"


def _sample() -> tuple[CRS, tuple[float, float, float, float]]:
    with rasterio.open(SAMPLE) as ds:
        return ds.crs, tuple(ds.bounds)


def test_the_unnamed_nc_lambert_conformal_conic_is_epsg_32119() -> None:
    crs, bounds = _sample()
    assert "unnamed" in crs.to_wkt() and "TOWGS84" in crs.to_wkt()
    coded = with_epsg_code(crs, bounds, tolerance=0.285)
    assert coded.to_string() == "EPSG:32119"
    assert coded.to_wkt().startswith('PROJCS["NAD83 / North Carolina"')


def test_a_crs_that_only_resembles_a_code_keeps_its_own_definition() -> None:
    crs, bounds = _sample()
    easting = 'PARAMETER["false_easting",609601.22]'
    assert easting in crs.to_wkt()
    shifted = CRS.from_wkt(crs.to_wkt().replace(easting, 'PARAMETER["false_easting",609611.22]'))
    kept = with_epsg_code(shifted, bounds, tolerance=0.285)
    assert kept == shifted and "unnamed" in kept.to_wkt(), "10 m off: not EPSG:32119"
    custom = CRS.from_proj4("+proj=ortho +lat_0=35 +lon_0=-78.6 +datum=WGS84 +units=m")
    assert with_epsg_code(custom, (0, 0, 1000, 1000), 0.01) == custom, "no code fits"
    utm = CRS.from_epsg(32633)
    assert with_epsg_code(utm, (3e5, 5.8e6, 3.1e5, 5.81e6), 0.1) is utm, "already a code"
