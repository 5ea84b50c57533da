"""Annotation chips: a large scene cut into images a labelling tool can load, and placed back.

A scene's class map is cut into chips of ``size`` x ``size`` pixels on its grid, row by row from
the top-left corner; the chips at the right and bottom edges are smaller (never padded: padding
would be labelled and could not be placed back). Each chip is an :class:`ItemRecord` whose id
says where it lies (``r0512-c1024``: row and column offset, zero-padded to the scene's size so
ids sort in reading order) and whose ``window`` records it; the scene's grid is a
:class:`SceneRecord`. Chips without a single valid pixel are left out by default: there is
nothing to label, and placing back leaves their pixels at no data, as they were.

:func:`place` puts corrected chips back on the scene by their recorded windows, refusing a chip
whose id or size matches no recorded window. :func:`write_chip_images` writes each chip's
picture (an 8-bit RGB PNG, read one chip at a time through :meth:`RasterSource.read`, stretched
with limits taken once for the whole scene so neighbouring chips match), with a GDAL sidecar
(``.png.aux.xml``) georeferencing it so QGIS overlays it on the review layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from xml.etree import ElementTree as ET

import numpy as np
from affine import Affine
from numpy.typing import NDArray
from PIL import Image
from rasterio.crs import CRS

from geoseg.annotation.record import ExportRecord, ItemRecord, Prediction, SceneRecord
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path
from geoseg.io.source import RasterSource
from geoseg.types import Grid, Window

#: Default chip edge, in pixels.
CHIP_SIZE: Final = 512

#: Where chip images go in an export folder.
IMAGE_NAME: Final = "images/{id}.png"


def chip_windows(height: int, width: int, size: int = CHIP_SIZE) -> list[Window]:
    """Windows of ``size`` px tiling a ``height`` x ``width`` scene, edge chips smaller.

    Row by row from the top-left; together they cover every pixel exactly once.
    """
    if size < 1:
        raise ValueError(f"chip size must be at least 1 px, got {size}")
    return [
        Window(row, col, min(size, height - row), min(size, width - col))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]


def chip_id(window: Window, digits: int = 4) -> str:
    """A chip's id from its offset: ``r0000-c0512``."""
    return f"r{window.row:0{digits}d}-c{window.col:0{digits}d}"


def id_digits(height: int, width: int) -> int:
    """Digits of the offsets in chip ids: at least 4, more for scenes of 10 000 px and over."""
    return max(4, len(str(max(height, width) - 1)))


def scene_record(grid: Grid) -> SceneRecord:
    """The record of a scene's grid: size, CRS as WKT (none in pixel coordinates), transform."""
    a, b, c, d, e, f = grid.transform[:6]
    return SceneRecord(
        height=grid.height, width=grid.width, crs_wkt=grid.crs_wkt, transform=(a, b, c, d, e, f)
    )


def scene_grid(scene: SceneRecord) -> Grid:
    """The grid a :class:`SceneRecord` records (the inverse of :func:`scene_record`)."""
    crs = CRS.from_wkt(scene.crs_wkt) if scene.crs_wkt is not None else None
    return Grid(scene.height, scene.width, Affine(*scene.transform), crs)


def chip_items(grid: Grid, size: int = CHIP_SIZE) -> list[ItemRecord]:
    """One item per chip of the scene (all of them), images named by :data:`IMAGE_NAME`."""
    digits = id_digits(grid.height, grid.width)
    items = []
    for window in chip_windows(grid.height, grid.width, size):
        name = chip_id(window, digits)
        items.append(
            ItemRecord(
                id=name,
                image=IMAGE_NAME.format(id=name),
                height=window.height,
                width=window.width,
                window=(window.row, window.col, window.height, window.width),
            )
        )
    return items


@dataclass(frozen=True)
class Chips:
    """A scene cut into chips: its grid's record and each chip's pre-annotation."""

    scene: SceneRecord
    predictions: list[Prediction]

    @property
    def items(self) -> list[ItemRecord]:
        """The chips' items, in reading order."""
        return [p.item for p in self.predictions]


