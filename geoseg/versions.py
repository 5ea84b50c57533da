"""Versions of geoseg and the libraries whose behaviour its outputs depend on."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pyproj
import rasterio
import shapely

from geoseg import __version__


def library_versions() -> dict[str, str]:
    """geoseg, GDAL, PROJ, GEOS, torch and the Python libraries (torch is not imported)."""

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {
        "geoseg": __version__,
        "GDAL": rasterio.__gdal_version__,
        "PROJ": pyproj.proj_version_str,
        "GEOS": shapely.geos_version_string,
        "torch": installed("torch"),
        "segmentation-models-pytorch": installed("segmentation-models-pytorch"),
        "rasterio": rasterio.__version__,
        "shapely": shapely.__version__,
        "pyproj": pyproj.__version__,
        "dask": installed("dask"),
        "geopandas": installed("geopandas"),
        "pyogrio": installed("pyogrio"),
    }
