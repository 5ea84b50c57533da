"""The ``zonal`` step: area and share of each class per district / parcel polygon."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from geoseg.analysis.zonal import (
    ZonalJob,
    table_frame,
    without_absent_classes,
    zonal_counts,
    zonal_table,
    zone_layer,
)
from geoseg.classes import common_names
from geoseg.config import ClosedModel
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import COG_BLOCK
from geoseg.export.vector import write_gpkg
from geoseg.io.raster import file_grid
from geoseg.tiling.grid import ChunkPlan
from geoseg.workflow.manifest import Figures, GridRecord, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction

#: A name for the outputs (``NAME.gpkg``, ``NAME.csv``) and the layer.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


class ZonalConfig(ClosedModel):
    """Area and share of each class per district / parcel polygon."""

    classes: str
    zones: str
    layer: str | None = None
    output: str
    name: str = Field(default="zonal", pattern=NAME_PATTERN)
    chunk_size: int = Field(default=1024, ge=64)


class ZonalFigures(Figures):
    """How many zones, and the mapped area inside them."""

    zones: int
    mapped_km2: float


@dataclass(frozen=True)
class PlannedZonal(PlannedStep[ZonalConfig]):
    """A zonal step: its class map, zone layer and output folder resolved."""

    kind: ClassVar[str] = "zonal"
    config_type: ClassVar[type[ZonalConfig]] = ZonalConfig
    figures_type: ClassVar[type[ZonalFigures]] = ZonalFigures

    classes: Path
    zones: Path

    @classmethod
    def plan(cls, index: int, config: ZonalConfig, ctx: PlanContext) -> PlannedZonal:
        """Resolve the class map, the zone layer and the folder."""
        return cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.existing(config.classes),
            ctx.existing(config.zones),
        )

    def outputs(self) -> list[Path]:
        """The zones with their statistics (GeoPackage) and the same table as CSV."""
        return [self.folder / f"{self.config.name}.gpkg", self.folder / f"{self.config.name}.csv"]

    def inputs(self) -> list[Path]:
        """The class map and the zone layer."""
        return [self.classes, self.zones]

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Count (zone, class) pixels chunk by chunk, then stage the table."""
        cfg = self.config
        grid = file_grid(self.classes)
        grid.require_crs(f"zonal statistics in m² ({self.classes})")
        zones = zone_layer(self.zones, cfg.layer, grid)
        plan = ChunkPlan.on_blocks(grid.shape, cfg.chunk_size, COG_BLOCK)
        job = ZonalJob(self.classes, self.zones, cfg.layer, grid, plan)
        counts = zonal_counts(job, ctx.executor)
        table = without_absent_classes(zonal_table(zones, counts, common_names(), grid))
        gpkg, csv = self.outputs()
        write_gpkg([table], tx.stage(gpkg), cfg.name, table.iloc[:0])
        with atomic_path(tx.stage(csv), overwrite=True) as tmp:
            table_frame(table).to_csv(tmp, index_label="fid")
        figures = ZonalFigures(
            zones=len(table), mapped_km2=round(float(table.mapped_m2.sum()) / 1e6, 4)
        )
        return Outcome(figures, Provenance(grid=GridRecord.of(grid)))
