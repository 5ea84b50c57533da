"""COCO instance segmentation: pre-annotations out, corrections back.

The file is ``annotations/instances_default.json`` (CVAT's COCO 1.0 layout).

One image per item (``id`` its position in the record plus one, ``file_name`` the item's image
as COCO 1.0 names it (relative to ``images/``)
relative to the export folder, its width and height), one category per class (``id`` = the class
code, ``name``, ``supercategory`` empty), and one annotation per region of
:func:`geoseg.annotation.regions.regions`: a polygon (the exact pixel-edge exterior, a closed
ring written without its repeated last point) for a region without holes, else the compressed
RLE of the region's own pixels (exterior minus holes), so every instance mask is exact for any
COCO reader (``pycocotools``' ``annToMask`` included). ``area`` is the pixel count, ``bbox`` the
region's box, ``iscrowd`` 0 and ``score`` the mean confidence (when the prediction has one).

With a background class, a background region kept because it fills another region's hole is
exported too, under the background class's category: a reader that paints exteriors without
holes (a tool that turns the RLE into an outline) then still paints the class map back exactly,
and every format holds the same regions.

Reading follows the COCO API's semantics (annotations point at images and categories by id) but
names the file in every error: categories are mapped by *name* through the record (their ids are
not trusted), images by ``file_name`` (the exported image path, else its file stem as the item
id), and each image's size must be the item's. Shapes are painted from the largest exterior to the
smallest (an RLE mask as its exact pixels), on the record's background, and the item's no-data
pixels are set back to 0 from the no-data mask beside the file (the export folder).

The helpers below (reading JSON with its error position, matching images to items, checking
predictions, painting largest first) are shared with :mod:`geoseg.annotation.labelstudio`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, TypeVar

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from pycocotools import mask as coco_mask
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geoseg.annotation.record import ExportRecord, ItemRecord, Prediction, paint_largest_first
from geoseg.annotation.regions import Region, paint, regions
from geoseg.config import format_validation_error
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path

#: The COCO file in an export folder: CVAT's "COCO 1.0" layout (``images/`` beside it), which
#: CVAT and datumaro import as it is.
FILE = "annotations/instances_default.json"

ModelT = TypeVar("ModelT", bound=BaseModel)


# --- shared by the JSON formats --------------------------------------------------------------


class OpenModel(BaseModel):
    """A labelling tool's JSON object: the keys geoseg reads, any others ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def load_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; a missing, unreadable, corrupt or truncated file is an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise AnnotationError(
            f"{what} {path} does not exist: import the file the labelling tool exported"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column "
            f"{exc.colno} (character {exc.pos} of {len(text)}); the file is corrupt or truncated: "
            "export it again from the labelling tool"
        ) from exc


def parse(model: type[ModelT], data: Any, path: Path, what: str, at: str = "") -> ModelT:
    """``data`` validated as ``model``; errors name the file and the key path (``at`` first)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AnnotationError(format_validation_error(exc, model, path, what, at)) from exc


def item_named(name: str, record: ExportRecord, where: str) -> ItemRecord:
    """The item whose image is ``name``, else the item whose id is ``name``'s file stem.

    The stem covers tools that keep only the file name (``a.png`` for ``images/a.png``); a name
    matching neither is an error naming ``where``.
    """
    for item in record.items:
        if item.image == name:
            return item
    return record.item(PurePosixPath(name.replace("\\", "/")).stem, where)


def checked(
    predictions: Sequence[Prediction], record: ExportRecord, where: str
) -> Iterator[tuple[Prediction, ItemRecord]]:
    """Each prediction with its item in the record, refusing what would not come back exactly.

    Refused: an item not in the record or given twice, a class map not of the item's size, a
    class code not in the record's classes, and no-data pixels on a background without the
    item's no-data mask (``write_nodata``: import would give them the background class).
    """
    codes = {info.code for info in record.classes}
    seen: set[str] = set()
    for prediction in predictions:
        item = record.item(prediction.item.id, where)
        if item.id in seen:
            raise AnnotationError(f"{where}: item '{item.id}' has two predictions; give one")
        seen.add(item.id)
        height, width = prediction.classes.shape
        if (height, width) != item.shape:
            raise AnnotationError(
                f"{where}: the class map of item '{item.id}' is {width}x{height} px but the "
                f"record says {item.width}x{item.height}"
            )
        unknown = sorted(set(np.unique(prediction.classes).tolist()) - codes - {0})
        if unknown:
            known = ", ".join(f"{c.code} {c.name}" for c in record.classes)
            raise AnnotationError(
                f"{where}: item '{item.id}' has class codes {unknown} that are not in the "
                f"record's classes ({known})"
            )
        if (
            record.background is not None
            and item.nodata is None
            and (prediction.classes == 0).any()
        ):
            raise AnnotationError(
                f"{where}: item '{item.id}' has no-data pixels but no no-data mask in the "
                "record; record it with write_nodata before exporting"
            )
        yield prediction, item


# --- COCO ------------------------------------------------------------------------------------


class _Image(OpenModel):
    id: int
    file_name: str
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class _Category(OpenModel):
    id: int
    name: str


class _Rle(OpenModel):
    size: tuple[int, int]  # height, width
    counts: str | list[int]


class _Annotation(OpenModel):
    id: int
    image_id: int
    category_id: int
    segmentation: list[list[float]] | _Rle


class _File(OpenModel):
    images: list[_Image]
    categories: list[_Category]
    annotations: list[_Annotation] = Field(default_factory=list)


def _number(value: float) -> int | float:
    """``value`` as an int when it is whole (pixel-edge vertices are)."""
    return int(value) if float(value).is_integer() else float(value)


def _own_pixels(region: Region, shape: tuple[int, int]) -> NDArray[np.uint8]:
    """The region's own pixels (exterior minus holes) as a 0/1 mask of ``shape``."""
    x0, y0, x1, y1 = (int(v) for v in region.polygon.bounds)
    local = shapely.transform(region.polygon, lambda xy: xy - [x0, y0])
    own = np.zeros(shape, np.uint8, order="F")  # as COCO encodes it: column by column
    own[y0:y1, x0:x1] = paint([(local, 1)], (y1 - y0, x1 - x0))
    return own


