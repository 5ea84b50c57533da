"""Running a workflow: plan, decide each step's state, execute on one executor, report.

Before any compute, every predict step is classified: already complete with the same
fingerprint (a no-op), an unfinished run to resume (``--resume``), or a fresh run whose outputs
must not exist unless ``--overwrite``. Train steps refuse an existing bundle unless
``--overwrite``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.executor import ExecutorSpec, open_executor
from geoseg.export.atomic import check_writable
from geoseg.model.bundle import load_meta
from geoseg.workflow.analysis import run_analysis
from geoseg.workflow.evaluate import run_evaluate
from geoseg.workflow.images import run_predict_images
from geoseg.workflow.manifest import MANIFEST_NAME
from geoseg.workflow.plan import (
    Plan,
    PlannedAnalysis,
    PlannedEvaluate,
    PlannedImages,
    PlannedPredict,
    PlannedTrain,
    plan_workflow,
)
from geoseg.workflow.predict import run_predict, torch_threads
from geoseg.workflow.resume import State, fingerprint, output_lock, step_state

log = logging.getLogger(__name__)


@dataclass
class StepReport:
    """What one step did: its outputs, its figures, and whether it was already up to date."""

    index: int
    kind: str
    outputs: list[Path]
    figures: dict[str, Any] = field(default_factory=dict)
    up_to_date: bool = False


def _fingerprint(step: PlannedPredict, spec: ExecutorSpec) -> dict[str, Any]:
    from geoseg.model.predictor import resolve_device

    meta = load_meta(step.model)
    device = resolve_device(step.step.device).type
    return fingerprint(step, meta, torch_threads(spec.workers), device)


def run_workflow(
    path: str | Path,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
) -> list[StepReport]:
    """Plan, check every step's outputs, then execute the steps in order."""
    plan = plan_workflow(path)
    spec = executor or plan.executor
    with ExitStack() as locks:
        folders = [s.folder for s in plan.steps if not isinstance(s, PlannedTrain)]
        for folder in dict.fromkeys(folders):
            locks.enter_context(output_lock(folder))  # before any hashing or compute
        return _run(plan, spec, overwrite, show_progress, resume)


def _run(
    plan: Plan, spec: ExecutorSpec, overwrite: bool, show_progress: bool, resume: bool
) -> list[StepReport]:
    trained = {s.output for s in plan.steps if isinstance(s, PlannedTrain)}
    states: dict[int, tuple[State, dict[str, Any] | None]] = {}
    for step in plan.steps:
        if isinstance(step, PlannedTrain):
            check_writable(step.output, overwrite)
        elif isinstance(step, PlannedEvaluate | PlannedAnalysis | PlannedImages):
            for out in step.outputs():
                check_writable(out, overwrite)
        elif step.model in trained:  # its model does not exist yet: cannot be up to date
            for out in step.outputs():
                check_writable(out, overwrite)
            states[step.index] = ("fresh", None)
        else:
            found = _fingerprint(step, spec)
            states[step.index] = (step_state(step, found, resume, overwrite), found)
    reports = []
    with open_executor(spec, show_progress) as ex:
        for step in plan.steps:
            if isinstance(step, PlannedTrain):
                reports.append(run_train(plan, step, overwrite, show_progress))
                continue
            if isinstance(step, PlannedEvaluate):
                figures = run_evaluate(plan, step, ex, overwrite)
                reports.append(StepReport(step.index, "evaluate", step.outputs(), figures))
                continue
            if isinstance(step, PlannedImages):
                figures = run_predict_images(plan, step, ex, overwrite)
                reports.append(StepReport(step.index, "predict_images", step.outputs(), figures))
                continue
            if isinstance(step, PlannedAnalysis):
                figures = run_analysis(plan, step, ex, overwrite)
                kind = "zonal" if "zones" in figures else "change"
                reports.append(StepReport(step.index, kind, step.outputs(), figures))
                continue
            state, current = states[step.index]
            if state == "up_to_date":
                log.info(
                    "step %d is up to date (%s matches): nothing to do",
                    step.index,
                    step.folder / MANIFEST_NAME,
                )
                reports.append(StepReport(step.index, "predict", step.outputs(), {}, True))
                continue
            figures = run_predict(
                plan, step, ex, current or _fingerprint(step, spec), state, overwrite
            )
            reports.append(StepReport(step.index, "predict", step.outputs(), figures))
    return reports


def run_train(plan: Plan, step: PlannedTrain, overwrite: bool, show_progress: bool) -> StepReport:
    """Execute a train step."""
    from geoseg.train.loop import train

    result = train(step.step, plan.catalog, step.output, overwrite, show_progress)
    validation = result.meta.metrics.get("validation", {})
    return StepReport(step.index, "train", [step.output], {"validation": validation})


def evaluate_once(
    catalog_path: Path, options: dict[str, Any], overwrite: bool, show_progress: bool
) -> dict[str, Any]:
    """Run one evaluate step from command-line options (as ``geoseg evaluate`` does)."""
    from geoseg.catalog import Catalog
    from geoseg.config import parse_model
    from geoseg.workflow.schema import EvaluateStep, Step, Workflow

    where = Path("geoseg evaluate")
    cfg = parse_model(EvaluateStep, options, where, "command-line options")
    catalog = Catalog.load(catalog_path)
    step = PlannedEvaluate(
        0,
        cfg,
        catalog.source(cfg.source),
        Path(cfg.prediction),
        Path(cfg.output),
        Path(cfg.within) if cfg.within else None,
    )
    step.source.label(cfg.labels)
    workflow = Workflow(version=1, catalog=str(catalog.path), steps=[Step(evaluate=cfg)])
    plan = Plan(where, workflow, catalog, [step])
    for out in step.outputs():
        check_writable(out, overwrite)
    with output_lock(step.folder), open_executor(ExecutorSpec(), show_progress) as ex:
        return run_evaluate(plan, step, ex, overwrite)
