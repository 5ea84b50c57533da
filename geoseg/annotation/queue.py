"""The review queue: label-check findings ranked, as a GeoPackage layer, a CSV and PNG crops.

Every :class:`~geoseg.annotation.checks.Finding` gets a score, **pixels x confidence**: the
size of its region weighted by how sure the model is about it (the expected number of wrongly
labelled pixels there, if the model's confidence were calibrated). Findings the model has no
say on (fragments, holes, invalid codes) count with confidence 1: they are facts about the
labels. Highest score first; ties by image id, kind (in :data:`~geoseg.annotation.checks.KINDS`
order) and position, so the order is deterministic.

:func:`write_queue` writes into a folder:

- ``review_queue.gpkg``, layer ``review_queue``: one feature per finding, its region's outline
  (the finding's polygon, or its bounding box where it has none) in image pixel coordinates
  (x = column, y = row, no CRS; the layer metadata ``GEOSEG_COORDINATES`` says so), with
  :data:`COLUMNS` and ``review_status`` (``todo`` when written);
- ``review_queue.csv``: the same rows without geometry, plus ``units`` (``px``);
- ``crops/RANK.png`` for the top ``crops`` findings: the photo, the labels and the prediction
  side by side around the finding, its region outlined in each.

Every file is written under a temporary name and renamed when complete. :func:`review_selection`
turns the ranked findings into what a review task exports (images to re-annotate, in order, with
their flagged regions and a priority for :class:`~geoseg.annotation.record.ItemRecord`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from geoseg.annotation.checks import KINDS, Finding
from geoseg.annotation.record import ItemRecord
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path
from geoseg.export.style import ClassStyle
from geoseg.export.vector import write_layers
from geoseg.types import PIXEL_NOTE

#: The queue's files in its folder, and the GeoPackage's layer.
QUEUE_GPKG: Final = "review_queue.gpkg"
QUEUE_CSV: Final = "review_queue.csv"
QUEUE_LAYER: Final = "review_queue"
CROPS: Final = "crops"

#: The queue's attribute columns, in order (class 0: none; NaN: not measured).
COLUMNS: Final = (
    "rank",
    "score",
    "image_id",
    "kind",
    "label_class",
    "label_name",
    "predicted_class",
    "predicted_name",
    "pixels",
    "confidence",
    "share",
    "length",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "note",
    "crop",
    "review_status",
)

#: Colours of crops: the outline drawn around a finding, unlabelled pixels, unknown codes.
OUTLINE: Final = (255, 230, 0)
UNLABELLED: Final = (40, 40, 40)
UNKNOWN: Final = (255, 0, 255)


def score(finding: Finding) -> float:
    """The finding's priority: pixels x confidence (1 where the model has no say)."""
    confidence = 1.0 if finding.confidence is None else finding.confidence
    return finding.pixels * confidence


def rank(findings: Sequence[Finding]) -> list[Finding]:
    """The findings, highest :func:`score` first (ties: image id, kind, top-left corner)."""
    return sorted(
        findings,
        key=lambda f: (-score(f), f.image_id, KINDS.index(f.kind), f.bbox[1], f.bbox[0]),
    )


@dataclass(frozen=True)
class ReviewImage:
    """What a crop shows of one image: the photo ``(y, x, 3)`` RGB, its labels, the prediction."""

    photo: NDArray[np.uint8]
    labels: NDArray[np.uint8]
    classes: NDArray[np.uint8]

    def __post_init__(self) -> None:
        shape = self.labels.shape
        if self.photo.shape[:2] != shape or self.classes.shape != shape:
            raise AnnotationError(
                f"photo {self.photo.shape[:2]}, labels {shape} and class map "
                f"{self.classes.shape} of a review image must have one size"
            )


