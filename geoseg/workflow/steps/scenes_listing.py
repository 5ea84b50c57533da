"""Which scenes a ``predict_scenes`` job has, and the folder each one is written to."""

from __future__ import annotations

import glob
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.catalog.stac import SceneItem, stac_scenes
from geoseg.errors import ConfigError
from geoseg.types import RemoteLocation, is_remote
from geoseg.workflow.step import PlanContext

if TYPE_CHECKING:
    from geoseg.workflow.steps.scenes import ScenesConfig

#: What a scene id may hold to name a folder.
SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")


def scene_folder(job: Path, naming: str, sid: str, date: str, where: str) -> Path:
    """A scene's folder: ``naming`` filled in, always a folder inside the job's."""
    if not SAFE_ID.fullmatch(sid) or sid in (".", ".."):
        raise ConfigError(
            f"{where}: scene id '{sid}' cannot name a folder (letters, digits, '.', '-', '_' "
            "only); rename the file or item"
        )
    if "{date}" in naming and not date:
        raise ConfigError(
            f"{where}: naming '{naming}' uses {{date}} but scene '{sid}' has no date (files never "
            "do; STAC items with datetime null neither): use {id} alone"
        )
    folder = job / naming.format(id=sid, date=date[:10])
    if not folder.resolve().is_relative_to(job.resolve()) or folder.resolve() == job.resolve():
        raise ConfigError(f"{where}: scene '{sid}' would be written outside {job}")
    return folder


def list_scenes(cfg: ScenesConfig, ctx: PlanContext) -> list[SceneItem]:
    """Every scene, in order: files sorted per pattern (no dates), STAC items as listed."""
    if cfg.stac is not None:
        text = cfg.stac
        return stac_scenes(RemoteLocation(text) if is_remote(text) else ctx.path(text))
    found: list[SceneItem] = []
    for pattern in cfg.files or []:
        if is_remote(pattern):
            remote = RemoteLocation(pattern)
            found.append(SceneItem(Path(remote.name).stem, remote, ""))
            continue
        path = ctx.path(pattern)
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        if not matches:
            raise ConfigError(f"{ctx.where}.scenes.files: '{pattern}' matches no file ({path})")
        found += [SceneItem(m.stem, m.resolve(), "") for m in matches]
    twice = repeated(item.id for item in found)
    if twice:
        raise ConfigError(
            f"{ctx.where}.scenes.files: several files are named {', '.join(twice[:5])}; scene ids "
            "are file names without their suffix, so they must differ"
        )
    return found


def repeated(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    return sorted(name for name, count in Counter(names).items() if count > 1)
