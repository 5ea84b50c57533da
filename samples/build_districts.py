"""Build ``nc_districts.gpkg``: six illustrative planning districts over the NC sample scene.

They are a 3 x 2 grid of rectangles over the scene's extent in its CRS (NAD83 / North Carolina,
EPSG:32119), named "District 1" .. "District 6". They are NOT real administrative boundaries: they
exist so that ``workflows/urban-nc.yaml`` can show zonal statistics on real imagery.

    python samples/build_districts.py
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely

HERE = Path(__file__).parent
#: The NC Landsat 7 scene's bounds (left, bottom, right, top) in EPSG:32119.
BOUNDS = (630534.0, 219564.0, 644470.5, 228114.0)


def main() -> None:
    """Write the district layer next to this script."""
    left, bottom, right, top = BOUNDS
    width, height = (right - left) / 3, (top - bottom) / 2
    boxes = [
        shapely.box(
            left + c * width, top - (r + 1) * height, left + (c + 1) * width, top - r * height
        )
        for r in range(2)
        for c in range(3)
    ]
    frame = gpd.GeoDataFrame(
        {"district": [f"District {i + 1}" for i in range(6)]}, geometry=boxes, crs="EPSG:32119"
    )
    frame.to_file(HERE / "nc_districts.gpkg", layer="districts", engine="pyogrio")


if __name__ == "__main__":
    main()