def queue_frame(
    findings: Sequence[Finding],
    styles: Sequence[ClassStyle],
    crops: Mapping[int, str] | None = None,
) -> gpd.GeoDataFrame:
    """The ranked findings as rows of :data:`COLUMNS` with their outlines (no CRS: pixels).

    ``crops`` maps a rank to its crop's path relative to the queue's folder.
    """
    names = {s.code: s.name for s in styles}
    rows = []
    geometry = []
    for number, finding in enumerate(rank(findings), start=1):
        label = finding.label_class or 0
        predicted = finding.predicted_class or 0
        rows.append(
            {
                "rank": number,
                "score": score(finding),
                "image_id": finding.image_id,
                "kind": finding.kind,
                "label_class": label,
                "label_name": names.get(label, ""),
                "predicted_class": predicted,
                "predicted_name": names.get(predicted, ""),
                "pixels": finding.pixels,
                "confidence": _number(finding.confidence),
                "share": _number(finding.share),
                "length": _number(finding.length),
                "xmin": finding.bbox[0],
                "ymin": finding.bbox[1],
                "xmax": finding.bbox[2],
                "ymax": finding.bbox[3],
                "note": finding.note,
                "crop": (crops or {}).get(number, ""),
                "review_status": "todo",
            }
        )
        geometry.append(
            finding.polygon if finding.polygon is not None else shapely.box(*finding.bbox)
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype(
        {
            "rank": "int64",
            "score": "float64",
            "label_class": "int32",
            "predicted_class": "int32",
            "pixels": "int64",
            "confidence": "float64",
            "share": "float64",
            "length": "float64",
            "xmin": "int64",
            "ymin": "int64",
            "xmax": "int64",
            "ymax": "int64",
        }
    )
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=None)


