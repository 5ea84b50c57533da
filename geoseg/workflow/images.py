"""Executing a predict_images step: photos of an image set -> class maps, plants, weed grid.

Each image is one task: stitched tiled prediction of the whole photo (it fits in memory), its
class map written as a GeoTIFF, its plants (instances) and boxes, its weed-pressure grid, and -
where annotations exist - its confusion and boundary counts. Images without georeferencing are
processed in pixel coordinates (x = column, y = row, origin top-left): every output says so (layer
metadata, column units ``px``, the manifest and metrics).
"""

from __future__ import annotations

import functools
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
from numpy.typing import NDArray

from geoseg.analysis.instances import boxes, counts, instances
from geoseg.analysis.weedgrid import weed_grid
from geoseg.catalog import Catalog, ImageSetRef
from geoseg.errors import BundleError, ConfigError
from geoseg.evaluate.boundary import boundary_counts
from geoseg.evaluate.metrics import confusion_matrix, scores
from geoseg.evaluate.plants import plant_matches, plant_scores
from geoseg.evaluate.report import plot_confusion, plot_overlay, write_metrics
from geoseg.executor import Executor
from geoseg.export.atomic import atomic_path
from geoseg.export.style import ClassStyle, class_styles, style_path, vector_qml, write_style
from geoseg.export.vector import GPKG_OPTIONS, convert
from geoseg.io.images import read_image, read_labels, read_polygons
from geoseg.model.bundle import BundleMeta, InputProfile, load_meta
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.reference import predict_in_memory
from geoseg.tiling.grid import TileGrid
from geoseg.workflow.commit import commit
from geoseg.workflow.manifest import MANIFEST_NAME, describe_files, now, write_manifest
from geoseg.workflow.plan import Plan, PlannedImages
from geoseg.workflow.schema import PredictImagesStep

OUTPUTS = (
    "annotations.gpkg",
    "fields.csv",
    "plants.gpkg",
    "weed_grid.gpkg",
    "weed_grid.shp",
    "counts.csv",
    "metrics.json",
    "metrics.csv",
    "confusion.png",
)


@dataclass(frozen=True)
class ImageJob:
    """What every image task needs (paths and settings, no model)."""

    ref: ImageSetRef
    bundle: Path
    device: str
    threads: int
    spec: InferenceSpec
    codes: tuple[int, ...]
    names: dict[int, str]
    crop: int
    weed: int
    soil: int | None
    cell_px: int
    threshold: float
    tolerance: int
    staged: Path
    overlay_ids: tuple[str, ...]
    styles: tuple[ClassStyle, ...]
    fields: gpd.GeoDataFrame | None = None
    field_id: str = "field_id"
    min_plant_area: float = 0.0


@dataclass(frozen=True)
class ImageResult:
    """One image's plants, grid cells and counts."""

    item: str
    plants: gpd.GeoDataFrame
    grid: gpd.GeoDataFrame
    matrix: NDArray[np.int64] | None
    boundary: NDArray[np.int64] | None
    fields: pd.DataFrame | None = None
    annotated: gpd.GeoDataFrame | None = None


def _class_code(meta: BundleMeta, name: str | None, what: str) -> int | None:
    if name is None:
        return None
    for info in meta.classes:
        if info.name == name:
            return info.code
    raise ConfigError(
        f"{what} '{name}' is not a class of model '{meta.name}': {[c.name for c in meta.classes]}"
    )


def _profile(meta: BundleMeta, ref: ImageSetRef) -> InputProfile:
    geo = ref.georeference
    units, size = ("metre", geo.pixel_size) if geo else ("pixel", 1.0)
    for profile in meta.input_profiles():
        if (
            profile.units.lower() == ref.units.lower()
            and profile.crs_units == units
            and abs(profile.pixel_size - size) <= 0.01 * size
        ):
            return profile
    raise BundleError(
        f"model bundle '{meta.name}' does not fit image set '{ref.name}' ({ref.units}, "
        f"{size:g} {units} pixels); its profiles: "
        + "; ".join(
            f"{p.name}: {p.units}, {p.pixel_size:g} {p.crs_units}" for p in meta.input_profiles()
        )
    )


def read_fields(cfg: PredictImagesStep) -> gpd.GeoDataFrame | None:
    """The field polygons, if the step names a layer (the plan made the path absolute)."""
    if cfg.fields is None:
        return None
    path = Path(cfg.fields)
    if not path.exists():
        raise ConfigError(
            f"fields layer {path} does not exist: fix 'fields' in the predict_images step"
        )
    frame = gpd.read_file(path)
    if cfg.field_id not in frame.columns:
        raise ConfigError(
            f"fields layer {path} has no '{cfg.field_id}' column (it has "
            f"{', '.join(map(str, frame.columns))}): set 'field_id' in the predict_images step"
        )
    return frame


