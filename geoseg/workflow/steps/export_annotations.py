"""The ``export_annotations`` step: a prediction run's maps as tasks for labelling tools.

From a ``predict_images`` run each photo, from a ``predict`` run each chip of the scene, with its
predicted class map (and confidence) becomes an item, ranked by how useful labelling it would be,
and written in every chosen format (CVAT XML and masks, COCO, Label Studio, a GeoPackage review
layer) beside ``tasks.json``, the record an import reads (docs/DESIGN.md §16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from geoseg.annotation.chips import CHIP_SIZE, write_chip_images
from geoseg.annotation.exporting import (
    PREANNOTATION,
    export,
    photo_ids,
    photo_predictions,
    scene_predictions,
)
from geoseg.annotation.formats import FILES, FormatName
from geoseg.annotation.priority import prioritise_predictions
from geoseg.annotation.record import RECORD, ExportRecord
from geoseg.catalog import ImageSetRef, SourceRef
from geoseg.classes import class_info, common_names, parse_class_codes
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError
from geoseg.io.raster import band_tags
from geoseg.io.source import RasterSource
from geoseg.model.bundle import ClassInfo
from geoseg.types import Location
from geoseg.workflow.manifest import Figures, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction

ALL_FORMATS: list[FormatName] = ["cvat-images", "cvat-masks", "coco", "labelstudio", "gpkg"]


class ExportAnnotationsConfig(ClosedModel):
    """Pre-annotations from a ``predict_images`` run (photos) or a ``predict`` run (chips)."""

    predictions: str  # the run's output folder
    image_set: str | None = None  # the image set whose photos a predict_images run predicted
    source: str | None = None  # or the catalog source (scene) a predict run predicted
    output: str
    formats: list[FormatName] = Field(default_factory=lambda: list(ALL_FORMATS), min_length=1)
    background: int | None = Field(default=None, ge=1, le=255)  # the class nobody outlines
    images: list[str] | None = None  # photos only; default: every photo the run predicted
    chip_size: int = Field(default=CHIP_SIZE, ge=32)  # scenes only: chip edge in pixels
    # Before image paths in Label Studio tasks: where Label Studio finds the export's images
    # (e.g. /data/local-files/?d=tasks/ with local storage, or https://host/tasks/).
    image_prefix: str = ""

    @model_validator(mode="after")
    def _one_origin(self) -> ExportAnnotationsConfig:
        if (self.image_set is None) == (self.source is None):
            raise ValueError("give image_set (a predict_images run) or source (a predict run)")
        if self.source is not None and self.images is not None:
            raise ValueError("images selects photos of an image set; a scene is cut into chips")
        return self


class ExportFigures(Figures):
    """How many items went out, in which formats, and the first few to label."""

    items: int
    formats: list[str]
    label_first: list[str]


@dataclass(frozen=True)
class PlannedExportAnnotations(PlannedStep[ExportAnnotationsConfig]):
    """An export_annotations step: its run folder and image set resolved."""

    kind: ClassVar[str] = "export_annotations"
    config_type: ClassVar[type[ExportAnnotationsConfig]] = ExportAnnotationsConfig
    figures_type: ClassVar[type[ExportFigures]] = ExportFigures

    predictions: Path
    image_set: ImageSetRef | None
    source: SourceRef | None

    @classmethod
    def plan(
        cls, index: int, config: ExportAnnotationsConfig, ctx: PlanContext
    ) -> PlannedExportAnnotations:
        """Resolve the run folder (now or written by an earlier step) and the image set."""
        image_set = source = None
        if config.image_set is not None:
            image_set = ctx.catalog.image_set(config.image_set)
            codes = [code for code, _, _ in image_set.classes]
            if config.background is not None and config.background not in codes:
                raise ConfigError(
                    f"{ctx.where}.background {config.background} is not a class of image set "
                    f"'{image_set.name}' ({codes})"
                )
        if config.source is not None:
            source = ctx.catalog.source(config.source)
        return cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.path(config.predictions),
            image_set,
            source,
        )

    def outputs(self) -> list[Path]:
        """The record, the images and pre-annotations, and each format's files."""
        names = [RECORD, "images", PREANNOTATION.split("/")[0], "nodata", "priority.csv"]
        names += [n for f in dict.fromkeys(self.config.formats) for n in FILES[f]]
        return [self.folder / n for n in names]

    def inputs(self) -> list[Path]:
        """The run's class maps (its confidence is read where it exists)."""
        return [self.predictions / ("classes" if self.image_set else "classes.tif")]

    def reads(self) -> list[Location]:
        """The run's class maps and the photos, or the scene's files."""
        if self.image_set is not None:
            return [*self.inputs(), *(path for _, path in self.image_set.images)]
        assert self.source is not None  # one of the two, as the config says
        return [*self.inputs(), *self.source.paths]

    def describe(self) -> str:
        """``export_annotations image_set=NAME`` or ``source=NAME``."""
        origin = self.image_set or self.source
        assert origin is not None
        return f"{self.kind} {'image_set' if self.image_set else 'source'}={origin.name}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Items from the run, ranked, written in every format into staging."""
        cfg, out = self.config, tx.staged
        scene = None
        if self.image_set is not None:
            ref = self.image_set
            predictions = list(
                photo_predictions(self.predictions, dict(ref.images), self._ids(ctx), out)
            )
            classes = [ClassInfo(code=c, name=n, color=col) for c, n, col in ref.classes]
            name, origin, licence = ref.name, f"image set {ref.name}", ref.licence
        else:
            assert self.source is not None
            source = RasterSource.open(self.source)
            scene, predictions = scene_predictions(self.predictions, source, cfg.chip_size, out)
            codes = parse_class_codes(band_tags(self.predictions / "classes.tif"))
            classes = [
                ClassInfo(code=c, name=class_info(c).name, color=class_info(c).color)
                for c in (codes or sorted(common_names()))
            ]
            name, origin = self.source.name, f"source {self.source.name}"
            licence = self.source.licence
        (out / "nodata").mkdir(exist_ok=True)  # masks of items with no-data pixels (maybe none)
        predictions = prioritise_predictions(predictions, out)
        record = ExportRecord(
            source=f"{self.predictions} ({origin})",
            origin=name,
            classes=classes,
            background=cfg.background,
            scene=scene,
            items=[p.item for p in predictions],
        )
        if scene is not None:
            write_chip_images(source, record, out)
        export(predictions, record, list(dict.fromkeys(cfg.formats)), out, cfg.image_prefix)
        ordered = sorted(predictions, key=lambda p: -(p.item.priority or 0.0))
        figures = ExportFigures(
            items=len(predictions),
            formats=list(dict.fromkeys(cfg.formats)),
            label_first=[p.item.id for p in ordered[:5]],
        )
        return Outcome(figures, Provenance(source=origin, licence=licence))

    def _ids(self, ctx: RunContext) -> list[str]:
        """The photos to export: the listed ones, else every one the run predicted."""
        ref, cfg = self.image_set, self.config
        assert ref is not None
        ids = cfg.images if cfg.images is not None else photo_ids(self.predictions)
        if not ids:
            raise ConfigError(f"{ctx.where(self)}: {self.predictions} holds no class maps")
        unknown = [i for i in ids if i not in ref.ids]
        if unknown:
            raise ConfigError(
                f"{ctx.where(self)}: images {unknown} are not in image set '{ref.name}'"
            )
        return ids
