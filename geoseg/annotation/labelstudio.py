"""Label Studio tasks and config: pre-annotations out, corrections back in.

``labelstudio.json`` is a list of tasks that Label Studio imports as they are, the model's
regions as pre-annotations: each task is ``{"data": {"image": ..., "geoseg_item": id},
"predictions": [{"model_version", "score", "result"}]}``. ``data.image`` is the item's image path
relative to the export folder, after a configurable prefix (a URL root the images are served
from, or Label Studio's ``/data/local-files/?d=<folder>/`` for local storage); ``geoseg_item`` is
the item's id, which Label Studio keeps in its exports. The prediction's ``score`` is the mean
confidence over the item's pixels with data (Label Studio sorts tasks by it). One ``result`` per
region of :func:`geoseg.annotation.regions.regions`, of type ``polygonlabels`` (``from_name``
``label``, ``to_name`` ``image``), with the region's exterior as ``value.points`` in percent of
the image's width and height (how Label Studio stores polygons), its class name as the label and
its mean confidence as ``score``. Label Studio draws no holes: every region inside a hole is its
own polygon, background ones included, and painting the polygons from the largest to the
smallest gives the class map back exactly. ``labelstudio/config.xml`` is the labelling config: an
``Image`` and a ``PolygonLabels`` control with one ``Label`` (name and colour) per class.

Reading takes a task list: the file written here, or Label Studio's JSON export of the corrected
tasks. Each task's shapes are its first annotation that was not skipped (cancelled), else its
first prediction. A task is matched to its item by ``data.geoseg_item``, else by ``data.image``
(the exported value, with or without the prefix), else by the image's file stem as the item id
(from a URL's path or a local-files ``?d=`` path; an upload's ``1a2b3c4d-`` prefix dropped).
Points go back from percent to pixels; coordinates within 1e-6 px of a whole number are snapped
to it (exported vertices lie on pixel edges: the round trip is exact), others (an annotator's
vertex) are kept. Polygons paint from the largest to the smallest on the record's background;
labels are mapped by name, and a result of another region type (brush, rectangle ...) is refused
rather than dropped. Every error names the file and the task.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import shapely
from numpy.typing import NDArray
from pydantic import Field, RootModel

from geoseg.annotation.coco import OpenModel, checked, load_json, parse
from geoseg.annotation.record import ExportRecord, ItemRecord, Prediction, paint_largest_first
from geoseg.annotation.regions import Region, regions
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path

#: The tasks' file name in an export folder.
FILE = "labelstudio.json"
#: The labelling config's file name in an export folder.
CONFIG = "labelstudio/config.xml"  # not beside CVAT's annotations.xml: importers scan *.xml

#: How far (px) a converted coordinate may lie from a whole number to be snapped to it.
SNAP = 1e-6

#: A file uploaded to Label Studio is renamed ``<8 hex digits>-<name>``.
_UPLOADED = re.compile(r"[0-9a-f]{8}-(.+)")


class _Data(OpenModel):
    image: str
    geoseg_item: str | None = None


class _Result(OpenModel):
    type: str
    value: dict[str, Any] = Field(default_factory=dict)
    original_width: int | None = None
    original_height: int | None = None
    image_rotation: float = 0.0


class _Polygon(OpenModel):
    points: list[tuple[float, float]] = Field(min_length=3)
    polygonlabels: list[str] = Field(min_length=1)
    closed: bool = True


class _Annotation(OpenModel):
    result: list[_Result] = Field(default_factory=list)
    was_cancelled: bool = False


class _Task(OpenModel):
    id: int | None = None
    data: _Data
    annotations: list[_Annotation] = Field(default_factory=list)
    predictions: list[_Annotation | int] = Field(default_factory=list)  # an export may give ids


class _Tasks(RootModel[list[_Task]]):
    pass


def _points(region: Region, item: ItemRecord) -> list[list[float]]:
    """The region's exterior in percent of the item's width and height (no repeated last)."""
    ring = region.exterior.exterior.coords[:-1]
    return [[x * 100 / item.width, y * 100 / item.height] for x, y in ring]


def _pixels(points: Sequence[tuple[float, float]], item: ItemRecord) -> shapely.Polygon:
    """Percent points as a polygon in pixels, whole numbers within :data:`SNAP` snapped."""
    xy = np.asarray(points, dtype=np.float64) * [item.width, item.height] / 100
    whole = np.round(xy)
    return shapely.Polygon(np.where(np.abs(xy - whole) <= SNAP, whole, xy))


def _config(record: ExportRecord) -> str:
    """The labelling config: the image and one polygon label (name, colour) per class."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name="image", value="$image")
    labels = ET.SubElement(view, "PolygonLabels", name="label", toName="image")
    for info in record.classes:
        ET.SubElement(labels, "Label", value=info.name, background=info.color)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


