"""Run identity, resuming, no-op re-runs and the output-folder lock.

A predict step's *fingerprint* is everything its outputs depend on: the step's config, the
model's weights, the input files' checksums, geoseg's version, the device and torch's thread
count. It is written to ``OUT/.geoseg-work/run.json`` when a run starts and into the manifest
when it completes. ``--resume`` continues an unfinished run only when the fingerprint is
unchanged; a complete run with the same fingerprint makes a re-run a no-op.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from geoseg import __version__
from geoseg.errors import OutputExistsError, ResumeError
from geoseg.export.atomic import atomic_path, check_writable
from geoseg.model.bundle import META_FILE, BundleMeta, file_sha256
from geoseg.workflow.manifest import MANIFEST_NAME, config_hash
from geoseg.workflow.plan import PlannedPredict

RUN_RECORD = "run.json"
LOCK_FILE = ".geoseg.lock"

#: Files up to this size are hashed whole; larger ones by size, mtime and their first/last MiBs.
FULL_HASH_LIMIT = 1024**3
_EDGE = 16 * 1024**2

State = Literal["up_to_date", "resume", "fresh"]


def input_checksum(path: Path) -> dict[str, Any]:
    """Path, size and a checksum (``sha256`` whole, or ``quick`` for files over 1 GiB)."""
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return {"path": str(path), "bytes": size, "sha256": file_sha256(path)}
    digest = hashlib.sha256(f"{size}:{path.stat().st_mtime_ns}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE))
        handle.seek(size - _EDGE)
        digest.update(handle.read(_EDGE))
    return {"path": str(path), "bytes": size, "quick": digest.hexdigest()}


def fingerprint(
    step: PlannedPredict, meta: BundleMeta, threads: int, device: str
) -> dict[str, Any]:
    """Everything the outputs of ``step`` depend on.

    The step's config; the whole model bundle (weights and ``bundle.json``: bands,
    normalisation, classes); the source's definition as resolved from the catalog for the bands
    the model reads (files, band indexes, nodata, scale, offset, units, asserted CRS), in the
    model's band order; those files' checksums; geoseg's version, the device and thread count.
    """
    by_name = {b.name: b for b in step.source.bands}
    bands = [by_name[name] for name in meta.band_names if name in by_name]
    used = dict.fromkeys(b.path for b in bands)
    return {
        "geoseg": __version__,
        "config_sha256": config_hash(step.step),
        "model_weights_sha256": meta.weights_sha256,
        "model_meta_sha256": file_sha256(step.model / META_FILE),
        "source": {
            "bands": [
                {
                    "name": b.name,
                    "path": str(b.path),
                    "band": b.band,
                    "nodata": b.nodata,
                    "scale": b.scale,
                    "offset": b.offset,
                }
                for b in bands
            ],
            "units": step.source.units,
            "crs": step.source.crs,
        },
        "inputs": [input_checksum(p) for p in used],
        "device": device,
        "torch_threads": threads,
    }


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable names of what changed between two fingerprints (inputs compared in order)."""
    names = {
        "config_sha256": "the step's configuration",
        "model_weights_sha256": "the model's weights",
        "model_meta_sha256": "the model's bundle.json",
        "source": "the source's catalog definition",
    }
    changed = []
    for key in sorted(set(old) | set(new)):
        if key == "inputs":
            before, after = old.get(key, []), new.get(key, [])
            changed += [f"input {b['path']}" for a, b in zip(before, after, strict=False) if a != b]
            if len(before) != len(after):
                changed.append("the number of input files")
        elif old.get(key) != new.get(key):
            changed.append(names.get(key, key))
    return changed


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def step_state(
    step: PlannedPredict, current: dict[str, Any], resume: bool, overwrite: bool
) -> State:
    """Whether ``step`` is already complete, resumes an unfinished run, or starts afresh.

    Raises :class:`ResumeError` when ``resume`` is asked for but the unfinished run's fingerprint
    differs, and :class:`OutputExistsError` when a fresh run would replace outputs without
    ``overwrite``.
    """
    manifest = _read_json(step.folder / MANIFEST_NAME)
    complete = (
        manifest is not None
        and manifest.get("fingerprint") == current
        and all(p.exists() for p in step.outputs())
    )
    if complete and not overwrite:
        return "up_to_date"
    record = _read_json(step.work / RUN_RECORD)
    if resume and record is not None:
        changed = differences(record, current)
        if changed:
            raise ResumeError(
                f"cannot resume the run in {step.folder}: {', '.join(changed)} changed since it "
                "started. Run without --resume (and with --overwrite if outputs exist) to start "
                "again"
            )
        return "resume"
    for out in step.outputs():
        check_writable(out, overwrite)
    return "fresh"


def write_run_record(step: PlannedPredict, current: dict[str, Any]) -> None:
    """Record the fingerprint of the run starting in ``step.work``."""
    step.work.mkdir(parents=True, exist_ok=True)
    with atomic_path(step.work / RUN_RECORD, overwrite=True) as tmp:
        tmp.write_text(json.dumps(current, indent=2), encoding="utf-8")


@contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` for a run; a second run on it is refused.

    The lock is an advisory ``flock`` on ``folder/.geoseg.lock``: the operating system releases
    it when the process dies, so a killed run never leaves a stale lock.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise OutputExistsError(
                f"another geoseg run ({holder}) is writing {folder}; wait for it to finish or "
                "choose another output folder"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)
