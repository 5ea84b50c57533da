"""A GeoPackage review layer for GIS annotators: the class map as a polygon coverage in QGIS.

``review.gpkg``, layer ``review``: every region of every item (:func:`~geoseg.annotation.
regions.regions` with holes, every class including the background) as one polygon with
``item_id, class_id, class_name, confidence`` (the region's mean), ``pixels``,
``review_status`` (``todo`` when written; ``accepted``, ``corrected`` or ``rejected`` once
reviewed) and ``priority`` (the item's, see :mod:`geoseg.annotation.priority`).

The polygons of an item are a true *coverage*: every valid pixel is covered exactly once, and
neighbours share their edges vertex for vertex (a vertex of one polygon lying on another's edge
is inserted into that edge, :func:`node_coverage`), so QGIS's topological editing moves both
sides of a boundary at once. Chips of one scene are noded together on the scene's pixel grid, so
the whole layer of a scene is one coverage.

Coordinates: a chip of a georeferenced scene (``record.scene`` and ``item.window`` set) is in
the scene's CRS, through the chip's affine (the scene's transform times the translation by the
window's offset); photos (no scene) stay in their own image pixel coordinates (x = column,
y = row) with no CRS, and the layer's metadata (``GEOSEG_COORDINATES`` and its description)
says so, as ``predict_images`` does for its layers.

Reading inverts this: each feature's class name is mapped by the record (an unknown one is an
error naming the file, the feature id and the label), its coordinates go back to its item's
pixel grid and the polygons are painted at pixel centres, largest exterior first (shapes drawn
inside others land on top); pixels no polygon covers get the record's fill (the background
class) and the item's no-data pixels are restored. A polygon whose ``review_status`` is
``rejected`` (the pre-annotation is wrong there and nobody corrected it) is painted as 0:
unlabelled, ignored in training and metrics. Unedited, the round trip is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Final
from xml.etree import ElementTree as ET

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.errors import CRSError

from geoseg.annotation.record import (
    ExportRecord,
    ItemRecord,
    Prediction,
    SceneRecord,
    paint_largest_first,
)
from geoseg.annotation.regions import regions
from geoseg.errors import AnnotationError
from geoseg.export.style import QGIS_VERSION, style_path, vector_qml, write_style
from geoseg.export.vector import write_layers
from geoseg.types import PIXEL_NOTE

#: The review layer's file (in the export folder) and layer name.
REVIEW_FILE: Final = "review.gpkg"
REVIEW_LAYER: Final = "review"

#: What a reviewer sets on each polygon, and the outline colour QGIS draws it with.
REVIEW_STATUS: dict[str, str] = {
    "todo": "#9e9e9e",  # not looked at yet
    "accepted": "#1a9641",  # the pre-annotation is right
    "corrected": "#2c7bb6",  # edited into the right shape and class
    "rejected": "#d7191c",  # wrong and not corrected: imported as unlabelled (0)
}

#: The layer's fields, in order, and their pandas types.
FIELDS: dict[str, str] = {
    "item_id": "object",
    "class_id": "int32",
    "class_name": "object",
    "confidence": "float64",
    "pixels": "int64",
    "review_status": "object",
    "priority": "float64",
}


def item_transform(record: ExportRecord, item: ItemRecord) -> Affine:
    """The affine from ``item``'s pixel coordinates to the layer's coordinates.

    A chip of a scene: the scene's transform times the translation by the chip's window offset.
    A photo (no scene): the identity (image pixel coordinates).
    """
    if record.scene is None:
        return Affine.identity()
    if item.window is None:
        raise AnnotationError(
            f"item '{item.id}' has no window on the exported scene: every item of a scene export "
            "is a chip with its window recorded (geoseg.annotation.chips)"
        )
    row, col = item.window[0], item.window[1]
    return scene_transform(record.scene) @ Affine.translation(col, row)


def scene_transform(scene: SceneRecord) -> Affine:
    """The scene's affine (``SceneRecord.transform`` holds ``a, b, c, d, e, f``)."""
    return Affine(*scene.transform)


def layer_crs(record: ExportRecord) -> CRS | None:
    """The layer's CRS: the scene's, or none (pixel coordinates)."""
    if record.scene is None or record.scene.crs_wkt is None:
        return None
    try:
        return CRS.from_wkt(record.scene.crs_wkt)
    except CRSError as exc:
        raise AnnotationError(f"the record's scene CRS is not valid WKT: {exc}") from exc


def coordinates_note(record: ExportRecord) -> str:
    """What the layer's coordinates are, for its metadata."""
    crs = layer_crs(record)
    if record.scene is None:
        return PIXEL_NOTE
    if crs is None:
        return f"the scene's {PIXEL_NOTE}; chips placed by their windows"
    name = crs.to_string() if crs.to_epsg() else crs.to_wkt()[:80]
    return f"{name}: chips placed on the scene's grid by their recorded windows"


