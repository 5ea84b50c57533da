"""Executing a predict step: chunks -> COGs -> polygons -> exports -> manifest.

Everything is produced in the step's work folder (``OUT/.geoseg-work``): chunk parts with their
records, then staged outputs. Only when every output is complete are they renamed into place and
the manifest written (docs/DESIGN.md §8). With ``state == "resume"`` the chunks whose records
exist are not computed again.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geoseg.executor import Executor
from geoseg.export.raster import validate_cog
from geoseg.export.report import overview_png, write_report, write_stac_item
from geoseg.export.style import (
    ClassStyle,
    class_styles,
    raster_qml,
    style_path,
    vector_qml,
    write_style,
)
from geoseg.export.vector import convert, members, write_gpkg
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BundleMeta, load_meta
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.run import (
    ChunkOutcome,
    PredictJob,
    assemble_outputs,
    finished_chunks,
    predict_chunks,
)
from geoseg.tiling.grid import ChunkPlan
from geoseg.vector.measure import pixel_area_m2
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, empty_features, vectorise
from geoseg.workflow.commit import commit, previous_outputs
from geoseg.workflow.manifest import MANIFEST_NAME, describe_files, now, write_manifest
from geoseg.workflow.plan import Plan, PlannedPredict
from geoseg.workflow.resume import RUN_RECORD, State, write_run_record

log = logging.getLogger(__name__)


def torch_threads(workers: int) -> int:
    """Torch intra-op threads per Dask worker: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _report(
    step: PlannedPredict,
    meta: BundleMeta,
    source: RasterSource,
    styles: Sequence[ClassStyle],
    figures: dict[str, Any],
    fingerprint: dict[str, Any],
    stage: dict[Path, Path],
    class_map: Path,
) -> None:
    """Write the HTML run report and the STAC Item into the staged outputs."""
    pixel = pixel_area_m2(source.grid)
    areas = {name: n * pixel for name, n in figures["pixels_per_class"].items()}
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
            "input_profile": figures.get("input_profile"),
        },
        "config_sha256": fingerprint["config_sha256"],
        "geoseg": fingerprint["geoseg"],
        "polygons": figures.get("polygons"),
        "throughput": figures.get("throughput"),
    }
    write_report(
        stage[step.folder / "report.html"],
        f"geoseg run: {source.name} with {meta.name}",
        overview_png(class_map, styles),
        styles,
        areas,
        meta.metrics.get("validation", {}),
        figures["timings"],
        provenance,
    )
    assets: dict[str, tuple[Path, list[str], str]] = {
        "classes": (step.class_map, ["data"], "class map (uint8, 0 = nodata)"),
        "confidence": (step.confidence, ["data"], "top-class probability (float32)"),
    }
    for final in step.outputs():
        if final.suffix in {".gpkg", ".geojson", ".parquet", ".fgb", ".shp"}:
            assets[f"polygons-{final.suffix[1:]}"] = (final, ["data"], "land-cover polygons")
    assets["report"] = (step.folder / "report.html", ["overview"], "run report")
    assets["manifest"] = (step.folder / MANIFEST_NAME, ["metadata"], "run manifest")
    write_stac_item(
        stage[step.folder / "item.json"],
        f"geoseg-{source.name}-{fingerprint['config_sha256'][:12]}",
        source.grid,
        datetime.now(UTC),
        assets,
        {
            "geoseg:model": meta.name,
            "geoseg:model_weights_sha256": meta.weights_sha256,
            "geoseg:config_sha256": fingerprint["config_sha256"],
            "geoseg:classes": [{"code": s.code, "name": s.name, "color": s.color} for s in styles],
            "geoseg:source": source.name,
        },
    )


