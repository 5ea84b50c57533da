"""The ``evaluate`` step: streamed metrics, error map, reference map and plots of a class map."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from geoseg.catalog import SourceRef
from geoseg.classes import class_info, parse_class_codes
from geoseg.config import ClosedModel
from geoseg.errors import GridMismatchError
from geoseg.evaluation.report import (
    METRICS_CSV,
    METRICS_JSON,
    plot_confusion,
    plot_overlay,
    write_metrics,
)
from geoseg.evaluation.run import (
    ERROR_COLOURS,
    ERROR_NAMES,
    EvaluateJob,
    evaluate,
    missed_pixels,
    model_coverage,
)
from geoseg.export.raster import assemble_cog
from geoseg.export.style import ClassStyle, raster_qml, style_path, write_style
from geoseg.io.labels import open_labels
from geoseg.io.raster import band_tags, file_grid, read_decimated
from geoseg.io.source import RasterSource
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Location
from geoseg.workflow.manifest import Figures, GridRecord, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction

log = logging.getLogger(__name__)

#: What an evaluate step writes into its output folder.
EVALUATE_OUTPUTS = (
    METRICS_JSON,
    METRICS_CSV,
    "confusion.png",
    "overlay.png",
    "errors.tif",
    "reference.tif",
)


class EvaluateConfig(ClosedModel):
    """Compare a class map with reference labels of a catalog source (raster or polygons)."""

    prediction: str
    source: str
    labels: str | None = None
    output: str
    tolerance: int = Field(default=3, ge=0, le=50)
    ignore: list[int] = Field(default_factory=list)
    classes: list[int] | None = None
    within: str | None = None
    chunk_size: int = Field(default=1024, ge=64)


class EvaluateFigures(Figures):
    """The headline scores (``metrics.json`` has every figure).

    ``miou_model_classes`` averages only the reference classes the model can predict (from the
    class map's ``GEOSEG_CLASS_CODES`` tag, or ``classes:``); ``miou`` averages all of them, so a
    class the model cannot predict pulls it down with an IoU of 0.
    """

    miou: float | None
    miou_model_classes: float | None = None
    classes_the_model_cannot_predict: list[str] = Field(default_factory=list)
    overall_accuracy: float | None
    boundary_f: float | None
    per_class_iou: dict[str, float | None]
    seconds: float


@dataclass(frozen=True)
class PlannedEvaluate(PlannedStep[EvaluateConfig]):
    """An evaluate step with its source, prediction, optional mask and output folder resolved."""

    kind: ClassVar[str] = "evaluate"
    config_type: ClassVar[type[EvaluateConfig]] = EvaluateConfig
    figures_type: ClassVar[type[EvaluateFigures]] = EvaluateFigures

    source: SourceRef
    prediction: Path
    within: Path | None

    @classmethod
    def plan(cls, index: int, config: EvaluateConfig, ctx: PlanContext) -> PlannedEvaluate:
        """Resolve the source and its label layer, the class map, the mask and the folder."""
        source = ctx.catalog.source(config.source)
        source.label(config.labels)
        return cls(
            index,
            config,
            ctx.folder(config.output),
            source,
            ctx.existing(config.prediction),
            ctx.existing(config.within) if config.within else None,
        )

    def outputs(self) -> list[Path]:
        """Final paths this step writes."""
        return [self.folder / name for name in EVALUATE_OUTPUTS]

    def inputs(self) -> list[Path]:
        """The class map and the optional mask."""
        return [p for p in (self.prediction, self.within) if p is not None]

    def reads(self) -> list[Location]:
        """The class map, the mask, the source's imagery (for the overlay) and its labels."""
        return [*self.inputs(), *self.source.paths, self.source.label(self.config.labels).path]

    def describe(self) -> str:
        """``evaluate source=NAME``."""
        return f"{self.kind} source={self.source.name}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Count per chunk, score, and stage the error and reference maps, metrics and plots."""
        cfg, staged = self.config, tx.staged
        clock = time.perf_counter()
        source = RasterSource.open(self.source)
        labels = open_labels(source, cfg.labels)
        for path, what in ((self.prediction, "prediction"), (self.within, "'within' mask")):
            if path is not None and not file_grid(path).same_as(source.grid):
                raise GridMismatchError(
                    f"{what} {path} is not on the grid of source '{source.name}' "
                    f"({source.grid.describe()}); evaluate a class map predicted from that source"
                )
        chunk_plan = ChunkPlan(source.grid.shape, source.chunk_shape(cfg.chunk_size))
        job = EvaluateJob(
            self.prediction,
            labels,
            source.grid,
            chunk_plan,
            tuple(cfg.ignore),
            cfg.tolerance,
            self.within,
            tx.parts,
        )
        counts = evaluate(job, ctx.executor)
        result = counts.scores(cfg.classes, cfg.ignore, cfg.tolerance)
        names = {c: class_info(c).name for c in result.codes}
        model_codes = parse_class_codes(band_tags(self.prediction)) or cfg.classes
        coverage = model_coverage(result, model_codes, names)
        if coverage.unpredictable:
            log.warning(
                "reference classes %s are not classes the model can predict (%s): they score "
                "IoU 0. mIoU over all reference classes %s, over the model's classes %s",
                ", ".join(f"{n} ({px} px)" for n, px in coverage.unpredictable.items()),
                self.prediction,
                _fmt(result.miou),
                _fmt(coverage.miou),
            )
        colours = {c: class_info(c).color for c in result.codes}
        styles = [ClassStyle(c, names[c], colours[c]) for c in result.codes]
        error_styles = [ClassStyle(c, ERROR_NAMES[c], ERROR_COLOURS[c]) for c in ERROR_NAMES]
        for kind, style in (("errors", error_styles), ("reference", styles)):
            target = staged / f"{kind}.tif"
            parts = [(c.core, job.part(kind, c)) for c in chunk_plan.chunks()]
            colormap = {s.code: (*s.rgb, 255) for s in style}
            assemble_cog(parts, source.grid, target, "uint8", 0, "mode", colormap, kind, True)
            write_style(style_path(target), raster_qml(style))
        missed = missed_pixels(counts.matrix)
        extra = {
            "prediction": str(self.prediction),
            "source": source.name,
            "labels": labels.ref.name,
            "ignore": cfg.ignore,
            "within": str(self.within) if self.within else None,
            "labelled_px_without_prediction": {names.get(c, str(c)): n for c, n in missed.items()},
            "model_classes": [names.get(c, str(c)) for c in model_codes or ()] or None,
            "miou_model_classes": coverage.miou,
            "classes_the_model_cannot_predict": coverage.unpredictable,
        }
        write_metrics(result, names, staged, extra)
        plot_confusion(result, names, staged / "confusion.png")
        rgb = source.rgb_preview()
        shape = rgb.shape[1:]
        plot_overlay(
            rgb,
            read_decimated(self.prediction, shape),
            read_decimated(staged / "reference.tif", shape),
            read_decimated(staged / "errors.tif", shape),
            colours,
            names,
            ERROR_COLOURS,
            ERROR_NAMES,
            staged / "overlay.png",
        )
        figures = EvaluateFigures(
            miou=result.miou,
            miou_model_classes=coverage.miou,
            classes_the_model_cannot_predict=list(coverage.unpredictable),
            overall_accuracy=result.overall_accuracy,
            boundary_f=result.boundary_f,
            per_class_iou={names[c.code]: c.iou for c in result.classes},
            seconds=round(time.perf_counter() - clock, 3),
        )
        return Outcome(figures, Provenance(source=source.name, grid=GridRecord.of(source.grid)))


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
