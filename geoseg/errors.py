"""Every error geoseg raises on purpose.

One root, :class:`GeoSegError`; each subclass also inherits the builtin exception a caller would
expect (``OSError`` for files, ``ValueError`` for bad values), in the manner of ``rasterio.errors``.
Messages name the file, key or window concerned and say how to fix the problem.
"""

from __future__ import annotations

import re


class GeoSegError(Exception):
    """Root of all geoseg errors."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 1


class ConfigError(GeoSegError, ValueError):
    """A workflow or catalog file is malformed, or refers to something that does not exist."""

    exit_code = 2


class CatalogError(ConfigError):
    """The data catalog is malformed, or a source it names cannot be resolved."""


class RasterOpenError(GeoSegError, OSError):
    """A path is missing, empty, or not a raster GDAL can open."""


class RasterReadError(GeoSegError, OSError):
    """Reading a window of a raster failed (for example a truncated file)."""


class GeoreferenceError(GeoSegError, ValueError):
    """A raster lacks a CRS or a geotransform, or its georeferencing is unsupported."""


class GridMismatchError(GeoSegError, ValueError):
    """Rasters that must share one pixel grid (bands, labels) do not."""


class BundleError(GeoSegError, ValueError):
    """A model bundle is missing, malformed, or does not match the source it is applied to."""


class OutputExistsError(GeoSegError, FileExistsError):
    """An output exists and ``--overwrite`` was not given."""

    exit_code = 2


class ChunkFailedError(GeoSegError, RuntimeError):
    """A chunk task failed repeatedly (for example its workers kept dying)."""


class ResumeError(ConfigError):
    """A run cannot be resumed: its configuration or inputs changed since it started."""


class TrainingError(GeoSegError, ValueError):
    """Training cannot proceed (no labelled pixels, empty hold-out, ...)."""


class AnnotationError(GeoSegError, ValueError):
    """An annotation file (exported or corrected) is malformed, or does not match its export."""


class OutputLocationError(ConfigError):
    """An output folder cannot be created or written (a file in the way, a read-only place)."""


class DiskFullError(GeoSegError, OSError):
    """The device holding an output folder ran out of space."""


class EnvironmentFailure(GeoSegError, OSError):
    """The operating system or GDAL refused a read or write a step needed (not a geoseg bug)."""


class InterruptedRun(GeoSegError):
    """A run was stopped by SIGINT or SIGTERM; what finished is kept for ``--resume``."""

    exit_code = 130


class ScenesFailedError(GeoSegError):
    """Some scenes of a many-scene job failed; the others were done (see its summary)."""


class ResourceError(ConfigError):
    """A step's settings need more memory than the machine has, or a tile larger than the scene."""


#: How GDAL (through rasterio) points at an earlier message instead of saying the cause.
_POINTER = re.compile(
    r"[.:;,]?\s*see previous (exception|error)s?( for details)?\.?", re.IGNORECASE
)


def root_cause(exc: BaseException) -> str:
    """The most telling message of an exception chain (``raise ... from`` and implicit context).

    GDAL's errors often end in "Write failed. See previous exception for details."; the message
    that says what happened is further down the chain. Returns every distinct message of the
    chain with such pointers cut out, outermost first, joined by "; ".
    """
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = _POINTER.sub("", _message(current)).strip()
        if text and not any(text in known for known in found):
            found.append(text)
        current = current.__cause__ or current.__context__
    if not found:
        return type(exc).__name__
    return "; ".join(found)


def _message(exc: BaseException) -> str:
    """One exception's own message; an ``OSError``'s as "strerror: filename"."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).strip()
