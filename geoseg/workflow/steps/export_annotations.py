"""The ``export_annotations`` step: a prediction run's maps as tasks for labelling tools.

From a ``predict_images`` run: each photo and its predicted class map (and confidence) become an
item, ranked by how useful labelling it would be, and written in every chosen format (CVAT XML
and masks, COCO, Label Studio, a GeoPackage review layer) beside ``tasks.json``, the record an
import reads (docs/DESIGN.md §16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from geoseg.annotation.exporting import PREANNOTATION, export, photo_ids, photo_predictions
from geoseg.annotation.formats import FILES, FormatName
from geoseg.annotation.priority import prioritise_predictions
from geoseg.annotation.record import RECORD, ExportRecord
from geoseg.catalog import ImageSetRef
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError
from geoseg.model.bundle import ClassInfo
from geoseg.workflow.manifest import Figures, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction

ALL_FORMATS: list[FormatName] = ["cvat-images", "cvat-masks", "coco", "labelstudio", "gpkg"]


class ExportAnnotationsConfig(ClosedModel):
    """Pre-annotations from a ``predict_images`` run, for labelling tools."""

    predictions: str  # the predict_images output folder (classes/, confidence/)
    image_set: str  # the image set whose photos it predicted
    output: str
    formats: list[FormatName] = Field(default_factory=lambda: list(ALL_FORMATS), min_length=1)
    background: int | None = Field(default=None, ge=1, le=255)  # the class nobody outlines
    images: list[str] | None = None  # default: every photo the run predicted


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
    image_set: ImageSetRef

    @classmethod
    def plan(
        cls, index: int, config: ExportAnnotationsConfig, ctx: PlanContext
    ) -> PlannedExportAnnotations:
        """Resolve the run folder (now or written by an earlier step) and the image set."""
        step = cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.path(config.predictions),
            ctx.catalog.image_set(config.image_set),
        )
        codes = [code for code, _, _ in step.image_set.classes]
        if config.background is not None and config.background not in codes:
            raise ConfigError(
                f"{ctx.where}.background {config.background} is not a class of image set "
                f"'{step.image_set.name}' ({codes})"
            )
        return step

    def outputs(self) -> list[Path]:
        """The record, the images and pre-annotations, and each format's files."""
        names = [RECORD, "images", PREANNOTATION.split("/")[0], "priority.csv"]
        names += [n for f in dict.fromkeys(self.config.formats) for n in FILES[f]]
        return [self.folder / n for n in names]

    def inputs(self) -> list[Path]:
        """The run's class maps (``classes/``; ``confidence/`` is read where it exists)."""
        return [self.predictions / "classes"]

    def reads(self) -> list[Path]:
        """The run's class maps and the photos."""
        return [*self.inputs(), *(path for _, path in self.image_set.images)]

    def describe(self) -> str:
        """``export_annotations image_set=NAME``."""
        return f"{self.kind} image_set={self.image_set.name}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Items from the run, ranked, written in every format into staging."""
        cfg, ref = self.config, self.image_set
        ids = cfg.images if cfg.images is not None else photo_ids(self.predictions)
        if not ids:
            raise ConfigError(f"{ctx.where(self)}: {self.predictions} holds no class maps")
        unknown = [i for i in ids if i not in ref.ids]
        if unknown:
            raise ConfigError(
                f"{ctx.where(self)}: images {unknown} are not in image set '{ref.name}'"
            )
        out = tx.staged
        predictions = list(photo_predictions(self.predictions, dict(ref.images), ids, out))
        predictions = prioritise_predictions(predictions, out)
        record = ExportRecord(
            source=f"{self.predictions} (image set {ref.name})",
            classes=[ClassInfo(code=c, name=n, color=col) for c, n, col in ref.classes],
            background=cfg.background,
        )
        export(predictions, record, list(dict.fromkeys(cfg.formats)), out)
        ordered = sorted(predictions, key=lambda p: -(p.item.priority or 0.0))
        figures = ExportFigures(
            items=len(predictions),
            formats=list(dict.fromkeys(cfg.formats)),
            label_first=[p.item.id for p in ordered[:5]],
        )
        return Outcome(figures, Provenance(image_set=ref.name, licence=ref.licence))