def node_coverage(polygons: Sequence[shapely.Polygon]) -> list[shapely.Polygon]:
    """``polygons`` with a vertex wherever another polygon's vertex lies on one of their edges.

    GDAL's polygonizer draws a long edge as one segment even where the neighbours on its other
    side change (a T junction); such a coverage is not edge-matched (``shapely.
    coverage_is_valid`` refuses it) and topological editing would tear it apart there. The
    polygons must have integer, axis-parallel edges (pixel edges, as :func:`~geoseg.annotation.
    regions.regions` makes them); inserting the junction vertices keeps their shapes exactly.
    """
    if not polygons:
        return []
    coords = shapely.get_coordinates(list(polygons))
    if not np.array_equal(coords, np.round(coords)):
        raise ValueError("node_coverage needs polygons with integer (pixel-edge) vertices")
    origin = coords.astype(np.int64).min(axis=0)
    points = coords.astype(np.int64) - origin
    span = int(points.max()) + 1
    by_row = np.unique(points[:, 1] * span + points[:, 0])  # (y, x): on horizontal edges
    by_col = np.unique(points[:, 0] * span + points[:, 1])  # (x, y): on vertical edges
    noded = []
    for polygon in polygons:
        rings = [
            (
                _noded_ring(np.asarray(r.coords).astype(np.int64) - origin, by_row, by_col, span)
                + origin
            ).astype(np.float64)
            for r in (polygon.exterior, *polygon.interiors)
        ]
        noded.append(shapely.Polygon(rings[0], rings[1:]))
    return noded


