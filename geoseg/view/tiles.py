"""Map tiles of a run's rasters, rendered by rio-tiler (Web Mercator, 256 px PNG)."""

from __future__ import annotations

import functools
import logging

import numpy as np
from rasterio.errors import RasterioError
from rio_tiler.colormap import cmap
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

from geoseg.view.layers import RunLayers
from geoseg.workflow.manifest import BandDefinition

log = logging.getLogger(__name__)

#: The confidence ramp (probability 0 -> 1).
CONFIDENCE_RAMP = "viridis"


def render(layers: RunLayers, name: str, z: int, x: int, y: int) -> bytes | None:
    """The PNG tile ``z/x/y`` of layer ``name``; None where the layer has no pixels."""
    try:
        if name in ("classes", "errors"):  # paletted: the file's own colour table
            path = layers.classes if name == "classes" else layers.errors
            if path is None:
                return None
            with Reader(str(path)) as src:
                return src.tile(x, y, z).render(img_format="PNG", colormap=src.colormap)
        if name == "confidence" and layers.confidence is not None:
            with Reader(str(layers.confidence)) as src:  # uint8 storage: scale 1/254 applied
                image = src.tile(x, y, z, unscale=True)
            image = image.rescale(in_range=((0.0, 1.0),))
            return image.render(img_format="PNG", colormap=cmap.get(CONFIDENCE_RAMP))
        if name == "imagery" and layers.imagery:
            return _imagery(layers.imagery, z, x, y).render(img_format="PNG")
    except TileOutsideBounds:
        return None
    except (RasterioError, OSError, ValueError) as exc:  # a moved file, an unreachable source
        log.warning("cannot render %s tile %d/%d/%d: %s", name, z, x, y, exc)
        return None
    return None


def _imagery(bands: tuple[BandDefinition, ...], z: int, x: int, y: int) -> ImageData:
    """Red, green and blue stretched between each band's 2nd and 98th percentile."""
    planes: list[np.ndarray] = []
    invalid = np.zeros((0,), dtype=bool)
    for band in bands:
        with Reader(band.path) as src:
            tile = src.tile(x, y, z, indexes=band.band)
        low, high = _stretch(band.path, band.band)
        values = tile.data[0].astype(np.float32)
        planes.append(np.clip((values - low) / max(high - low, 1e-9) * 255, 0, 255))
        masked = np.ma.getmaskarray(tile.array)[0]
        invalid = masked if not invalid.size else invalid | masked
    data = np.stack(planes).astype(np.uint8)
    mask = np.broadcast_to(invalid, data.shape)
    return ImageData(np.ma.MaskedArray(data, mask=mask, fill_value=0))


@functools.lru_cache(maxsize=64)
def _stretch(path: str, band: int) -> tuple[float, float]:
    """The 2nd and 98th percentiles of a band (from an overview-sized read, cached)."""
    with Reader(path) as src:
        stats = src.statistics(indexes=band, max_size=512, percentiles=[2, 98])
    figures = next(iter(stats.values()))
    return float(figures.percentile_2), float(figures.percentile_98)
