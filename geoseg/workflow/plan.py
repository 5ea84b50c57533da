"""Planning a workflow: every name and path resolved and checked, nothing opened.

:func:`plan_workflow` refuses bad configs (unknown sources, bands a model lacks, tiling that
does not fit the model, outputs two steps would both write) before any data is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from geoseg.catalog import Catalog, ImageSetRef, SourceRef
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.export.vector import SUFFIX
from geoseg.model.bundle import BundleMeta, load_meta
from geoseg.tiling.grid import TileGrid
from geoseg.workflow.schema import (
    ChangeStep,
    EvaluateStep,
    PredictImagesStep,
    PredictStep,
    TrainStep,
    Workflow,
    ZonalStep,
    load_workflow,
)

WORK_DIR = ".geoseg-work"


class _OutputFolder:
    """A step that writes into an output folder, working in its ``.geoseg-work`` sub-folder."""

    folder: Path

    @property
    def work(self) -> Path:
        """The step's work folder (parts, staged outputs, run record)."""
        return self.folder / WORK_DIR


@dataclass(frozen=True)
class PlannedTrain:
    """A train step with its sources resolved and its output path."""

    index: int
    step: TrainStep
    sources: tuple[SourceRef, ...]
    output: Path

    @property
    def source(self) -> SourceRef | None:
        """The first raster training source (None when training on an image set)."""
        return self.sources[0] if self.sources else None

    def outputs(self) -> list[Path]:
        """Final paths this step writes."""
        return [self.output]


@dataclass(frozen=True)
class PlannedPredict(_OutputFolder):
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
        return [*paths, self.folder / "report.html", self.folder / "item.json"]

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


@dataclass(frozen=True)
class PlannedEvaluate(_OutputFolder):
    """An evaluate step with its source, prediction, optional mask and output folder resolved."""

    index: int
    step: EvaluateStep
    source: SourceRef
    prediction: Path
    folder: Path
    within: Path | None

    def outputs(self) -> list[Path]:
        """Final paths this step writes."""
        return [self.folder / name for name in EVALUATE_OUTPUTS]


#: What an evaluate step writes into its output folder.
EVALUATE_OUTPUTS = (
    "metrics.json",
    "metrics.csv",
    "confusion.png",
    "overlay.png",
    "errors.tif",
    "reference.tif",
)


@dataclass(frozen=True)
class PlannedAnalysis(_OutputFolder):
    """A zonal or change step: its input rasters (and zones) and output folder resolved."""

    index: int
    step: ZonalStep | ChangeStep
    inputs: tuple[Path, ...]
    folder: Path

    def outputs(self) -> list[Path]:
        """Final paths this step writes."""
        if isinstance(self.step, ZonalStep):
            return [self.folder / f"{self.step.name}.gpkg", self.folder / f"{self.step.name}.csv"]
        return [self.folder / n for n in ("transitions.csv", "change.tif", "change.gpkg")]


@dataclass(frozen=True)
class PlannedImages(_OutputFolder):
    """A predict_images step: its image set, model and output folder resolved."""

    index: int
    step: PredictImagesStep
    image_set: ImageSetRef
    model: Path
    folder: Path

    def outputs(self) -> list[Path]:
        """Final paths this step writes (class maps go to the ``classes`` folder)."""
        extra: tuple[str, ...] = ("fields.csv",) if self.step.fields is not None else ()
        extra += ("annotations.gpkg",) if self.image_set.polygons else ()
        return [self.folder / n for n in IMAGE_OUTPUTS + extra]


#: What a predict_images step writes (metrics only where annotations exist).
IMAGE_OUTPUTS = ("plants.gpkg", "weed_grid.gpkg", "weed_grid.shp", "counts.csv", "classes")

Planned = PlannedTrain | PlannedPredict | PlannedEvaluate | PlannedAnalysis | PlannedImages


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
        return ExecutorSpec(cfg.kind, cfg.workers, cfg.address, cfg.retries)


