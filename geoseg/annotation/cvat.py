"""CVAT's two formats: "CVAT for images 1.1" (polygons in XML) and "Segmentation mask 1.1" (PNGs).

:class:`CvatImages` writes ``annotations.xml``: the class table as the task's labels (name,
colour, a ``confidence`` attribute), one ``<image>`` per item (named by its path under
``images/``, where CVAT's dataset layout keeps the images) and one ``<polygon>`` per region of
:func:`~geoseg.annotation.regions.regions`: its exterior, with ``z_order`` counting up in painting
order so that shapes drawn inside holes lie on top. CVAT's number attributes are whole numbers
(minimum, maximum, step), so the region's mean confidence is written in percent (0 to 100).
Reading paints ``<polygon>``, ``<box>`` (with its ``rotation``) and ``<mask>`` (CVAT's run
lengths over its ``left``/``top``/``width``/``height`` box) by ``z_order`` (ties: the larger
shape first) over the background; ``<tag>``, ``<polyline>``, ``<points>`` and ``<skeleton>``
cover no pixels and are skipped; any other shape (an ellipse, a cuboid) is an error naming it.

:class:`CvatMasks` writes CVAT's Pascal VOC layout: ``labelmap.txt`` (``background`` black, then
each class in its colour from the class table), ``SegmentationClass/ID.png`` (each pixel in its
class's colour; the background class and no-data pixels black: what no shape covers),
``SegmentationObject/ID.png`` (each region of a class in its own colour of the VOC palette, as
CVAT's importer reads instances), ``ImageSets/Segmentation/default.txt`` (the item ids) and the
images as ``JPEGImages/ID.EXT``. The VOC palette has 255 instance colours; beyond 255 regions in
one image the smallest regions share one instance per class. Reading decodes
``SegmentationClass`` by the colours of the ``labelmap.txt`` beside it (``background`` is the
record's background), names every colour it does not know, and treats an item listed without a
mask as unannotated (CVAT writes no mask for an image without shapes).

Labels are mapped by name through the record, images by name (an item's path, file name or id);
both readers set no-data pixels back from the record's masks beside the file they read, and name
the file (and for XML the line) in every error.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from defusedxml.ElementTree import DefusedXMLParser
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from geoseg.annotation.record import ExportRecord, ItemRecord, Prediction, restore_nodata
from geoseg.annotation.regions import FOUR, paint, regions
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path

#: The XML file's name in an export folder, and where CVAT's dataset layout keeps the images.
XML = "annotations.xml"
IMAGES = "images"
#: The attribute every polygon's mean confidence goes in (percent: CVAT numbers are integers).
CONFIDENCE = "confidence"

#: The Segmentation mask layout (Pascal VOC, as CVAT exports and imports it).
LABELMAP = "labelmap.txt"
CLASS_DIR = "SegmentationClass"
OBJECT_DIR = "SegmentationObject"
LIST_DIR = "ImageSets/Segmentation"
SUBSET = "default"
JPEG_DIR = "JPEGImages"
#: The label CVAT gives black: pixels no shape covers.
BACKGROUND = "background"
#: Colours an instance mask can use (index 0, black, is no instance).
MAX_INSTANCES = 255

#: Shapes that cover no pixels (skipped on import) and those painted.
_NO_AREA = frozenset({"tag", "polyline", "points", "skeleton"})
_PAINTED = ("polygon", "box", "mask")


def _class_names(record: ExportRecord) -> dict[int, str]:
    """Class code -> name."""
    return {info.code: info.name for info in record.classes}


def _checked(prediction: Prediction, record: ExportRecord, known: Iterable[int]) -> ItemRecord:
    """The prediction's item, checked against the record: its id, size and class codes."""
    item = record.item(prediction.item.id, "the predictions to export")
    if prediction.classes.shape != item.shape:
        raise AnnotationError(
            f"item '{item.id}': its class map is {prediction.classes.shape[1]}x"
            f"{prediction.classes.shape[0]} px but the record says {item.width}x{item.height}"
        )
    unknown = sorted(set(np.unique(prediction.classes).tolist()) - {0, *known})
    if unknown:
        raise AnnotationError(
            f"item '{item.id}': class codes {unknown} are not in the record's class table "
            f"({', '.join(f'{c.code} {c.name}' for c in record.classes)})"
        )
    return item


