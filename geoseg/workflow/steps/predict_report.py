"""What a predict step reports: its typed figures, the HTML run report and the STAC Item."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg import __version__
from geoseg.export.report import overview_png, write_report, write_stac_item
from geoseg.export.style import ClassStyle
from geoseg.export.vector import SUFFIX
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BundleMeta
from geoseg.stitch.run import ChunkOutcome
from geoseg.types import Grid
from geoseg.vector.measure import pixel_area_m2
from geoseg.workflow.manifest import MANIFEST_NAME, Figures, Record, config_hash
from geoseg.workflow.transaction import Transaction

if TYPE_CHECKING:
    from geoseg.workflow.steps.predict import PlannedPredict


class Throughput(Record):
    """Scene size and speed of the run."""

    megapixels: float
    area_km2: float
    inference_mpx_per_s: float
    total_mpx_per_s: float
    total_km2_per_h: float


class PredictFigures(Figures):
    """Chunks, tiles, mapped pixels per class, polygons, throughput and stage timings."""

    chunks: int
    tiles_run: int
    pixels_per_class: dict[str, int]
    chunk_task_seconds: dict[str, float]
    chunks_computed: int
    chunks_reused: int
    input_profile: str
    polygons: int | None
    throughput: Throughput
    timings: dict[str, float]


def summarise(
    meta: BundleMeta,
    grid: Grid,
    outcomes: Sequence[ChunkOutcome],
    computed: int,
    profile: str,
    polygons: int | None,
    timings: dict[str, float],
) -> PredictFigures:
    """The figures of a run from its chunk outcomes and stage timings."""
    counts: dict[str, int] = {}
    busy: dict[str, float] = {}
    for outcome in outcomes:
        for code, n in outcome.class_counts.items():
            counts[meta.class_name(code)] = counts.get(meta.class_name(code), 0) + n
        for stage, seconds in outcome.seconds.items():
            busy[stage] = busy.get(stage, 0.0) + seconds
    megapixels = grid.height * grid.width / 1e6
    area_km2 = megapixels * pixel_area_m2(grid)
    throughput = Throughput(
        megapixels=round(megapixels, 3),
        area_km2=round(area_km2, 3),
        inference_mpx_per_s=round(megapixels / max(timings["inference_s"], 1e-9), 3),
        total_mpx_per_s=round(megapixels / timings["total_s"], 3),
        total_km2_per_h=round(area_km2 / (timings["total_s"] / 3600), 1),
    )
    return PredictFigures(
        chunks=len(outcomes),
        tiles_run=sum(o.tiles_run for o in outcomes),
        pixels_per_class=counts,
        chunk_task_seconds={k: round(v, 3) for k, v in busy.items()},
        chunks_computed=computed,
        chunks_reused=len(outcomes) - computed,
        input_profile=profile,
        polygons=polygons,
        throughput=throughput,
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def write_run_report(
    step: PlannedPredict,
    tx: Transaction,
    meta: BundleMeta,
    source: RasterSource,
    styles: Sequence[ClassStyle],
    figures: PredictFigures,
) -> None:
    """Stage the HTML run report and the STAC Item of a predict step."""
    pixel = pixel_area_m2(source.grid)
    areas = {name: n * pixel for name, n in figures.pixels_per_class.items()}
    config_sha256 = config_hash(step.config)
    provenance = {
        "source": {
            "name": source.name,
            "description": source.ref.description,
            "licence": source.ref.licence,
            "files": [str(p) for p in source.ref.paths],
            "grid": source.grid.describe(),
        },
        "model": {
            "name": meta.name,
            "path": str(step.model),
            "network": meta.network.model_dump(),
            "weights_sha256": meta.weights_sha256,
            "training_data": [d.model_dump() for d in meta.training_data],
            "input_profile": figures.input_profile,
        },
        "config_sha256": config_sha256,
        "geoseg": __version__,
        "polygons": figures.polygons,
        "throughput": figures.throughput.model_dump(),
    }
    write_report(
        tx.stage(step.folder / "report.html"),
        f"geoseg run: {source.name} with {meta.name}",
        overview_png(tx.stage(step.class_map), styles),
        styles,
        areas,
        meta.metrics.get("validation", {}),
        figures.timings,
        provenance,
        step.folder,
    )
    assets: dict[str, tuple[Path, list[str], str]] = {
        "classes": (step.class_map, ["data"], "class map (uint8, 0 = nodata)"),
        "confidence": (step.confidence, ["data"], "top-class probability (float32)"),
    }
    for final in step.outputs():
        if final.suffix in SUFFIX.values():
            assets[f"polygons-{final.suffix[1:]}"] = (final, ["data"], "land-cover polygons")
    assets["report"] = (step.folder / "report.html", ["overview"], "run report")
    assets["manifest"] = (step.folder / MANIFEST_NAME, ["metadata"], "run manifest")
    write_stac_item(
        tx.stage(step.folder / "item.json"),
        f"geoseg-{source.name}-{config_sha256[:12]}",
        source.grid,
        datetime.now(UTC),
        assets,
        {
            "geoseg:model": meta.name,
            "geoseg:model_weights_sha256": meta.weights_sha256,
            "geoseg:config_sha256": config_sha256,
            "geoseg:classes": [{"code": s.code, "name": s.name, "color": s.color} for s in styles],
            "geoseg:source": source.name,
        },
    )