def _segmentation(region: Region, shape: tuple[int, int]) -> Any:
    """A polygon (the exterior) for a region without holes, else its pixels' compressed RLE."""
    if len(region.polygon.interiors) == 0:
        ring = region.polygon.exterior.coords[:-1]
        return [[_number(v) for xy in ring for v in xy]]
    rle = coco_mask.encode(np.asfortranarray(_own_pixels(region, shape)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_counts(text: str, where: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``)."""
    counts: list[int] = []
    at = 0
    while at < len(text):
        value = shift = 0
        more = True
        while more:
            if at >= len(text):
                raise AnnotationError(f"{where}: its RLE counts end inside a number (truncated)")
            char = ord(text[at]) - 48
            if not 0 <= char < 64:
                raise AnnotationError(
                    f"{where}: its RLE counts hold {text[at]!r}, not a compressed RLE character"
                )
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            at += 1
            shift += 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _rle_patch(rle: _Rle, item: ItemRecord, where: str) -> tuple[NDArray[np.bool_], int, int]:
    """The mask of an RLE segmentation (compressed or not) cut to its box, and the box's corner.

    The item's size is checked, and that the runs cover it exactly: decoded here rather than by
    pycocotools, whose decoder does not check that (a corrupt file would write past the mask).
    Only the columns between the first and the last set pixel are expanded.
    """
    height, width = rle.size
    if (height, width) != item.shape:
        raise AnnotationError(
            f"{where}: its RLE mask is {width}x{height} px but item '{item.id}' is "
            f"{item.width}x{item.height}"
        )
    listed = rle.counts if isinstance(rle.counts, list) else _rle_counts(rle.counts, where)
    counts = np.asarray(listed, dtype=np.int64)
    if (counts < 0).any() or counts.sum() != height * width:
        raise AnnotationError(
            f"{where}: its RLE runs cover {counts.sum()} pixels, not the {height * width} of a "
            f"{width}x{height} mask (a corrupt mask)"
        )
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0 ... column by column
    bounds = np.concatenate([[0], np.cumsum(counts)])
    (on,) = np.nonzero(values & (counts > 0))
    if len(on) == 0:
        return np.zeros((0, 0), dtype=np.bool_), 0, 0
    x0, x1 = int(bounds[on[0]] // height), int((bounds[on[-1] + 1] - 1) // height + 1)
    clipped = np.clip(bounds - x0 * height, 0, (x1 - x0) * height)
    columns = np.repeat(values, np.diff(clipped)).reshape(x1 - x0, height).T
    (rows,) = np.nonzero(columns.any(axis=1))
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    return columns[y0:y1], x0, y0


def _mask_polygons(patch: NDArray[np.bool_], x0: int, y0: int) -> list[shapely.Polygon]:
    """The 4-connected patches of a mask cut at column ``x0``, row ``y0``, as exact polygons."""
    if patch.size == 0:
        return []
    crop = patch.astype(np.uint8)
    return [
        shapely.geometry.shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            crop, mask=crop > 0, connectivity=4, transform=Affine.translation(x0, y0)
        )
    ]


def _polygons(annotation: _Annotation, item: ItemRecord, where: str) -> list[shapely.Polygon]:
    """The shapes of an annotation: its polygons, or its RLE mask's patches."""
    if isinstance(annotation.segmentation, _Rle):
        return _mask_polygons(*_rle_patch(annotation.segmentation, item, where))
    polygons = []
    for part in annotation.segmentation:
        if len(part) < 6 or len(part) % 2:
            raise AnnotationError(
                f"{where}: a polygon needs x, y pairs of at least 3 vertices, not {len(part)} "
                "numbers"
            )
        polygons.append(shapely.Polygon(np.reshape(part, (-1, 2))))
    return polygons


def image_name(item: ItemRecord) -> str:
    """The item's image as COCO 1.0 names it: relative to the ``images/`` folder beside."""
    path = PurePosixPath(item.image)
    return str(path.relative_to("images")) if path.parts[:1] == ("images",) else item.image


@dataclass(frozen=True)
class Coco:
    """COCO instance segmentation JSON (see the module docstring)."""

    name: ClassVar[str] = "coco"

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write ``folder/annotations/instances_default.json``; the file written."""
        path = folder / FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = {item.id: number for number, item in enumerate(record.items, start=1)}
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for prediction, item in checked(predictions, record, str(path)):
            images.append(
                {
                    "id": ids[item.id],
                    "file_name": image_name(item),
                    "width": item.width,
                    "height": item.height,
                }
            )
            for region in regions(prediction.classes, prediction.confidence, record.background):
                annotation: dict[str, Any] = {
                    "id": len(annotations) + 1,
                    "image_id": ids[item.id],
                    "category_id": region.code,
                    "segmentation": _segmentation(region, item.shape),
                    "area": region.pixels,
                    "bbox": [float(v) for v in region.bbox],
                    "iscrowd": 0,
                }
                if region.score is not None:
                    annotation["score"] = region.score
                annotations.append(annotation)
        document = {
            "info": {"description": f"geoseg pre-annotations {record.source}".strip()},
            "licenses": [],
            "images": images,
            "categories": [
                {"id": info.code, "name": info.name, "supercategory": ""} for info in record.classes
            ],
            "annotations": annotations,
        }
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(document) + "\n", encoding="utf-8")
        return [path]

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Read a COCO file (or the export layout's, in a folder): ``{item id: class map}``.

        Every image in the file comes back, those without annotations as background.
        """
        file = path / FILE if path.is_dir() else path
        document = parse(_File, load_json(file, "COCO file"), file, "COCO file")
        names: dict[int, str] = {}
        for category in document.categories:
            if names.setdefault(category.id, category.name) != category.name:
                raise AnnotationError(
                    f"{file}: category id {category.id} is both '{names[category.id]}' and "
                    f"'{category.name}'"
                )
        items: dict[int, ItemRecord] = {}
        shapes: dict[int, list[tuple[shapely.Polygon, int]]] = {}
        for image in document.images:
            where = f"{file} (image {image.id} '{image.file_name}')"
            item = item_named(image.file_name, record, where)
            if (image.height, image.width) != item.shape:
                raise AnnotationError(
                    f"{where} is {image.width}x{image.height} px but the exported item "
                    f"'{item.id}' is {item.width}x{item.height}: annotate the exported images "
                    "at their size"
                )
            if image.id in items:
                raise AnnotationError(f"{where}: image id {image.id} appears twice")
            if any(other.id == item.id for other in items.values()):
                raise AnnotationError(f"{where}: item '{item.id}' appears twice")
            items[image.id] = item
            shapes[image.id] = []
        codes: dict[int, int] = {}
        for annotation in document.annotations:
            where = f"{file} (annotation {annotation.id})"
            item_or_none = items.get(annotation.image_id)
            if item_or_none is None:
                raise AnnotationError(
                    f"{where}: image id {annotation.image_id} is not one of the file's images"
                )
            if annotation.category_id not in names:
                raise AnnotationError(
                    f"{where}: label (category id) {annotation.category_id} is not one of the "
                    f"file's categories ({', '.join(map(str, names))})"
                )
            if annotation.category_id not in codes:
                codes[annotation.category_id] = record.code(names[annotation.category_id], where)
            code = codes[annotation.category_id]
            shapes[annotation.image_id] += [
                (polygon, code) for polygon in _polygons(annotation, item_or_none, where)
            ]
        folder = file.parent
        return {
            item.id: paint_largest_first(shapes[image_id], item, record, folder)
            for image_id, item in items.items()
        }
