"""The ``predict`` step: chunks -> class map and confidence COGs -> polygons -> exports.

Chunk parts and their records go to the transaction's parts folder (a resumed run reuses the
chunks whose records exist); every output is staged, then committed with the manifest last. Its
fingerprint (config, whole model bundle, the source's catalog definition and file checksums,
device, torch threads) makes re-runs no-ops and guards ``--resume`` (docs/DESIGN.md §11).
"""

from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from geoseg import __version__
from geoseg.catalog import SourceRef
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.export.raster import ConfidenceStorage, validate_cog
from geoseg.export.style import class_styles, raster_qml, style_path, vector_qml, write_style
from geoseg.export.vector import SUFFIX, VectorFormat, convert, write_gpkg
from geoseg.io.source import RasterSource
from geoseg.model.bundle import META_FILE, file_sha256, load_meta
from geoseg.model.device import device_type, torch_threads
from geoseg.stitch.run import PredictJob, assemble_outputs, finished_chunks, predict_chunks
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid, Location
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, empty_features, vectorise
from geoseg.workflow.manifest import (
    Fingerprint,
    GridRecord,
    ModelRecord,
    Provenance,
    SourceDefinition,
    config_hash,
    input_checksum,
)
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.steps.inference import InferenceConfig
from geoseg.workflow.steps.predict_report import PredictFigures, summarise, write_run_report
from geoseg.workflow.transaction import Transaction

log = logging.getLogger(__name__)

#: The longer side, in pixels, of the decimated sample checked before inference.
SAMPLE_SIZE = 256


