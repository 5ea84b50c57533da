"""The ``predict_scenes`` step: one predict per scene of a list, glob or STAC catalog.

A job names its scenes (``files:`` paths or glob patterns, or ``stac:`` a static catalog,
collection or ItemCollection) and the predict options they share. Each scene is predicted into
its own folder under the job's (``naming``, default ``{id}``) by an ordinary predict plan run on
the job's executor: its own lock, transaction and manifest, so a scene done before is up to date
(a no-op) and only new or changed scenes compute. A scene that fails is reported and the job goes
on; the job ends by writing ``summary.csv`` and ``report.html`` (per scene: status, pixels,
polygons, seconds, error) and, when any scene failed, exits with :class:`ScenesFailedError`.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationError, model_validator

from geoseg.catalog import BandSpec, Catalog, CatalogSpec, SourceSpec
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError, GeoSegError, InterruptedRun, ScenesFailedError
from geoseg.executor import ExecutorSpec
from geoseg.model.bundle import load_meta
from geoseg.types import Location
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.steps.predict import PredictConfig, PredictOptions
from geoseg.workflow.steps.scenes_listing import list_scenes, repeated, scene_folder
from geoseg.workflow.steps.scenes_summary import SceneRow, ScenesFigures, summary_csv, summary_html
from geoseg.workflow.transaction import Transaction

log = logging.getLogger(__name__)

#: Placeholders a scene folder's name may use.
PLACEHOLDERS = ("id", "date")


class ScenesConfig(ClosedModel):
    """Which scenes: raster files (paths or glob patterns), or the items of a STAC catalog."""

    files: list[str] | None = Field(default=None, min_length=1)
    stac: str | None = None
    # How each scene's bands are named: a file's bands in order (default: the model's names);
    # for STAC, the bands to pick from each item (asset key, common name, or ``asset:``).
    bands: list[BandSpec] | None = Field(default=None, min_length=1)
    units: str = "DN"
    nodata: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ScenesConfig:
        if (self.files is None) == (self.stac is None):
            raise ValueError("give the scenes as either 'files' or 'stac'")
        if self.stac is not None and self.bands is None:
            raise ValueError("a STAC job must list 'bands' to pick from each item")
        bands = self.bands or []
        if any(b.file is not None for b in bands):
            raise ValueError("scene bands name no 'file': each scene is its own file or item")
        if self.files is not None and any(b.asset is not None for b in bands):
            raise ValueError("'asset' picks a band from a STAC item; files have none")
        return self


class PredictScenesConfig(PredictOptions):
    """Predict every scene of a job into its own folder under ``output``."""

    scenes: ScenesConfig
    output: str
    naming: str = "{id}"
    # Scenes predicted at once, on a Dask cluster (``executor: distributed``); locally one scene
    # already keeps every worker busy.
    parallel: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _naming(self) -> PredictScenesConfig:
        used = set(re.findall(r"{(\w*)}", self.naming))
        if "id" not in used or used - set(PLACEHOLDERS):
            raise ValueError(
                f"naming '{self.naming}' must use {{id}} and may use {{date}}; it uses {used}"
            )
        if self.naming.startswith("/") or ".." in Path(self.naming).parts:
            raise ValueError(f"naming '{self.naming}' must stay inside the job's folder")
        return self


@dataclass(frozen=True)
class Scene:
    """One scene of a job: its id, where it is, its date (STAC) and its folder."""

    id: str
    location: Location
    date: str
    folder: Path


@dataclass(frozen=True)
class PlannedScenes(PlannedStep[PredictScenesConfig]):
    """A many-scene job with its scenes listed and each one's folder named."""

    kind: ClassVar[str] = "predict_scenes"
    config_type: ClassVar[type[PredictScenesConfig]] = PredictScenesConfig
    figures_type: ClassVar[type[ScenesFigures]] = ScenesFigures

    scenes: tuple[Scene, ...]
    model: Path

    @classmethod
    def plan(cls, index: int, config: PredictScenesConfig, ctx: PlanContext) -> PlannedScenes:
        """List the scenes (globs expanded, STAC catalog read) and name their folders."""
        folder = ctx.folder(config.output)
        scenes = tuple(
            Scene(
                item.id,
                item.location,
                item.datetime,
                scene_folder(folder, config.naming, item.id, item.datetime, ctx.where),
            )
            for item in list_scenes(config.scenes, ctx)
        )
        twice = repeated(str(s.folder.relative_to(folder)) for s in scenes)
        if twice:
            raise ConfigError(
                f"{ctx.where}: naming '{config.naming}' gives several scenes the same folder "
                f"({', '.join(twice[:5])}); use {{id}} so that each scene has its own"
            )
        step = cls(index, config, folder, scenes, ctx.path(config.model))
        ctx.bundle(step.model)  # refused now unless an earlier step trains it
        return step

    def outputs(self) -> list[Path]:
        """None to refuse: the summary and report are the job's log, rewritten by every run."""
        return []

    def inputs(self) -> list[Path]:
        """The model bundle (an earlier step may train it)."""
        return [self.model]

    def reads(self) -> list[Location]:
        """The scenes' files (a STAC job's items are read when each scene runs) and the model."""
        return [*(s.location for s in self.scenes if self.config.scenes.files), self.model]

    def check_resources(self, spec: ExecutorSpec, where: str) -> None:
        """Refuse scenes in parallel without a Dask cluster to share."""
        if self.config.parallel > 1 and spec.kind != "distributed":
            raise ConfigError(
                f"{where}: parallel: {self.config.parallel} needs a Dask cluster (executor: "
                f"{{kind: distributed}}); with '{spec.kind}' one scene already keeps every worker "
                "busy, so set parallel: 1"
            )

    def describe(self) -> str:
        """``predict_scenes N scenes``."""
        return f"{self.kind} {len(self.scenes)} scenes"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Predict every scene in turn (done ones are no-ops), then write the summary."""
        from geoseg.workflow.plan import plan_steps  # the workflow layer runs each scene
        from geoseg.workflow.run import run_plan
        from geoseg.workflow.schema import StepConfig

        def one(scene: Scene) -> SceneRow:
            where = f"{ctx.where(self)} scene {scene.id}"
            log.info("scene %s of %s", scene.id, ctx.where(self))
            start = time.perf_counter()
            try:
                name, catalog = self._catalog(scene, ctx)
                options = self.config.model_dump(exclude={"scenes", "output", "naming", "parallel"})
                config = PredictConfig(**options, source=name, output=str(scene.folder))
                plan = plan_steps(
                    ctx.workflow, catalog, [StepConfig("predict", config)], ctx.spec, where
                )
                report = run_plan(
                    plan, ctx.overwrite, ctx.show_progress, ctx.resume, ctx.spec, ctx.executor
                )[0]
            except InterruptedRun:
                raise  # Ctrl-C / SIGTERM stop the job, not just this scene
            except (GeoSegError, ValidationError) as exc:
                log.error("%s failed: %s", where, exc)
                return self._row(scene, "failed", start, error=str(exc))
            status = "up to date" if report.up_to_date else "done"
            pixels = sum(report.figures.pixels_per_class.values())
            return self._row(scene, status, start, pixels, report.figures.polygons)

        if self.config.parallel > 1:  # nested plans share the cluster's client
            pool = ThreadPoolExecutor(self.config.parallel)
            try:
                rows = list(pool.map(one, self.scenes))
            finally:  # an interrupt cancels the scenes not yet started
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            rows = [one(scene) for scene in self.scenes]
        figures = ScenesFigures(
            done=sum(r.status == "done" for r in rows),
            up_to_date=sum(r.status == "up to date" for r in rows),
            failed=sum(r.status == "failed" for r in rows),
            scenes=rows,
        )
        tx.stage(self.folder / "summary.csv").write_text(summary_csv(rows), encoding="utf-8")
        tx.stage(self.folder / "report.html").write_text(
            summary_html(ctx.where(self), figures), encoding="utf-8"
        )
        if figures.failed:
            tx.commit(Outcome(figures), ctx)
            failed = [r.scene for r in rows if r.status == "failed"]
            raise ScenesFailedError(
                f"{ctx.where(self)}: {len(failed)} of {len(rows)} scene(s) failed "
                f"({', '.join(failed[:5])}); the others are done. Each failure is in "
                f"{self.folder / 'summary.csv'}; fix them and run again (done scenes are skipped)"
            )
        return Outcome(figures)

    def _catalog(self, scene: Scene, ctx: RunContext) -> tuple[str, Catalog]:
        """A one-source catalog for ``scene`` (a raster file or a STAC item)."""
        cfg = self.config.scenes
        fields: dict[str, object] = {
            "bands": cfg.bands or [BandSpec(name=n) for n in load_meta(self.model).band_names],
            "nodata": cfg.nodata,
        }
        if cfg.files:
            where = {"file": str(scene.location), "description": f"scene {scene.id}"}
            fields |= {**where, "units": cfg.units}
        else:  # units: the items' raster unit unless the job states them
            fields["stac"] = str(scene.location)
            if "units" in cfg.model_fields_set:
                fields["units"] = cfg.units
        spec = SourceSpec.model_validate(fields)
        path = ctx.workflow.parent / "(scenes)"
        return scene.id, Catalog(path, CatalogSpec(version=1, sources={scene.id: spec}))

    def _row(
        self,
        scene: Scene,
        status: str,
        start: float,
        pixels: int | None = None,
        polygons: int | None = None,
        error: str = "",
    ) -> SceneRow:
        return SceneRow(
            scene=scene.id,
            location=str(scene.location),
            folder=str(scene.folder.relative_to(self.folder)),
            status=status,
            pixels=pixels,
            polygons=polygons,
            seconds=round(time.perf_counter() - start, 2),
            error=error,
        )