def _summarise(meta: BundleMeta, outcomes: list[ChunkOutcome]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    busy: dict[str, float] = {}
    for outcome in outcomes:
        for code, n in outcome.class_counts.items():
            counts[meta.class_name(code)] = counts.get(meta.class_name(code), 0) + n
        for stage, seconds in outcome.seconds.items():
            busy[stage] = busy.get(stage, 0.0) + seconds
    return {
        "chunks": len(outcomes),
        "tiles_run": sum(o.tiles_run for o in outcomes),
        "pixels_per_class": counts,
        "chunk_task_seconds": {k: round(v, 3) for k, v in busy.items()},
    }


def run_predict(
    plan: Plan,
    step: PlannedPredict,
    ex: Executor,
    fingerprint: dict[str, Any],
    state: State,
    overwrite: bool,
) -> dict[str, Any]:
    """Execute one predict step; returns its figures (also written to the manifest)."""
    from geoseg.model.predictor import predictor

    cfg = step.step
    started, clock_start = now(), time.perf_counter()
    timings: dict[str, float] = {}
    meta = load_meta(step.model)
    source = RasterSource.open(step.source)
    profile = meta.profile_for(source.name, source.band_names, source.ref.units, source.grid)
    source = source.select(meta.band_names)
    spec = InferenceSpec(
        step.tiling(meta, plan.path),
        cfg.batch_size,
        tuple(b.mean for b in profile.bands),
        tuple(b.std for b in profile.bands),
        meta.class_codes,
        cfg.augment,
    )
    work = step.work
    if state != "resume":
        if (work / RUN_RECORD).exists():
            log.warning("discarding the unfinished run in %s (use --resume to continue it)", work)
        shutil.rmtree(work, ignore_errors=True)
        write_run_record(step, fingerprint)
    threads = int(fingerprint["torch_threads"])
    job = PredictJob(
        source, functools.partial(predictor, step.model, cfg.device, threads), spec, work / "parts"
    )
    chunk_plan = ChunkPlan(source.grid.shape, source.chunk_shape(cfg.chunk_size))
    chunks = chunk_plan.chunks()
    done = finished_chunks(job, chunks) if state == "resume" else {}
    if done:
        log.info("resuming: %d of %d chunks already finished", len(done), len(chunks))

    clock = time.perf_counter()
    computed = predict_chunks(job, [c for c in chunks if c.key not in done], ex)
    timings["inference_s"] = time.perf_counter() - clock
    figures = _summarise(meta, [*done.values(), *computed])
    figures["chunks_computed"], figures["chunks_reused"] = len(computed), len(done)
    figures["input_profile"] = profile.name

    staged = work / "staged"
    stage = {final: staged / final.name for final in step.outputs()}
    class_map, confidence = stage[step.class_map], stage[step.confidence]
    styles = class_styles(meta)
    clock = time.perf_counter()
    colormap = {c.code: (*c.rgb, 255) for c in styles}
    assemble_outputs(job, chunk_plan, class_map, confidence, colormap, overwrite=True)
    extras = {style_path(step.class_map): write_style(style_path(class_map), raster_qml(styles))}
    for path in (class_map, confidence):
        problems = validate_cog(path)
        if problems:
            log.warning("%s is not a valid COG: %s", path, problems)
    timings["write_cog_s"] = time.perf_counter() - clock
    if not figures["pixels_per_class"]:
        log.warning("source '%s' has no valid pixels: outputs are empty (all nodata)", source.name)

    if cfg.vector.enabled:
        clock = time.perf_counter()
        vjob = VectoriseJob(
            class_map,
            confidence,
            source.grid,
            chunk_plan,
            VectorSettings(cfg.vector.min_area_m2, cfg.vector.simplify_m),
        )
        names = {c.code: c.name for c in meta.classes}
        gpkg = stage[step.vector("gpkg")]
        figures["polygons"] = write_gpkg(
            vectorise(vjob, names, ex),
            gpkg,
            cfg.vector.layer,
            empty_features(source.grid),
            overwrite=True,
        )
        timings["vectorise_s"] = time.perf_counter() - clock
        clock = time.perf_counter()
        for fmt in cfg.vector.formats:
            if fmt != "gpkg":
                convert(gpkg, cfg.vector.layer, stage[step.vector(fmt)], fmt, overwrite=True)
        extras[style_path(step.vector("gpkg"))] = write_style(style_path(gpkg), vector_qml(styles))
        timings["export_s"] = time.perf_counter() - clock
    timings["total_s"] = time.perf_counter() - clock_start
    megapixels = source.grid.height * source.grid.width / 1e6
    area_km2 = megapixels * 1e6 * pixel_area_m2(source.grid) / 1e6
    figures["throughput"] = {
        "megapixels": round(megapixels, 3),
        "area_km2": round(area_km2, 3),
        "inference_mpx_per_s": round(megapixels / max(timings["inference_s"], 1e-9), 3),
        "total_mpx_per_s": round(megapixels / timings["total_s"], 3),
        "total_km2_per_h": round(area_km2 / (timings["total_s"] / 3600), 1),
    }
    figures["timings"] = {k: round(v, 3) for k, v in timings.items()}
    _report(step, meta, source, styles, figures, fingerprint, stage, class_map)

    # Commit: the previous run's manifest stays valid (its outputs untouched) until here.
    previous = previous_outputs(step.folder)
    (step.folder / MANIFEST_NAME).unlink(missing_ok=True)
    commit(stage, overwrite=overwrite or state == "resume")
    commit(extras, overwrite=True)
    for stale in set(previous) - set(step.outputs()):  # outputs this run no longer makes
        for member in members(stale):
            member.unlink(missing_ok=True)
        if style_path(stale) not in extras:
            style_path(stale).unlink(missing_ok=True)
    write_manifest(
        step.folder,
        {
            "workflow": str(plan.path),
            "step": step.index,
            "kind": "predict",
            "fingerprint": fingerprint,
            "config": cfg.model_dump(mode="json"),
            "source": source.name,
            "model": {
                "path": str(step.model),
                "name": meta.name,
                "weights_sha256": meta.weights_sha256,
            },
            "executor": {"kind": ex.spec.kind, "workers": ex.spec.workers},
            "grid": {
                "width": source.grid.width,
                "height": source.grid.height,
                "crs": source.grid.crs.to_wkt(),
                "transform": list(source.grid.transform)[:6],
            },
            "outputs": describe_files(step.outputs()),
            "figures": figures,
            "started": started,
        },
    )
    shutil.rmtree(work, ignore_errors=True)  # kept until the manifest exists, for --resume
    return figures