def _place_image(folder: Path, item: ItemRecord, target: Path) -> Path | None:
    """Put the item's image at ``target`` (a hard link, else a copy) unless it is there.

    Returns the path written, or None when ``target`` exists or the image does not (an import
    into a CVAT task that has the images needs only the annotation files).
    """
    source = folder / item.image
    if target.exists() or not source.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another device, or a file system without hard links
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


def _cvat_name(item: ItemRecord) -> str:
    """The item's image name in CVAT: its path under ``images/`` (else its own path)."""
    path = PurePosixPath(item.image.replace("\\", "/"))
    if path.parts[:1] == (IMAGES,) and len(path.parts) > 1:
        return str(PurePosixPath(*path.parts[1:]))
    return str(path)


class _Items:
    """Record items found by the names a tool gives them (path, file name, stem or id)."""

    def __init__(self, record: ExportRecord, keys: Callable[[ItemRecord], Iterable[str]]):
        self.record = record
        found: dict[str, list[ItemRecord]] = {}
        for item in record.items:
            for key in set(keys(item)):
                found.setdefault(key, []).append(item)
        self.by_key = {key: items[0] for key, items in found.items() if len(items) == 1}

    def find(self, name: str, where: str) -> ItemRecord:
        """The item called ``name``; an unknown (or ambiguous) name is an error naming it."""
        path = PurePosixPath(name.replace("\\", "/"))
        for key in (name, str(path), path.name, path.stem):
            if key in self.by_key:
                return self.by_key[key]
        return self.record.item(name, where)  # raises unless an id is called ``name``


def _image_keys(item: ItemRecord) -> list[str]:
    """The names an image of ``item`` may have in a CVAT task."""
    image = PurePosixPath(item.image.replace("\\", "/"))
    return [_cvat_name(item), str(image), image.name, image.stem, item.id]


@dataclass(frozen=True)
class _Shape:
    """One shape of an ``<image>``, ready to paint: its polygons, code and painting order."""

    z_order: int
    area: float
    index: int  # its place in the file: the last tie-break
    code: int
    polygons: list[shapely.Polygon]


class _LineBuilder(ET.TreeBuilder):
    """A tree builder that remembers the line each element starts on."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[int, int] = {}
        self.expat: Any = None

    def start(self, tag: Any, attrs: dict[str, str], /) -> ET.Element:
        """Start an element, noting its line."""
        element = super().start(tag, attrs)
        if self.expat is not None:
            self.lines[id(element)] = int(self.expat.CurrentLineNumber)
        return element


def _parse_xml(path: Path) -> tuple[ET.Element, dict[int, int]]:
    """The root of an XML file (entities and external references refused) and its lines."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AnnotationError(f"cannot read the CVAT annotations {path}: {exc}") from exc
    builder = _LineBuilder()
    parser = DefusedXMLParser(target=builder)
    builder.expat = parser.parser
    try:
        parser.feed(data)
        root: ET.Element = parser.close()
    except ET.ParseError as exc:
        line, column = exc.position
        raise AnnotationError(
            f"{path} line {line}, column {column}: not well-formed XML ({exc.msg}); the file is "
            "truncated or corrupt: export the task again from CVAT"
        ) from exc
    except ValueError as exc:  # defusedxml's refusals: entities, external references
        raise AnnotationError(
            f"{path}: refused {type(exc).__name__} ({exc}): CVAT's XML declares no entities"
        ) from exc
    if root.tag != "annotations":
        raise AnnotationError(
            f"{path}: the root element is <{root.tag}>, not <annotations>: not a 'CVAT for "
            "images 1.1' file"
        )
    return root, builder.lines


def _number(element: ET.Element, key: str, where: str) -> float:
    """The number in attribute ``key`` of ``element``."""
    text = element.get(key)
    if text is None:
        raise AnnotationError(f"{where}: <{element.tag}> has no '{key}'")
    try:
        value = float(text)
    except ValueError as exc:
        raise AnnotationError(f"{where}: <{element.tag}> {key}='{text}' is not a number") from exc
    if not np.isfinite(value):
        raise AnnotationError(f"{where}: <{element.tag}> {key}='{text}' is not a finite number")
    return value


