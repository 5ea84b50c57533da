"""Run manifests: written last, they mark a step's outputs as complete (docs/DESIGN.md §8).

A manifest is a typed value (:class:`Manifest`), written as ``manifest.json`` beside the outputs
it describes and read back by later runs (which outputs the previous run made, with which
fingerprint). Figures are each step kind's own typed :class:`Figures`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from geoseg.catalog import SourceRef
from geoseg.config import canonical_sha256
from geoseg.export.atomic import atomic_path
from geoseg.io.remote import remote_stat
from geoseg.model.bundle import file_sha256
from geoseg.types import Grid, Location, is_remote
from geoseg.versions import library_versions
from geoseg.workflow.checksums import remembered

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


class Record(BaseModel):
    """Base of the values a manifest holds: immutable; unknown keys ignored when read back."""

    model_config = ConfigDict(frozen=True)


class Figures(Record):
    """What a step reports: each step kind subclasses this with its own typed fields."""

    def lines(self) -> list[str]:
        """``key: value`` lines of the figures (for the command line)."""
        return [f"{k}: {v}" for k, v in self.model_dump().items()]


class FileRecord(Record):
    """A file: path, size and a checksum (``sha256``, or ``quick`` for very large inputs).

    A remote object (URL) is described by the server's metadata instead: size (``-1`` when the
    server does not say), ``etag`` and ``modified`` (its Last-Modified).
    """

    path: str
    bytes: int
    sha256: str | None = None
    quick: str | None = None
    etag: str | None = None
    modified: str | None = None


class BandDefinition(Record):
    """One band as the catalog resolves it: file, band index, nodata, scale and offset."""

    name: str
    path: str
    band: int
    nodata: float | None = None
    scale: float
    offset: float


class SourceDefinition(Record):
    """A source as resolved from the catalog, for the bands a model reads, in its order."""

    bands: list[BandDefinition]
    units: str
    crs: str | None = None

    @classmethod
    def of(cls, source: SourceRef, names: Sequence[str]) -> SourceDefinition:
        """``source``'s definition for the bands ``names``, in that order."""
        by_name = {b.name: b for b in source.bands}
        return cls(
            bands=[
                BandDefinition(
                    name=b.name,
                    path=str(b.path),
                    band=b.band,
                    nodata=b.nodata,
                    scale=b.scale,
                    offset=b.offset,
                )
                for b in (by_name[name] for name in names if name in by_name)
            ],
            units=source.units,
            crs=source.crs,
        )


def definition(entry: Any) -> Any:
    """A resolved catalog entry (a dataclass) as JSON data, without description and licence.

    What a fingerprint hashes of label layers and image sets: editing their prose changes no
    output, so it must not stop a resume or make a complete run look out of date.
    """
    data = {k: v for k, v in asdict(entry).items() if k not in ("description", "licence")}
    return json.loads(json.dumps(data, default=str))


class Fingerprint(Record):
    """Everything a step's outputs depend on; equal fingerprints mean equal outputs.

    Written to the work folder when a run starts (``run.json``) and into the manifest when it
    completes: ``--resume`` continues only an unchanged run, and a complete run with the same
    fingerprint makes a re-run a no-op.
    """

    geoseg: str
    config_sha256: str
    model_weights_sha256: str | None = None
    model_meta_sha256: str | None = None
    source: SourceDefinition | None = None  # what a predict step reads
    sources: list[SourceDefinition] = Field(default_factory=list)  # what a train step reads
    inputs: list[FileRecord] = Field(default_factory=list)
    device: str | None = None
    torch_threads: int | None = None

    def differences(self, other: Fingerprint) -> list[str]:
        """Human-readable names of what differs from ``other`` (inputs compared in order)."""
        names = {
            "config_sha256": "the step's configuration",
            "model_weights_sha256": "the model's weights",
            "model_meta_sha256": "the model's bundle.json",
            "source": "the source's catalog definition",
            "sources": "the training sources' catalog definitions",
        }
        changed = []
        for key in type(self).model_fields:
            if key == "inputs":
                pairs = zip(self.inputs, other.inputs, strict=False)
                changed += [f"input {b.path}" for a, b in pairs if a != b]
                if len(self.inputs) != len(other.inputs):
                    changed.append("the number of input files")
            elif getattr(self, key) != getattr(other, key):
                changed.append(names.get(key, key))
        return changed


