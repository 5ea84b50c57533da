"""The ``predict_images`` step: photos of an image set -> class maps, plants, weed grid, metrics.

Each photo is one task (:mod:`geoseg.workflow.steps.photo`); this module picks the photos (the
held-out ones as the model's bundle records them, all, or listed ids) and gathers the tasks'
results into the step's layers, tables and metrics. Photos without georeferencing are processed
in pixel coordinates, and every output says so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import geopandas as gpd
import pandas as pd
from pydantic import Field

from geoseg.analysis.instances import boxes, counts
from geoseg.analysis.zonal import field_layer
from geoseg.catalog import Catalog, ImageSetRef
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError
from geoseg.evaluation.plants import plant_scores
from geoseg.evaluation.report import plot_confusion, write_metrics
from geoseg.evaluation.run import Counts
from geoseg.executor import ExecutorSpec
from geoseg.export.atomic import atomic_path
from geoseg.export.style import class_styles, style_path, vector_qml, write_style
from geoseg.export.vector import convert, write_layers
from geoseg.io.images import read_image
from geoseg.model.bundle import BundleMeta, load_meta
from geoseg.model.device import torch_threads
from geoseg.workflow.manifest import Figures, ModelRecord, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.steps.inference import InferenceConfig
from geoseg.workflow.steps.photo import PhotoJob, PlantClasses, predict_photo
from geoseg.workflow.transaction import Transaction


class WeedGridConfig(ClosedModel):
    """Cells for variable-rate spraying: size (px, or m when georeferenced) and weed threshold."""

    cell: float = Field(default=100, gt=0)
    threshold: float = Field(default=0.05, ge=0, le=1)


class PredictImagesConfig(InferenceConfig):
    """Predict photos of an image set; per-plant polygons, boxes, counts, weed grid, metrics."""

    image_set: str
    model: str
    output: str
    images: Literal["holdout", "all"] | list[str] = "holdout"
    crop_class: str = "crop"
    weed_class: str = "weed"
    soil_class: str | None = "soil"
    grid: WeedGridConfig = Field(default_factory=WeedGridConfig)
    tolerance: int = Field(default=3, ge=0, le=50)
    overlays: int = Field(default=4, ge=0)
    fields: str | None = None
    field_id: str = "field_id"
    min_plant_area: float = Field(default=0.0, ge=0)  # px² or m²: smaller regions are not plants


class ImagesFigures(Figures):
    """Photos, plants, weed-grid cells; scores where annotations exist."""

    images: int
    plants: int
    coordinates: str
    cells_to_treat: int
    cells: int
    plant_recall: dict[str, float | None] | None = None
    miou: float | None = None
    per_class_iou: dict[str, float | None] | None = None
    boundary_f: float | None = None


#: What a predict_images step always writes (metrics and overlays only where annotations exist).
IMAGE_OUTPUTS = (
    "plants.gpkg",
    "weed_grid.gpkg",
    "weed_grid.shp",
    "counts.csv",
    "classes",
    "confidence",
)


@dataclass(frozen=True)
class PlannedImages(PlannedStep[PredictImagesConfig]):
    """A predict_images step: its image set, model, fields layer and output folder resolved."""

    kind: ClassVar[str] = "predict_images"
    config_type: ClassVar[type[PredictImagesConfig]] = PredictImagesConfig
    figures_type: ClassVar[type[ImagesFigures]] = ImagesFigures

    image_set: ImageSetRef
    model: Path
    fields: Path | None

    @classmethod
    def plan(cls, index: int, config: PredictImagesConfig, ctx: PlanContext) -> PlannedImages:
        """Resolve the image set, the model (checked unless trained earlier) and the paths."""
        step = cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.catalog.image_set(config.image_set),
            ctx.path(config.model),
            ctx.path(config.fields) if config.fields is not None else None,
        )
        ctx.bundle(step.model)
        return step

    def outputs(self) -> list[Path]:
        """Final paths this step writes (class maps and confidence go to folders)."""
        extra: tuple[str, ...] = ("fields.csv",) if self.fields is not None else ()
        extra += ("annotations.gpkg",) if self.image_set.polygons else ()
        return [self.folder / n for n in IMAGE_OUTPUTS + extra]

    def inputs(self) -> list[Path]:
        """The model bundle and the fields layer."""
        return [p for p in (self.model, self.fields) if p is not None]

    def reads(self) -> list[Path]:
        """The photos, the fields layer, the model bundle, and the annotations and masks there are.

        Annotations are optional here (photos without one are predicted, not scored).
        """
        ref = self.image_set
        optional = (*ref.annotations, *ref.polygons, *ref.vegetation)
        present = [path for _, path in optional if path.exists()]
        return [*self.inputs(), *(path for _, path in ref.images), *present]

    def check_resources(self, spec: ExecutorSpec, where: str) -> None:
        """Refuse batches the memory cannot hold (photos are not opened to check tile sizes)."""
        if self.model.exists():
            self.config.check_resources(load_meta(self.model), None, spec, where)

    def describe(self) -> str:
        """``predict_images image_set=NAME``."""
        return f"{self.kind} image_set={self.image_set.name}"

    def items(self, meta: BundleMeta, catalog: Catalog) -> list[str]:
        """The ids to predict: the bundle's held-out images, all, or the listed ones."""
        ref, images = self.image_set, self.config.images
        if images == "all":
            return list(ref.ids)
        if images != "holdout":
            if not images:
                raise ConfigError(f"images: lists no image of image set '{ref.name}' to predict")
            unknown = [i for i in images if i not in ref.ids]
            if unknown:
                raise ConfigError(f"image set '{ref.name}' has no images {unknown}")
            return list(images)
        trained = meta.trained_image_set
        held = meta.held_out_items(trained) if trained else None
        if trained is None or held is None or not catalog.same_images(trained, ref):
            raise ConfigError(
                f"images: holdout needs a model trained on the images of image set '{ref.name}' "
                f"that records which it held out; '{meta.name}' does not: list the image ids"
            )
        missing = [i for i in held if i not in ref.ids]
        if missing:
            raise ConfigError(
                f"model '{meta.name}' held out images {missing}, which image set '{ref.name}' no "
                "longer lists: restore them in the catalog or list the image ids to predict"
            )
        return [i for i in ref.ids if i in held]

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Predict every photo as a task, then stage layers, tables, metrics and plots."""
        cfg, ref, staged = self.config, self.image_set, tx.staged
        meta = load_meta(self.model)
        profile = meta.profile_for(ref.name, ref.bands, ref.units, ref.grid(1, 1))
        items = self.items(meta, ctx.catalog)
        first = read_image(dict(ref.images)[items[0]], len(ref.bands))
        cfg.check_input(f"image set {ref.name}", ref.bands, first, profile, ctx.where(self))
        geo = ref.georeference
        cell = cfg.grid.cell / geo.pixel_size if geo else cfg.grid.cell
        styles = class_styles(meta)
        job = PhotoJob(
            ref,
            self.model,
            cfg.device,
            torch_threads(ctx.executor.spec.workers),
            cfg.spec(meta, profile, ctx.where(self)),
            PlantClasses(
                _class_code(meta, cfg.crop_class, "crop_class") or 0,
                _class_code(meta, cfg.weed_class, "weed_class") or 0,
                _class_code(meta, cfg.soil_class, "soil_class"),
                {c.code: c.name for c in meta.classes},
            ),
            styles,
            staged,
            max(1, round(cell)),
            cfg.grid.threshold,
            cfg.tolerance,
            cfg.min_plant_area,
            tuple(items[: cfg.overlays]),
            field_layer(self.fields, cfg.field_id) if self.fields is not None else None,
        )
        task = functools.partial(predict_photo, job)
        results = ctx.executor.map(task, items, "images", lambda i: f"image {i}")
        metadata = {"GEOSEG_COORDINATES": ref.coordinates, "GEOSEG_LICENCE": ref.licence}
        plants = gpd.GeoDataFrame(pd.concat([r.plants for r in results], ignore_index=True))
        plants = plants.set_crs(ref.crs) if ref.crs else plants
        write_layers(staged / "plants.gpkg", {"plants": plants, "boxes": boxes(plants)}, metadata)
        cells = gpd.GeoDataFrame(pd.concat([r.grid for r in results], ignore_index=True))
        cells = cells.set_crs(ref.crs) if ref.crs else cells
        write_layers(staged / "weed_grid.gpkg", {"weed_grid": cells}, metadata)
        convert(staged / "weed_grid.gpkg", "weed_grid", staged / "weed_grid.shp", "shp", True)
        table = pd.concat(
            [counts(r.plants, ref.unit).assign(image_id=r.item) for r in results], ignore_index=True
        )
        table["units"] = ref.unit
        _write_csv(table, staged / "counts.csv")
        if job.fields is not None:
            _write_csv(
                pd.concat([r.fields for r in results], ignore_index=True), staged / "fields.csv"
            )
        figures = ImagesFigures(
            images=len(items),
            plants=len(plants),
            coordinates=ref.coordinates,
            cells_to_treat=int(cells.treat.sum()),
            cells=len(cells),
        )
        annotated = [r.annotated for r in results if r.annotated is not None]
        plant_level = None
        if annotated:
            outlines = gpd.GeoDataFrame(pd.concat(annotated, ignore_index=True))
            write_layers(staged / "annotations.gpkg", {"annotations": outlines}, metadata)
            plant_level = plant_scores(outlines)
            figures = figures.model_copy(
                update={"plant_recall": {n: row["recall"] for n, row in plant_level.items()}}
            )
        evaluated = [(r.item, r.counts) for r in results if r.counts is not None]
        if evaluated:
            total = sum((c for _, c in evaluated), Counts.zero())
            result = total.scores(meta.class_codes, [], cfg.tolerance)
            names = job.classes.names
            per_image = {
                i: c.scores(meta.class_codes, [], cfg.tolerance).miou for i, c in evaluated
            }
            extra = {
                "images": items,
                "coordinates": ref.coordinates,
                "per_image_miou": per_image,
                "plants": plant_level,
            }
            write_metrics(result, names, staged, extra)
            plot_confusion(result, names, staged / "confusion.png")
            figures = figures.model_copy(
                update={
                    "miou": result.miou,
                    "per_class_iou": {names[c.code]: c.iou for c in result.classes},
                    "boundary_f": result.boundary_f,
                }
            )
        for name in ("plants.gpkg", "annotations.gpkg"):
            if (staged / name).exists():
                write_style(style_path(staged / name), vector_qml(styles))
        model = ModelRecord(
            path=str(self.model), name=meta.name, weights_sha256=meta.weights_sha256
        )
        return Outcome(figures, Provenance(image_set=ref.name, licence=ref.licence, model=model))


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)


def _class_code(meta: BundleMeta, name: str | None, what: str) -> int | None:
    """The model's code for class ``name`` given as ``what`` (None stays None)."""
    if name is None:
        return None
    code = meta.class_code(name)
    if code is None:
        names = [c.name for c in meta.classes]
        raise ConfigError(f"{what} '{name}' is not a class of model '{meta.name}': {names}")
    return code
