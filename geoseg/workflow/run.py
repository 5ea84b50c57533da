"""Running a plan: lock, decide each step's state, execute in order on one executor, report.

Before any compute every step's output folder is locked and every step's state is decided
(:func:`geoseg.workflow.transaction.decide`): a step whose inputs an earlier step of this run
writes cannot be judged yet and starts afresh; the others may be up to date (a no-op), resume,
or start afresh. Then each step runs inside its :class:`~geoseg.workflow.transaction.Transaction`.
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Mapping
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from rasterio.errors import RasterioError

from geoseg.errors import DiskFullError, EnvironmentFailure, GeoSegError, InterruptedRun, root_cause
from geoseg.executor import Executor, ExecutorSpec, open_executor
from geoseg.workflow.lock import output_lock
from geoseg.workflow.manifest import Figures
from geoseg.workflow.plan import Plan, plan_workflow
from geoseg.workflow.step import PlannedStep, RunContext, step_label
from geoseg.workflow.transaction import Decision, Transaction, decide

log = logging.getLogger(__name__)

#: Below this much free space on an output device, a failed write is reported as a full disk.
LOW_SPACE = 64 * 2**20


FiguresT = TypeVar("FiguresT", bound=Figures)


@dataclass(frozen=True)
class StepReport(Generic[FiguresT]):
    """What one step did: its outputs and figures (an up-to-date step's, from its manifest)."""

    index: int
    kind: str
    outputs: list[Path]
    figures: FiguresT
    up_to_date: bool = False


def run_workflow(
    path: str | Path,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
    overrides: Mapping[str, str] | None = None,
) -> list[StepReport[Any]]:
    """Plan a workflow file (with ``KEY.PATH=VALUE`` overrides) and run it."""
    plan = plan_workflow(path, overrides)
    return run_plan(plan, overwrite, show_progress, resume, executor)


def run_plan(
    plan: Plan,
    overwrite: bool = False,
    show_progress: bool = True,
    resume: bool = False,
    executor: ExecutorSpec | None = None,
    opened: Executor | None = None,
) -> list[StepReport[Any]]:
    """Lock the outputs, decide every step's state, then execute the steps in order.

    Ctrl-C (or SIGTERM, as the CLI maps it) anywhere ends in :class:`InterruptedRun` saying what
    is complete and what was kept; the executor settles its running tasks before the locks go.
    ``opened``: an executor already open (a nested plan runs on its caller's), else one is
    opened for ``executor`` (default: the plan's).
    """
    spec = executor or plan.executor
    reports: list[StepReport[Any]] = []
    try:
        with ExitStack() as locks:
            for lock in dict.fromkeys(step.lock for step in plan.steps):
                locks.enter_context(output_lock(lock))  # before any hashing or compute
            decisions, checked = _decide(plan, spec, overwrite, resume)
            running = nullcontext(opened) if opened else open_executor(spec, show_progress)
            with running as ex:
                ctx = RunContext(
                    plan.path,
                    plan.catalog,
                    ex,
                    show_progress,
                    plan.origin,
                    plan.protected,
                    spec,
                    overwrite,
                    resume,
                )
                for step, decision in zip(plan.steps, decisions, strict=True):
                    reports.append(_run_step(step, decision, ctx, spec, step.index in checked))
                return reports
    except KeyboardInterrupt as exc:  # between steps: while deciding, or settling tasks
        where = plan.origin or str(plan.path)
        done = f"steps 0-{len(reports) - 1} are complete" if reports else "no step had started"
        raise InterruptedRun(
            f"{where} was interrupted ({done}); no partial file is at a final path"
        ) from exc


def _decide(
    plan: Plan, spec: ExecutorSpec, overwrite: bool, resume: bool
) -> tuple[list[Decision], set[int]]:
    """Each step's decision, and the steps whose resources were checked before any compute.

    A step whose inputs this run rewrites starts afresh, and its resources are checked just
    before it runs (its model may not exist yet).
    """
    rewritten: set[Path] = set()
    decisions, checked = [], set()
    for step in plan.steps:
        depends = any(path in rewritten for path in step.inputs())
        if not depends:
            step.check_resources(spec, step_label(plan.path, plan.origin, step.index, step.kind))
            checked.add(step.index)
        decision = decide(step, None if depends else step.fingerprint(spec), resume, overwrite)
        decisions.append(decision)
        if decision.state != "up_to_date":
            rewritten.update(step.outputs())
    return decisions, checked


def _run_step(
    step: PlannedStep[Any],
    decision: Decision,
    ctx: RunContext,
    spec: ExecutorSpec,
    checked: bool,
) -> StepReport[Any]:
    if decision.manifest is not None:  # up to date: its figures are the manifest's
        log.info("step %d is up to date (%s matches): nothing to do", step.index, step.manifest)
        return StepReport(step.index, step.kind, step.outputs(), decision.manifest.figures, True)
    where = ctx.where(step)
    tx: Transaction | None = None
    committing = False
    try:
        if not checked:
            step.check_resources(spec, where)
        fingerprint = decision.fingerprint or step.fingerprint(spec)  # decided now if it depends
        tx = Transaction(step, decision.state, fingerprint)
        tx.begin()
        outcome = step.run(ctx, tx)
        committing = True
        tx.commit(outcome, ctx)
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM as the CLI maps it
        raise InterruptedRun(_interrupted(step, where, tx, committing)) from exc
    except GeoSegError:
        raise
    except (OSError, RasterioError) as exc:  # the system or GDAL refused a read or a write
        raise _environment_failure(exc, step, where) from exc
    return StepReport(step.index, step.kind, step.outputs(), outcome.figures)


def _interrupted(
    step: PlannedStep[Any], where: str, tx: Transaction | None, committing: bool
) -> str:
    """What an interrupted step left, in words."""
    if committing:
        return (
            f"{where} was interrupted while moving its outputs into place: some are new, some "
            f"old, and it has no manifest; its work folder {step.work} is kept, so running it "
            "again (with --resume where it kept its work) completes it"
        )
    kept = step.kept(tx.parts) if tx is not None else "nothing of it was written"
    return (
        f"{where} was interrupted; {kept}. Steps before it are complete; no partial file is at "
        "a final path"
    )


def disk_free(folder: Path) -> int:
    """Free bytes on the device that holds ``folder`` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _environment_failure(exc: BaseException, step: PlannedStep[Any], where: str) -> GeoSegError:
    """A clear error for a read or write the system refused: a full disk says so, with the space."""
    cause = root_cause(exc)
    free = disk_free(step.folder)
    chain = [exc, exc.__cause__, exc.__context__]
    full = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain)
    if full or free < LOW_SPACE or "no space left" in cause.lower():
        return DiskFullError(
            f"{where}: the device holding {step.folder} is full ({free / 2**20:.1f} MiB free) "
            f"({cause}). Free some space there or choose another output folder, then run again "
            "with --resume to keep the finished chunks"
        )
    return EnvironmentFailure(f"{where} failed: {cause}")