@dataclass(frozen=True)
class LabelStudio:
    """Label Studio tasks with pre-annotations, and their labelling config.

    ``image_prefix`` goes before each item's image path in ``data.image``; ``model_version``
    defaults to the record's source (else ``geoseg``). See the module docstring.
    """

    name: ClassVar[str] = "labelstudio"
    image_prefix: str = ""
    model_version: str | None = None

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write ``folder/labelstudio.json`` and ``folder/labelstudio/config.xml``; the files."""
        path, config = folder / FILE, folder / CONFIG
        config.parent.mkdir(parents=True, exist_ok=True)
        names = {info.code: info.name for info in record.classes}
        version = self.model_version or record.source or "geoseg"
        tasks = []
        for prediction, item in checked(predictions, record, str(path)):
            result = []
            for number, region in enumerate(
                regions(prediction.classes, prediction.confidence, record.background)
            ):
                shape: dict[str, Any] = {
                    "id": f"r{number}",
                    "type": "polygonlabels",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": item.width,
                    "original_height": item.height,
                    "image_rotation": 0,
                    "value": {
                        "points": _points(region, item),
                        "polygonlabels": [names[region.code]],
                        "closed": True,
                    },
                }
                if region.score is not None:
                    shape["score"] = region.score
                result.append(shape)
            pre: dict[str, Any] = {"model_version": version, "result": result}
            data = prediction.classes != 0
            if prediction.confidence is not None and data.any():
                pre["score"] = float(prediction.confidence[data].astype(np.float64).mean())
            tasks.append(
                {
                    "data": {"image": self.image_prefix + item.image, "geoseg_item": item.id},
                    "predictions": [pre],
                }
            )
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(tasks, indent=1) + "\n", encoding="utf-8")
        with atomic_path(config, overwrite=True) as tmp:
            tmp.write_text(_config(record), encoding="utf-8")
        return [path, config]

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Read Label Studio tasks (or ``labelstudio.json`` in a folder): ``{item id: map}``.

        Every task in the file comes back, one without shapes as background.
        """
        file = path / FILE if path.is_dir() else path
        tasks = parse(_Tasks, load_json(file, "Label Studio file"), file, "Label Studio file")
        out: dict[str, NDArray[np.uint8]] = {}
        for index, task in enumerate(tasks.root):
            where = f"{file} (task {task.id if task.id is not None else index + 1})"
            item = self._item(task.data, record, where)
            if item.id in out:
                raise AnnotationError(f"{where}: a second task of item '{item.id}'")
            source, results = _results(task)
            if not source:
                raise AnnotationError(
                    f"{where}: task of item '{item.id}' has no annotation (and no prediction "
                    "inline): annotate or skip it in Label Studio, or export with predictions"
                )
            shapes = [
                _shape(result, item, record, where, (file, f"{index}.{source}.result.{number}"))
                for number, result in enumerate(results)
                if result.type.endswith("labels")  # not choices, text areas, ratings ...
            ]
            out[item.id] = paint_largest_first(shapes, item, record, file.parent)
        return out

    def _item(self, data: _Data, record: ExportRecord, where: str) -> ItemRecord:
        """The task's item: by ``geoseg_item``, the exported image value, else the file stem."""
        if data.geoseg_item is not None:
            return record.item(data.geoseg_item, where)
        for item in record.items:
            if data.image in (self.image_prefix + item.image, item.image):
                return item
        parts = urlsplit(data.image)
        local = parse_qs(parts.query).get("d")
        stem = PurePosixPath(unquote(local[0] if local else parts.path)).stem
        uploaded = _UPLOADED.fullmatch(stem)
        if uploaded is not None and all(item.id != stem for item in record.items):
            stem = uploaded.group(1)
        return record.item(stem, where)


def _shape(
    result: _Result, item: ItemRecord, record: ExportRecord, where: str, at: tuple[Path, str]
) -> tuple[shapely.Polygon, int]:
    """One polygon result as ``(polygon in pixels, class code)``; ``at``: its file and key path."""
    if result.type != "polygonlabels":
        raise AnnotationError(
            f"{where}: a '{result.type}' result; geoseg reads polygons (PolygonLabels) only: "
            "redraw it as a polygon"
        )
    size = (result.original_height, result.original_width)
    if size != (None, None) and size != item.shape:
        raise AnnotationError(
            f"{where}: a polygon on a {result.original_width}x{result.original_height} px "
            f"image but the exported item is {item.width}x{item.height}: annotate the "
            "exported images at their size"
        )
    if result.image_rotation != 0:
        raise AnnotationError(
            f"{where}: a polygon on the image rotated by {result.image_rotation} degrees; "
            "annotate it unrotated"
        )
    polygon = parse(_Polygon, result.value, at[0], "Label Studio file", f"{at[1]}.value")
    if not polygon.closed:
        raise AnnotationError(f"{where}: a polygon left open; close it in Label Studio")
    if len(polygon.polygonlabels) != 1:
        raise AnnotationError(
            f"{where}: a polygon labelled {polygon.polygonlabels}; give it one label"
        )
    return _pixels(polygon.points, item), record.code(polygon.polygonlabels[0], where)


def _results(task: _Task) -> tuple[str, list[_Result]]:
    """The task's results (and their key): its first annotation not skipped, else prediction."""
    for number, annotation in enumerate(task.annotations):
        if not annotation.was_cancelled:
            return f"annotations.{number}", annotation.result
    for number, prediction in enumerate(task.predictions):
        if isinstance(prediction, _Annotation):
            return f"predictions.{number}", prediction.result
    return "", []
