"""What every step kind is: a planned value that declares its outputs and runs in a transaction.

A step kind is one module of :mod:`geoseg.workflow.steps`: its config model (the YAML keys), its
planned type (a subclass of :class:`PlannedStep`, every name and path resolved, nothing opened)
and its ``run``, which computes into the work folder of a
:class:`~geoseg.workflow.transaction.Transaction` and returns typed figures. The table
:data:`geoseg.workflow.kinds.KINDS` lists the kinds; nothing else knows them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from geoseg.catalog import Catalog
from geoseg.config import default_data_dir, expand_path
from geoseg.errors import ConfigError
from geoseg.executor import Executor, ExecutorSpec
from geoseg.model.bundle import BundleMeta, load_meta
from geoseg.types import Location
from geoseg.workflow.manifest import MANIFEST_NAME, Figures, Fingerprint, Provenance

if TYPE_CHECKING:
    from geoseg.workflow.transaction import Transaction

#: A step's work folder inside its output folder: chunk parts, staged outputs, run record.
WORK_DIR = ".geoseg-work"
#: The lock file inside an output folder (docs/DESIGN.md §11).
LOCK_FILE = ".geoseg.lock"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def step_label(workflow: Path, origin: str | None, index: int, kind: str) -> str:
    """Where a step comes from, for messages: ``wf.yaml steps.1.predict``, or ``origin``.

    ``origin`` names steps that come from no file (``geoseg.predict()`` for the Python API).
    """
    return origin or f"{workflow} steps.{index}.{kind}"


@dataclass(frozen=True)
class PlanContext:
    """What planning one step may look at: the workflow file, the catalog, earlier outputs."""

    workflow: Path
    catalog: Catalog
    index: int
    kind: str
    written: frozenset[Path] = frozenset()
    origin: str | None = None

    @property
    def where(self) -> str:
        """The step's place in the workflow, for messages (``wf.yaml steps.1.predict``)."""
        return step_label(self.workflow, self.origin, self.index, self.kind)

    def path(self, text: str) -> Path:
        """A path of the workflow: variables expanded, relative to the workflow's folder."""
        return expand_path(text, self.workflow.parent, default_data_dir(self.catalog.path.parent))

    def existing(self, text: str) -> Path:
        """An input path that exists now or that an earlier step writes."""
        path = self.path(text)
        if path not in self.written and not path.exists():
            earlier = "" if self.origin else " and no earlier step writes it"
            raise ConfigError(f"{self.where}: {path} does not exist{earlier}")
        return path

    def folder(self, text: str) -> Path:
        """An output folder (refused when a file is in the way)."""
        folder = self.path(text)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{self.where}.output {folder} exists and is not a folder")
        return folder

    def bundle(self, path: Path) -> BundleMeta | None:
        """A model's metadata, checked now; ``None`` when an earlier step trains it."""
        return None if path in self.written else load_meta(path)


@dataclass(frozen=True)
class RunContext:
    """What running a step may use: the workflow file, the catalog and the executor."""

    workflow: Path
    catalog: Catalog
    executor: Executor
    show_progress: bool
    origin: str | None = None
    protected: frozenset[Path] = frozenset()
    # The run's own flags, for steps that run nested plans (predict_scenes: one per scene).
    spec: ExecutorSpec = field(default_factory=ExecutorSpec)
    overwrite: bool = False
    resume: bool = False

    def where(self, step: PlannedStep[Any]) -> str:
        """``step``'s place in the workflow, for messages."""
        return step_label(self.workflow, self.origin, step.index, step.kind)


@dataclass(frozen=True)
class Outcome:
    """What a step's run returns: its figures, and what the manifest records of its inputs."""

    figures: Figures
    provenance: Provenance = field(default_factory=Provenance)


@dataclass(frozen=True)
class PlannedStep(ABC, Generic[ConfigT]):
    """A step with its config validated and its names and paths resolved (nothing opened).

    ``folder`` holds the step's outputs, its manifest (written last), its lock and its work
    folder. Subclasses set ``kind``, ``config_type`` and ``figures_type`` and implement
    :meth:`plan`, :meth:`outputs` and :meth:`run`.
    """

    kind: ClassVar[str]
    config_type: ClassVar[type[BaseModel]]
    figures_type: ClassVar[type[Figures]]

    index: int
    config: ConfigT
    folder: Path

    @classmethod
    @abstractmethod
    def plan(cls, index: int, config: ConfigT, ctx: PlanContext) -> PlannedStep[ConfigT]:
        """Resolve and check ``config`` (names, paths, models) without opening data."""

    @abstractmethod
    def outputs(self) -> list[Path]:
        """Final paths this step writes: refused without ``--overwrite`` when they exist."""

    @abstractmethod
    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Compute everything into ``tx``'s staging folder; the transaction commits it."""

    def inputs(self) -> list[Path]:
        """Paths this step reads that an earlier step of the workflow may write."""
        return []

    def reads(self) -> Sequence[Location]:
        """Every file (or bundle folder) this step reads: no step may write or delete these.

        Catalog sources may be remote objects (:func:`geoseg.io.remote.is_remote`).
        """
        return self.inputs()

    def fingerprint(self, spec: ExecutorSpec) -> Fingerprint | None:
        """What the outputs depend on, when the kind can resume and skip up-to-date runs."""
        return None

    def kept(self, parts: Path) -> str:
        """What an interrupted run of this step leaves for ``--resume`` (``parts``), in words."""
        return (
            f"its work so far is kept in {self.work}" if self.work.is_dir() else "nothing was kept"
        )

    def check_resources(self, spec: ExecutorSpec, where: str) -> None:
        """Refuse settings this machine cannot run (memory, tile size) before any compute.

        Called before the run computes anything (and by ``geoseg validate``) for steps whose
        inputs exist; a step reading what an earlier one writes is checked just before it runs.
        """

    def describe(self) -> str:
        """``KIND WHAT``: one line for ``geoseg validate``."""
        return f"{self.kind} " + " ".join(str(p) for p in self.inputs())

    @property
    def work(self) -> Path:
        """The work folder (parts, staged outputs, run record)."""
        return self.folder / WORK_DIR

    @property
    def lock(self) -> Path:
        """The lock file held while the step's workflow runs."""
        return self.folder / LOCK_FILE

    @property
    def manifest(self) -> Path | None:
        """Where the manifest goes (``None``: the outputs describe themselves)."""
        return self.folder / MANIFEST_NAME
