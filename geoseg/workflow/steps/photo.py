"""One photo of a ``predict_images`` step, as one task: predict it, write it, derive from it.

The task wires the packages that own each concept: stitched in-memory prediction
(:mod:`geoseg.stitch`), the class-map COG (:mod:`geoseg.export.raster`), plants and the weed grid
(:mod:`geoseg.analysis`), per-field statistics (:mod:`geoseg.analysis.zonal`), the comparison
with annotations and plant-level matches (:mod:`geoseg.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from geoseg.analysis.instances import instances
from geoseg.analysis.weedgrid import weed_grid
from geoseg.analysis.zonal import field_statistics
from geoseg.catalog import ImageSetRef
from geoseg.classes import class_codes_tag
from geoseg.evaluation.plants import plant_matches
from geoseg.evaluation.report import plot_overlay
from geoseg.evaluation.run import CORRECT, ERROR_COLOURS, ERROR_NAMES, WRONG_CLASS, Counts, compare
from geoseg.export.raster import write_cog
from geoseg.export.style import ClassStyle
from geoseg.io.images import read_image, read_labels, read_polygons
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.reference import predict_in_memory
from geoseg.stitch.run import CONFIDENCE_NODATA
from geoseg.types import Grid

#: The error codes a photo's overlay can show (every pixel of a photo is predicted).
PHOTO_ERRORS = (CORRECT, WRONG_CLASS)


@dataclass(frozen=True)
class PlantClasses:
    """The model's class codes for crop, weed and (optionally) soil, and every class's name."""

    crop: int
    weed: int
    soil: int | None
    names: dict[int, str]


@dataclass(frozen=True)
class PhotoJob:
    """What every photo task needs (paths, settings and small tables; no model)."""

    ref: ImageSetRef
    bundle: Path
    device: str
    threads: int
    spec: InferenceSpec
    classes: PlantClasses
    styles: tuple[ClassStyle, ...]
    staged: Path
    cell_px: int
    threshold: float
    tolerance: int
    min_plant_area: float
    overlay_ids: tuple[str, ...]
    fields: gpd.GeoDataFrame | None = None


@dataclass(frozen=True)
class PhotoResult:
    """One photo's plants, grid cells, per-field table, counts and annotated plants."""

    item: str
    plants: gpd.GeoDataFrame
    grid: gpd.GeoDataFrame
    fields: pd.DataFrame | None
    counts: Counts | None
    annotated: gpd.GeoDataFrame | None


def predict_photo(job: PhotoJob, item: str) -> PhotoResult:
    """Predict one photo into ``staged/classes/ID.tif`` and ``staged/confidence/ID.tif``.

    The confidence is the winning class's probability (annotation exports rank and score by it).
    """
    from geoseg.model.predictor import predictor

    ref, codes = job.ref, job.classes
    image = read_image(dict(ref.images)[item], len(ref.bands))
    prediction = predict_in_memory(image, predictor(job.bundle, job.device, job.threads), job.spec)
    classes = prediction.classes
    grid = ref.grid(*classes.shape)
    colormap = {s.code: (*s.rgb, 255) for s in job.styles}
    tags = {"COORDINATES": ref.coordinates, **class_codes_tag(job.spec.codes)}
    write_cog(job.staged / "classes" / f"{item}.tif", classes, grid, 0, colormap, tags)
    write_cog(
        job.staged / "confidence" / f"{item}.tif",
        prediction.confidence,
        grid,
        CONFIDENCE_NODATA,
        tags={"COORDINATES": ref.coordinates},
        overview_resampling="average",
    )
    plants = instances(
        classes,
        prediction.confidence,
        [codes.crop, codes.weed],
        codes.names,
        grid.transform,
        ref.unit,
    )
    plants = plants[plants[f"area_{ref.unit}2"] >= job.min_plant_area].reset_index(drop=True)
    plants.insert(0, "image_id", item)
    cells = weed_grid(
        classes, job.cell_px, codes.weed, codes.crop, codes.soil, job.threshold, grid.transform
    )
    cells.insert(0, "image_id", item)
    fields = _field_table(job, item, classes, grid, plants) if job.fields is not None else None
    return PhotoResult(
        item,
        plants,
        cells,
        fields,
        _compare(job, item, image, classes),
        _annotated(job, item, classes),
    )


def _compare(job: PhotoJob, item: str, image: np.ndarray, classes: np.ndarray) -> Counts | None:
    """Counts against the photo's annotation (and its overlay plot); None without one."""
    path = dict(job.ref.annotations).get(item)
    if path is None or not path.exists():
        return None
    reference = read_labels(job.ref, item, classes.shape).astype(np.int64)
    whole = (slice(None), slice(None))
    result = compare(reference, classes.astype(np.int64), reference > 0, whole, job.tolerance)
    if item in job.overlay_ids:
        plot_overlay(
            image,
            classes,
            result.reference,
            result.errors,
            {s.code: s.color for s in job.styles},
            job.classes.names,
            {c: ERROR_COLOURS[c] for c in PHOTO_ERRORS},
            {c: ERROR_NAMES[c] for c in PHOTO_ERRORS},
            job.staged / "overlays" / f"overlay_{item}.png",
            joint_stretch=True,  # a photo: keep its colours
        )
    return result.counts


def _annotated(job: PhotoJob, item: str, classes: np.ndarray) -> gpd.GeoDataFrame | None:
    """The photo's polygon annotations, each scored against the class map (None without)."""
    path = dict(job.ref.polygons).get(item)
    if path is None or not path.exists():
        return None
    outlines = read_polygons(path, job.ref)  # in the set's coordinates, as the class map
    names = job.classes.names
    matches = plant_matches(outlines, classes, job.ref.transform, job.classes.soil, names)
    matches.insert(0, "image_id", item)
    return matches


def _field_table(
    job: PhotoJob, item: str, classes: np.ndarray, grid: Grid, plants: gpd.GeoDataFrame
) -> pd.DataFrame:
    """Zonal statistics of the photo per field, plants per field and the weed pressure.

    Fields are in the photos' coordinates; a field with an ``image_id`` column applies to that
    photo only.
    """
    fields = job.fields
    if fields is None:
        return pd.DataFrame()
    if "image_id" in fields.columns:
        fields = fields[fields.image_id.astype(str) == item]
    names, crop, weed = job.classes.names, job.classes.crop, job.classes.weed
    table = field_statistics(
        classes, grid, fields, names, plants, [names[crop], names[weed]], names[weed]
    )
    table = table.drop(columns="image_id", errors="ignore")
    table.insert(0, "image_id", item)
    return table