class VectorConfig(ClosedModel):
    """Vectorising and vector export."""

    enabled: bool = True
    min_area_m2: float = Field(default=0.0, ge=0)
    simplify_m: float = Field(default=0.0, ge=0)
    formats: list[VectorFormat] = Field(default=["gpkg"], min_length=1)
    layer: str = Field(default="landcover", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _gpkg_first(self) -> VectorConfig:
        if "gpkg" not in self.formats:
            raise ValueError("formats must include 'gpkg' (the other formats are derived from it)")
        return self

    @property
    def settings(self) -> VectorSettings:
        """Minimum mapping unit and simplification, as the vectoriser takes them."""
        return VectorSettings(self.min_area_m2, self.simplify_m)

    def prepared(self, grid: Grid) -> Literal["none", "components", "outlines"]:
        """What predict's chunk tasks prepare for vectorising on ``grid``.

        Outlines only when every region is a component (no minimum mapping unit): a unit
        merges components into neighbours, whose outlines then come from the sieved pixels.
        """
        if not self.enabled:
            return "none"
        return "outlines" if self.settings.min_pixels(grid) == 0 else "components"


class PredictOptions(InferenceConfig):
    """How to predict with a model bundle: tiling, chunks, vectorising, confidence storage."""

    model: str
    chunk_size: int = Field(default=1024, ge=64)
    vector: VectorConfig = Field(default_factory=VectorConfig)
    # float32 (the default: exact) or uint8 (a quarter of the size, steps of 1/254, the real
    # probability through the band's scale in GDAL and QGIS).
    confidence: Literal["float32", "uint8"] = "float32"


class PredictConfig(PredictOptions):
    """Predict a source with a model bundle: class map, confidence, polygons."""

    source: str
    output: str


@dataclass(frozen=True)
class PlannedPredict(PlannedStep[PredictConfig]):
    """A predict step with its source, model and output paths resolved."""

    kind: ClassVar[str] = "predict"
    config_type: ClassVar[type[PredictConfig]] = PredictConfig
    figures_type: ClassVar[type[PredictFigures]] = PredictFigures

    source: SourceRef
    model: Path

    @classmethod
    def plan(cls, index: int, config: PredictConfig, ctx: PlanContext) -> PlannedPredict:
        """Resolve source, model and folder; check bands and tiling against the model."""
        step = cls(
            index,
            config,
            ctx.folder(config.output),
            ctx.catalog.source(config.source),
            ctx.path(config.model),
        )
        meta = ctx.bundle(step.model)
        if meta is not None:
            missing = [b for b in meta.band_names if b not in step.source.band_names]
            if missing:
                raise ConfigError(
                    f"{ctx.where}: model '{meta.name}' needs bands {list(meta.band_names)} but "
                    f"source '{step.source.name}' has {list(step.source.band_names)}; missing "
                    f"{missing}"
                )
            config.tiling(meta, ctx.where)
        return step

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
        return self.folder / f"{self.config.vector.layer}{SUFFIX[fmt]}"

    def outputs(self) -> list[Path]:
        """Final paths this step writes (styles and the manifest are replaced freely)."""
        paths = [self.class_map, self.confidence]
        if self.config.vector.enabled:
            paths += [self.vector(f) for f in self.config.vector.formats]
        return [*paths, self.folder / "report.html", self.folder / "item.json"]

    def inputs(self) -> list[Path]:
        """The model bundle (an earlier step may train it)."""
        return [self.model]

    def reads(self) -> list[Location]:
        """The source's files and the model bundle."""
        return [*self.source.paths, self.model]

    def kept(self, parts: Path) -> str:
        """How many finished chunks an interrupted run keeps for ``--resume``."""
        records = len(list(parts.glob("*.json"))) if parts.is_dir() else 0
        return f"{records} finished chunk(s) are kept in {self.work}"

    def check_resources(self, spec: ExecutorSpec, where: str) -> None:
        """Refuse a tile larger than the scene, or batches the memory cannot hold."""
        if self.model.exists():
            shape = RasterSource.open(self.source).grid.shape
            self.config.check_resources(load_meta(self.model), shape, spec, where)

    def describe(self) -> str:
        """``predict source=NAME``."""
        return f"{self.kind} source={self.source.name}"

    def fingerprint(self, spec: ExecutorSpec) -> Fingerprint:
        """Everything the outputs depend on (see the module docstring)."""
        meta = load_meta(self.model)
        source = SourceDefinition.of(self.source, meta.band_names)
        paths = {b.name: b.path for b in self.source.bands}
        read = [name for name in meta.band_names if name in paths]  # in the model's order
        return Fingerprint(
            geoseg=__version__,
            config_sha256=config_hash(self.config),
            model_weights_sha256=meta.weights_sha256,
            model_meta_sha256=file_sha256(self.model / META_FILE),
            source=source,
            inputs=[input_checksum(p) for p in dict.fromkeys(paths[n] for n in read)],
            device=device_type(self.config.device),
            torch_threads=torch_threads(spec.workers),
        )

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Predict every chunk, assemble the COGs, vectorise, export, report."""
        from geoseg.model.predictor import predictor

        cfg, ex = self.config, ctx.executor
        clock_start = time.perf_counter()
        timings: dict[str, float] = {}
        meta = load_meta(self.model)
        source = RasterSource.open(self.source)
        profile = meta.profile_for(source.name, source.band_names, source.ref.units, source.grid)
        source = source.select(meta.band_names)
        if cfg.input_check != "off":  # a cheap decimated sample, read once for both checks
            sample = source.preview(SAMPLE_SIZE)
            cfg.check_input(source.name, source.band_names, sample, profile, ctx.where(self))
            files = [b.path for b in source.ref.bands]
            cfg.check_fill(source.name, sample, files, ctx.catalog.path)
        spec = cfg.spec(meta, profile, ctx.where(self))
        threads = torch_threads(ex.spec.workers)  # as the fingerprint records
        factory = functools.partial(predictor, self.model, cfg.device, threads)
        vectors = cfg.vector.prepared(source.grid)
        storage = ConfidenceStorage(cfg.confidence)
        chunk_plan = ChunkPlan(source.grid.shape, source.chunk_shape(cfg.chunk_size))
        job = PredictJob(source, factory, spec, tx.parts, storage, vectors, chunk_plan)
        chunks = chunk_plan.chunks()
        done = finished_chunks(job, chunks) if tx.resuming else {}
        if done:
            log.info("resuming: %d of %d chunks already finished", len(done), len(chunks))

        clock = time.perf_counter()
        computed = predict_chunks(job, [c for c in chunks if c.key not in done], ex)
        timings["inference_s"] = time.perf_counter() - clock
        outcomes = [*done.values(), *computed]

        styles = class_styles(meta)
        class_map, confidence = tx.stage(self.class_map), tx.stage(self.confidence)

        def write_rasters() -> float:
            start = time.perf_counter()
            colormap = {c.code: (*c.rgb, 255) for c in styles}
            assemble_outputs(job, chunk_plan, class_map, confidence, colormap, overwrite=True)
            write_style(style_path(class_map), raster_qml(styles))
            for path in (class_map, confidence):
                problems = validate_cog(path)
                if problems:
                    log.warning("%s is not a valid COG: %s", path, problems)
            return time.perf_counter() - start

        if not any(o.class_counts for o in outcomes):
            log.warning(
                "source '%s' has no valid pixels: outputs are empty (all nodata)", source.name
            )
        polygons = None
        # With traced outlines, vectorising reads no pixels: the COGs (GDAL, free of the GIL)
        # are written on a thread of their own meanwhile. Otherwise it reads the class map.
        with ThreadPoolExecutor(1, thread_name_prefix="geoseg-cogs") as background:
            rasters = background.submit(write_rasters) if vectors == "outlines" else None
            if rasters is None:
                timings["write_cog_s"] = write_rasters()
            if cfg.vector.enabled:
                clock = time.perf_counter()
                vjob = VectoriseJob(
                    class_map, confidence, source.grid, chunk_plan, cfg.vector.settings, tx.parts
                )
                gpkg = tx.stage(self.vector("gpkg"))
                names = {c.code: c.name for c in meta.classes}
                features = vectorise(vjob, names, ex)
                polygons = write_gpkg(features, gpkg, cfg.vector.layer, empty_features(source.grid))
                timings["vectorise_s"] = time.perf_counter() - clock
                clock = time.perf_counter()
                for fmt in cfg.vector.formats:
                    if fmt != "gpkg":
                        target = tx.stage(self.vector(fmt))
                        convert(gpkg, cfg.vector.layer, target, fmt, overwrite=True)
                write_style(style_path(gpkg), vector_qml(styles))
                timings["export_s"] = time.perf_counter() - clock
            if rasters is not None:
                timings["write_cog_s"] = rasters.result()
        timings["total_s"] = time.perf_counter() - clock_start
        figures = summarise(
            meta, source.grid, outcomes, len(computed), profile.name, polygons, timings
        )
        write_run_report(self, tx, meta, source, styles, figures)
        model = ModelRecord(
            path=str(self.model), name=meta.name, weights_sha256=meta.weights_sha256
        )
        provenance = Provenance(source=source.name, model=model, grid=GridRecord.of(source.grid))
        return Outcome(figures, provenance)
