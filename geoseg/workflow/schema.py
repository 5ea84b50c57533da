"""The workflow YAML schema (version 1): closed, typed, validated before any data is opened.

```yaml
version: 1
name: demo
catalog: ../data_catalog.yaml     # relative to this file
executor: {kind: threads, workers: 2}
steps:
  - train:   {source: nc-landsat7, labels: landcover96, output: ../out/model.geoseg, ...}
  - predict: {source: nc-landsat7-sample, model: ../models/x.geoseg, output: ../out/demo, ...}
```

Each step is a mapping with exactly one key, the step kind; its body is validated by that kind's
config model (:data:`geoseg.workflow.kinds.KINDS`). Overrides (``--set steps.0.train.epochs=2``)
are applied to the parsed YAML before validation, so they are checked like the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from geoseg.config import ClosedModel, parse_model, read_yaml
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorKind, ExecutorSpec
from geoseg.workflow.kinds import KINDS


class ExecutorConfig(ClosedModel):
    """Where chunk tasks run: Dask threads (default), processes, or a distributed cluster."""

    kind: ExecutorKind = "threads"
    workers: int = Field(default=2, ge=1)
    address: str | None = None
    retries: int = Field(default=2, ge=0)

    @property
    def spec(self) -> ExecutorSpec:
        """The executor this config asks for."""
        return ExecutorSpec(self.kind, self.workers, self.address, self.retries)


class Workflow(ClosedModel):
    """A whole workflow file; ``steps`` are validated one by one by their kinds' models."""

    version: Literal[1]
    name: str = "workflow"
    catalog: str = "data_catalog.yaml"
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    steps: list[Any] = Field(min_length=1)


@dataclass(frozen=True)
class StepConfig:
    """One validated step: its kind and its config."""

    kind: str
    config: BaseModel


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, str], path: Path) -> None:
    """Set ``KEY.PATH=VALUE`` overrides in parsed YAML (values are parsed as YAML too).

    Intermediate keys and list indexes must exist; the last key may be new (it is then
    validated like any key of the file, so a typo is still an error).
    """
    for key, text in overrides.items():
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, key, depth, path)
        last = parts[-1]
        value = yaml.safe_load(text) if text.strip() else ""
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override '{key}': {'.'.join(parts[:-1])} in {path} has no '{last}'")


def _child(node: Any, part: str, key: str, depth: int, path: Path) -> Any:
    """The child ``part`` of ``node`` on the way to override ``key``."""
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    where = ".".join(key.split(".")[:depth]) or "the top level"
    raise ConfigError(f"override '{key}': {where} in {path} has no '{part}'")


def load_workflow(
    path: str | Path, overrides: Mapping[str, str] | None = None
) -> tuple[Path, Workflow, list[StepConfig]]:
    """Read and validate a workflow file; returns its absolute path, the model and its steps."""
    path = Path(path).resolve()
    data = read_yaml(path, "workflow")
    apply_overrides(data, overrides or {}, path)
    workflow = parse_model(Workflow, data, path, "workflow")
    steps = []
    for index, entry in enumerate(workflow.steps):
        given = list(entry) if isinstance(entry, dict) else []
        if len(given) != 1 or given[0] not in KINDS:
            raise ConfigError(
                f"workflow {path} is invalid:\n  - steps.{index}: a step has exactly one of "
                f"{', '.join(KINDS)}, got {given or 'none'}"
            )
        kind = given[0]
        at = f"steps.{index}.{kind}"
        body = entry[kind] if entry[kind] is not None else {}
        steps.append(
            StepConfig(kind, parse_model(KINDS[kind].config_type, body, path, "workflow", at))
        )
    return path, workflow, steps
