"""The ``change`` step: transitions between two class maps of one grid, and change polygons."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from geoseg.analysis.change import (
    ChangeJob,
    change_code,
    change_features,
    change_names,
    changed_area,
    empty_change_features,
    mapped_transitions,
    transition_table,
    transitions,
)
from geoseg.classes import class_info, common_names
from geoseg.config import ClosedModel
from geoseg.errors import GridMismatchError
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import COG_BLOCK, assemble_cog
from geoseg.export.style import ClassStyle, style_path, vector_qml, write_style
from geoseg.export.vector import write_gpkg
from geoseg.io.raster import file_grid
from geoseg.tiling.grid import ChunkPlan
from geoseg.vector.measure import pixel_area_m2
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, vectorise
from geoseg.workflow.manifest import Figures, GridRecord, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction


class ChangeConfig(ClosedModel):
    """Transitions between two class maps of the same grid, and change polygons."""

    before: str
    after: str
    output: str
    to_classes: list[int] = Field(default_factory=list)
    min_area_m2: float = Field(default=0.0, ge=0)
    simplify_m: float = Field(default=0.0, ge=0)
    chunk_size: int = Field(default=1024, ge=64)


class ChangeFigures(Figures):
    """Changed area (all, and as mapped), change polygons and the transition matrix."""

    changed_km2: float
    mapped_change_km2: float  # into to_classes, as change.tif shows it
    polygons: int
    transitions_m2: dict[str, dict[str, float]]


@dataclass(frozen=True)
class PlannedChange(PlannedStep[ChangeConfig]):
    """A change step: its two class maps and output folder resolved."""

    kind: ClassVar[str] = "change"
    config_type: ClassVar[type[ChangeConfig]] = ChangeConfig
    figures_type: ClassVar[type[ChangeFigures]] = ChangeFigures

    before: Path
    after: Path

    @classmethod
    def plan(cls, index: int, config: ChangeConfig, ctx: PlanContext) -> PlannedChange:
        """Resolve both class maps and the folder."""
        return cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.existing(config.before),
            ctx.existing(config.after),
        )

    def outputs(self) -> list[Path]:
        """The transition matrix, the change map and the change polygons."""
        return [self.folder / n for n in ("transitions.csv", "change.tif", "change.gpkg")]

    def inputs(self) -> list[Path]:
        """The two class maps."""
        return [self.before, self.after]

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Count transitions and write change parts per chunk; assemble, vectorise, stage."""
        cfg = self.config
        grid, other = file_grid(self.before), file_grid(self.after)
        grid.require_crs(f"change areas in m² ({self.before})")
        if not grid.same_as(other):
            raise GridMismatchError(
                f"{self.before} ({grid.describe()}) and {self.after} ({other.describe()}) are not "
                "on one grid; predict both dates on the same grid (gdalwarp one onto the other "
                "first)"
            )
        plan = ChunkPlan.on_blocks(grid.shape, cfg.chunk_size, COG_BLOCK)
        job = ChangeJob(self.before, self.after, grid, plan, tuple(cfg.to_classes), tx.parts)
        counts = transitions(job, ctx.executor)
        pixel = pixel_area_m2(grid)
        table = transition_table(counts, common_names(), pixel)
        table_path, change_map, gpkg = (tx.stage(p) for p in self.outputs())
        with atomic_path(table_path, overwrite=True) as tmp:
            table.to_csv(tmp, index_label="before \\\\ after (m2)")
        labels = change_names(common_names())
        mapped = mapped_transitions(counts, cfg.to_classes)
        styles = [
            ClassStyle(change_code(b, a), labels[change_code(b, a)], class_info(a).color)
            for b, a, _ in mapped
        ]
        colormap = {s.code: (*s.rgb, 255) for s in styles}
        parts = [(c.core, job.part(c)) for c in plan.chunks()]
        assemble_cog(parts, grid, change_map, "uint8", 0, "mode", colormap, "change code", True)
        settings = VectorSettings(cfg.min_area_m2, cfg.simplify_m)
        features = vectorise(
            VectoriseJob(change_map, None, grid, plan, settings), labels, ctx.executor
        )
        polygons = write_gpkg(
            change_features(features), gpkg, "change", empty_change_features(grid)
        )
        write_style(style_path(gpkg), vector_qml(styles))
        figures = ChangeFigures(
            changed_km2=round(changed_area(table) / 1e6, 4),
            mapped_change_km2=round(sum(n for _, _, n in mapped) * pixel / 1e6, 4),
            polygons=polygons,
            transitions_m2=json.loads(table.to_json()),
        )
        return Outcome(figures, Provenance(grid=GridRecord.of(grid)))
