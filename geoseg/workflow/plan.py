"""Planning a workflow: every name and path resolved and checked, nothing opened.

:func:`plan_workflow` refuses bad configs (unknown sources, bands a model lacks, tiling that
does not fit the model, outputs two steps would both write) before any data is read. Each kind
plans its own steps (:meth:`PlannedStep.plan`); this module only walks the steps in order and
tells each what the earlier ones write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoseg.catalog import Catalog
from geoseg.config import expand_path
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.workflow.kinds import KINDS
from geoseg.workflow.schema import StepConfig, Workflow, load_workflow
from geoseg.workflow.step import PlanContext, PlannedStep


@dataclass(frozen=True)
class Plan:
    """A validated workflow, every path absolute, nothing opened."""

    path: Path
    workflow: Workflow
    catalog: Catalog
    steps: list[PlannedStep[Any]]

    @property
    def executor(self) -> ExecutorSpec:
        """The executor the workflow asks for."""
        return self.workflow.executor.spec


def plan_workflow(path: str | Path, overrides: Mapping[str, str] | None = None) -> Plan:
    """Validate a workflow file and resolve its names and paths (no data is opened)."""
    wf_path, workflow, steps = load_workflow(path, overrides)
    catalog = Catalog.load(expand_path(workflow.catalog, wf_path.parent))
    return plan_steps(wf_path, workflow, catalog, steps)


def plan_steps(
    path: Path, workflow: Workflow, catalog: Catalog, steps: Sequence[StepConfig]
) -> Plan:
    """Plan validated steps in order; ``path`` anchors relative paths and names the steps."""
    planned: list[PlannedStep[Any]] = []
    writers: dict[Path, int] = {}
    for index, entry in enumerate(steps):
        ctx = PlanContext(path, catalog, index, entry.kind, frozenset(writers))
        step = KINDS[entry.kind].plan(index, entry.config, ctx)
        for out in step.outputs():
            if out in writers:
                raise ConfigError(f"{ctx.where} writes {out}, which step {writers[out]} writes too")
            writers[out] = index
        planned.append(step)
    return Plan(path, workflow, catalog, planned)
