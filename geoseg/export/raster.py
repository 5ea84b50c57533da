"""Raster outputs: per-chunk part files and their assembly into a Cloud-Optimised GeoTIFF.

Chunk tasks write small GeoTIFF parts (atomically); :func:`assemble_cog` streams them, window by
window, into a tiled staging GeoTIFF and converts that with rio-cogeo. Memory stays at one chunk;
BigTIFF is decided explicitly from the uncompressed size.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles

from geoseg.export.atomic import atomic_path, temporary_sibling
from geoseg.types import Grid, Window

#: Above this many uncompressed bytes a GeoTIFF is written as BigTIFF (classic TIFF tops at 4 GiB;
#: overviews and headers need headroom).
BIGTIFF_THRESHOLD = 3 * 1024**3

Resampling = Literal["nearest", "average", "mode"]

#: GDAL's block cache while assembling COGs, in MiB. GDAL's default is 5 % of physical memory
#: (1.2 GiB on a 24 GiB machine), which would make peak memory depend on the machine and grow
#: with the scene until the cache fills.
GDAL_CACHE_MB = 256


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
    profile.update(compress="DEFLATE", tiled=False)
    with atomic_path(path, overwrite=True) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array, 1)


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
) -> None:
    """Stream ``parts`` into a COG at ``path`` (written under a temporary name, then renamed)."""
    bigtiff = bigtiff_flag(grid, dtype)
    with atomic_path(path, overwrite) as tmp, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        stage = temporary_sibling(path, "stage")
        try:
            profile = _profile(grid, grid.window, dtype, nodata)
            profile.update(
                tiled=True, blockxsize=512, blockysize=512, compress="DEFLATE", BIGTIFF=bigtiff
            )
            with rasterio.open(stage, "w", **profile) as dst:
                for window, part in parts:
                    with rasterio.open(part) as src:
                        dst.write(src.read(1), 1, window=window.to_rasterio())
                if description:
                    dst.set_band_description(1, description)
            cog_profile = dict(cog_profiles.get("deflate"))
            cog_profile["BIGTIFF"] = bigtiff
            if dtype == "float32":
                cog_profile["predictor"] = 3
            with warnings.catch_warnings():
                # rio-cogeo announces the palette it sets, and uses Affine '*' internally.
                warnings.filterwarnings("ignore", "Dataset color interpretation", UserWarning)
                warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
                cog_translate(
                    stage,
                    tmp,
                    cog_profile,
                    nodata=nodata,
                    overview_resampling=overview_resampling,
                    colormap=dict(colormap) if colormap else None,
                    forward_band_tags=True,
                    in_memory=False,
                    quiet=True,
                )
        finally:
            if stage.exists():
                stage.unlink()


def validate_cog(path: Path) -> list[str]:
    """Problems rio-cogeo's validator finds (empty when ``path`` is a valid COG)."""
    valid, errors, _warnings = cog_validate(path, quiet=True)
    return [] if valid else list(errors)
