"""Never touch an input: no output, staging or cleanup may replace or delete a file a run reads.

The files a run reads that no earlier step of it writes (imagery, labels, zones, photos, model
bundles) are its *protected inputs*. :func:`check_outputs` refuses, at plan time, a step whose
output, work folder or manifest would be such a file (compared by real path and by inode, so a
symlink or a hard link is caught too), lies inside one, or contains one (a folder output is
replaced whole, a work folder is deleted). The transaction never deletes a protected input as a
stale output either. Remote inputs (URLs) cannot be written by a run and are not protected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from geoseg.errors import ConfigError
from geoseg.types import is_remote
from geoseg.workflow.step import PlannedStep


def identity(path: Path) -> tuple[int, int] | Path:
    """What makes two paths the same file: device and inode when it exists, else the real path."""
    try:
        found = path.stat()
    except OSError:
        return Path(os.path.realpath(path))
    return (found.st_dev, found.st_ino)


def protected_inputs(steps: Sequence[PlannedStep[Any]]) -> frozenset[Path]:
    """Real paths of every local file or folder a step reads that no earlier step writes.

    What an earlier step writes, or a file inside a folder it writes, is the run's own product
    (a class map that an evaluate step reads, a file of an export folder that an import reads);
    anything else a step reads must be there before the run and stays as it is.
    """
    written: set[tuple[int, int] | Path] = set()
    folders: list[Path] = []
    protected = set()
    for step in steps:
        for path in (p for p in step.reads() if not is_remote(p)):
            real = Path(os.path.realpath(path))
            if identity(path) not in written and not any(real.is_relative_to(f) for f in folders):
                protected.add(real)
        written |= {identity(p) for p in step.outputs()}
        folders += [Path(os.path.realpath(p)) for p in step.outputs()]
    return frozenset(protected)


def check_outputs(step: PlannedStep[Any], protected: frozenset[Path], where: str) -> None:
    """Refuse ``step`` when anything it writes or deletes is, holds or lies in a protected input."""
    inputs = {identity(p): p for p in protected}
    targets: list[Path] = [*step.outputs(), step.work, step.lock]
    if step.manifest is not None:
        targets.append(step.manifest)
    for target in targets:
        real = Path(os.path.realpath(target))
        clash = inputs.get(identity(target))
        clash = clash or _nested(real, protected)
        if clash is not None:
            raise ConfigError(
                f"{where} would write {target}, which would replace or delete {clash}, an input "
                "of this run; choose another output folder (geoseg never touches its inputs)"
            )


def _nested(real: Path, protected: Iterable[Path]) -> Path | None:
    """A protected path inside ``real`` (a folder written whole), or one that ``real`` is in."""
    for path in protected:
        if path.is_relative_to(real) or (path.is_dir() and real.is_relative_to(path)):
            return path
    return None
