"""One step's writes as a transaction: work folder, staging, commit, stale outputs, manifest.

Every step kind runs inside one (docs/DESIGN.md §8):

1. :func:`decide`, before any compute, is the one place where the policy for existing outputs,
   ``--overwrite`` and ``--resume`` is applied: the step is up to date (its manifest carries the
   same fingerprint: nothing to do), resumes an unfinished run (same fingerprint as the run
   record), or starts afresh, which existing outputs refuse without ``--overwrite``.
2. :meth:`Transaction.begin` prepares the work folder (``FOLDER/.geoseg-work``): a stale one is
   discarded unless resuming, and the run record is written.
3. The step computes into :attr:`Transaction.staged` (and chunk parts into
   :attr:`Transaction.parts`), under the same names as the final outputs.
4. :meth:`Transaction.commit` removes the old manifest, renames every staged file and folder
   into place, deletes outputs of the previous run that this run no longer makes, writes the
   manifest (last: its presence marks a complete run) and only then removes the work folder, so
   a run killed during the commit can still be finished with ``--resume``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from geoseg.errors import ResumeError
from geoseg.export.atomic import atomic_path, check_writable
from geoseg.export.style import style_path
from geoseg.export.vector import members
from geoseg.workflow.manifest import (
    ExecutorRecord,
    Fingerprint,
    Manifest,
    describe_files,
    now,
)
from geoseg.workflow.step import Outcome, PlannedStep, RunContext

log = logging.getLogger(__name__)

#: The fingerprint of the run in progress, inside the work folder.
RUN_RECORD = "run.json"

State = Literal["up_to_date", "resume", "fresh"]


@dataclass(frozen=True)
class Decision:
    """A step's state before the run, its fingerprint, and the manifest of an up-to-date step."""

    state: State
    fingerprint: Fingerprint | None = None
    manifest: Manifest | None = None


def run_record(step: PlannedStep[Any]) -> Fingerprint | None:
    """The fingerprint an unfinished run of ``step`` recorded (``None`` without one)."""
    try:
        return Fingerprint.model_validate_json((step.work / RUN_RECORD).read_text("utf-8"))
    except (OSError, ValidationError):
        return None


def decide(
    step: PlannedStep[Any], fingerprint: Fingerprint | None, resume: bool, overwrite: bool
) -> Decision:
    """Whether ``step`` is up to date, resumes an unfinished run, or starts afresh.

    Without a fingerprint (the kind has none, or it depends on what an earlier step of this run
    writes) a step always starts afresh. Raises :class:`ResumeError` when ``resume`` is asked for
    but the unfinished run's fingerprint differs, and :class:`OutputExistsError` when a fresh run
    would replace outputs without ``overwrite``.
    """
    if fingerprint is not None:
        manifest = Manifest.read(step.manifest, step.figures_type) if step.manifest else None
        complete = (
            manifest is not None
            and manifest.fingerprint == fingerprint
            and all(p.exists() for p in step.outputs())
        )
        if complete and not overwrite:
            return Decision("up_to_date", fingerprint, manifest)
        record = run_record(step)
        if resume and record is not None:
            changed = record.differences(fingerprint)
            if changed:
                raise ResumeError(
                    f"cannot resume the run in {step.folder}: {', '.join(changed)} changed since "
                    "it started. Run without --resume (and with --overwrite if outputs exist) to "
                    "start again"
                )
            return Decision("resume", fingerprint)
    for out in step.outputs():
        check_writable(out, overwrite)
    return Decision("fresh", fingerprint)


@dataclass
class Transaction:
    """The writes of one run of ``step`` (see the module docstring for the protocol)."""

    step: PlannedStep[Any]
    state: State
    fingerprint: Fingerprint | None = None
    started: str = field(default_factory=now)

    @property
    def staged(self) -> Path:
        """Where finished outputs wait, under their final names, until the commit."""
        return self.step.work / "staged"

    @property
    def parts(self) -> Path:
        """Where chunk tasks write their parts (kept across a resume)."""
        return self.step.work / "parts"

    @property
    def resuming(self) -> bool:
        """True when continuing an unfinished run (finished chunks are reused)."""
        return self.state == "resume"

    def stage(self, final: Path) -> Path:
        """The staged path of the final path ``final``."""
        return self.staged / final.relative_to(self.step.folder)

    def begin(self) -> None:
        """Prepare the work folder: keep a resumed run's parts, else start from nothing."""
        work = self.step.work
        if self.resuming:
            shutil.rmtree(self.staged, ignore_errors=True)
        else:
            if (work / RUN_RECORD).exists():
                log.warning("discarding the unfinished run in %s (use --resume to continue)", work)
            shutil.rmtree(work, ignore_errors=True)
        self.staged.mkdir(parents=True, exist_ok=True)
        if self.fingerprint is not None:
            with atomic_path(work / RUN_RECORD, overwrite=True) as tmp:
                tmp.write_text(self.fingerprint.model_dump_json(indent=2), encoding="utf-8")

    def commit(self, outcome: Outcome, ctx: RunContext) -> Manifest | None:
        """Move everything staged into place, drop stale outputs, write the manifest last."""
        folder, manifest_path = self.step.folder, self.step.manifest
        previous = self._previous_outputs()
        if manifest_path is not None:
            manifest_path.unlink(missing_ok=True)
        committed: list[Path] = []
        for entry in sorted(self.staged.iterdir()):
            final = folder / entry.name
            if final.is_dir():  # a folder output (class maps per photo) is replaced whole
                shutil.rmtree(final)
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(entry, final)
            files = [final] if final.is_file() else sorted(final.rglob("*"))
            committed += [p for p in files if p.is_file()]
        for stale in set(previous) - set(committed):  # outputs this run no longer makes
            for path in (*members(stale), style_path(stale)):
                if Path(os.path.realpath(path)) in ctx.protected:
                    log.warning("kept %s: the last run wrote it, but it is now an input", path)
                elif path not in committed:
                    path.unlink(missing_ok=True)
            parent = stale.parent  # a folder output left empty goes too
            while parent != folder and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        manifest = None
        if manifest_path is not None:
            manifest = Manifest.model_validate(
                {
                    "workflow": str(ctx.workflow),
                    "step": self.step.index,
                    "kind": self.step.kind,
                    "config": self.step.config.model_dump(mode="json"),
                    "started": self.started,
                    "executor": ExecutorRecord(
                        kind=ctx.executor.spec.kind, workers=ctx.executor.spec.workers
                    ),
                    "fingerprint": self.fingerprint,
                    "provenance": outcome.provenance,
                    "inputs": describe_files(p for p in self.step.inputs() if p.is_file()),
                    "outputs": describe_files(committed),
                    "figures": outcome.figures,
                }
            )
            manifest.write(manifest_path)
        shutil.rmtree(self.step.work, ignore_errors=True)  # kept until here, for --resume
        return manifest

    def _previous_outputs(self) -> list[Path]:
        """Files the manifest of an earlier run in the folder lists (none without one)."""
        path = self.step.manifest
        old = Manifest.read(path) if path is not None else None
        if old is None or old.kind != self.step.kind:  # not this step's outputs
            return []
        listed = [Path(o.path) for o in old.outputs]
        return [p for p in listed if p.is_relative_to(self.step.folder)]
