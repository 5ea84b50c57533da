"""Raster outputs: per-chunk part files and their assembly into a Cloud-Optimised GeoTIFF.

Chunk tasks write small GeoTIFF parts (atomically); :func:`assemble_cog` streams them, block by
block, into a tiled staging GeoTIFF, builds its overviews and copies it into a COG (rio-cogeo's
recipe and bytes). Memory stays at one chunk; BigTIFF is decided explicitly from the uncompressed
size. :func:`write_cog` writes a small in-memory array (a field photo's class map) as a COG
directly.

Grids in pixel coordinates (no CRS) are written without CRS or geotransform, never with an
invented one; their ``tags`` say so.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import ColorInterp
from rasterio.enums import Resampling as ResamplingMethod
from rasterio.shutil import copy as gdal_copy
from rio_cogeo.cogeo import cog_validate
from rio_cogeo.profiles import cog_profiles

from geoseg.export.atomic import atomic_path, temporary_sibling
from geoseg.types import Grid, Window

#: Above this many uncompressed bytes a GeoTIFF is written as BigTIFF (classic TIFF tops at 4 GiB;
#: overviews and headers need headroom).
BIGTIFF_THRESHOLD = 3 * 1024**3

Resampling = Literal["nearest", "average", "mode"]


@dataclass(frozen=True, slots=True)
class ConfidenceStorage:
    """How a confidence raster is stored: ``float32`` or compact ``uint8``.

    ``float32`` (the default) is exact, NaN = no data. ``uint8`` takes a quarter of the size:
    0..254 stand for 0..1 in steps of 1/254, 255 = no data, declared by the band's scale, so
    GDAL and QGIS read the probability itself.
    """

    dtype: Literal["float32", "uint8"] = "float32"

    @property
    def nodata(self) -> float:
        """The no-data value as stored."""
        return float("nan") if self.dtype == "float32" else 255.0

    @property
    def scale(self) -> float | None:
        """The band's scale (value = stored x scale), None when stored as is."""
        return None if self.dtype == "float32" else 1 / CONFIDENCE_STEPS

    def encode(self, confidence: NDArray[np.float32]) -> NDArray[Any]:
        """Probabilities (NaN = no data) as stored."""
        if self.dtype == "float32":
            return confidence
        steps = np.rint(np.nan_to_num(confidence, nan=0.0) * CONFIDENCE_STEPS)
        return np.where(np.isnan(confidence), 255, steps).astype(np.uint8)

    def decode(self, stored: NDArray[Any]) -> NDArray[np.float32]:
        """The probabilities a reader gets back from ``stored`` (as ``io.raster.read_values``)."""
        if self.dtype == "float32":
            return np.asarray(stored, dtype=np.float32)
        values = stored.astype(np.float32) * np.float32(1 / CONFIDENCE_STEPS) + np.float32(0)
        values[stored == 255] = np.nan
        return values


#: uint8 confidence: the number of steps between 0 and 1.
CONFIDENCE_STEPS = 254

#: Internal tile size of the COGs geoseg writes (rio-cogeo's deflate profile); chunked readers of
#: those files align to it.
COG_BLOCK = 512

#: GDAL's block cache, in MiB (the command line sets it for the whole run unless the user did).
#: GDAL's default is 5 % of physical memory (1.2 GiB on a 24 GiB machine), which would make peak
#: memory depend on the machine and grow with the scene until the cache fills. 128 MiB holds
#: the halo blocks of two workers' 1024 px chunks (a 6-band float32 scene: 57 MiB a chunk) and
#: keeps a 25 Mpx run under 1.5 GiB; reads never depend on more (previews go block by block).
GDAL_CACHE_MB = 128


def bigtiff_flag(grid: Grid, dtype: str, count: int = 1) -> str:
    """``YES`` or ``NO``: chosen from the uncompressed size, never left to GDAL's heuristic."""
    size = grid.height * grid.width * count * np.dtype(dtype).itemsize
    return "YES" if size > BIGTIFF_THRESHOLD else "NO"


