"""The labelling-tool formats by name: the one table the export and import steps use."""

from __future__ import annotations

import importlib
from typing import Literal

from geoseg.annotation.record import AnnotationFormat

FormatName = Literal["cvat-images", "cvat-masks", "coco", "labelstudio", "gpkg"]

#: Format name -> (module, class) implementing it.
FORMATS: dict[str, tuple[str, str]] = {
    "cvat-images": ("geoseg.annotation.cvat", "CvatImages"),
    "cvat-masks": ("geoseg.annotation.cvat", "CvatMasks"),
    "coco": ("geoseg.annotation.coco", "Coco"),
    "labelstudio": ("geoseg.annotation.labelstudio", "LabelStudio"),
    "gpkg": ("geoseg.annotation.review", "ReviewLayer"),
}

#: What each format writes into an export folder (files and folders), and what an import of
#: that format reads by default (the export's own files: an unchanged round trip).
FILES: dict[str, tuple[str, ...]] = {
    "cvat-images": ("annotations.xml",),
    "cvat-masks": (
        "labelmap.txt",
        "SegmentationClass",
        "SegmentationObject",
        "ImageSets",
        "JPEGImages",
    ),
    "coco": ("annotations",),
    "labelstudio": ("labelstudio.json", "labelstudio"),
    "gpkg": ("review.gpkg", "review.qml"),
}
READS: dict[str, str] = {
    "cvat-images": "annotations.xml",
    "cvat-masks": "labelmap.txt",  # its folder: the VOC layout beside it
    "coco": "annotations/instances_default.json",
    "labelstudio": "labelstudio.json",
    "gpkg": "review.gpkg",
}


def annotation_format(name: str, image_prefix: str = "") -> AnnotationFormat:
    """The format called ``name`` (one of :data:`FORMATS`).

    ``image_prefix`` goes before image paths in formats whose tool loads images by URL (Label
    Studio: e.g. ``/data/local-files/?d=tasks/`` or ``https://host/tasks/``).
    """
    module, cls = FORMATS[name]
    kind = getattr(importlib.import_module(module), cls)
    found: AnnotationFormat = kind(image_prefix=image_prefix) if name == "labelstudio" else kind()
    return found
