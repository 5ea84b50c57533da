"""Pre-annotations out of a prediction run: items, images, pre-annotation maps and the record.

A ``predict_images`` run leaves ``classes/ID.tif`` and ``confidence/ID.tif`` per photo; each
becomes an item whose image is copied as ``images/ID.png``. A ``predict`` run's scene is cut into
chips (:mod:`geoseg.annotation.chips`) whose pictures are drawn from the scene. Either way each
item's class map is kept as ``preannotation/ID.png`` (codes as grey levels: the reference every
import and the edit effort compare with), and the formats write their files from the same
predictions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from PIL import Image

from geoseg.annotation.chips import cut
from geoseg.annotation.record import (
    ExportRecord,
    ItemRecord,
    Prediction,
    SceneRecord,
    write_nodata,
)
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path
from geoseg.io.images import read_image
from geoseg.io.raster import read_values
from geoseg.io.source import RasterSource
from geoseg.types import Grid

#: Where an item's exported pre-annotation (its class codes) is kept in the export folder.
PREANNOTATION = "preannotation/{id}.png"


def write_png(path: Path, array: NDArray[np.uint8]) -> None:
    """A PNG written atomically (grey for 2-D arrays, RGB for ``(y, x, 3)``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def read_preannotation(folder: Path, item: ItemRecord) -> NDArray[np.uint8]:
    """The class map exported for ``item`` (see :data:`PREANNOTATION`)."""
    path = folder / PREANNOTATION.format(id=item.id)
    try:
        with Image.open(path) as image:
            found = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"cannot read the exported pre-annotation {path}: {exc}") from exc
    if found.shape != item.shape:
        raise AnnotationError(f"{path} is {found.shape[::-1]} px, item '{item.id}' {item.shape}")
    return found


def photo_predictions(
    run: Path, images: dict[str, Path], ids: Sequence[str], out: Path
) -> Iterator[Prediction]:
    """The photos ``ids`` of a ``predict_images`` run folder, as items written into ``out``."""
    for item_id in ids:
        classes, confidence = run_maps(run, item_id)
        yield photo_prediction(item_id, images[item_id], classes, confidence, out)


def run_maps(run: Path, item_id: str) -> tuple[NDArray[np.uint8], NDArray[np.float32] | None]:
    """A ``predict_images`` run's class map and confidence (None if absent) of one photo."""
    classes_path = run / "classes" / f"{item_id}.tif"
    if not classes_path.exists():
        raise AnnotationError(
            f"{classes_path} does not exist: the run in {run} did not predict image "
            f"'{item_id}'; predict it (predict_images with images: all) or leave it out"
        )
    with rasterio.open(classes_path) as ds:
        classes = ds.read(1).astype(np.uint8)
    confidence_path = run / "confidence" / f"{item_id}.tif"
    if not confidence_path.exists():
        return classes, None
    with rasterio.open(confidence_path) as ds:
        return classes, ds.read(1).astype(np.float32)


def photo_prediction(
    item_id: str,
    image_path: Path,
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32] | None,
    out: Path,
) -> Prediction:
    """One photo as an item of an export in ``out``: its picture, pre-annotation and mask."""
    photo = read_image(image_path, 3)
    if photo.shape[1:] != classes.shape:
        raise AnnotationError(
            f"{image_path} is {photo.shape[2]}x{photo.shape[1]} px but its class map is "
            f"{classes.shape[1]}x{classes.shape[0]}"
        )
    image = f"images/{item_id}.png"
    write_png(out / image, np.moveaxis(photo, 0, -1).clip(0, 255).astype(np.uint8))
    write_png(out / PREANNOTATION.format(id=item_id), classes)
    item = ItemRecord(id=item_id, image=image, height=classes.shape[0], width=classes.shape[1])
    return Prediction(write_nodata(item, classes, out), classes, confidence)


def scene_predictions(
    run: Path, source: RasterSource, size: int, out: Path
) -> tuple[SceneRecord, list[Prediction]]:
    """A ``predict`` run's class map (and confidence) cut into chips of ``size`` px.

    Each chip's pre-annotation and no-data mask are written into ``out`` (its picture, drawn
    from the scene, by :func:`~geoseg.annotation.chips.write_chip_images` once the record is
    made); chips without valid pixels are left out. ``source`` must be on the run's grid.
    """
    classes_path = run / "classes.tif"
    if not classes_path.exists():
        raise AnnotationError(
            f"{classes_path} does not exist: export from the folder of a predict step"
        )
    with rasterio.open(classes_path) as ds:
        classes = ds.read(1).astype(np.uint8)
        grid = Grid(ds.height, ds.width, ds.transform, ds.crs)
    if not grid.same_as(source.grid):
        raise AnnotationError(
            f"{classes_path} ({grid.describe()}) is not on the grid of source '{source.name}' "
            f"({source.grid.describe()}): export with the source that was predicted"
        )
    confidence = None
    if (run / "confidence.tif").exists():  # float32, or compact uint8 with its scale
        confidence = read_values(run / "confidence.tif", grid.window)
    chips = cut(classes, grid, confidence, size)
    predictions = []
    for prediction in chips.predictions:
        item = prediction.item
        write_png(out / PREANNOTATION.format(id=item.id), np.ascontiguousarray(prediction.classes))
        predictions.append(replace(prediction, item=write_nodata(item, prediction.classes, out)))
    return chips.scene, predictions


def photo_ids(run: Path) -> list[str]:
    """The photo ids a ``predict_images`` run folder holds class maps for."""
    return sorted(p.stem for p in (run / "classes").glob("*.tif"))


def export(
    predictions: Sequence[Prediction],
    record: ExportRecord,
    formats: Sequence[str],
    out: Path,
    image_prefix: str = "",
) -> list[Path]:
    """Write ``record`` (with the predictions' items) and each format's files into ``out``.

    ``image_prefix``: see :func:`~geoseg.annotation.formats.annotation_format`.
    """
    from geoseg.annotation.formats import annotation_format

    record = record.model_copy(update={"items": [p.item for p in predictions]})
    written = [record.write(out)]
    for name in formats:
        written += annotation_format(name, image_prefix).write(predictions, record, out)
    return written