def _profile(grid: Grid, window: Window, dtype: str, nodata: float | None) -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "height": window.height,
        "width": window.width,
        "count": 1,
        "dtype": dtype,
        "crs": grid.crs,
        "transform": grid.window_transform(window),
        "nodata": nodata,
    }


def write_part(
    path: Path, array: NDArray[Any], grid: Grid, window: Window, nodata: float | None
) -> None:
    """Write one chunk's array as a small GeoTIFF part, atomically."""
    profile = _profile(grid, window, str(array.dtype), nodata)
    # Parts are intermediates read back once: the fastest DEFLATE level (half the time of the
    # default level, the same size within 1 %).
    profile.update(compress="DEFLATE", zlevel=1, tiled=False)
    with atomic_path(path, overwrite=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)


def mosaic_vrt(
    parts: Sequence[tuple[Window, Path]],
    grid: Grid,
    dtype: str,
    nodata: float | None,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    scale: float | None = None,
) -> str:
    """A GDAL VRT placing each single-band part at its window of ``grid``; ``tags`` on the band.

    The parts are read through it lazily, so assembling never holds more than GDAL's block cache
    and never writes an intermediate full-size copy. (rasterio exposes no ``BuildVRT``; the
    format is GDAL's documented VRT XML.)
    """
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    if grid.crs_wkt is not None:
        ET.SubElement(root, "SRS").text = grid.crs_wkt
    t = grid.transform
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)
    )
    band = ET.SubElement(root, "VRTRasterBand", dataType=_GDAL_TYPES[dtype], band="1")
    if description:
        ET.SubElement(band, "Description").text = description
    if tags:
        metadata = ET.SubElement(band, "Metadata")
        for key, value in tags.items():
            ET.SubElement(metadata, "MDI", key=key).text = value
    if nodata is not None:
        ET.SubElement(band, "NoDataValue").text = "nan" if np.isnan(nodata) else repr(nodata)
    if scale is not None:  # carried into the COG: readers get value = stored x scale
        ET.SubElement(band, "Offset").text = "0"
        ET.SubElement(band, "Scale").text = repr(scale)
    for window, part in parts:
        source = ET.SubElement(band, "SimpleSource")
        ET.SubElement(source, "SourceFilename", relativeToVRT="0").text = str(part)
        ET.SubElement(source, "SourceBand").text = "1"
        w, h = str(window.width), str(window.height)
        ET.SubElement(source, "SrcRect", xOff="0", yOff="0", xSize=w, ySize=h)
        ET.SubElement(
            source, "DstRect", xOff=str(window.col), yOff=str(window.row), xSize=w, ySize=h
        )
    return ET.tostring(root, encoding="unicode")


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


def assemble_cog(
    parts: Sequence[tuple[Window, Path]],
    grid: Grid,
    path: Path,
    dtype: str,
    nodata: float | None,
    overview_resampling: Resampling,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
    description: str = "",
    overwrite: bool = False,
    tags: Mapping[str, str] | None = None,
    scale: float | None = None,
) -> None:
    """Stream ``parts`` into a COG at ``path`` (written under a temporary name, then renamed).

    The parts are mosaicked through a VRT and converted in one pass (:func:`_translate`),
    compressing with all cores (GDAL's multi-threaded DEFLATE).
    """
    bigtiff = bigtiff_flag(grid, dtype)
    with (
        atomic_path(path, overwrite) as tmp,
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB, GDAL_NUM_THREADS="ALL_CPUS"),
    ):
        vrt = temporary_sibling(path.with_suffix(".vrt"), "mosaic")
        staging = temporary_sibling(path, "staging")
        try:
            vrt.write_text(
                mosaic_vrt(parts, grid, dtype, nodata, description, tags, scale),
                encoding="utf-8",
            )
            cog_profile = dict(cog_profiles.get("deflate"))
            cog_profile.update(BIGTIFF=bigtiff, NUM_THREADS="ALL_CPUS")
            if dtype == "float32":
                cog_profile["predictor"] = 3
            _translate(vrt, staging, tmp, cog_profile, overview_resampling, colormap)
        finally:
            vrt.unlink(missing_ok=True)
            staging.unlink(missing_ok=True)