def _relative(path: Path, text: str) -> Path:
    """A path from the workflow file, ``${VAR}`` expanded, relative to the file's folder."""
    expanded = os.path.expandvars(text)
    if "$" in expanded:
        raise ConfigError(f"{path}: path '{text}' uses an environment variable that is not set")
    resolved = Path(expanded).expanduser()
    return resolved if resolved.is_absolute() else (path.parent / resolved).resolve()


def _written(planned: list[Planned]) -> set[Path]:
    """Every file the earlier steps write (a later step may read any of them)."""
    return {path for step in planned for path in step.outputs()}


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
            inputs = entry.train.inputs
            if len(inputs) > 1 and not entry.train.bands:
                raise ConfigError(
                    f"{where}: training on several sources needs 'bands:' listing the bands they "
                    "share (the network's input order)"
                )
            sources = tuple(catalog.source(i.source) for i in inputs)
            for item, source in zip(inputs, sources, strict=True):
                source.label(item.labels)
                missing = [b for b in entry.train.bands or [] if b not in source.band_names]
                if missing:
                    raise ConfigError(
                        f"{where}.bands: source '{source.name}' has no band(s) {missing}; it has "
                        f"{list(source.band_names)}"
                    )
            if entry.train.image_set is not None:
                catalog.image_set(entry.train.image_set)
            step_plan = PlannedTrain(index, entry.train, sources, output)
            trained.add(output)
        elif entry.predict_images is not None:
            images = entry.predict_images
            if images.fields is not None:
                images = images.model_copy(
                    update={"fields": str(_relative(wf_path, images.fields))}
                )
            model = _relative(wf_path, images.model)
            step_plan = PlannedImages(
                index,
                images,
                catalog.image_set(images.image_set),
                model,
                _relative(wf_path, images.output),
            )
            if model not in trained:
                load_meta(model)
            _check_folder(step_plan.folder, where)
        elif entry.zonal is not None or entry.change is not None:
            analysis = entry.zonal or entry.change
            if analysis is None:  # excluded by the condition above
                raise ConfigError(f"{where}: empty step")
            names = (
                [analysis.classes, analysis.zones]
                if isinstance(analysis, ZonalStep)
                else [analysis.before, analysis.after]
            )
            paths = tuple(_relative(wf_path, n) for n in names)
            produced = _written(planned)
            for path in paths:
                if path not in produced and not path.is_file():
                    raise ConfigError(
                        f"{where}: {path} does not exist and no earlier step writes it"
                    )
            step_plan = PlannedAnalysis(index, analysis, paths, _relative(wf_path, analysis.output))
            _check_folder(step_plan.folder, where)
        elif entry.evaluate is not None:
            cfg = entry.evaluate
            step_plan = PlannedEvaluate(
                index,
                cfg,
                catalog.source(cfg.source),
                _relative(wf_path, cfg.prediction),
                _relative(wf_path, cfg.output),
                _relative(wf_path, cfg.within) if cfg.within else None,
            )
            step_plan.source.label(cfg.labels)
            produced = _written(planned)
            for needed in (step_plan.prediction, step_plan.within):
                if needed is not None and needed not in produced and not needed.is_file():
                    raise ConfigError(
                        f"{where}: {needed} does not exist and no earlier step writes it"
                    )
            _check_folder(step_plan.folder, where)
        else:
            step = entry.predict
            if step is None:  # excluded by Step's validator
                raise ConfigError(f"{where}: a step needs 'train', 'predict' or 'evaluate'")
            model = _relative(wf_path, step.model)
            step_plan = PlannedPredict(
                index, step, catalog.source(step.source), model, _relative(wf_path, step.output)
            )
            _check_folder(step_plan.folder, where)
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


def _check_folder(folder: Path, where: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{where}.output {folder} exists and is not a folder")


def _check_names(meta: BundleMeta, source: SourceRef, where: str) -> None:
    """Band names and units, checkable from the catalog alone (pixel size needs the data)."""
    missing = [b for b in meta.band_names if b not in source.band_names]
    if missing:
        raise ConfigError(
            f"{where}: model '{meta.name}' needs bands {list(meta.band_names)} but source "
            f"'{source.name}' has {list(source.band_names)}; missing {missing}"
        )