def _polygon(element: ET.Element, where: str) -> shapely.Polygon:
    """A ``<polygon points="x1,y1;x2,y2;...">`` as a polygon."""
    text = element.get("points")
    if text is None:
        raise AnnotationError(f"{where}: <polygon> has no 'points'")
    try:
        coords = [tuple(float(v) for v in pair.split(",")) for pair in text.split(";")]
        if any(len(c) != 2 for c in coords) or len(coords) < 3:
            raise ValueError("expected at least 3 'x,y' pairs separated by ';'")
        return shapely.Polygon(coords)
    except ValueError as exc:
        raise AnnotationError(
            f"{where}: <polygon> points '{text[:40]}' are invalid: {exc}"
        ) from exc


def _box(element: ET.Element, where: str) -> shapely.Polygon:
    """A ``<box xtl ytl xbr ybr rotation>`` as a polygon (rotation clockwise, in degrees)."""
    x0, y0, x1, y1 = (_number(element, key, where) for key in ("xtl", "ytl", "xbr", "ybr"))
    box = shapely.box(x0, y0, x1, y1)
    rotation = _number(element, "rotation", where) if "rotation" in element.attrib else 0.0
    if rotation:
        # y points down, so a positive (counter-clockwise in y-up) angle turns clockwise on screen
        box = shapely.affinity.rotate(box, rotation, origin="center")
    return box


def _mask(element: ET.Element, where: str) -> tuple[list[shapely.Polygon], int]:
    """A ``<mask rle left top width height>`` as exact pixel-edge polygons and its pixel count.

    CVAT's run lengths alternate 0s and 1s, starting with 0s, over the mask's box row by row.
    """
    left, top, width, height = (
        int(_number(element, key, where)) for key in ("left", "top", "width", "height")
    )
    text = element.get("rle")
    if text is None:
        raise AnnotationError(f"{where}: <mask> has no 'rle'")
    try:
        counts = np.array([int(v) for v in text.split(",")], dtype=np.int64)
    except ValueError as exc:
        raise AnnotationError(f"{where}: <mask> rle is not a list of integers") from exc
    if width < 1 or height < 1 or (counts < 0).any() or counts.sum() != width * height:
        raise AnnotationError(
            f"{where}: <mask> run lengths add up to {int(counts.sum())} pixels but its box is "
            f"{width}x{height}"
        )
    bits = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8).reshape(height, width)
    polygons = [
        shapely.geometry.shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            bits, mask=bits > 0, connectivity=4, transform=Affine.translation(left, top)
        )
    ]
    return polygons, int(bits.sum())


def _shapes(
    image: ET.Element, record: ExportRecord, where: str, lines: dict[int, int], path: Path
) -> list[_Shape]:
    """The paintable shapes of one ``<image>``, in painting order."""
    found = []
    for index, element in enumerate(image):
        at = f"{path} line {lines.get(id(element), '?')}: {where}"
        if element.tag in _NO_AREA:
            continue
        if element.tag not in _PAINTED:
            raise AnnotationError(
                f"{at}: <{element.tag}> shapes are not supported (only "
                f"{', '.join(_PAINTED)}); convert it to a polygon or a mask in CVAT"
            )
        label = element.get("label")
        if label is None:
            raise AnnotationError(f"{at}: <{element.tag}> has no label")
        code = record.code(label, at)
        z_order = int(_number(element, "z_order", at)) if "z_order" in element.attrib else 0
        if element.tag == "polygon":
            polygon = _polygon(element, at)
            found.append(_Shape(z_order, abs(polygon.area), index, code, [polygon]))
        elif element.tag == "box":
            box = _box(element, at)
            found.append(_Shape(z_order, box.area, index, code, [box]))
        else:
            polygons, pixels = _mask(element, at)
            found.append(_Shape(z_order, float(pixels), index, code, polygons))
    return sorted(found, key=lambda s: (s.z_order, -s.area, s.index))


def _labels_xml(record: ExportRecord) -> ET.Element:
    """The ``<labels>`` of a CVAT task: one polygon label per class, with a confidence."""
    labels = ET.Element("labels")
    for info in record.classes:
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = info.name
        ET.SubElement(label, "color").text = info.color.lower()
        ET.SubElement(label, "type").text = "polygon"
        attributes = ET.SubElement(label, "attributes")
        attribute = ET.SubElement(attributes, "attribute")
        ET.SubElement(attribute, "name").text = CONFIDENCE
        ET.SubElement(attribute, "mutable").text = "False"
        ET.SubElement(attribute, "input_type").text = "number"
        ET.SubElement(attribute, "default_value").text = "0"
        ET.SubElement(attribute, "values").text = "0\n100\n1"  # minimum, maximum, step
    return labels


