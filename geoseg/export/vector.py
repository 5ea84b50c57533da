"""Vector layers: GeoPackage (streamed, batch by batch), GeoJSON (EPSG:4326), GeoParquet.

Every file is written under a temporary name and renamed into place when complete; files are
never appended to once final. The GeoPackage is written as batches arrive from vectorising; the
other formats are converted from it batch by batch, so no format holds the whole layer in
memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from geopandas.io.arrow import _geopandas_to_arrow

from geoseg.export.atomic import atomic_path

VectorFormat = Literal["gpkg", "geojson", "parquet"]

SUFFIX: dict[str, str] = {"gpkg": ".gpkg", "geojson": ".geojson", "parquet": ".parquet"}

#: Features per batch when converting between formats.
BATCH = 20_000


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


def read_batches(source: Path, layer: str, size: int = BATCH) -> Iterator[gpd.GeoDataFrame]:
    """The layer in batches of ``size`` features (at least one batch, possibly empty)."""
    total = pyogrio.read_info(source, layer=layer)["features"]
    for start in range(0, max(total, 1), size):
        yield pyogrio.read_dataframe(source, layer=layer, skip_features=start, max_features=size)


def _parquet_table(frame: gpd.GeoDataFrame) -> pa.Table:
    """A GeoParquet-ready Arrow table of one batch.

    The per-batch bbox is dropped from the 'geo' metadata (it would describe only the first
    batch); the rest (CRS, encoding, geometry types) is kept.
    """
    table = _geopandas_to_arrow(frame, index=False, geometry_encoding="WKB")
    geo = json.loads(table.schema.metadata[b"geo"])
    for column in geo["columns"].values():
        column.pop("bbox", None)
        column["geometry_types"] = ["Polygon"]
    return table.replace_schema_metadata({**table.schema.metadata, b"geo": json.dumps(geo)})


def convert(source: Path, layer: str, path: Path, fmt: VectorFormat, overwrite: bool) -> None:
    """Write the layer of ``source`` (a GeoPackage) as ``fmt`` at ``path``, batch by batch."""
    with atomic_path(path, overwrite) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for index, frame in enumerate(read_batches(source, layer)):
                if fmt == "geojson":
                    pyogrio.write_dataframe(
                        frame.to_crs(4326), tmp, driver="GeoJSON", append=index > 0
                    )
                elif fmt == "parquet":
                    table = _parquet_table(frame)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                else:
                    pyogrio.write_dataframe(
                        frame, tmp, layer=layer, driver="GPKG", append=index > 0
                    )
        finally:
            if writer is not None:
                writer.close()
