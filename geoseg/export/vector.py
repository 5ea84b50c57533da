"""Vector layers: GeoPackage (streamed, batch by batch), GeoJSON (EPSG:4326), GeoParquet.

Every file is written under a temporary name and renamed into place when complete; files are
never appended to once final.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pyogrio

from geoseg.export.atomic import atomic_path, check_writable

VectorFormat = Literal["gpkg", "geojson", "parquet"]

SUFFIX: dict[str, str] = {"gpkg": ".gpkg", "geojson": ".geojson", "parquet": ".parquet"}


def write_gpkg(
    batches: Iterable[gpd.GeoDataFrame],
    path: Path,
    layer: str,
    empty: gpd.GeoDataFrame,
    overwrite: bool = False,
) -> int:
    """Stream ``batches`` into a new GeoPackage layer; returns the feature count.

    ``empty`` (the schema with a CRS) is written when there are no features, so an empty result
    is still a valid layer.
    """
    count = 0
    with atomic_path(path, overwrite) as tmp:
        for batch in batches:
            pyogrio.write_dataframe(
                batch,
                tmp,
                layer=layer,
                driver="GPKG",
                append=count > 0,
                promote_to_multi=False,
                geometry_type="Polygon" if count == 0 else None,
            )
            count += len(batch)
        if count == 0:
            pyogrio.write_dataframe(empty, tmp, layer=layer, driver="GPKG", geometry_type="Polygon")
    return count


def convert(source: Path, layer: str, path: Path, fmt: VectorFormat, overwrite: bool) -> None:
    """Write the layer of ``source`` (a GeoPackage) as ``fmt`` at ``path``."""
    check_writable(path, overwrite)
    frame = pyogrio.read_dataframe(source, layer=layer)
    with atomic_path(path, overwrite) as tmp:
        if fmt == "geojson":
            pyogrio.write_dataframe(frame.to_crs(4326), tmp, driver="GeoJSON")
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False, geometry_encoding="WKB", write_covering_bbox=True)
        else:
            pyogrio.write_dataframe(frame, tmp, layer=layer, driver="GPKG")