def predict_image(job: ImageJob, item: str) -> ImageResult:
    """Predict one image and derive its outputs (class map file written to the work folder)."""
    from geoseg.model.predictor import predictor

    paths = dict(job.ref.images)
    image = read_image(paths[item], len(job.ref.bands))
    prediction = predict_in_memory(image, predictor(job.bundle, job.device, job.threads), job.spec)
    classes = prediction.classes
    profile = {
        "driver": "COG",  # written from memory on close: a valid COG, overviews by mode
        "height": classes.shape[0],
        "width": classes.shape[1],
        "count": 1,
        "dtype": "uint8",
        "nodata": 0,
        "compress": "deflate",
        "blocksize": 256,
        "overview_resampling": "mode",
    }
    if job.ref.crs is not None:
        profile.update(crs=job.ref.crs, transform=job.ref.transform)
    target = job.staged / "classes" / f"{item}.tif"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, overwrite=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.write_colormap(1, {s.code: (*s.rgb, 255) for s in job.styles})
        dst.update_tags(COORDINATES=job.ref.coordinates)
    plants = instances(
        classes,
        prediction.confidence,
        [job.crop, job.weed],
        job.names,
        job.ref.transform,
        job.ref.unit,
    )
    plants = plants[plants[f"area_{job.ref.unit}2"] >= job.min_plant_area].reset_index(drop=True)
    plants.insert(0, "image_id", item)
    grid = weed_grid(
        classes, job.cell_px, job.weed, job.crop, job.soil, job.threshold, job.ref.transform
    )
    grid.insert(0, "image_id", item)
    fields = field_statistics(job, item, classes, plants) if job.fields is not None else None
    matrix = boundary = None
    annotations = dict(job.ref.annotations)
    if item in annotations and annotations[item].exists():
        reference = read_labels(job.ref, item).astype(np.int64)
        evaluated = reference > 0
        matrix = confusion_matrix(reference[evaluated], classes[evaluated], job.codes)
        boundary = boundary_counts(
            reference,
            classes.astype(np.int64),
            evaluated,
            (slice(None), slice(None)),
            job.codes,
            job.tolerance,
        )
        if item in job.overlay_ids:
            errors = np.where(evaluated, np.where(classes == reference, 1, 2), 0).astype(np.uint8)
            plot_overlay(
                image,
                classes,
                reference.astype(np.uint8),
                errors,
                {s.code: s.color for s in job.styles},
                job.names,
                {1: "#4daf4a", 2: "#e41a1c"},
                {1: "correct", 2: "wrong class"},
                job.staged / "overlays" / f"overlay_{item}.png",
                joint_stretch=True,  # a photo: keep its colours
            )
    return ImageResult(item, plants, grid, matrix, boundary, fields, _annotated(job, item, classes))


def _annotated(job: ImageJob, item: str, classes: NDArray[np.uint8]) -> gpd.GeoDataFrame | None:
    """The image's polygon annotations, each scored against the class map (None without)."""
    path = dict(job.ref.polygons).get(item)
    if path is None or not path.exists():
        return None
    outlines = read_polygons(path, job.ref)
    if job.ref.crs is not None:  # asserted georeferencing: pixel outlines into the asserted CRS
        t = job.ref.transform
        outlines = outlines.set_geometry(
            outlines.geometry.affine_transform([t.a, t.b, t.d, t.e, t.c, t.f])
        ).set_crs(job.ref.crs)
    matches = plant_matches(outlines, classes, job.ref.transform, job.soil, job.names)
    matches.insert(0, "image_id", item)
    return matches