def _points(polygon: shapely.Polygon) -> str:
    """A ring as CVAT writes it: ``x1,y1;x2,y2;...`` without repeating the first point."""
    coords = list(polygon.exterior.coords)[:-1]
    return ";".join(f"{x:.2f},{y:.2f}" for x, y in coords)


@dataclass(frozen=True)
class CvatImages:
    """CVAT for images 1.1: ``annotations.xml`` with one polygon per region (see the module)."""

    name: ClassVar[str] = "cvat-images"

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write ``folder/annotations.xml`` (and link images missing from ``images/``)."""
        names = _class_names(record)
        root = ET.Element("annotations")
        ET.SubElement(root, "version").text = "1.1"
        task = ET.SubElement(ET.SubElement(root, "meta"), "task")
        ET.SubElement(task, "id").text = "0"
        ET.SubElement(task, "name").text = record.source or "geoseg pre-annotations"
        ET.SubElement(task, "size").text = str(len(predictions))
        ET.SubElement(task, "mode").text = "annotation"
        ET.SubElement(task, "overlap").text = "0"
        task.append(_labels_xml(record))
        written: list[Path] = []
        for frame, prediction in enumerate(predictions):
            item = _checked(prediction, record, names)
            image_name = _cvat_name(item)
            image = ET.SubElement(
                root,
                "image",
                {
                    "id": str(frame),
                    "name": image_name,
                    "width": str(item.width),
                    "height": str(item.height),
                },
            )
            found = regions(prediction.classes, prediction.confidence, record.background)
            for z_order, region in enumerate(found):
                polygon = ET.SubElement(
                    image,
                    "polygon",
                    {
                        "label": names[region.code],
                        "source": "auto",
                        "occluded": "0",
                        "points": _points(region.exterior),
                        "z_order": str(z_order),
                    },
                )
                if region.score is not None:
                    percent = round(100 * min(max(region.score, 0.0), 1.0))
                    ET.SubElement(polygon, "attribute", {"name": CONFIDENCE}).text = str(percent)
            placed = _place_image(folder, item, folder / IMAGES / image_name)
            if placed is not None:
                written.append(placed)
        ET.indent(root, space="  ")
        path = folder / XML
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
        return [path, *written]

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Read a CVAT for images 1.1 file (or ``annotations.xml`` in a folder)."""
        file = path / XML if path.is_dir() else path
        root, lines = _parse_xml(file)
        items = _Items(record, _image_keys)
        found: dict[str, NDArray[np.uint8]] = {}
        seen: dict[str, str] = {}
        for image in root.iter("image"):
            name = image.get("name") or ""
            at = f"{file} line {lines.get(id(image), '?')}"
            item = items.find(name, at)
            if item.id in seen:
                raise AnnotationError(
                    f"{at}: images '{seen[item.id]}' and '{name}' are both item '{item.id}'"
                )
            seen[item.id] = name
            if "width" in image.attrib and "height" in image.attrib:
                size = (_number(image, "height", at), _number(image, "width", at))
                if size != item.shape:
                    raise AnnotationError(
                        f"{at}: image '{name}' is {size[1]:g}x{size[0]:g} px but item "
                        f"'{item.id}' was exported at {item.width}x{item.height} px: annotate "
                        "the exported image"
                    )
            shapes = _shapes(image, record, f"image '{name}'", lines, file)
            classes = paint(
                ((polygon, s.code) for s in shapes for polygon in s.polygons),
                item.shape,
                record.fill,
            )
            found[item.id] = restore_nodata(classes, item, record.folder or file.parent)
        return found