def cut(
    classes: NDArray[np.uint8],
    grid: Grid,
    confidence: NDArray[np.float32] | None = None,
    size: int = CHIP_SIZE,
    keep_empty: bool = False,
) -> Chips:
    """A scene's class map (and confidence) cut into chips of ``size`` px on its ``grid``.

    Each chip's arrays are views of the scene's (no copies). Chips whose pixels are all no data
    (code 0) are left out unless ``keep_empty``. The export step records each chip's no-data
    mask (:func:`~geoseg.annotation.record.write_nodata`) as it does for photos.
    """
    if classes.shape != grid.shape:
        raise AnnotationError(
            f"the class map is {classes.shape[1]}x{classes.shape[0]} px but the scene's grid is "
            f"{grid.width}x{grid.height}"
        )
    if confidence is not None and confidence.shape != grid.shape:
        raise AnnotationError(
            f"the confidence map is {confidence.shape[1]}x{confidence.shape[0]} px but the "
            f"scene's grid is {grid.width}x{grid.height}"
        )
    predictions = []
    for item in chip_items(grid, size):
        window = item.chip
        assert window is not None  # chip_items records every window
        chip = classes[window.slices]
        if not keep_empty and not chip.any():
            continue
        predictions.append(
            Prediction(item, chip, confidence[window.slices] if confidence is not None else None)
        )
    return Chips(scene_record(grid), predictions)


def place(
    chips: Mapping[str, NDArray[np.uint8]],
    record: ExportRecord,
    scene_shape: tuple[int, int] | None = None,
    fill: int = 0,
    where: str = "corrected chips",
) -> NDArray[np.uint8]:
    """The scene's class map from corrected ``chips`` (``{chip id: class map}``).

    Each chip goes back at its recorded window; pixels of chips not returned (or never
    exported) are ``fill`` (0: unlabelled). A chip whose id the record does not hold, that has
    no window, whose size is not its window's, or whose window does not fit the scene is an
    error naming it and ``where`` the chips came from. ``scene_shape`` defaults to the
    record's scene.
    """
    if scene_shape is None:
        if record.scene is None:
            raise AnnotationError(
                f"{where}: the export record has no scene, so chips cannot be placed on one"
            )
        scene_shape = (record.scene.height, record.scene.width)
    scene = Window(0, 0, *scene_shape)
    out = np.full(scene_shape, fill, dtype=np.uint8)
    for chip_name, classes in chips.items():
        item = record.item(chip_name, where)
        window = item.chip
        if window is None:
            raise AnnotationError(
                f"{where}: item '{chip_name}' is not a chip (it has no window on a scene)"
            )
        if classes.shape != window.shape:
            raise AnnotationError(
                f"{where}: chip '{chip_name}' is {_size(classes.shape)} px but its recorded "
                f"window ({window}) is {_size(window.shape)}"
            )
        if window.intersection(scene) != window:
            raise AnnotationError(
                f"{where}: chip '{chip_name}' lies at {window}, outside the "
                f"{_size(scene_shape)} px scene"
            )
        out[window.slices] = classes
    return out


def _size(shape: tuple[int, ...]) -> str:
    """``(height, width)`` as ``WxH``."""
    return f"{shape[1]}x{shape[0]}"


#: Percentiles of the stretch to 0..255 (as geoseg's overlays: 2-98 %).
STRETCH: Final = (2.0, 98.0)


def rgb_bands(source: RasterSource) -> list[str]:
    """The 3 bands of a chip picture: red, green, blue where the source has them, else its first."""
    names = list(source.band_names)
    picked: list[str] = [n for n in ("red", "green", "blue") if n in names] or names[:3]
    return picked if len(picked) == 3 else [picked[0]] * 3


