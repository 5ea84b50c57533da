"""Opening one raster file with clear errors, and describing it.

Every open goes through :func:`open_raster`, so a missing, empty or non-raster path always gives
the same :class:`RasterOpenError` naming the path; a remote location is opened through
:mod:`geoseg.io.remote`. Georeferencing is checked by :func:`checked_grid`: a missing CRS or
geotransform is an error, never a silent pixel-space run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError

from geoseg.crs import with_epsg_code
from geoseg.errors import GeoreferenceError, RasterOpenError, RasterReadError, root_cause
from geoseg.io.remote import explain, open_remote
from geoseg.types import Grid, Location, Window, is_remote


@contextmanager
def open_raster(path: Location) -> Iterator[rasterio.DatasetReader]:
    """Open a file or remote object for reading; every failure is a :class:`RasterOpenError`."""
    if is_remote(path):
        with open_remote(path) as dataset:
            yield dataset
        return
    if not path.exists():
        raise RasterOpenError(f"raster {path} does not exist; check the path (and GEOSEG_DATA)")
    if path.is_dir():
        raise RasterOpenError(f"{path} is a folder, not a raster file")
    if path.stat().st_size == 0:
        raise RasterOpenError(f"raster {path} is empty (0 bytes); re-create or re-download it")
    try:
        dataset = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterOpenError(
            f"{path} is not a raster GDAL can open ({root_cause(exc)}); is it a GeoTIFF/COG "
            "and complete?"
        ) from exc
    with dataset:
        yield dataset


@contextmanager
def quiet_georeference_warnings() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning while validating (main thread only).

    geoseg raises its own :class:`GeoreferenceError` for such files; ``warnings.catch_warnings``
    is not thread-safe, so this is used at plan time, never inside Dask tasks.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def checked_grid(dataset: rasterio.DatasetReader, path: Location, crs: str | None = None) -> Grid:
    """The dataset's grid, refusing missing georeferencing.

    ``crs`` is a CRS asserted by the catalog for files that carry none; it is refused when the
    file has a different one.
    """
    if dataset.transform.is_identity and not dataset.gcps[0]:
        raise GeoreferenceError(
            f"raster {path} has no geotransform (pixel coordinates only); outputs would be in "
            "pixel units labelled as map units. Georeference it first (e.g. gdal_translate -a_ullr "
            "... -a_srs ...)"
        )
    if dataset.gcps[0] and dataset.transform.is_identity:
        raise GeoreferenceError(
            f"raster {path} is georeferenced by ground control points only; warp it to a grid "
            "first (gdalwarp) so geoseg can tile it"
        )
    file_crs = dataset.crs
    if crs is not None:
        asserted = CRS.from_user_input(crs)
        if file_crs is not None and file_crs != asserted:
            raise GeoreferenceError(
                f"the catalog asserts CRS {crs} for {path}, but the file carries "
                f"{file_crs.to_string()}; remove 'crs:' from the catalog or fix the file"
            )
        file_crs = asserted
    if file_crs is None:
        raise GeoreferenceError(
            f"raster {path} has no CRS. Set one in the file (gdal_edit.py -a_srs EPSG:XXXX) or "
            "assert it in the catalog source with 'crs: EPSG:XXXX'"
        )
    # One hundredth of a pixel: an equivalent EPSG CRS moves no pixel (geoseg.crs).
    tolerance = abs(dataset.transform.a) / 100
    file_crs = with_epsg_code(file_crs, tuple(dataset.bounds), tolerance)
    return Grid(dataset.height, dataset.width, dataset.transform, file_crs)


def read_error(path: Location, what: str, exc: RasterioError) -> RasterReadError:
    """The error for a failed read of ``path``: ``what`` failed, why, and how to fix it."""
    if is_remote(path):
        return RasterReadError(f"{what} failed: {explain(path, exc)}")
    return RasterReadError(
        f"{what} failed: {root_cause(exc)}. The file may be truncated or corrupt; re-create it"
    )


def file_grid(path: Path) -> Grid:
    """The grid a raster file is on, as written (no CRS when it has none)."""
    with open_raster(path) as ds:
        return Grid(ds.height, ds.width, ds.transform, ds.crs)


def band_tags(path: Path) -> dict[str, str]:
    """The tags of band 1 of ``path``."""
    with open_raster(path) as ds:
        return dict(ds.tags(1))


def read_decimated(path: Path, shape: tuple[int, int]) -> NDArray[Any]:
    """Band 1 of ``path`` read at ``shape`` (nearest neighbour: class codes stay codes)."""
    with open_raster(path) as ds:
        return ds.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)


def read_values(path: Path, window: Window) -> NDArray[np.float32]:
    """Band 1 of ``path`` over ``window`` as the values it stands for, as float32.

    Its scale and offset are applied (a compact uint8 confidence); no data and the parts of the
    window outside the image are NaN.
    """
    with open_raster(path) as ds:
        nodata, scale, offset = ds.nodata, ds.scales[0], ds.offsets[0]
    stored = read_window(path, window, np.nan if nodata is None else nodata).astype(np.float32)
    missing = np.isnan(stored) if nodata is None or np.isnan(nodata) else stored == nodata
    values = stored * np.float32(scale) + np.float32(offset)
    values[missing] = np.nan
    return values


def read_window(path: Path, window: Window, fill: float = 0) -> NDArray[Any]:
    """Band 1 of ``path`` over an integer ``window``; parts outside the image become ``fill``."""
    try:
        with rasterio.open(path) as ds:
            inside = window.intersection(Window(0, 0, ds.height, ds.width))
            out = np.full(window.shape, fill, dtype=ds.dtypes[0])
            if inside is not None:
                out[inside.relative_to(window).slices] = ds.read(1, window=inside.to_rasterio())
            return out
    except RasterioError as exc:
        raise read_error(path, f"reading {path}, window {window}", exc) from exc


@dataclass(frozen=True, slots=True)
class RasterInfo:
    """What ``geoseg inspect`` prints about one raster file."""

    path: Path
    driver: str
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    crs: str | None
    transform: tuple[float, ...]
    pixel_size: tuple[float, float] | None
    block_shapes: tuple[tuple[int, int], ...]
    descriptions: tuple[str | None, ...]
    compression: str | None
    overviews: tuple[int, ...]
    problems: tuple[str, ...]

    def lines(self) -> list[str]:
        """Human-readable description, one fact per line."""
        out = [
            f"path:        {self.path}",
            f"driver:      {self.driver}",
            f"size:        {self.width} x {self.height} px, {self.count} band(s)",
            f"dtypes:      {', '.join(self.dtypes)}",
            f"nodata:      {self.nodata}",
            f"crs:         {self.crs or 'NONE'}",
            f"transform:   {', '.join(f'{v:g}' for v in self.transform)}",
            f"pixel size:  {self.pixel_size}",
            f"blocks:      {', '.join(f'{h}x{w}' for h, w in self.block_shapes)}",
            f"compression: {self.compression}",
            f"overviews:   {list(self.overviews)}",
        ]
        for index, desc in enumerate(self.descriptions, start=1):
            out.append(f"band {index}:      {desc or '(no description)'}")
        out.extend(f"PROBLEM:     {p}" for p in self.problems)
        return out


def inspect_raster(path: Path) -> RasterInfo:
    """Describe a raster file; georeferencing problems are reported, not raised."""
    with quiet_georeference_warnings(), open_raster(path) as ds:
        problems: list[str] = []
        pixel_size: tuple[float, float] | None = None
        try:
            grid = checked_grid(ds, path)
            pixel_size = grid.pixel_size
        except GeoreferenceError as exc:
            problems.append(str(exc))
        return RasterInfo(
            path=path,
            driver=ds.driver,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtypes=tuple(ds.dtypes),
            nodata=ds.nodata,
            crs=ds.crs.to_string() if ds.crs else None,
            transform=tuple(ds.transform)[:6],
            pixel_size=pixel_size,
            block_shapes=tuple(tuple(b) for b in ds.block_shapes),
            descriptions=tuple(ds.descriptions),
            compression=ds.compression.value if ds.compression else None,
            overviews=tuple(ds.overviews(1)) if ds.count else (),
            problems=tuple(problems),
        )
