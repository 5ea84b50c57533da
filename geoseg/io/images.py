"""Reading image sets: RGB photos and their colour-coded annotation masks.

Images are small enough to be read whole. An annotation colour that the catalog does not list
is an error naming the file, the colour and how many pixels carry it, never a silent class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from geoseg.catalog import ImageSetRef
from geoseg.errors import CatalogError, RasterOpenError


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise RasterOpenError(f"image {path} does not exist; check the image set's pattern")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as exc:
        raise RasterOpenError(f"{path} is not an image Pillow can open ({exc})") from exc


def read_image(path: Path, bands: int = 3) -> NDArray[np.float32]:
    """An RGB image as float32 ``(band, y, x)``."""
    with _open(path) as image:
        data = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.moveaxis(data, -1, 0)[:bands].copy()


def read_annotation(path: Path, ref: ImageSetRef) -> NDArray[np.uint8]:
    """Class codes from a colour-coded annotation (``ref.colours``)."""
    with _open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
    packed = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
    codes = np.zeros(packed.shape, dtype=np.uint8)
    known = np.zeros(packed.shape, dtype=bool)
    for (r, g, b), code in ref.colours:
        hit = packed == (r << 16 | g << 8 | b)
        codes[hit] = code
        known |= hit
    if not known.all():
        values, counts = np.unique(packed[~known], return_counts=True)
        listed = ", ".join(
            f"({v >> 16},{(v >> 8) & 255},{v & 255}): {n} px"
            for v, n in zip(values[:5], counts[:5], strict=True)
        )
        raise CatalogError(
            f"{path} has colours the image set '{ref.name}' does not map: {listed}; add them to "
            "its 'colours:'"
        )
    return codes