def _translate(
    mosaic: Path,
    staging: Path,
    target: Path,
    profile: Mapping[str, Any],
    resampling: Resampling,
    colormap: Mapping[int, tuple[int, int, int, int]] | None,
) -> None:
    """Convert the single-band ``mosaic`` into the COG ``target``, by way of ``staging``.

    rio-cogeo's ``cog_translate`` recipe, step for step and byte for byte: the mosaic is copied
    block by block into an uncompressed tiled GeoTIFF, its overviews are built, its band and
    dataset tags set, and GDAL copies it with its overviews under ``profile``. One step moves: a
    class map's colour table is attached after the overviews, not before. GDAL builds each level
    from the level above, and the levels of a GeoTIFF still being created read as palette bands
    without the table, so every level after the first warned "Computing overviews on palette
    index raster bands without a palette will probably lead to unexpected results". Values do
    not change: ``mode`` on a byte band counts values and never consults the palette.
    """
    with rasterio.open(mosaic) as src:
        meta = {**src.meta, **profile, "count": 1}
        meta.pop("compress", None)  # the staging copy is uncompressed; the COG is compressed
        block = min(int(profile["blockxsize"]), int(profile["blockysize"]))
        with rasterio.open(staging, "w", **meta) as dst:
            dst.colorinterp = [ColorInterp.gray]
            for _, window in dst.block_windows(1):
                dst.write(src.read(1, window=window), 1, window=window)
            dst.build_overviews(
                _overview_factors(src.width, src.height, block), ResamplingMethod[resampling]
            )
            if colormap:
                dst.colorinterp = [ColorInterp.palette]
                dst.write_colormap(1, dict(colormap))
            dst.set_band_description(1, src.descriptions[0])
            dst.update_tags(1, **src.tags(1))
            dst.update_tags(**src.tags(), OVERVIEW_RESAMPLING=resampling.upper())
            dst.scales = src.scales
            dst.offsets = src.offsets
            gdal_copy(dst, target, copy_src_overviews=True, **profile)


def _overview_factors(width: int, height: int, block: int) -> list[int]:
    """Decimation factors 2, 4, 8, ... until the smallest overview fits in one ``block``."""
    factors: list[int] = []
    while min(width, height) // 2 ** len(factors) > block:
        factors.append(2 ** (len(factors) + 1))
    return factors


def write_cog(
    path: Path,
    array: NDArray[Any],
    grid: Grid,
    nodata: float | None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None,
    tags: Mapping[str, str] | None = None,
    overview_resampling: Resampling = "mode",
) -> None:
    """Write a single-band array that fits in memory as a COG (GDAL's COG driver, atomically)."""
    if array.shape != grid.shape:
        raise ValueError(f"array of shape {array.shape} is not on a {grid.shape} grid")
    profile: dict[str, Any] = {
        "driver": "COG",  # written from memory on close: a valid COG, with overviews
        "height": grid.height,
        "width": grid.width,
        "count": 1,
        "dtype": str(array.dtype),
        "nodata": nodata,
        "compress": "deflate",
        "blocksize": 256,
        "overview_resampling": overview_resampling,
        "BIGTIFF": bigtiff_flag(grid, str(array.dtype)),
    }
    if grid.is_georeferenced:
        profile.update(crs=grid.crs, transform=grid.transform)
    with atomic_path(path, overwrite=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)
        if colormap:
            dst.write_colormap(1, dict(colormap))
        if tags:
            dst.update_tags(**tags)


def validate_cog(path: Path) -> list[str]:
    """Problems rio-cogeo's validator finds (empty when ``path`` is a valid COG)."""
    valid, errors, _warnings = cog_validate(path, quiet=True)
    return [] if valid else list(errors)
