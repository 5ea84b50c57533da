"""Planning a workflow: every name and path resolved and checked, nothing opened.

:func:`plan_workflow` refuses bad configs (unknown sources, bands a model lacks, tiling that
does not fit the model, outputs two steps would both write) before any data is read. Each kind
plans its own steps (:meth:`PlannedStep.plan`); this module only walks the steps in order and
tells each what the earlier ones write.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.catalog import Catalog
from geoseg.config import DATA_ENV, expand_path
from geoseg.errors import ConfigError, OutputLocationError
from geoseg.executor import ExecutorSpec
from geoseg.types import is_remote
from geoseg.workflow.kinds import KINDS
from geoseg.workflow.protect import check_outputs, protected_inputs
from geoseg.workflow.schema import StepConfig, load_workflow
from geoseg.workflow.step import PlanContext, PlannedStep, step_label


@dataclass(frozen=True)
class Plan:
    """A validated workflow, every path absolute, nothing opened.

    ``path`` anchors relative paths and names the steps in messages, unless ``origin`` names
    them (steps from the Python API come from no file).
    """

    path: Path
    catalog: Catalog
    steps: list[PlannedStep[Any]]
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    origin: str | None = None
    protected: frozenset[Path] = frozenset()  # inputs no step writes: never replaced or deleted


def plan_workflow(path: str | Path, overrides: Mapping[str, str] | None = None) -> Plan:
    """Validate a workflow file and resolve its names and paths (no data is opened)."""
    wf_path, workflow, steps = load_workflow(path, overrides)
    catalog = Catalog.load(expand_path(workflow.catalog, wf_path.parent))
    return plan_steps(wf_path, catalog, steps, workflow.executor.spec)


def plan_steps(
    path: Path,
    catalog: Catalog,
    steps: Sequence[StepConfig],
    executor: ExecutorSpec,
    origin: str | None = None,
) -> Plan:
    """Plan validated steps in order (see :class:`Plan` for ``path`` and ``origin``).

    Two steps may not write the same output, nor share an output folder's manifest or work
    folder (each step's manifest describes its own outputs, and its stale ones are deleted), and
    no step may write over, into or around an input of the run (:mod:`geoseg.workflow.protect`).
    Every input no earlier step writes must exist, and every output folder must be creatable.
    """
    planned: list[PlannedStep[Any]] = []
    writers: dict[Path, int] = {}
    for index, entry in enumerate(steps):
        ctx = PlanContext(path, catalog, index, entry.kind, frozenset(writers), origin)
        step = KINDS[entry.kind].plan(index, entry.config, ctx)
        for out in step.outputs():
            if out in writers:
                raise ConfigError(f"{ctx.where} writes {out}, which step {writers[out]} writes too")
            writers[out] = index
        for other in planned:
            if step.work == other.work or (step.manifest and step.manifest == other.manifest):
                raise ConfigError(
                    f"{ctx.where} writes into {step.folder}, which step {other.index} writes "
                    "into too: give each step its own output folder (each folder holds one "
                    "step's outputs and manifest)"
                )
        planned.append(step)
    protected = protected_inputs(planned)
    for step in planned:
        where = step_label(path, origin, step.index, step.kind)
        check_outputs(step, protected, where)
        _check_inputs_exist(step, protected, where, catalog)
        _check_creatable(step.folder, where)
    return Plan(path, catalog, planned, executor, origin, protected)


def _check_inputs_exist(
    step: PlannedStep[Any], protected: frozenset[Path], where: str, catalog: Catalog
) -> None:
    """Refuse a step reading a file that is not there and that no earlier step writes."""
    for read in step.reads():
        if is_remote(read):  # checked when opened, with retries (geoseg.io.remote)
            continue
        if Path(os.path.realpath(read)) in protected and not read.exists():
            raise ConfigError(
                f"{where} reads {read}, which does not exist: correct the path in {catalog.path} "
                f"or the workflow (paths with ${{{DATA_ENV}}} depend on that variable), or "
                "create the file first"
            )


def _check_creatable(folder: Path, where: str) -> None:
    """Refuse an output folder that cannot be created or written, naming what is in the way."""
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputLocationError(
            f"{where} cannot create its output folder {folder}: {parent} is a file, not a folder; "
            "choose another output path"
        )
    try:
        with tempfile.TemporaryDirectory(prefix=".geoseg-probe-", dir=parent):
            pass
    except OSError as exc:
        raise OutputLocationError(
            f"{where} cannot write its output folder {folder}: creating anything in {parent} "
            f"fails ({exc.strerror or exc}); choose a folder you can write to"
        ) from exc