def stretch_limits(
    source: RasterSource,
    bands: Sequence[str],
    windows: Sequence[Window],
    joint: bool = False,
    sample: int = 16,
) -> NDArray[np.float64]:
    """``(band, [low, high])``: the 2-98 % limits of each band, the same for every chip.

    Taken from up to ``sample`` of the chip ``windows`` spread evenly over the scene, read one
    at a time through :meth:`RasterSource.read` (NaN, no data, left out). ``joint``: one pair
    for all bands (keeps a photo's colours); else one per band (suits satellite bands).
    """
    unique = list(dict.fromkeys(bands))
    selected = source.select(unique)
    picks = np.unique(np.linspace(0, len(windows) - 1, min(len(windows), sample)).round())
    values: list[list[NDArray[np.float32]]] = [[] for _ in bands]
    for index in picks.astype(int):
        data = selected.read(windows[index])
        for i, name in enumerate(bands):
            band = data[unique.index(name)]
            values[i].append(band[np.isfinite(band)])
    found = [np.concatenate(v) if v else np.zeros(0, np.float32) for v in values]
    limits = np.zeros((len(bands), 2), dtype=np.float64)
    limits[:, 1] = 1.0
    if joint:
        every = np.concatenate(found)
        if every.size:
            limits[:] = np.percentile(every, STRETCH)
        return limits
    for i, band_values in enumerate(found):
        if band_values.size:
            limits[i] = np.percentile(band_values, STRETCH)
    return limits


def to_rgb8(data: NDArray[np.float32], limits: NDArray[np.float64]) -> NDArray[np.uint8]:
    """``(3, y, x)`` values stretched by ``limits`` to an 8-bit ``(y, x, 3)`` picture (NaN: 0)."""
    low, high = limits[:, :1, None], limits[:, 1:, None]
    scaled = (data - low) / np.maximum(high - low, 1e-6)
    scaled = np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0)
    return np.moveaxis(np.round(scaled * 255).astype(np.uint8), 0, -1)


def write_chip_images(
    source: RasterSource,
    record: ExportRecord,
    folder: Path,
    bands: Sequence[str] | None = None,
    joint: bool = False,
    georeference: bool = True,
) -> list[Path]:
    """Each chip's picture as an 8-bit RGB PNG at its item's ``image`` path in ``folder``.

    ``bands``: the 3 bands shown (default :func:`rgb_bands`), stretched by
    :func:`stretch_limits` (``joint`` as there). One chip is read at a time (and up to 16
    more, once, for the stretch). With ``georeference`` and a georeferenced scene, a GDAL
    sidecar (``NAME.png.aux.xml``: CRS and the chip's geotransform) lets QGIS place the picture
    under the review layer; labelling tools ignore it. The source must be on the scene's grid.
    """
    scene = record.scene
    if scene is None:
        raise AnnotationError("the export record has no scene: chip images need one")
    grid = source.grid
    if not grid.same_as(scene_grid(scene)):
        raise AnnotationError(
            f"source '{source.name}' ({grid.describe()}) is not the grid the chips were cut "
            f"from ({scene_grid(scene).describe()}, transform {scene.transform})"
        )
    picked = list(bands) if bands is not None else rgb_bands(source)
    if len(picked) != 3:
        raise AnnotationError(f"chip images show 3 bands, got {len(picked)}: {picked}")
    windows = []
    for item in record.items:
        if item.chip is None:
            raise AnnotationError(f"item '{item.id}' is not a chip (it has no window)")
        windows.append(item.chip)
    limits = stretch_limits(source, picked, windows, joint)
    selected = source.select(list(dict.fromkeys(picked)))
    order = [list(dict.fromkeys(picked)).index(name) for name in picked]
    written = []
    for item, window in zip(record.items, windows, strict=True):
        picture = to_rgb8(selected.read(window)[order], limits)
        path = folder / item.image
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            Image.fromarray(picture).save(tmp, format="PNG")
        written.append(path)
        if georeference and scene.crs_wkt is not None:
            written.append(_write_sidecar(path, grid, window))
    return written


def _write_sidecar(image: Path, grid: Grid, window: Window) -> Path:
    """``IMAGE.aux.xml``: GDAL's sidecar with the chip's CRS and geotransform."""
    a, b, c, d, e, f = grid.window_transform(window)[:6]
    root = ET.Element("PAMDataset")
    srs = ET.SubElement(root, "SRS")  # GDAL reads it in traditional GIS axis order
    srs.text = grid.crs_wkt
    transform = ET.SubElement(root, "GeoTransform")
    transform.text = ", ".join(repr(float(v)) for v in (c, a, b, f, d, e))
    path = image.with_name(image.name + ".aux.xml")
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(ET.tostring(root))
    return path
