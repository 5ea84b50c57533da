"""Run manifests: written last, they mark a step's outputs as complete (docs/DESIGN.md §8)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from geoseg.export.atomic import atomic_path
from geoseg.model.bundle import file_sha256
from geoseg.versions import library_versions

MANIFEST_NAME = "manifest.json"


def config_hash(config: BaseModel) -> str:
    """SHA-256 of a config's canonical JSON."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def describe_files(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of each file."""
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in paths]


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_manifest(folder: Path, content: dict[str, Any]) -> Path:
    """Write ``folder/manifest.json`` atomically, with versions and a completion time."""
    path = folder / MANIFEST_NAME
    body = {**content, "versions": library_versions(), "finished": now(), "status": "complete"}
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
    return path
