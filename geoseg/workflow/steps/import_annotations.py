"""The ``import_annotations`` step: corrected annotations back as labels, and the edit effort.

Reads a labelling tool's file (or the export's own, for an unchanged round trip) against the
export's record, writes each item's labels as a colour-coded PNG with a catalog file that
declares them as an image set (so ``train`` and ``evaluate`` use them as they are), and the edit
effort against the exported pre-annotations (docs/DESIGN.md §16).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import Field

from geoseg.annotation.chips import place, scene_grid
from geoseg.annotation.effort import effort_table
from geoseg.annotation.exporting import read_preannotation, write_png
from geoseg.annotation.formats import READS, FormatName, annotation_format
from geoseg.annotation.record import RECORD, ExportRecord
from geoseg.config import ClosedModel
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import write_cog
from geoseg.workflow.manifest import Figures
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction


class ImportAnnotationsConfig(ClosedModel):
    """Corrected annotations in one format, read against an export's record."""

    export: str  # the export_annotations output folder (tasks.json)
    format: FormatName
    path: str | None = None  # the corrected file or folder; default: the export's own
    output: str
    name: str = Field(default="corrected", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    tolerance: int = Field(default=3, ge=1)  # px, for the boundary F of the edit effort


class ImportFigures(Figures):
    """How much the annotators changed, over all items."""

    items: int
    changed_share: float  # of the labelled pixels
    unchanged_items: int
    mean_boundary_f: float | None


@dataclass(frozen=True)
class PlannedImportAnnotations(PlannedStep[ImportAnnotationsConfig]):
    """An import_annotations step: its export folder and corrected file resolved."""

    kind: ClassVar[str] = "import_annotations"
    config_type: ClassVar[type[ImportAnnotationsConfig]] = ImportAnnotationsConfig
    figures_type: ClassVar[type[ImportFigures]] = ImportFigures

    export: Path
    corrected: Path

    @classmethod
    def plan(
        cls, index: int, config: ImportAnnotationsConfig, ctx: PlanContext
    ) -> PlannedImportAnnotations:
        """Resolve the export folder and the corrected file (default: the export's own)."""
        export = ctx.path(config.export)
        corrected = (
            ctx.path(config.path) if config.path is not None else export / READS[config.format]
        )
        return cls(index, config, ctx.folder(config.output), export, corrected)

    def outputs(self) -> list[Path]:
        """The labels (a PNG per photo, or the scene's GeoTIFF), their catalog, the effort."""
        return [self.folder / n for n in ("labels", "catalog.yaml", "effort.csv")]

    def inputs(self) -> list[Path]:
        """The export's record (an earlier step may write it) and the corrected file."""
        return [self.export / RECORD, self.corrected]

    def describe(self) -> str:
        """``import_annotations FORMAT PATH``."""
        return f"{self.kind} {self.config.format} {self.corrected}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Read, write labels and their catalog, and measure the edit effort."""
        cfg = self.config
        record = ExportRecord.read(self.export)
        maps = annotation_format(cfg.format).read(self.corrected, record)
        missing = [item.id for item in record.items if item.id not in maps]
        if missing:
            raise AnnotationError(
                f"{self.corrected} has no annotations for exported items {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}: export and import the same tasks"
            )
        pairs = {
            item.id: (read_preannotation(self.export, item), maps[item.id]) for item in record.items
        }
        if record.scene is None:
            self._write_photo_labels(record, maps, tx)
        else:
            self._write_scene_labels(record, maps, ctx, tx)
        names = {c.code: c.name for c in record.classes}
        skip = [record.background] if record.background is not None else []
        table = effort_table(pairs, names, skip, cfg.tolerance)
        with atomic_path(tx.stage(self.folder / "effort.csv"), overwrite=True) as tmp:
            table.to_csv(tmp, index=False)
        labelled = sum(int((b > 0).sum()) for b, _ in pairs.values())
        changed = sum(int(((b != a) & ((b > 0) | (a > 0))).sum()) for b, a in pairs.values())
        unchanged = sum(int((b == a).all()) for b, a in pairs.values())
        scores = table.boundary_f.dropna()
        figures = ImportFigures(
            items=len(pairs),
            changed_share=round(changed / max(labelled, 1), 6),
            unchanged_items=unchanged,
            mean_boundary_f=round(float(scores.mean()), 4) if len(scores) else None,
        )
        return Outcome(figures)

    def _write_photo_labels(
        self, record: ExportRecord, maps: dict[str, NDArray[np.uint8]], tx: Transaction
    ) -> None:
        """Colour-coded label PNGs, and a catalog declaring them an image set over the images."""
        colours = {style.code: style.rgb for style in record.styles}
        palette = np.zeros((256, 3), np.uint8)
        for code, rgb in colours.items():
            palette[code] = rgb
        for item in record.items:
            write_png(tx.stage(self.folder / "labels" / f"{item.id}.png"), palette[maps[item.id]])
        image_set = {
            "description": f"corrected annotations of {record.source}",
            "images": str(self.export / "images" / "{id}.png"),
            "annotations": str(self.folder / "labels" / "{id}.png"),
            "ids": [item.id for item in record.items],
            "bands": ["red", "green", "blue"],
            "units": "8-bit RGB",
            "colours": {",".join(str(v) for v in rgb): code for code, rgb in colours.items()},
            "classes": {c.code: {"name": c.name, "color": c.color} for c in record.classes},
            "georeference": "pixels",
        }
        self._write_catalog({"sources": {}, "image_sets": {self.config.name: image_set}}, tx)

    def _write_scene_labels(
        self,
        record: ExportRecord,
        maps: dict[str, NDArray[np.uint8]],
        ctx: RunContext,
        tx: Transaction,
    ) -> None:
        """The chips placed back as one label GeoTIFF on the scene's grid, and its catalog.

        The catalog's source has the scene's bands (when the export's source is in this
        workflow's catalog) and these labels.
        """
        assert record.scene is not None
        labels = place(maps, record, where=str(self.corrected))
        grid = scene_grid(record.scene)
        path = self.folder / "labels" / "scene.tif"
        colormap = {s.code: (*s.rgb, 255) for s in record.styles}
        write_cog(tx.stage(path), labels, grid, 0, colormap)
        source: dict[str, Any] = {"description": f"corrected annotations of {record.source}"}
        if record.origin in ctx.catalog.names:
            ref = ctx.catalog.source(record.origin)
            source |= {
                "units": ref.units,
                "bands": [
                    {
                        "name": b.name,
                        "file": str(b.path),
                        "band": b.band,
                        "nodata": b.nodata,
                        "scale": b.scale,
                        "offset": b.offset,
                    }
                    for b in ref.bands
                ],
            }
        source["labels"] = {self.config.name: {"file": str(path)}}
        self._write_catalog({"sources": {self.config.name: source}}, tx)

    def _write_catalog(self, body: dict[str, Any], tx: Transaction) -> None:
        """``catalog.yaml``: a catalog of the imported labels, usable by train and evaluate."""
        text = yaml.safe_dump({"version": 1, **body}, sort_keys=False)
        with atomic_path(tx.stage(self.folder / "catalog.yaml"), overwrite=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
