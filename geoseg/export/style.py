"""QGIS style files (``.qml``) so class maps and polygon layers open already coloured."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.export.atomic import atomic_path

if TYPE_CHECKING:
    from geoseg.model.bundle import BundleMeta

QGIS_VERSION = "3.28.0"


@dataclass(frozen=True, slots=True)
class ClassStyle:
    """A class as styles need it: code, label, ``#rrggbb`` colour."""

    code: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as an RGB triple."""
        return (int(self.color[1:3], 16), int(self.color[3:5], 16), int(self.color[5:7], 16))


def class_styles(meta: BundleMeta) -> tuple[ClassStyle, ...]:
    """The styles of a model's classes, in its output order."""
    return tuple(ClassStyle(c.code, c.name, c.color) for c in meta.classes)


def _document(root_children: ET.Element) -> bytes:
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")
    root.append(root_children)
    ET.indent(root)
    return b"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root)


def raster_qml(classes: Sequence[ClassStyle]) -> bytes:
    """A paletted (unique values) renderer for a uint8 class map."""
    pipe = ET.Element("pipe")
    renderer = ET.SubElement(
        pipe, "rasterrenderer", type="paletted", band="1", opacity="1", alphaBand="-1"
    )
    palette = ET.SubElement(renderer, "colorPalette")
    for c in classes:
        ET.SubElement(
            palette, "paletteEntry", value=str(c.code), color=c.color, label=c.name, alpha="255"
        )
    return _document(pipe)


def vector_qml(classes: Sequence[ClassStyle], attribute: str = "class_id") -> bytes:
    """A categorised fill renderer on ``attribute`` with the class colours."""
    renderer = ET.Element(
        "renderer-v2",
        type="categorizedSymbol",
        attr=attribute,
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
    )
    categories = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for index, c in enumerate(classes):
        ET.SubElement(
            categories,
            "category",
            value=str(c.code),
            symbol=str(index),
            label=c.name,
            render="true",
        )
        symbol = ET.SubElement(
            symbols,
            "symbol",
            type="fill",
            name=str(index),
            alpha="1",
            clip_to_extent="1",
            force_rhr="0",
        )
        layer = ET.SubElement(
            symbol, "layer", {"class": "SimpleFill"}, enabled="1", locked="0", **{"pass": "0"}
        )
        options = ET.SubElement(layer, "Option", type="Map")
        r, g, b = c.rgb
        for name, value in (
            ("color", f"{r},{g},{b},255"),
            ("outline_color", "35,35,35,255"),
            ("outline_width", "0.1"),
            ("outline_width_unit", "MM"),
            ("style", "solid"),
        ):
            ET.SubElement(options, "Option", type="QString", name=name, value=value)
    return _document(renderer)


def write_style(path: Path, content: bytes) -> Path:
    """Write a ``.qml`` beside an output (replacing an older one)."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(content)
    return path


def style_path(output: Path) -> Path:
    """``classes.tif`` -> ``classes.qml`` (QGIS picks up a same-named .qml automatically)."""
    return output.with_suffix(".qml")
