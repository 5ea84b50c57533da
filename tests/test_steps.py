"""The step protocol: a new kind is one class plus a table entry, and gets the whole lifecycle.

A toy kind (``count``: writes the number of bands of a source) is registered for these tests
only; it gets planning, validation, the overwrite policy, staging, commit, stale-output cleanup
and a typed manifest from the workflow layer without a line of its own for any of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from geoseg.catalog import SourceRef
from geoseg.config import ClosedModel
from geoseg.errors import ConfigError, OutputExistsError
from geoseg.workflow.kinds import KINDS
from geoseg.workflow.manifest import Figures
from geoseg.workflow.plan import plan_workflow
from geoseg.workflow.run import run_workflow
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction
from tests.conftest import REPO

CATALOG = REPO / "data_catalog.yaml"


class CountConfig(ClosedModel):
    source: str
    output: str
    extra: bool = False
    fail: bool = False
    read: str | None = None  # a file the step reads (an input of the run)


class CountFigures(Figures):
    bands: int


@dataclass(frozen=True)
class PlannedCount(PlannedStep[CountConfig]):
    kind: ClassVar[str] = "count"
    config_type: ClassVar[type[CountConfig]] = CountConfig

    source: SourceRef
    read: Path | None = None

    @classmethod
    def plan(cls, index: int, config: CountConfig, ctx: PlanContext) -> PlannedCount:
        read = ctx.existing(config.read) if config.read else None
        return cls(
            index, config, ctx.folder(config.output), ctx.catalog.source(config.source), read
        )

    def reads(self) -> list[Path]:
        return [self.read] if self.read else []

    def outputs(self) -> list[Path]:
        names = ["count.txt", "extra.txt"] if self.config.extra else ["count.txt"]
        return [self.folder / n for n in names]

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        for path in self.outputs():
            tx.stage(path).write_text(str(len(self.source.bands)))
        if self.config.fail:
            raise RuntimeError("disk full (simulated)")
        return Outcome(CountFigures(bands=len(self.source.bands)))


@pytest.fixture
def count_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "count", PlannedCount)


def count_workflow(tmp_path: Path, source: str = "nc-landsat7-sample", **options: bool) -> Path:
    body = "".join(f"      {k}: {str(v).lower()}\n" for k, v in options.items())
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {CATALOG}\nsteps:\n  - count:\n      source: {source}\n"
        f"      output: out\n{body}"
    )
    return path


def manifest(tmp_path: Path) -> dict[str, object]:
    return json.loads((tmp_path / "out" / "manifest.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.usefixtures("count_kind")
def test_a_new_kind_gets_the_whole_lifecycle(tmp_path: Path) -> None:
    path = count_workflow(tmp_path, extra=True)
    reports = run_workflow(path, show_progress=False)
    assert reports[0].kind == "count" and reports[0].figures == CountFigures(bands=6)
    assert (tmp_path / "out" / "count.txt").read_text() == "6"
    written = manifest(tmp_path)
    assert written["kind"] == "count" and written["figures"] == {"bands": 6}
    assert {o["path"] for o in written["outputs"]} == {  # type: ignore[attr-defined]
        str(tmp_path / "out" / "count.txt"),
        str(tmp_path / "out" / "extra.txt"),
    }
    assert not (tmp_path / "out" / ".geoseg-work").exists()
    with pytest.raises(OutputExistsError, match=r"count\.txt exists; pass --overwrite"):
        run_workflow(path, show_progress=False)
    slim = count_workflow(tmp_path)  # no longer makes extra.txt
    run_workflow(slim, overwrite=True, show_progress=False)
    assert not (tmp_path / "out" / "extra.txt").exists(), "stale outputs of the last run go"
    assert [o["path"] for o in manifest(tmp_path)["outputs"]] == [  # type: ignore[attr-defined]
        str(tmp_path / "out" / "count.txt")
    ]


@pytest.mark.usefixtures("count_kind")
def test_a_failing_step_commits_nothing(tmp_path: Path) -> None:
    run_workflow(count_workflow(tmp_path), show_progress=False)
    before = manifest(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        run_workflow(count_workflow(tmp_path, extra=True, fail=True), True, show_progress=False)
    assert not (tmp_path / "out" / "extra.txt").exists(), "nothing reaches a final path"
    assert manifest(tmp_path) == before, "the previous run stays complete and described"


@pytest.mark.usefixtures("count_kind")
def test_a_new_kind_is_validated_and_planned_from_the_table(tmp_path: Path) -> None:
    path = count_workflow(tmp_path, extar=True)
    with pytest.raises(ConfigError, match=r"unknown key 'steps\.0\.count\.extar'; allowed here"):
        plan_workflow(path)
    with pytest.raises(ConfigError, match=r"has no source 'nope'"):
        plan_workflow(count_workflow(tmp_path, source="nope"))


def test_unknown_kinds_list_the_table(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(f"version: 1\ncatalog: {CATALOG}\nsteps:\n  - count: {{}}\n")
    with pytest.raises(
        ConfigError, match=r"exactly one of train, predict, evaluate, zonal, change"
    ):
        plan_workflow(path)


@pytest.mark.usefixtures("count_kind")
def test_stale_cleanup_keeps_a_file_that_is_now_an_input(tmp_path: Path) -> None:
    run_workflow(count_workflow(tmp_path, extra=True), show_progress=False)
    extra = tmp_path / "out" / "extra.txt"
    path = count_workflow(tmp_path)  # no longer makes extra.txt, but now reads it
    path.write_text(path.read_text() + f"      read: {extra}\n")
    run_workflow(path, overwrite=True, show_progress=False)
    assert extra.read_text() == "6", "an input of the run is never deleted as a stale output"