def _noded_ring(
    ring: NDArray[np.int64], by_row: NDArray[np.int64], by_col: NDArray[np.int64], span: int
) -> NDArray[np.int64]:
    """A closed ring with the points of ``by_row``/``by_col`` lying inside its edges inserted."""
    start, end = ring[:-1], ring[1:]
    horizontal = start[:, 1] == end[:, 1]
    if not (horizontal | (start[:, 0] == end[:, 0])).all():
        raise ValueError("node_coverage needs polygons with axis-parallel (pixel) edges")
    low, high = np.minimum(start, end), np.maximum(start, end)
    first = np.where(
        horizontal,
        np.searchsorted(by_row, low[:, 1] * span + low[:, 0], side="right"),
        np.searchsorted(by_col, low[:, 0] * span + low[:, 1], side="right"),
    )
    last = np.where(
        horizontal,
        np.searchsorted(by_row, high[:, 1] * span + high[:, 0], side="left"),
        np.searchsorted(by_col, high[:, 0] * span + high[:, 1], side="left"),
    )
    if not (last > first).any():
        return ring
    positions: list[int] = []
    inserted: list[NDArray[np.int64]] = []
    for index in np.flatnonzero(last > first):
        lo, hi = int(first[index]), int(last[index])
        if horizontal[index]:
            found = np.stack([by_row[lo:hi] % span, by_row[lo:hi] // span], axis=1)
            backwards = start[index, 0] > end[index, 0]
        else:
            found = np.stack([by_col[lo:hi] // span, by_col[lo:hi] % span], axis=1)
            backwards = start[index, 1] > end[index, 1]
        inserted.append(found[::-1] if backwards else found)
        positions += [int(index) + 1] * (hi - lo)
    return np.insert(ring, positions, np.concatenate(inserted), axis=0)


def _apply(transform: Affine, geometries: Sequence[shapely.Polygon]) -> list[shapely.Polygon]:
    """``geometries`` with ``transform`` applied to every coordinate."""
    if transform.is_identity:
        return list(geometries)
    a, b, c, d, e, f = transform[:6]

    def apply(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return list(shapely.transform(np.asarray(geometries, dtype=object), apply))


def _translated(polygon: shapely.Polygon, offset: tuple[int, int]) -> shapely.Polygon:
    """``polygon`` moved by ``(dx, dy)`` (exact for integer coordinates)."""
    if offset == (0, 0):
        return polygon
    moved: shapely.Polygon = shapely.transform(polygon, lambda xy: xy + np.asarray(offset))
    return moved


def review_qml(record: ExportRecord) -> bytes:
    """The layer's QGIS style: fill by ``class_name``, outline colour by ``review_status``.

    geoseg's categorised class style (:func:`~geoseg.export.style.vector_qml`, the record's
    colours, half transparent so the image shows through) keyed on the class name, with each
    symbol's outline colour data-defined by the review status (:data:`REVIEW_STATUS`), and
    value-map widgets so reviewers pick the status and class from lists.
    """
    styles = record.styles
    renderer = ET.fromstring(vector_qml(styles, "class_name")).find("renderer-v2")
    if renderer is None:  # pragma: no cover - vector_qml always writes one
        raise AssertionError("vector_qml wrote no renderer")
    for category, style in zip(renderer.iter("category"), styles, strict=True):
        category.set("value", style.name)
    cases = " ".join(f"WHEN '{s}' THEN '{c}'" for s, c in REVIEW_STATUS.items())
    outline = f"CASE \"review_status\" {cases} ELSE '{REVIEW_STATUS['todo']}' END"
    for symbol in renderer.iter("symbol"):
        symbol.set("alpha", "0.5")
        for layer in symbol.iter("layer"):
            for option in layer.iter("Option"):
                if option.get("name") == "outline_width":
                    option.set("value", "0.4")
            _data_defined(layer, {"outlineColor": outline})
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology|Fields|Forms")
    root.append(renderer)
    fields = ET.SubElement(root, "fieldConfiguration")
    _value_map(fields, "review_status", list(REVIEW_STATUS))
    _value_map(fields, "class_name", [s.name for s in styles])
    defaults = ET.SubElement(root, "defaults")
    ET.SubElement(
        defaults, "default", field="review_status", expression="'todo'", applyOnUpdate="0"
    )
    ET.indent(root)
    return b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root)


def _data_defined(layer: ET.Element, expressions: dict[str, str]) -> None:
    """Data-defined symbol layer properties (QGIS expression-based, property type 3)."""
    box = ET.SubElement(ET.SubElement(layer, "data_defined_properties"), "Option", type="Map")
    ET.SubElement(box, "Option", type="QString", name="name", value="")
    properties = ET.SubElement(box, "Option", type="Map", name="properties")
    for name, expression in expressions.items():
        prop = ET.SubElement(properties, "Option", type="Map", name=name)
        ET.SubElement(prop, "Option", type="bool", name="active", value="true")
        ET.SubElement(prop, "Option", type="QString", name="expression", value=expression)
        ET.SubElement(prop, "Option", type="int", name="type", value="3")
    ET.SubElement(box, "Option", type="QString", name="type", value="collection")


def _value_map(fields: ET.Element, name: str, values: Sequence[str]) -> None:
    """A drop-down list (QGIS "Value Map" widget) of ``values`` for field ``name``."""
    field = ET.SubElement(fields, "field", name=name, configurationFlags="None")
    config = ET.SubElement(ET.SubElement(field, "editWidget", type="ValueMap"), "config")
    listed = ET.SubElement(
        ET.SubElement(config, "Option", type="Map"), "Option", type="List", name="map"
    )
    for value in values:
        ET.SubElement(
            ET.SubElement(listed, "Option", type="Map"),
            "Option",
            type="QString",
            name=value,
            value=value,
        )


class ReviewLayer:
    """The GeoPackage review layer (format ``gpkg``): see the module docstring."""

    name: ClassVar[str] = "gpkg"

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write ``folder/review.gpkg`` (layer ``review``) and its style ``review.qml``."""
        names = {c.code: c.name for c in record.classes}
        groups: list[tuple[Affine, list[shapely.Polygon]]] = []
        rows: list[tuple[object, ...]] = []
        for prediction in predictions:
            item = prediction.item
            _check_shapes(prediction)
            if record.scene is None:  # a photo: its own pixel coordinates, its own coverage
                groups.append((Affine.identity(), []))
                offset = (0, 0)
            else:  # chips: noded together on the scene's pixel grid, then georeferenced
                item_transform(record, item)  # a chip without a window is refused here
                if not groups:
                    groups.append((scene_transform(record.scene), []))
                offset = (item.window[1], item.window[0]) if item.window else (0, 0)
            for region in regions(prediction.classes, prediction.confidence):
                if region.code not in names:
                    raise AnnotationError(
                        f"item '{item.id}': class code {region.code} is not one of the "
                        f"record's classes ({', '.join(f'{c}={n}' for c, n in names.items())})"
                    )
                groups[-1][1].append(_translated(region.polygon, offset))
                rows.append(
                    (
                        item.id,
                        region.code,
                        names[region.code],
                        np.nan if region.score is None else region.score,
                        region.pixels,
                        "todo",
                        np.nan if item.priority is None else item.priority,
                    )
                )
        geometries = [
            g for transform, polygons in groups for g in _apply(transform, node_coverage(polygons))
        ]
        table = pd.DataFrame(rows, columns=list(FIELDS)).astype(FIELDS)
        frame = gpd.GeoDataFrame(
            table, geometry=gpd.GeoSeries(geometries, crs=layer_crs(record)), crs=layer_crs(record)
        )
        path = folder / REVIEW_FILE
        note = coordinates_note(record)
        metadata = {
            "GEOSEG_COORDINATES": note,
            "GEOSEG_REVIEW_STATUS": ", ".join(REVIEW_STATUS),
            "DESCRIPTION": (
                f"geoseg review layer ({record.source or 'pre-annotations'}): one polygon per "
                f"region, a coverage per item; set review_status to {', '.join(REVIEW_STATUS)}; "
                f"coordinates: {note}"
            ),
        }
        write_layers(path, {REVIEW_LAYER: frame}, metadata)
        style = write_style(style_path(path), review_qml(record))
        return [path, style]

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Each item's class map from an (edited) review layer: a ``.gpkg`` or its folder."""
        file = path / REVIEW_FILE if path.is_dir() else path
        frame = _read_layer(file, record)
        shapes: dict[str, list[tuple[shapely.Polygon, int]]] = {
            item.id: [] for item in record.items
        }
        inverse = {item.id: ~item_transform(record, item) for item in record.items}
        statuses = (
            frame["review_status"] if "review_status" in frame.columns else [None] * len(frame)
        )
        for fid, item_id, name, status, geometry in zip(
            frame.index,
            frame["item_id"],
            frame["class_name"],
            statuses,
            frame.geometry,
            strict=True,
        ):
            where = f"{file}, feature {fid}"
            if not isinstance(item_id, str) or not item_id:
                raise AnnotationError(f"{where} has no item_id: every polygon names its image")
            item = record.item(item_id, where)
            if not isinstance(name, str) or not name:
                raise AnnotationError(f"{where} has no class_name: give every polygon a class")
            code = record.code(name, where)
            status = status if isinstance(status, str) and status else "todo"
            if status not in REVIEW_STATUS:
                raise AnnotationError(
                    f"{where}: review_status '{status}' is not one of {', '.join(REVIEW_STATUS)}"
                )
            for part in _polygons(geometry, where):
                (pixel,) = _apply(inverse[item.id], [part])
                shapes[item.id].append((pixel, 0 if status == "rejected" else code))
        return {
            item.id: paint_largest_first(shapes[item.id], item, record, file.parent)
            for item in record.items
        }


def _check_shapes(prediction: Prediction) -> None:
    """Refuse a prediction whose class map or confidence is not on its item's size."""
    item = prediction.item
    for what, array in (("class map", prediction.classes), ("confidence", prediction.confidence)):
        if array is not None and array.shape != item.shape:
            raise AnnotationError(
                f"item '{item.id}': its {what} is {array.shape} px but the item is {item.shape}"
            )


def _read_layer(file: Path, record: ExportRecord) -> gpd.GeoDataFrame:
    """The review layer of ``file`` (feature ids as index) in the record's CRS."""
    try:
        frame = pyogrio.read_dataframe(file, layer=REVIEW_LAYER, fid_as_index=True)
    except (DataSourceError, DataLayerError, OSError) as exc:
        raise AnnotationError(
            f"cannot read layer '{REVIEW_LAYER}' of {file}: {exc}; import the review.gpkg that "
            "geoseg exported (edited in QGIS, saved as GeoPackage)"
        ) from exc
    missing = [f for f in ("item_id", "class_name") if f not in frame.columns]
    if missing:
        raise AnnotationError(
            f"{file}: layer '{REVIEW_LAYER}' has no field(s) {', '.join(missing)}; keep the "
            "exported fields when editing"
        )
    expected = layer_crs(record)
    if expected is None and frame.crs is not None:
        raise AnnotationError(
            f"{file} is in {frame.crs.to_string()} but the export is in {PIXEL_NOTE}: remove "
            "the CRS (or re-export), do not georeference the review layer"
        )
    if expected is not None and frame.crs is None:
        raise AnnotationError(
            f"{file} has no CRS but the export is in {expected.to_string()}: set the layer's CRS "
            "back to it"
        )
    if expected is not None and not frame.crs.equals(expected.to_wkt(), ignore_axis_order=True):
        frame = frame.to_crs(expected.to_wkt())  # reprojected while editing: bring it back
    return frame


def _polygons(geometry: object, where: str) -> list[shapely.Polygon]:
    """The polygons of a feature's geometry (none when it has none; repaired when invalid)."""
    if not isinstance(geometry, shapely.Geometry) or geometry.is_empty:
        return []
    if not isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        raise AnnotationError(
            f"{where} is a {geometry.geom_type}, not a polygon: draw regions as polygons"
        )
    repaired = geometry if geometry.is_valid else shapely.make_valid(geometry)
    parts = shapely.get_parts(shapely.get_parts(repaired))  # collections of multi-polygons too
    return [p for p in parts if isinstance(p, shapely.Polygon) and not p.is_empty]
