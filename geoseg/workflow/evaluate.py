"""Executing an evaluate step: streamed metrics, error map, reference map, plots, manifest."""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np
import rasterio

from geoseg.classes import class_info
from geoseg.errors import GridMismatchError
from geoseg.evaluate.report import plot_confusion, plot_overlay, write_metrics
from geoseg.evaluate.run import (
    ERROR_COLOURS,
    ERROR_NAMES,
    EvaluateJob,
    evaluate,
    missed_pixels,
    summarise,
)
from geoseg.executor import Executor
from geoseg.export.raster import assemble_cog
from geoseg.export.style import ClassStyle, raster_qml, style_path, write_style
from geoseg.io.labels import open_labels
from geoseg.io.raster import open_raster
from geoseg.io.source import RasterSource
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid
from geoseg.workflow.commit import commit
from geoseg.workflow.manifest import MANIFEST_NAME, describe_files, now, write_manifest
from geoseg.workflow.plan import Plan, PlannedEvaluate

PREVIEW_PX = 1200


def _grid_of(path: Any) -> Grid:
    with open_raster(path) as ds:
        return Grid(ds.height, ds.width, ds.transform, ds.crs)


def _decimated(path: Any, shape: tuple[int, int]) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)


def _rgb(source: RasterSource) -> np.ndarray:
    names = list(source.band_names)
    picked = [n for n in ("red", "green", "blue") if n in names] or names[:3]
    preview = source.select(picked).preview(PREVIEW_PX)
    return preview if len(preview) == 3 else np.repeat(preview[:1], 3, axis=0)


def run_evaluate(
    plan: Plan, step: PlannedEvaluate, ex: Executor, overwrite: bool
) -> dict[str, Any]:
    """Execute one evaluate step; returns its headline figures."""
    cfg = step.step
    started, clock = now(), time.perf_counter()
    source = RasterSource.open(step.source)
    labels = open_labels(source, cfg.labels)
    for path, what in ((step.prediction, "prediction"), (step.within, "'within' mask")):
        if path is not None and not _grid_of(path).same_as(source.grid):
            raise GridMismatchError(
                f"{what} {path} is not on the grid of source '{source.name}' "
                f"({source.grid.describe()}); evaluate a class map predicted from that source"
            )
    work = step.work
    shutil.rmtree(work, ignore_errors=True)
    staged = work / "staged"
    staged.mkdir(parents=True)
    chunk_plan = ChunkPlan(source.grid.shape, source.chunk_shape(cfg.chunk_size))
    job = EvaluateJob(
        step.prediction,
        labels,
        source.grid,
        chunk_plan,
        tuple(cfg.ignore),
        cfg.tolerance,
        step.within,
        work / "parts",
    )
    matrix, boundary = evaluate(job, ex)
    result = summarise(matrix, boundary, cfg.classes, cfg.ignore, cfg.tolerance)
    names = {c: class_info(c).name for c in result.codes}
    colours = {c: class_info(c).color for c in result.codes}
    chunks = chunk_plan.chunks()
    styles = [ClassStyle(c, names[c], colours[c]) for c in result.codes]
    error_styles = [ClassStyle(c, ERROR_NAMES[c], ERROR_COLOURS[c]) for c in ERROR_NAMES]
    for kind, style in (("errors", error_styles), ("reference", styles)):
        target = staged / f"{kind}.tif"
        assemble_cog(
            [(c.core, job.part(kind, c)) for c in chunks],
            source.grid,
            target,
            "uint8",
            0,
            "mode",
            {s.code: (*s.rgb, 255) for s in style},
            kind,
            overwrite=True,
        )
        write_style(style_path(target), raster_qml(style))
    write_metrics(
        result,
        names,
        staged,
        {
            "prediction": str(step.prediction),
            "source": source.name,
            "labels": labels.ref.name,
            "ignore": cfg.ignore,
            "within": str(step.within) if step.within else None,
            "labelled_px_without_prediction": {
                names.get(c, str(c)): n for c, n in missed_pixels(matrix).items()
            },
        },
    )
    plot_confusion(result, names, staged / "confusion.png")
    rgb = _rgb(source)
    shape = rgb.shape[1:]
    plot_overlay(
        rgb,
        _decimated(step.prediction, shape),
        _decimated(staged / "reference.tif", shape),
        _decimated(staged / "errors.tif", shape),
        colours,
        names,
        ERROR_COLOURS,
        ERROR_NAMES,
        staged / "overlay.png",
    )
    files = {final: staged / final.name for final in step.outputs()}
    files.update(
        {style_path(f): style_path(staged / f.name) for f in step.outputs() if f.suffix == ".tif"}
    )
    (step.folder / MANIFEST_NAME).unlink(missing_ok=True)
    commit(files, overwrite)
    figures = {
        "miou": result.miou,
        "overall_accuracy": result.overall_accuracy,
        "boundary_f": result.boundary_f,
        "per_class_iou": {names[c.code]: c.iou for c in result.classes},
        "seconds": round(time.perf_counter() - clock, 3),
    }
    write_manifest(
        step.folder,
        {
            "workflow": str(plan.path),
            "step": step.index,
            "kind": "evaluate",
            "config": cfg.model_dump(mode="json"),
            "started": started,
            "inputs": describe_files([step.prediction]),
            "figures": figures,
            "outputs": describe_files(step.outputs()),
        },
    )
    shutil.rmtree(work, ignore_errors=True)
    return figures