class ModelRecord(Record):
    """The model bundle a step used."""

    path: str
    name: str
    weights_sha256: str = ""


class GridRecord(Record):
    """The grid of a step's raster outputs."""

    width: int
    height: int
    crs: str | None = None
    transform: list[float]

    @classmethod
    def of(cls, grid: Grid) -> GridRecord:
        """The record of ``grid``."""
        return cls(
            width=grid.width,
            height=grid.height,
            crs=grid.crs_wkt,
            transform=list(grid.transform)[:6],
        )


class ExecutorRecord(Record):
    """Where chunk tasks ran."""

    kind: str
    workers: int


class Provenance(Record):
    """What a step read and wrote on: its source or image set, licence, model and grid."""

    source: str | None = None
    image_set: str | None = None
    licence: str | None = None
    model: ModelRecord | None = None
    grid: GridRecord | None = None


class Manifest(Record):
    """Everything ``manifest.json`` holds; its presence marks a complete step."""

    status: Literal["complete"] = "complete"
    workflow: str
    step: int
    kind: str
    config: dict[str, Any]
    started: str
    finished: str = Field(default_factory=lambda: now())
    versions: dict[str, str] = Field(default_factory=library_versions)
    executor: ExecutorRecord | None = None
    fingerprint: Fingerprint | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    inputs: list[FileRecord] = Field(default_factory=list)
    outputs: list[FileRecord] = Field(default_factory=list)
    figures: SerializeAsAny[Figures] = Field(default_factory=Figures)

    def write(self, path: Path) -> Path:
        """Write the manifest atomically as JSON."""
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_text(self.model_dump_json(indent=2) + "\n", "utf-8")
        return path

    @classmethod
    def read(cls, path: Path, figures: type[Figures] = Figures) -> Manifest | None:
        """The manifest at ``path``, its figures read as ``figures``; ``None`` without one.

        A manifest that cannot be read (another version's, or edited) counts as none, with a
        warning: the run it describes is then neither up to date nor cleaned up after.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: it is not readable JSON (%s)", path, exc)
            return None
        try:
            data["figures"] = figures.model_validate(data.get("figures", {}))
            return cls.model_validate(data)
        except (ValidationError, TypeError) as exc:
            log.warning("ignoring %s: it is not a manifest this geoseg reads (%s)", path, exc)
            return None


def config_hash(config: BaseModel) -> str:
    """SHA-256 of a config's canonical JSON."""
    return canonical_sha256(config.model_dump(mode="json"))


def describe_files(paths: Iterable[Path]) -> list[FileRecord]:
    """Path, size and SHA-256 of each file."""
    return [FileRecord(path=str(p), bytes=p.stat().st_size, sha256=file_sha256(p)) for p in paths]


#: Inputs up to this size are hashed whole; larger ones by size, mtime and their first/last MiBs.
FULL_HASH_LIMIT = 1024**3
_EDGE = 16 * 1024**2


def input_checksum(path: Location) -> FileRecord:
    """Path, size and a checksum (``sha256`` whole, or ``quick`` for files over 1 GiB).

    A local file's checksum is remembered between runs (:mod:`geoseg.workflow.checksums`): an
    unchanged file is not read again. A remote object is never read: one HTTP HEAD gives its
    size, ETag and Last-Modified.
    """
    if is_remote(path):
        stat = remote_stat(path)
        size = -1 if stat.size is None else stat.size
        return FileRecord(path=path.url, bytes=size, etag=stat.etag, modified=stat.modified)
    size = path.stat().st_size
    if size <= FULL_HASH_LIMIT:
        return FileRecord(
            path=str(path), bytes=size, sha256=remembered(path, "sha256", file_sha256)
        )
    return FileRecord(path=str(path), bytes=size, quick=remembered(path, "quick", _quick_checksum))


def _quick_checksum(path: Path) -> str:
    """SHA-256 of a large file's size, mtime and first and last 16 MiB."""
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_EDGE))
        handle.seek(stat.st_size - _EDGE)
        digest.update(handle.read(_EDGE))
    return digest.hexdigest()


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")