def field_statistics(
    job: ImageJob, item: str, classes: NDArray[np.uint8], plants: gpd.GeoDataFrame
) -> pd.DataFrame:
    """Area and share of each class, plants per class and weed pressure per field polygon.

    Fields are given in the images' coordinates (pixels, or the asserted CRS); a field with an
    ``image_id`` column applies to that image only. A plant counts in the first field that holds
    its representative point (a point inside the plant), so a plant on a field edge counts once.
    """
    fields = job.fields
    if fields is None:
        return pd.DataFrame()
    if "image_id" in fields.columns:
        fields = fields[fields.image_id.astype(str) == item]
    rows = []
    scale = abs(job.ref.transform.a) ** 2
    anchors = plants.geometry.representative_point()
    owner = np.full(len(plants), -1)  # the first field touching each plant's point
    for k, geometry in enumerate(fields.geometry):
        owner[(owner < 0) & anchors.intersects(geometry).to_numpy()] = k
    for k, (fid, geometry) in enumerate(zip(fields[job.field_id], fields.geometry, strict=True)):
        inside = rasterio.features.rasterize(
            [(geometry, 1)],
            out_shape=classes.shape,
            transform=job.ref.transform,
            fill=0,
            dtype="uint8",
        ).astype(bool)
        values = classes[inside & (classes > 0)]
        mapped = max(len(values), 1)
        row: dict[str, Any] = {
            "image_id": item,
            job.field_id: fid,
            f"mapped_{job.ref.unit}2": len(values) * scale,
        }
        for code, name in job.names.items():
            n = int(np.count_nonzero(values == code))
            row[f"area_{name}_{job.ref.unit}2"] = n * scale
            row[f"share_{name}"] = n / mapped
        held = plants.class_name[owner == k]
        for code in (job.crop, job.weed):
            row[f"plants_{job.names[code]}"] = int((held == job.names[code]).sum())
        row["weed_pressure"] = row.get(f"share_{job.names.get(job.weed, 'weed')}", 0.0)
        rows.append(row)
    return pd.DataFrame(rows)


def _same_images(catalog: Catalog, trained: str | None, ref: ImageSetRef) -> bool:
    """Whether the model's training image set has exactly ``ref``'s images (names may differ)."""
    if trained == ref.name:
        return True
    return trained in catalog.spec.image_sets and catalog.image_set(trained).images == ref.images


