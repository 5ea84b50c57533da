"""Every error geoseg raises on purpose.

One root, :class:`GeoSegError`; each subclass also inherits the builtin exception a caller would
expect (``OSError`` for files, ``ValueError`` for bad values), in the manner of ``rasterio.errors``.
Messages name the file, key or window concerned and say how to fix the problem.
"""

from __future__ import annotations


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
