"""Plan -> execute -> commit for workflow files.

:func:`plan_workflow` resolves every name and path and refuses bad configs and existing outputs
without opening any data. :func:`run_workflow` executes the steps in order; each predict step
writes its outputs under temporary names, renames them into place, and writes its manifest last.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.catalog import Catalog, SourceRef
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.export.atomic import check_writable
from geoseg.export.raster import validate_cog
from geoseg.export.style import ClassStyle, raster_qml, style_path, vector_qml, write_style
from geoseg.export.vector import SUFFIX, convert, write_gpkg
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BundleMeta, load_meta
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.run import PredictJob, assemble_outputs, predict_chunks
from geoseg.tiling.grid import ChunkPlan, TileGrid
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, empty_features, vectorise
from geoseg.workflow.manifest import MANIFEST_NAME, config_hash, describe_files, now, write_manifest
from geoseg.workflow.schema import PredictStep, TrainStep, Workflow, load_workflow

log = logging.getLogger(__name__)

WORK_DIR = ".geoseg-work"


@dataclass(frozen=True)
class PlannedTrain:
    """A train step with its source resolved and its output path."""

    index: int
    step: TrainStep
    source: SourceRef
    output: Path

    def outputs(self) -> list[Path]:
        """Final paths this step writes."""
        return [self.output]


@dataclass(frozen=True)
class PlannedPredict:
    """A predict step with its source, model and output paths resolved."""

    index: int
    step: PredictStep
    source: SourceRef
    model: Path
    folder: Path

    @property
    def class_map(self) -> Path:
        """The class-map COG."""
        return self.folder / "classes.tif"

    @property
    def confidence(self) -> Path:
        """The confidence COG."""
        return self.folder / "confidence.tif"

    def vector(self, fmt: str) -> Path:
        """The vector layer in format ``fmt``."""
        return self.folder / f"{self.step.vector.layer}{SUFFIX[fmt]}"

    def outputs(self) -> list[Path]:
        """Final paths this step writes (styles and the manifest are replaced freely)."""
        paths = [self.class_map, self.confidence]
        if self.step.vector.enabled:
            paths += [self.vector(f) for f in self.step.vector.formats]
        return paths

    def tiling(self, meta: BundleMeta, workflow: Path) -> TileGrid:
        """The tile grid: the step's tile size/overlap, else the model's; checked against it."""
        size = self.step.tile_size or meta.tile_size
        overlap = self.step.overlap if self.step.overlap is not None else meta.overlap
        where = f"{workflow} steps.{self.index}.predict"
        if size % meta.network.divisor:
            raise ConfigError(
                f"{where}.tile_size {size} must be a multiple of {meta.network.divisor} for "
                f"model '{meta.name}' ({meta.network.encoder}, depth {meta.network.encoder_depth})"
            )
        try:
            return TileGrid(size, overlap)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc


Planned = PlannedTrain | PlannedPredict


@dataclass(frozen=True)
class Plan:
    """A validated workflow, every path absolute, nothing opened."""

    path: Path
    workflow: Workflow
    catalog: Catalog
    steps: list[Planned]

    @property
    def executor(self) -> ExecutorSpec:
        """The executor the workflow asks for."""
        cfg = self.workflow.executor
        return ExecutorSpec(cfg.kind, cfg.workers, cfg.address)


def _relative(path: Path, text: str) -> Path:
    """A path from the workflow file, ``${VAR}`` expanded, relative to the file's folder."""
    expanded = os.path.expandvars(text)
    if "$" in expanded:
        raise ConfigError(f"{path}: path '{text}' uses an environment variable that is not set")
    resolved = Path(expanded).expanduser()
    return resolved if resolved.is_absolute() else (path.parent / resolved).resolve()