def run_predict_images(
    plan: Plan, step: PlannedImages, ex: Executor, overwrite: bool
) -> dict[str, Any]:
    """Execute the step; returns its headline figures."""
    from geoseg.train.scene import held_out_images

    cfg, ref, model, folder = step.step, step.image_set, step.model, step.folder
    started = now()
    meta = load_meta(model)
    profile = _profile(meta, ref)
    size = cfg.tile_size or meta.tile_size
    overlap = cfg.overlap if cfg.overlap is not None else meta.overlap
    if size % meta.network.divisor:
        raise ConfigError(f"tile_size {size} must be a multiple of {meta.network.divisor}")
    if cfg.images == "holdout":
        training = meta.training.get("config", {})
        if not _same_images(plan.catalog, training.get("image_set"), ref):
            raise ConfigError(
                f"images: holdout needs a model trained on the images of image set "
                f"'{ref.name}'; '{meta.name}' was not: list the image ids instead"
            )
        held = held_out_images(
            len(ref.ids),
            training.get("validation", {}).get("fraction", 0.2),
            training.get("seed", 0),
        )
        items = [ref.ids[i] for i in sorted(held)]
    elif cfg.images == "all":
        items = list(ref.ids)
    else:
        unknown = [i for i in cfg.images if i not in ref.ids]
        if unknown:
            raise ConfigError(f"image set '{ref.name}' has no images {unknown}")
        items = list(cfg.images)
    geo = ref.georeference
    cell_px = max(1, round(cfg.grid.cell / geo.pixel_size)) if geo else max(1, round(cfg.grid.cell))
    work = step.work
    shutil.rmtree(work, ignore_errors=True)
    staged = work / "staged"
    staged.mkdir(parents=True)
    styles = class_styles(meta)
    names = {c.code: c.name for c in meta.classes}
    job = ImageJob(
        ref,
        model,
        cfg.device,
        1,
        InferenceSpec(
            TileGrid(size, overlap),
            cfg.batch_size,
            tuple(b.mean for b in profile.bands),
            tuple(b.std for b in profile.bands),
            meta.class_codes,
            cfg.augment,
        ),
        meta.class_codes,
        names,
        _class_code(meta, cfg.crop_class, "crop_class") or 0,
        _class_code(meta, cfg.weed_class, "weed_class") or 0,
        _class_code(meta, cfg.soil_class, "soil_class"),
        cell_px,
        cfg.grid.threshold,
        cfg.tolerance,
        staged,
        tuple(items[: cfg.overlays]),
        styles,
        read_fields(cfg),
        cfg.field_id,
        cfg.min_plant_area,
    )
    results = ex.map(functools.partial(predict_image, job), items, "images", lambda i: f"image {i}")
    plants = pd.concat([r.plants for r in results], ignore_index=True)
    plants = gpd.GeoDataFrame(plants, geometry=plants.geometry.name, crs=ref.crs)
    metadata = {
        "GEOSEG_COORDINATES": ref.coordinates,
        "GEOSEG_LICENCE": ref.licence,
    }
    _write_layers(staged / "plants.gpkg", {"plants": plants, "boxes": boxes(plants)}, metadata)
    grid = pd.concat([r.grid for r in results], ignore_index=True)
    grid = gpd.GeoDataFrame(grid, geometry="geometry", crs=ref.crs)
    _write_layers(staged / "weed_grid.gpkg", {"weed_grid": grid}, metadata)
    with warnings.catch_warnings():  # main thread; no CRS is the point in pixel coordinates
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        convert(staged / "weed_grid.gpkg", "weed_grid", staged / "weed_grid.shp", "shp", True)
    table = pd.concat(
        [counts(r.plants, ref.unit).assign(image_id=r.item) for r in results], ignore_index=True
    )
    table["units"] = ref.unit
    with atomic_path(staged / "counts.csv", overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
    if job.fields is not None:
        per_field = pd.concat(
            [r.fields for r in results if r.fields is not None], ignore_index=True
        )
        with atomic_path(staged / "fields.csv", overwrite=True) as tmp:
            per_field.to_csv(tmp, index=False)
    annotated = [r.annotated for r in results if r.annotated is not None]
    plant_level = None
    if annotated:
        outlines = gpd.GeoDataFrame(pd.concat(annotated, ignore_index=True))  # CRS of the parts
        _write_layers(staged / "annotations.gpkg", {"annotations": outlines}, metadata)
        plant_level = plant_scores(outlines)
    evaluated = [r for r in results if r.matrix is not None]
    figures: dict[str, Any] = {
        "images": len(items),
        "plants": len(plants),
        "coordinates": metadata["GEOSEG_COORDINATES"],
        "cells_to_treat": int(grid.treat.sum()),
        "cells": len(grid),
    }
    if plant_level is not None:
        figures["plant_recall"] = {name: row["recall"] for name, row in plant_level.items()}
    if evaluated:
        matrix = np.sum([r.matrix for r in evaluated if r.matrix is not None], axis=0)
        boundary = np.sum([r.boundary for r in evaluated if r.boundary is not None], axis=0)
        result = scores(matrix, meta.class_codes, boundary, cfg.tolerance)
        write_metrics(
            result,
            names,
            staged,
            {
                "images": items,
                "coordinates": figures["coordinates"],
                "per_image_miou": {
                    r.item: scores(r.matrix, meta.class_codes).miou
                    for r in evaluated
                    if r.matrix is not None
                },
                "plants": plant_level,
            },
        )
        plot_confusion(result, names, staged / "confusion.png")
        figures.update(
            miou=result.miou,
            per_class_iou={names[c.code]: c.iou for c in result.classes},
            boundary_f=result.boundary_f,
        )
    finals = {folder / name: staged / name for name in OUTPUTS if (staged / name).exists()}
    finals[folder / "classes"] = staged / "classes"
    if (staged / "overlays").exists():
        finals[folder / "overlays"] = staged / "overlays"
    extras = {
        style_path(folder / name): write_style(style_path(staged / name), vector_qml(styles))
        for name in ("plants.gpkg", "annotations.gpkg")
        if (staged / name).exists()
    }
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    for final in finals:
        if final.is_dir() and overwrite:
            shutil.rmtree(final)
    commit(finals, overwrite)
    commit(extras, overwrite=True)
    write_manifest(
        folder,
        {
            "workflow": str(plan.path),
            "step": step.index,
            "kind": "predict_images",
            "started": started,
            "config": cfg.model_dump(mode="json"),
            "model": {"path": str(model), "name": meta.name},
            "image_set": ref.name,
            "licence": ref.licence,
            "figures": figures,
            "outputs": describe_files([p for p in finals if p.is_file()]),
            "catalog": str(plan.catalog.path),
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return figures


def _write_layers(
    path: Path, layers: dict[str, gpd.GeoDataFrame], metadata: dict[str, str]
) -> None:
    """Several layers into one new GeoPackage (written under a temporary name)."""
    import pyogrio

    with atomic_path(path, overwrite=True) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        for index, (layer, frame) in enumerate(layers.items()):
            multi = bool((frame.geom_type == "MultiPolygon").any())
            pyogrio.write_dataframe(
                frame,
                tmp,
                layer=layer,
                driver="GPKG",
                promote_to_multi=multi,
                geometry_type="MultiPolygon" if multi else "Polygon",
                layer_metadata=metadata,
                append=index > 0,
                dataset_options=None if index else GPKG_OPTIONS,
            )
