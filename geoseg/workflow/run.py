"""Running a plan: lock, decide each step's state, execute in order on one executor, report.

Before any compute every step's output folder is locked and every step's state is decided
(:func:`geoseg.workflow.transaction.decide`): a step whose inputs an earlier step of this run
writes cannot be judged yet and starts afresh; the others may be up to date (a no-op), resume,
or start afresh. Then each step runs inside its :class:`~geoseg.workflow.transaction.Transaction`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoseg.executor import ExecutorSpec, open_executor
from geoseg.workflow.lock import output_lock
from geoseg.workflow.manifest import Figures, Fingerprint
from geoseg.workflow.plan import Plan, plan_workflow
from geoseg.workflow.step import PlannedStep, RunContext
from geoseg.workflow.transaction import State, Transaction, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepReport:
    """What one step did: its outputs, its figures (``None`` when it was already up to date)."""

    index: int
    kind: str
    outputs: list[Path]
    figures: Figures | None
    up_to_date: bool = False


def run_workflow(
    path: str | Path,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
    overrides: Mapping[str, str] | None = None,
) -> list[StepReport]:
    """Plan a workflow file (with ``KEY.PATH=VALUE`` overrides) and run it."""
    plan = plan_workflow(path, overrides)
    return run_plan(plan, overwrite, show_progress, resume, executor)


def run_plan(
    plan: Plan,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
) -> list[StepReport]:
    """Lock the outputs, decide every step's state, then execute the steps in order."""
    spec = executor or plan.executor
    with ExitStack() as locks:
        for lock in dict.fromkeys(step.lock for step in plan.steps):
            locks.enter_context(output_lock(lock))  # before any hashing or compute
        states = _decide(plan, spec, overwrite, resume)
        with open_executor(spec, show_progress) as ex:
            ctx = RunContext(plan.path, plan.catalog, ex, show_progress)
            return [
                _run_step(step, state, found, ctx, spec)
                for step, (state, found) in zip(plan.steps, states, strict=True)
            ]


def _decide(
    plan: Plan, spec: ExecutorSpec, overwrite: bool, resume: bool
) -> list[tuple[State, Fingerprint | None]]:
    written: set[Path] = set()
    states = []
    for step in plan.steps:
        depends = any(path in written for path in step.inputs())
        found = None if depends else step.fingerprint(spec)
        states.append((decide(step, found, resume, overwrite), found))
        written.update(step.outputs())
    return states


def _run_step(
    step: PlannedStep[Any],
    state: State,
    found: Fingerprint | None,
    ctx: RunContext,
    spec: ExecutorSpec,
) -> StepReport:
    if state == "up_to_date":
        log.info("step %d is up to date (%s matches): nothing to do", step.index, step.manifest)
        return StepReport(step.index, step.kind, step.outputs(), None, up_to_date=True)
    tx = Transaction(step, state, found or step.fingerprint(spec))
    tx.begin()
    outcome = step.run(ctx, tx)
    tx.commit(outcome, ctx)
    return StepReport(step.index, step.kind, step.outputs(), outcome.figures)