def plan_workflow(path: str | Path) -> Plan:
    """Validate a workflow file and resolve its names and paths (no data is opened)."""
    wf_path, workflow = load_workflow(path)
    catalog = Catalog.load(_relative(wf_path, workflow.catalog))
    planned: list[Planned] = []
    trained: set[Path] = set()
    outputs: dict[Path, int] = {}
    for index, entry in enumerate(workflow.steps):
        where = f"{wf_path} steps.{index}.{entry.kind}"
        step_plan: Planned
        if entry.train is not None:
            output = _relative(wf_path, entry.train.output)
            if output.suffix != ".geoseg":
                raise ConfigError(f"{where}.output must end in .geoseg (a bundle folder): {output}")
            step_plan = PlannedTrain(index, entry.train, catalog.source(entry.train.source), output)
            source = step_plan.source
            if entry.train.labels is not None or source.labels:
                source.label(entry.train.labels)
            missing = [b for b in entry.train.bands or [] if b not in source.band_names]
            if missing:
                raise ConfigError(
                    f"{where}.bands: source '{source.name}' has no band(s) {missing}; it has "
                    f"{list(source.band_names)}"
                )
            trained.add(output)
        else:
            step = entry.predict
            if step is None:  # excluded by Step's validator
                raise ConfigError(f"{where}: a step needs 'train' or 'predict'")
            model = _relative(wf_path, step.model)
            step_plan = PlannedPredict(
                index, step, catalog.source(step.source), model, _relative(wf_path, step.output)
            )
            if step_plan.folder.exists() and not step_plan.folder.is_dir():
                raise ConfigError(f"{where}.output {step_plan.folder} exists and is not a folder")
            if model not in trained:
                meta = load_meta(model)
                _check_names(meta, step_plan.source, where)
                step_plan.tiling(meta, wf_path)
        for out in step_plan.outputs():
            if out in outputs:
                raise ConfigError(f"{where} writes {out}, which step {outputs[out]} writes too")
            outputs[out] = index
        planned.append(step_plan)
    return Plan(wf_path, workflow, catalog, planned)


def _check_names(meta: BundleMeta, source: SourceRef, where: str) -> None:
    """Band names and units, checkable from the catalog alone (pixel size needs the data)."""
    missing = [b for b in meta.band_names if b not in source.band_names]
    if missing:
        raise ConfigError(
            f"{where}: model '{meta.name}' needs bands {list(meta.band_names)} but source "
            f"'{source.name}' has {list(source.band_names)}; missing {missing}"
        )


def check_outputs(plan: Plan, overwrite: bool) -> None:
    """Refuse existing outputs (before any compute) unless ``overwrite``."""
    for step in plan.steps:
        for out in step.outputs():
            check_writable(out, overwrite)


@dataclass
class StepReport:
    """What one executed step produced."""

    index: int
    kind: str
    outputs: list[Path]
    figures: dict[str, Any] = field(default_factory=dict)


def run_workflow(
    path: str | Path, overwrite: bool = False, show_progress: bool = True
) -> list[StepReport]:
    """Plan, check outputs, and execute every step in order."""
    plan = plan_workflow(path)
    check_outputs(plan, overwrite)
    reports = []
    for step in plan.steps:
        log.info("step %d: %s", step.index, type(step).__name__)
        if isinstance(step, PlannedTrain):
            reports.append(run_train(plan, step, overwrite, show_progress))
        else:
            reports.append(run_predict(plan, step, overwrite, show_progress))
    return reports


def run_train(plan: Plan, step: PlannedTrain, overwrite: bool, show_progress: bool) -> StepReport:
    """Execute a train step."""
    from geoseg.train.loop import train

    result = train(step.step, plan.catalog, step.output, overwrite, show_progress)
    validation = result.meta.metrics.get("validation", {})
    return StepReport(step.index, "train", [step.output], {"validation": validation})


def commit(staged: dict[Path, Path], overwrite: bool) -> None:
    """Move finished files from the work folder to their final paths (renames, same volume)."""
    for final in staged:
        check_writable(final, overwrite)
    for final, path in staged.items():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)


