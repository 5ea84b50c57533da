"""Reading image sets: RGB photos, colour-coded annotation masks and polygon annotations.

Images are small enough to be read whole. An annotation colour that the catalog does not list
is an error naming the file, the colour and how many pixels carry it, never a silent class; a
polygon annotation of an unknown type, or with fewer than 3 points, is an error naming the file
and the entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import shapely.affinity
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from geoseg.catalog import ImageSetRef
from geoseg.config import load_yaml
from geoseg.errors import CatalogError, RasterOpenError


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise RasterOpenError(f"image {path} does not exist; check the image set's pattern")
    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated or corrupt file fails here, by name
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise RasterOpenError(
            f"{path} is not an image Pillow can read ({exc}): it may be truncated or corrupt; "
            "re-create or re-download it"
        ) from exc
    return image


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


def read_labels(ref: ImageSetRef, item: str, shape: tuple[int, ...]) -> NDArray[np.uint8]:
    """Class codes of one image's annotation, 0 where a vegetation mask shows an unannotated plant.

    Without ``vegetation_masks`` this is :func:`read_annotation`. With them, a pixel the mask
    marks as vegetation but the annotation calls background becomes unlabelled (0): such plants
    were left out of the annotation, so they are neither background nor plant. ``shape`` is the
    image's ``(height, width)``: an annotation or mask of another size is an error naming both.
    """
    image_path = dict(ref.images)[item]
    path = dict(ref.annotations)[item]
    codes = read_annotation(path, ref)
    _same_size(path, codes.shape, image_path, shape)
    mask_path = dict(ref.vegetation).get(item)
    if mask_path is None:
        return codes
    with _open(mask_path) as image:
        mask = np.asarray(image.convert("L"))
    _same_size(mask_path, mask.shape, image_path, shape)
    codes[(mask == ref.vegetation_value) & (codes == ref.background)] = 0
    return codes


def read_set_labels(ref: ImageSetRef, ids: Sequence[str]) -> dict[str, NDArray[np.uint8]]:
    """An image set's labels (:func:`read_labels`) of those photos ``ids`` it has."""
    found = {}
    for item in (i for i in ids if i in ref.ids):
        photo = read_image(dict(ref.images)[item], len(ref.bands))
        found[item] = read_labels(ref, item, photo.shape[1:])
    return found


def _same_size(path: Path, size: tuple[int, ...], image: Path, image_size: tuple[int, ...]) -> None:
    """Refuse an annotation or mask whose size differs from its image's."""
    if tuple(size) != tuple(image_size):
        raise CatalogError(
            f"{path} is {size[1]}x{size[0]} px but its image {image} is "
            f"{image_size[1]}x{image_size[0]} px: each annotation must cover its image pixel for "
            "pixel; fix the file or the image set's patterns"
        )


def read_polygons(path: Path, ref: ImageSetRef) -> gpd.GeoDataFrame:
    """Polygon annotations in the image set's coordinates (pixels, or the asserted CRS).

    The file is YAML with an ``annotation:`` list of ``{type, points: {x: [...], y: [...]}}``
    in image pixel coordinates; ``type`` is a class name of the image set. With asserted
    georeferencing the outlines are placed on the asserted grid (``ref.transform``) and carry its
    CRS. Columns: ``annotation_id, class_id, class_name, outline`` (``polygon``, or ``point``
    for a plant marked by fewer than 3 points, which becomes a 3 px square around them).
    Self-intersecting outlines are repaired (``shapely.make_valid``, polygonal parts kept),
    never dropped.
    """
    codes = {name: code for code, name, _ in ref.classes}
    loaded = load_yaml(path, "polygon annotations", CatalogError)
    entries = loaded.get("annotation") if isinstance(loaded, dict) else None
    if not isinstance(entries, list):
        raise CatalogError(f"{path} must hold an 'annotation:' list of {{type, points}} entries")
    rows = []
    for index, entry in enumerate(entries):
        where = f"{path}, annotation {index}"
        kind = entry.get("type") if isinstance(entry, dict) else None
        if kind not in codes:
            raise CatalogError(
                f"{where}: type {kind!r} is not a class of image set '{ref.name}' "
                f"({', '.join(codes)}); add it to its 'classes:'"
            )
        points = entry.get("points") if isinstance(entry.get("points"), dict) else {}
        xs, ys = np.atleast_1d(points.get("x", [])), np.atleast_1d(points.get("y", []))
        if len(xs) != len(ys) or len(xs) == 0:
            raise CatalogError(
                f"{where}: points need as many x as y values, at least one "
                f"(got {len(xs)} x, {len(ys)} y)"
            )
        if len(xs) < 3:  # a plant marked by a point (or two): a 3 px square around it
            outline = shapely.MultiPoint(np.c_[xs, ys]).envelope.buffer(1.5, cap_style="square")
            form = "point"
        else:
            outline = shapely.make_valid(shapely.Polygon(np.c_[xs, ys]))
            form = "polygon"
        parts = [g for g in getattr(outline, "geoms", [outline]) if g.geom_type == "Polygon"]
        rows.append((index, codes[kind], kind, form, shapely.MultiPolygon(parts).buffer(0)))
    t = ref.transform
    geometry = [
        shapely.affinity.affine_transform(r[4], [t.a, t.b, t.d, t.e, t.c, t.f]) for r in rows
    ]
    return gpd.GeoDataFrame(
        {
            "annotation_id": [r[0] for r in rows],
            "class_id": [r[1] for r in rows],
            "class_name": [r[2] for r in rows],
            "outline": [r[3] for r in rows],
        },
        geometry=geometry,
        crs=ref.crs,
    )
