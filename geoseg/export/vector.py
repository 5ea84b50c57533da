"""Vector layers in GeoPackage, GeoJSON (EPSG:4326), GeoParquet, FlatGeobuf and Shapefile.

One attribute schema everywhere. The GeoPackage is written as batches arrive from vectorising;
the other formats are converted from it batch by batch (GeoJSON, GeoParquet) or as one GDAL
Arrow stream (FlatGeobuf, Shapefile), so no format holds the whole layer in memory. Every file
is written under a temporary name (a Shapefile's several files in a temporary folder) and moved
into place when complete; files are never appended to once final.

Shapefile field names are limited to 10 characters; :data:`SHAPEFILE_NAMES` maps the long names
explicitly (``perimeter_m`` -> ``perim_m``, ``mean_confidence`` -> ``mean_conf``, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
from geopandas.io.arrow import _geopandas_to_arrow

from geoseg.export.atomic import atomic_path, check_writable

VectorFormat = Literal["gpkg", "geojson", "parquet", "fgb", "shp"]

SUFFIX: dict[str, str] = {
    "gpkg": ".gpkg",
    "geojson": ".geojson",
    "parquet": ".parquet",
    "fgb": ".fgb",
    "shp": ".shp",
}

#: A Shapefile's member files besides ``.shp``.
SHAPEFILE_SIDECARS = (".shx", ".dbf", ".prj", ".cpg")

#: Field names longer than a Shapefile allows (10 characters), and what they become there.
SHAPEFILE_NAMES: dict[str, str] = {
    "perimeter_m": "perim_m",
    "perimeter_px": "perim_px",
    "mean_confidence": "mean_conf",
    "instance_id": "inst_id",
    "weed_fraction": "weed_frac",
    "crop_fraction": "crop_frac",
    "soil_fraction": "soil_frac",
    "bbox_width_m": "bbox_w_m",
    "bbox_height_m": "bbox_h_m",
}


#: GeoPackage 1.2: what GDAL < 3.7 (still in many QGIS / ArcGIS installs) reads without a warning.
GPKG_OPTIONS: dict[str, str] = {"VERSION": "1.2"}


def shapefile_name(field: str) -> str:
    """The Shapefile name of ``field`` (mapped explicitly; never silently truncated)."""
    name = SHAPEFILE_NAMES.get(field, field)
    if len(name) > 10:
        raise ValueError(f"field '{field}' needs an entry in SHAPEFILE_NAMES (10 characters max)")
    return name


def members(path: Path) -> list[Path]:
    """The files that make up a vector output (a Shapefile has several)."""
    if path.suffix == ".shp":
        return [path, *(path.with_suffix(s) for s in SHAPEFILE_SIDECARS)]
    return [path]


#: Features per batch when converting between formats.
BATCH = 20_000


# Layers in pixel coordinates have no CRS on purpose, and batches appended to a layer carry none
# (the layer has it): pyogrio's warning about a missing CRS is noise here. A filter set once,
# not ``warnings.catch_warnings`` around each write, which is not thread-safe and COGs are
# written on another thread meanwhile.
warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)


def _write_frame(
    frame: gpd.GeoDataFrame,
    path: Path,
    layer: str,
    new_file: bool,
    new_layer: bool,
    metadata: Mapping[str, str] | None,
) -> None:
    """Write one frame into a GeoPackage: a new file, a new layer, or appended to a layer.

    A new layer is ``Polygon``, or ``MultiPolygon`` when the frame holds any (single polygons
    are then promoted, so the layer has one geometry type). Frames without a CRS (pixel
    coordinates) are written without one; the layer ``metadata`` says so.
    """
    multi = bool((frame.geom_type == "MultiPolygon").any())
    if not new_layer and frame.crs is not None:
        # The layer already has its CRS. Without one on the batch, pyogrio does not identify it
        # again (pyproj's to_epsg: 60 ms for an unnamed CRS, more than writing the batch).
        name = frame.geometry.name
        plain = gpd.GeoSeries(frame.geometry.to_numpy(), index=frame.index, name=name)
        frame = gpd.GeoDataFrame(frame.drop(columns=name), geometry=plain)
    pyogrio.write_dataframe(
        frame,
        path,
        layer=layer,
        driver="GPKG",
        append=not new_file,
        promote_to_multi=multi,
        geometry_type=("MultiPolygon" if multi else "Polygon") if new_layer else None,
        layer_metadata=dict(metadata) if new_layer and metadata else None,
        dataset_options=GPKG_OPTIONS if new_file else None,
    )


def write_gpkg(
    batches: Iterable[gpd.GeoDataFrame],
    path: Path,
    layer: str,
    empty: gpd.GeoDataFrame,
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Stream ``batches`` into a new GeoPackage layer; returns the feature count.

    ``empty`` (the schema with a CRS) is written when there are no features, so an empty result
    is still a valid layer.
    """
    count = 0
    with atomic_path(path, overwrite) as tmp:
        for batch in batches:
            _write_frame(batch, tmp, layer, count == 0, count == 0, metadata)
            count += len(batch)
        if count == 0:
            _write_frame(empty, tmp, layer, True, True, metadata)
    return count


def write_layers(
    path: Path, layers: Mapping[str, gpd.GeoDataFrame], metadata: Mapping[str, str] | None = None
) -> None:
    """Several whole layers into one new GeoPackage (each layer gets ``metadata``)."""
    with atomic_path(path, overwrite=True) as tmp:
        for index, (layer, frame) in enumerate(layers.items()):
            _write_frame(frame, tmp, layer, index == 0, True, metadata)


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


def _stream(source: Path, layer: str, path: Path, driver: str, rename: bool) -> None:
    """Copy a layer through one GDAL Arrow stream (batches, never the whole layer)."""
    with pyogrio.open_arrow(source, layer=layer, use_pyarrow=True, batch_size=BATCH) as (
        meta,
        reader,
    ):
        if rename:
            schema = reader.schema
            names = [shapefile_name(n) if n in meta["fields"] else n for n in schema.names]
            renamed = pa.schema(
                [f.with_name(n) for f, n in zip(schema, names, strict=True)], schema.metadata
            )
            reader = pa.RecordBatchReader.from_batches(
                renamed, (b.rename_columns(names) for b in reader)
            )
        pyogrio.write_arrow(
            reader,
            path,
            driver=driver,
            geometry_name=meta["geometry_name"] or "geometry",
            geometry_type=meta["geometry_type"],
            crs=meta["crs"],
            layer=layer if driver == "FlatGeobuf" else None,
        )


def convert(source: Path, layer: str, path: Path, fmt: VectorFormat, overwrite: bool) -> None:
    """Write the layer of ``source`` (a GeoPackage) as ``fmt`` at ``path``."""
    if fmt == "shp":
        for member in members(path):
            check_writable(member, overwrite)
        folder = Path(tempfile.mkdtemp(prefix=f".{path.stem}.partial-", dir=path.parent))
        try:
            _stream(source, layer, folder / path.name, "ESRI Shapefile", rename=True)
            for member in members(folder / path.name):
                if member.exists():
                    os.replace(member, path.with_suffix(member.suffix))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if fmt == "fgb":
        with atomic_path(path, overwrite) as tmp:
            _stream(source, layer, tmp, "FlatGeobuf", rename=False)
        return
    with atomic_path(path, overwrite) as tmp:
        writer: pq.ParquetWriter | None = None
        try:
            for index, frame in enumerate(read_batches(source, layer)):
                if fmt == "geojson":
                    pyogrio.write_dataframe(
                        frame.to_crs(4326), tmp, layer=layer, driver="GeoJSON", append=index > 0
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
