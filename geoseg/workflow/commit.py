"""Moving a step's finished outputs from its work folder to their final paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

from geoseg.export.atomic import check_writable
from geoseg.export.vector import members
from geoseg.workflow.manifest import MANIFEST_NAME


def commit(staged: dict[Path, Path], overwrite: bool) -> None:
    """Move finished files from the work folder to their final paths (renames, same volume).

    A Shapefile moves with its member files.
    """
    pairs = [
        (final.with_suffix(member.suffix), member)
        for final, path in staged.items()
        for member in members(path)
        if member.exists()
    ]
    for final, _ in pairs:
        check_writable(final, overwrite)
    for final, path in pairs:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, final)


def previous_outputs(folder: Path) -> list[Path]:
    """Outputs listed by the manifest of an earlier run in ``folder`` (none when it has none)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        return [
            Path(entry["path"])
            for entry in manifest.get("outputs", [])
            if Path(entry["path"]).parent == folder
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