def _rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` as ``(r, g, b)``."""
    return (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16))


def _mask_labels(record: ExportRecord) -> list[tuple[str, tuple[int, int, int]]]:
    """The labelmap: ``background`` black first, then every class in its colour.

    Colours must tell classes apart: two classes of one colour, a black class, a name CVAT
    reserves for black or a name the labelmap cannot hold are errors.
    """
    labels = [(BACKGROUND, (0, 0, 0))]
    owner: dict[tuple[int, int, int], str] = {(0, 0, 0): BACKGROUND}
    for info in record.classes:
        if info.name == BACKGROUND:
            if info.code != record.background:
                raise AnnotationError(
                    f"class '{BACKGROUND}' (code {info.code}) is not the record's background "
                    "class: CVAT's Segmentation mask format gives that name to unlabelled black "
                    "pixels; rename the class or make it the background"
                )
            continue
        if any(ch in info.name for ch in ":\n\r") or info.name != info.name.strip():
            raise AnnotationError(
                f"class '{info.name}' cannot be written to {LABELMAP}: names there hold no ':', "
                "line breaks or surrounding spaces; rename the class"
            )
        color = _rgb(info.color)
        if color in owner:
            raise AnnotationError(
                f"classes '{owner[color]}' and '{info.name}' share the colour {info.color}: CVAT "
                "masks tell classes apart by colour only; give each class its own colour (and "
                "none black)"
            )
        owner[color] = info.name
        labels.append((info.name, color))
    return labels


def _voc_palette() -> NDArray[np.uint8]:
    """The Pascal VOC palette (256 colours), which instance masks are painted with."""
    index = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def _instances(classes: NDArray[np.uint8], skip: set[int]) -> NDArray[np.uint8]:
    """An instance index per pixel (0: none): one per region of each class not in ``skip``.

    Regions are numbered from the largest; past :data:`MAX_INSTANCES` the smallest ones share
    one index per class, so an index never spans two classes.
    """
    found: list[tuple[int, int, int]] = []  # (pixels, code, label within the code)
    labelled: dict[int, NDArray[np.int32]] = {}
    for code in (int(c) for c in np.unique(classes) if int(c) not in skip and c != 0):
        labels, count = ndimage.label(classes == code, structure=FOUR)
        labelled[code] = labels
        pixels = np.bincount(labels.ravel(), minlength=count + 1)
        found += [(int(pixels[n]), code, n) for n in range(1, count + 1)]
    found.sort(key=lambda f: (-f[0], f[1], f[2]))
    own = len(found) if len(found) <= MAX_INSTANCES else MAX_INSTANCES - len(labelled)
    shared = {code: own + 1 + k for k, code in enumerate(sorted(labelled))}
    index: dict[int, NDArray[np.int64]] = {
        code: np.zeros(int(labels.max()) + 1, np.int64) for code, labels in labelled.items()
    }
    for rank, (_, code, n) in enumerate(found):
        index[code][n] = rank + 1 if rank < own else shared[code]
    out = np.zeros(classes.shape, dtype=np.uint8)
    for code, labels in labelled.items():
        inside = labels > 0
        out[inside] = index[code][labels[inside]]
    return out


def _write_png(path: Path, array: NDArray[np.uint8]) -> Path:
    """An RGB PNG written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        Image.fromarray(array, mode="RGB").save(tmp, format="PNG")
    return path


def _write_text(path: Path, lines: Iterable[str]) -> Path:
    """A text file of ``lines`` written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _read_labelmap(path: Path, record: ExportRecord) -> dict[int, int]:
    """Colour key (``r << 16 | g << 8 | b``) -> class code, from a ``labelmap.txt``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AnnotationError(
            f"cannot read {path} ({exc}): a CVAT Segmentation mask 1.1 folder has a {LABELMAP}"
        ) from exc
    colours: dict[int, int] = {}
    names: dict[int, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        where = f"{path} line {number}"
        try:
            rgb = tuple(int(v) for v in rest.split(":")[0].split(","))
            if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except ValueError as exc:
            raise AnnotationError(
                f"{where}: label '{name}' has no colour 'r,g,b' (each 0 to 255): "
                f"'{line}' is not 'name:r,g,b:parts:actions'"
            ) from exc
        key = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
        if key in names:
            raise AnnotationError(
                f"{where}: labels '{names[key]}' and '{name}' share the colour "
                f"{rgb[0]},{rgb[1]},{rgb[2]}: give each label its own colour"
            )
        names[key] = name
        colours[key] = record.fill if name == BACKGROUND else record.code(name, where)
    return colours


def _decode(
    path: Path, item: ItemRecord, colours: dict[int, int], labelmap: Path
) -> NDArray[np.uint8]:
    """A ``SegmentationClass`` PNG as class codes, by the labelmap's colours."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint32)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: SyntaxError for a broken PNG
        raise AnnotationError(f"cannot read the class mask {path}: {exc}") from exc
    if rgb.shape[:2] != item.shape:
        raise AnnotationError(
            f"{path} is {rgb.shape[1]}x{rgb.shape[0]} px but item '{item.id}' was exported at "
            f"{item.width}x{item.height} px: paint masks on the exported image"
        )
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    unknown = [(int(k), int(n)) for k, n in zip(unique, counts, strict=True) if k not in colours]
    if unknown:
        listed = ", ".join(
            f"({k >> 16}, {(k >> 8) & 255}, {k & 255}) #{k:06x} ({n} px)" for k, n in unknown[:5]
        )
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise AnnotationError(
            f"{path}: colour {listed}{more} is not in {labelmap}: paint only with the labels' "
            "colours (no smoothing or anti-aliasing), or add the label to the labelmap"
        )
    codes = np.array([colours[int(k)] for k in unique], dtype=np.uint8)
    return codes[inverse.reshape(keys.shape)]


def _listed_ids(folder: Path) -> list[str]:
    """The item ids of a VOC folder: its segmentation lists, else its class masks."""
    lists = sorted((folder / LIST_DIR).glob("*.txt"))
    if not lists:
        masks = sorted((folder / CLASS_DIR).rglob("*.png"))
        return [m.relative_to(folder / CLASS_DIR).with_suffix("").as_posix() for m in masks]
    ids: list[str] = []
    for listed in lists:
        try:
            text = listed.read_text(encoding="utf-8")
        except OSError as exc:
            raise AnnotationError(f"cannot read the image list {listed}: {exc}") from exc
        ids += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return list(dict.fromkeys(ids))


def _mask_keys(item: ItemRecord) -> list[str]:
    """The ids an item may have in a CVAT mask export: its id, or its image's stem."""
    return [item.id, PurePosixPath(item.image.replace("\\", "/")).stem]


@dataclass(frozen=True)
class CvatMasks:
    """CVAT Segmentation mask 1.1: VOC class and instance PNGs by labelmap colours."""

    name: ClassVar[str] = "cvat-masks"

    def write(
        self, predictions: Sequence[Prediction], record: ExportRecord, folder: Path
    ) -> list[Path]:
        """Write the labelmap, class and instance masks, the image list and ``JPEGImages``."""
        labels = _mask_labels(record)
        by_name = dict(labels)
        palette = np.zeros((256, 3), dtype=np.uint8)  # code -> colour; 0 and background black
        for info in record.classes:
            if info.code != record.background and info.name != BACKGROUND:
                palette[info.code] = by_name[info.name]
        skip = {record.background} if record.background is not None else set()
        instance_colours = _voc_palette()
        written = [_write_text(folder / LABELMAP, _labelmap_lines(labels))]
        ids = []
        for prediction in predictions:
            item = _checked(prediction, record, (c.code for c in record.classes))
            ids.append(item.id)
            written.append(
                _write_png(folder / CLASS_DIR / f"{item.id}.png", palette[prediction.classes])
            )
            instances = _instances(prediction.classes, skip)
            written.append(
                _write_png(folder / OBJECT_DIR / f"{item.id}.png", instance_colours[instances])
            )
            suffix = PurePosixPath(item.image).suffix or ".png"
            placed = _place_image(folder, item, folder / JPEG_DIR / f"{item.id}{suffix}")
            if placed is not None:
                written.append(placed)
        written.append(_write_text(folder / LIST_DIR / f"{SUBSET}.txt", ids))
        return written

    def read(self, path: Path, record: ExportRecord) -> dict[str, NDArray[np.uint8]]:
        """Read a Segmentation mask 1.1 folder (or its ``labelmap.txt``)."""
        folder = path if path.is_dir() else path.parent
        labelmap = folder / LABELMAP
        colours = _read_labelmap(labelmap, record)
        items = _Items(record, _mask_keys)
        found: dict[str, NDArray[np.uint8]] = {}
        for image_id in _listed_ids(folder):
            item = items.find(image_id, str(folder / LIST_DIR))
            if item.id in found:
                raise AnnotationError(
                    f"{folder / LIST_DIR}: two images are item '{item.id}' (one is '{image_id}')"
                )
            mask = folder / CLASS_DIR / f"{image_id}.png"
            if mask.exists():
                classes = _decode(mask, item, colours, labelmap)
            else:  # CVAT writes no mask for an image without shapes
                classes = np.full(item.shape, record.fill, dtype=np.uint8)
            found[item.id] = restore_nodata(classes, item, record.folder or folder)
        return found


def _labelmap_lines(labels: Sequence[tuple[str, tuple[int, int, int]]]) -> list[str]:
    """``labelmap.txt`` as CVAT writes it: a header, then ``name:r,g,b::`` per label."""
    return ["# label:color_rgb:parts:actions"] + [
        f"{name}:{r},{g},{b}::" for name, (r, g, b) in labels
    ]