def write_queue(
    findings: Sequence[Finding],
    folder: Path,
    images: Mapping[str, ReviewImage],
    styles: Sequence[ClassStyle],
    crops: int = 100,
) -> list[Path]:
    """Write the queue's GeoPackage, CSV and the top ``crops`` PNG crops into ``folder``.

    ``images`` holds every image a finding names (only those with a crop are needed); the files
    written are returned (GeoPackage, CSV, then the crops in rank order).
    """
    ranked = rank(findings)
    written: list[Path] = []
    relative: dict[int, str] = {}
    for number, finding in enumerate(ranked[:crops], start=1):
        image = images.get(finding.image_id)
        if image is None:
            raise AnnotationError(
                f"finding {number} is in image '{finding.image_id}', which the review images "
                f"({', '.join(sorted(images)) or 'none'}) do not hold"
            )
        name = f"{CROPS}/{number:04d}.png"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            crop(finding, image, styles, number).save(tmp, format="PNG")
        relative[number] = name
        written.append(path)
    frame = queue_frame(ranked, styles, relative)
    metadata = {
        "GEOSEG_COORDINATES": PIXEL_NOTE,
        "DESCRIPTION": "label-check findings ranked by pixels x confidence (geoseg)",
    }
    write_layers(folder / QUEUE_GPKG, {QUEUE_LAYER: frame}, metadata)
    table = pd.DataFrame(frame.drop(columns="geometry"))
    table["units"] = "px"
    with atomic_path(folder / QUEUE_CSV, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
    return [folder / QUEUE_GPKG, folder / QUEUE_CSV, *written]


def crop(
    finding: Finding,
    image: ReviewImage,
    styles: Sequence[ClassStyle],
    number: int | None = None,
    margin: int = 24,
    least: int = 160,
) -> Image.Image:
    """Photo, labels and prediction around ``finding`` side by side, its region outlined.

    The window is the finding's box grown by ``margin`` px (or half its size, if larger), cut at
    the image's edges; small windows are enlarged (nearest neighbour, whole factors) until their
    longer side is at least ``least`` px. A line of text above says what the finding is.
    """
    height, width = image.labels.shape
    x0, y0, x1, y1 = finding.bbox
    grow = max(margin, (x1 - x0) // 2, (y1 - y0) // 2)
    left, top = max(x0 - grow, 0), max(y0 - grow, 0)
    right, bottom = min(x1 + grow, width), min(y1 + grow, height)
    factor = max(1, min(8, -(-least // max(right - left, bottom - top))))
    window = (slice(top, bottom), slice(left, right))
    palette = _palette(styles)
    panels = [
        image.photo[window],
        palette[image.labels[window]],
        palette[image.classes[window]],
    ]
    panel_w, panel_h = (right - left) * factor, (bottom - top) * factor
    header, gap = 28, 4
    sheet = Image.new("RGB", (3 * panel_w + 2 * gap, panel_h + header), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    rings = _rings(finding)
    for index, panel in enumerate(panels):
        picture = Image.fromarray(np.ascontiguousarray(panel, dtype=np.uint8))
        picture = picture.resize((panel_w, panel_h), Image.Resampling.NEAREST)
        offset = index * (panel_w + gap)
        sheet.paste(picture, (offset, header))
        for ring in rings:
            points = [(offset + (x - left) * factor, header + (y - top) * factor) for x, y in ring]
            draw.line(points, fill=OUTLINE, width=2)
    names = {s.code: s.name for s in styles}
    classes = " -> ".join(names.get(c, str(c)) for c in finding.classes)
    conf = "" if finding.confidence is None else f", conf {finding.confidence:.2f}"
    title = f"#{number} " if number is not None else ""
    draw.text(
        (4, 2),
        f"{title}{finding.kind} [{classes}] image {finding.image_id}, {finding.pixels} px{conf}"
        f"  |  photo | labels | prediction",
        fill=(0, 0, 0),
    )
    if finding.note:
        draw.text((4, 14), finding.note[:120], fill=(90, 90, 90))
    return sheet


def write_sheet(crops: Sequence[Path], path: Path, gap: int = 6) -> Path:
    """The crops stacked top to bottom into one PNG (the top of the queue at a glance)."""
    if not crops:
        raise AnnotationError(f"no crops to put into {path}: the queue is empty")
    pictures: list[Image.Image] = []
    for source in crops:
        with Image.open(source) as opened:
            pictures.append(opened.convert("RGB"))
    width = max(p.width for p in pictures)
    height = sum(p.height for p in pictures) + gap * (len(pictures) - 1)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    top = 0
    for picture in pictures:
        sheet.paste(picture, (0, top))
        top += picture.height + gap
    with atomic_path(path, overwrite=True) as tmp:
        sheet.save(tmp, format="PNG")
    return path


@dataclass(frozen=True)
class ReviewSelection:
    """What to send back to annotators: images in order, their flagged regions, priorities.

    ``ids`` are ordered by each image's best finding; ``priority`` is that finding's score over
    the first image's (1 for the first, higher: review first), as ``ItemRecord.priority`` wants.
    """

    ids: tuple[str, ...]
    findings: Mapping[str, tuple[Finding, ...]]
    priority: Mapping[str, float]

    def regions(self, image_id: str) -> list[shapely.Polygon | shapely.MultiPolygon]:
        """The outlines of ``image_id``'s findings (boxes where a finding has none), ranked."""
        return [
            f.polygon if f.polygon is not None else shapely.box(*f.bbox)
            for f in self.findings.get(image_id, ())
        ]

    def items(self, items: Sequence[ItemRecord]) -> list[ItemRecord]:
        """The selected ones of an export's ``items``, in review order, with their priority set.

        A selected image the items do not hold is an error naming it.
        """
        by_id = {item.id: item for item in items}
        missing = [i for i in self.ids if i not in by_id]
        if missing:
            raise AnnotationError(
                f"the review selection names images {missing} that the export's items do not "
                "hold: export the images the checks ran on"
            )
        return [
            by_id[i].model_copy(update={"priority": round(self.priority[i], 6)}) for i in self.ids
        ]


def review_selection(
    findings: Sequence[Finding],
    kinds: Sequence[str] | None = None,
    limit: int | None = None,
) -> ReviewSelection:
    """The images to re-annotate: those with findings (of ``kinds``, default all), best first.

    ``limit`` keeps the first ``limit`` images.
    """
    unknown = sorted(set(kinds or ()) - set(KINDS))
    if unknown:
        raise AnnotationError(f"unknown finding kinds {unknown}; known: {', '.join(KINDS)}")
    chosen = [f for f in rank(findings) if kinds is None or f.kind in kinds]
    grouped: dict[str, list[Finding]] = {}
    for finding in chosen:
        grouped.setdefault(finding.image_id, []).append(finding)
    ids = tuple(grouped)[:limit]
    top = score(grouped[ids[0]][0]) if ids else 0.0
    priority = {i: (score(grouped[i][0]) / top if top > 0 else 1.0) for i in ids}
    return ReviewSelection(ids, {i: tuple(grouped[i]) for i in ids}, priority)


def _number(value: float | int | None) -> float:
    """``value`` as a float; None as NaN (not measured)."""
    return float("nan") if value is None else float(value)


def _palette(styles: Sequence[ClassStyle]) -> NDArray[np.uint8]:
    """RGB per code 0..255: the classes' colours, unlabelled dark grey, others magenta."""
    palette = np.tile(np.asarray(UNKNOWN, dtype=np.uint8), (256, 1))
    palette[0] = UNLABELLED
    for style in styles:
        palette[style.code] = style.rgb
    return palette


def _rings(finding: Finding) -> list[list[tuple[float, float]]]:
    """The finding's outline rings (exteriors and holes), or its box."""
    shape = finding.polygon if finding.polygon is not None else shapely.box(*finding.bbox)
    rings = []
    for polygon in getattr(shape, "geoms", [shape]):
        for ring in (polygon.exterior, *polygon.interiors):
            rings.append([(float(x), float(y)) for x, y in ring.coords])
    return rings
