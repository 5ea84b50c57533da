"""Executing zonal-statistics and change steps (GIS deliverables for planners)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geoseg.analysis.change import (
    ChangeJob,
    change_names,
    transition,
    transition_table,
    transitions,
)
from geoseg.analysis.zonal import ZonalJob, table_frame, zonal_counts, zonal_table, zone_layer
from geoseg.classes import COMMON_CLASSES, class_info
from geoseg.errors import GridMismatchError
from geoseg.executor import Executor
from geoseg.export.atomic import atomic_path
from geoseg.export.raster import assemble_cog
from geoseg.export.style import ClassStyle, style_path, vector_qml, write_style
from geoseg.export.vector import write_gpkg
from geoseg.io.raster import open_raster
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid
from geoseg.vector.measure import pixel_area_m2
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, empty_features, vectorise
from geoseg.workflow.commit import commit
from geoseg.workflow.manifest import MANIFEST_NAME, describe_files, now, write_manifest
from geoseg.workflow.plan import Plan, PlannedAnalysis
from geoseg.workflow.schema import ChangeStep, ZonalStep

CHUNK_BLOCK = 512


def _grid(path: Path) -> Grid:
    with open_raster(path) as ds:
        return Grid(ds.height, ds.width, ds.transform, ds.crs)


def _names() -> dict[int, str]:
    return {code: c.name for code, c in COMMON_CLASSES.items()}


def _plan(grid: Grid, size: int) -> ChunkPlan:
    edge = max(CHUNK_BLOCK, size // CHUNK_BLOCK * CHUNK_BLOCK)
    return ChunkPlan(grid.shape, (min(edge, grid.height), min(edge, grid.width)))


def run_analysis(
    plan: Plan, step: PlannedAnalysis, ex: Executor, overwrite: bool
) -> dict[str, Any]:
    """Execute a zonal or change step, stage its outputs, commit, write the manifest."""
    started = now()
    shutil.rmtree(step.work, ignore_errors=True)
    staged = step.work / "staged"
    staged.mkdir(parents=True)
    if isinstance(step.step, ZonalStep):
        figures, extras = _zonal(step, step.step, staged, ex)
    else:
        figures, extras = _change(step, step.step, staged, ex)
    files = {final: staged / final.name for final in step.outputs()}
    files.update(extras)
    (step.folder / MANIFEST_NAME).unlink(missing_ok=True)
    commit(files, overwrite)
    write_manifest(
        step.folder,
        {
            "workflow": str(plan.path),
            "step": step.index,
            "started": started,
            "kind": "zonal" if isinstance(step.step, ZonalStep) else "change",
            "config": step.step.model_dump(mode="json"),
            "inputs": describe_files([p for p in step.inputs if p.is_file()]),
            "outputs": describe_files(step.outputs()),
            "figures": figures,
        },
    )
    shutil.rmtree(step.work, ignore_errors=True)
    return figures


def _zonal(
    step: PlannedAnalysis, cfg: ZonalStep, staged: Path, ex: Executor
) -> tuple[dict[str, Any], dict[Path, Path]]:
    classes, zones_path = step.inputs
    grid = _grid(classes)
    zones = zone_layer(zones_path, cfg.layer, grid)
    job = ZonalJob(classes, zones_path, cfg.layer, grid, _plan(grid, cfg.chunk_size))
    table = zonal_table(zones, zonal_counts(job, ex), _names(), grid)
    keep = [
        c for c in table.columns if not c.startswith(("area_", "share_")) or table[c].any()
    ]  # classes absent from every zone add no columns
    table = table[keep]
    gpkg = staged / f"{cfg.name}.gpkg"
    write_gpkg([table], gpkg, cfg.name, table.iloc[:0], overwrite=True)
    with atomic_path(staged / f"{cfg.name}.csv", overwrite=True) as tmp:
        table_frame(table).to_csv(tmp, index_label="fid")
    return {"zones": len(table), "mapped_km2": round(float(table.mapped_m2.sum()) / 1e6, 4)}, {}


def _change(
    step: PlannedAnalysis, cfg: ChangeStep, staged: Path, ex: Executor
) -> tuple[dict[str, Any], dict[Path, Path]]:
    before, after = step.inputs
    grid, other = _grid(before), _grid(after)
    if not grid.same_as(other):
        raise GridMismatchError(
            f"{before} ({grid.describe()}) and {after} ({other.describe()}) are not on one grid; "
            "predict both dates on the same grid (gdalwarp one onto the other first)"
        )
    chunk_plan = _plan(grid, cfg.chunk_size)
    job = ChangeJob(before, after, grid, chunk_plan, tuple(cfg.to_classes), step.work / "parts")
    counts = transitions(job, ex)
    names = _names()
    pixel = pixel_area_m2(grid)
    table = transition_table(counts, names, pixel)
    with atomic_path(staged / "transitions.csv", overwrite=True) as tmp:
        table.to_csv(tmp, index_label="before \\\\ after (m2)")
    codes = sorted({int(c) for c in np.flatnonzero(counts)})
    styles = []
    selected_px = 0
    for key in codes:
        b, a = divmod(key, 256)
        if b != a and (not cfg.to_classes or a in cfg.to_classes):
            selected_px += int(counts.flat[key])
            code = b * 16 + a
            styles.append(ClassStyle(code, change_names(names)[code], class_info(a).color))
    change_map = staged / "change.tif"
    assemble_cog(
        [(c.core, job.part(c)) for c in chunk_plan.chunks()],
        grid,
        change_map,
        "uint8",
        0,
        "mode",
        {s.code: (*s.rgb, 255) for s in styles},
        "change code",
        True,
    )
    vjob = VectoriseJob(
        change_map, None, grid, chunk_plan, VectorSettings(cfg.min_area_m2, cfg.simplify_m)
    )
    labels = change_names(names)

    def with_transition(frames: Any) -> Any:
        for frame in frames:
            pairs = [transition(int(c)) for c in frame.class_id]
            frame.insert(2, "from_class", [p[0] for p in pairs])
            frame.insert(3, "to_class", [p[1] for p in pairs])
            yield frame.drop(columns=["mean_confidence"])

    empty = empty_features(grid).drop(columns=["mean_confidence"])
    empty.insert(2, "from_class", pd.Series(dtype="int64"))
    empty.insert(3, "to_class", pd.Series(dtype="int64"))
    polygons = write_gpkg(
        with_transition(vectorise(vjob, labels, ex)),
        staged / "change.gpkg",
        "change",
        empty,
        overwrite=True,
    )
    extras = {
        style_path(step.folder / "change.gpkg"): write_style(
            style_path(staged / "change.gpkg"), vector_qml(styles)
        ),
    }
    changed = float(table.to_numpy().sum() - np.trace(table.to_numpy()))
    figures = {
        "changed_km2": round(changed / 1e6, 4),
        "mapped_change_km2": round(selected_px * pixel / 1e6, 4),  # into to_classes, in change.tif
        "polygons": polygons,
        "transitions_m2": json.loads(table.to_json()),
    }
    return figures, extras