def previous_outputs(folder: Path) -> list[Path]:
    """Outputs listed by the manifest of an earlier run in ``folder`` (none when it has none)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        return [
            Path(entry["path"])
            for entry in manifest.get("outputs", [])
            if Path(entry["path"]).parent == folder
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _class_styles(meta: BundleMeta) -> list[ClassStyle]:
    return [ClassStyle(c.code, c.name, c.color) for c in meta.classes]


def run_predict(
    plan: Plan, step: PlannedPredict, overwrite: bool, show_progress: bool
) -> StepReport:
    """Execute a predict step: chunks -> COGs -> polygons -> exports -> manifest."""
    from geoseg.model.predictor import predictor

    cfg = step.step
    started, timings = now(), {}
    meta = load_meta(step.model)
    source = RasterSource.open(step.source)
    meta.check_source(source.name, source.band_names, source.ref.units, source.grid)
    source = source.select(meta.band_names)
    spec = InferenceSpec(
        step.tiling(meta, plan.path),
        cfg.batch_size,
        tuple(b.mean for b in meta.bands),
        tuple(b.std for b in meta.bands),
        meta.class_codes,
    )
    executor = plan.executor
    threads = max(1, (os.cpu_count() or 1) // max(1, executor.workers))
    work = step.folder / WORK_DIR
    shutil.rmtree(work, ignore_errors=True)  # a stale work folder from a killed run
    previous = previous_outputs(step.folder)
    (step.folder / MANIFEST_NAME).unlink(missing_ok=True)
    job = PredictJob(
        source, functools.partial(predictor, step.model, cfg.device, threads), spec, work / "parts"
    )
    chunk_plan = ChunkPlan(source.grid.shape, source.chunk_shape(cfg.chunk_size))

    staged = work / "staged"
    stage = {final: staged / final.name for final in step.outputs()}
    class_map, confidence = stage[step.class_map], stage[step.confidence]
    styles = _class_styles(meta)

    clock = time.perf_counter()
    outcomes = predict_chunks(job, chunk_plan, executor, show_progress)
    timings["read_infer_blend_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    colormap = {c.code: (*c.rgb, 255) for c in styles}
    assemble_outputs(job, chunk_plan, class_map, confidence, colormap, overwrite=True)
    extras = {style_path(step.class_map): write_style(style_path(class_map), raster_qml(styles))}
    timings["write_cog_s"] = time.perf_counter() - clock
    for path in (class_map, confidence):
        problems = validate_cog(path)
        if problems:
            log.warning("%s is not a valid COG: %s", path, problems)

    counts: dict[str, int] = {}
    for outcome in outcomes:
        for code, n in outcome.class_counts.items():
            counts[meta.class_name(code)] = counts.get(meta.class_name(code), 0) + n
    figures: dict[str, Any] = {
        "chunks": len(outcomes),
        "tiles_run": sum(o.tiles_run for o in outcomes),
        "pixels_per_class": counts,
    }
    if not counts:
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
            vectorise(vjob, names, executor, show_progress),
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
    commit(stage, overwrite)
    commit(extras, overwrite=True)
    for stale in set(previous) - set(step.outputs()):  # outputs this run no longer makes
        stale.unlink(missing_ok=True)
        if style_path(stale) not in extras:
            style_path(stale).unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    write_manifest(
        step.folder,
        {
            "workflow": str(plan.path),
            "step": step.index,
            "kind": "predict",
            "config_sha256": config_hash(cfg),
            "config": cfg.model_dump(mode="json"),
            "source": source.name,
            "inputs": describe_files(source.ref.paths),
            "model": {
                "path": str(step.model),
                "name": meta.name,
                "weights_sha256": meta.weights_sha256,
            },
            "grid": {
                "width": source.grid.width,
                "height": source.grid.height,
                "crs": source.grid.crs.to_wkt(),
                "transform": list(source.grid.transform)[:6],
            },
            "outputs": describe_files(step.outputs()),
            "figures": figures,
            "timings": timings,
            "started": started,
        },
    )
    return StepReport(step.index, "predict", step.outputs(), figures)
