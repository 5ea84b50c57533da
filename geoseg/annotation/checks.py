"""Automated checks of one label set against a model: what a reviewer should look at first.

No second annotator is needed: each image's labels are compared with a model's prediction of
the same image (class map and confidence, the same class codes; 0 = unlabelled in the labels,
no data in the prediction, NaN confidence = no data). A predicted pixel is *confident* when its
confidence is at least :attr:`CheckSettings.confidence`. The *background* class is the one
nobody outlines (CWFID's soil, code 1); *objects* are the 4-connected regions of every other
labelled class. Each check returns :class:`Finding` s of one kind:

- ``missing_object``: a 4-connected region of confident predictions of non-background classes
  (crop and weed together: a plant predicted half crop, half weed is one plant) that the labels
  call background, of at least ``min_missing`` px. Unlabelled pixels (0) are never flagged.
  ``predicted_class`` is the region's most frequent predicted class; the ``note`` names the
  object classes it touches (then it may also be an outline drawn too small). Without a
  background class there is nothing to miss and the check finds nothing.
- ``class_mismatch``: an object of class ``c`` whose confident non-background predictions (at
  least ``min_votes`` px) are mostly (a share above ``mismatch_share``) another class ``t``
  (crop labelled as weed). ``share`` is ``t``'s share of those votes.
- ``mask_bleed``: an object's outline strays from the model's confident outline. The object's
  outline pixels are its pixels with a 4-neighbour labelled background (without a background
  class: labelled with another class; edges against unlabelled pixels say nothing, and an edge
  between two objects is a class question, not an outline one); the model's are its predicted
  pixels of the same class with a 4-neighbour predicted as another class
  (``geoseg.evaluation.boundary.class_edges``, as the boundary F-score counts them). An outline
  pixel is *off* when it is farther than ``bleed_distance`` px (Euclidean, a distance transform
  of the predicted outline) from the model's outline and the model is confident there that it is
  the class or background (an uncertain model outline says nothing; another object class there
  is a class question). The region of an 8-connected stretch of off pixels is the *patches* next
  to it: 4-connected confident pixels where one side says the class and the other background
  (the band a label adds or leaves out). Stretches of one object beside the same patches are one
  finding (the stretch itself is the region when it touches no patch), flagged when its
  stretches add up to at least ``min_bleed`` px: ``length`` is that sum, ``share`` its part of
  the object's outline. Patches that are (part of) a missing object are reported there, once: an
  outline drawn too small by a band of at least ``min_missing`` px is a ``missing_object`` whose
  note names the object's class. Objects the model does not see as their class (fewer than
  ``min_region`` confident pixels of it) are left to the checks above.
- ``fragment``: an object smaller than ``min_region`` px; ``hole``: a hole in an object (pixels
  it encloses, 8-connected to nothing outside it) smaller than ``min_region`` px that holds no
  object of its own (a small object inside another is a fragment, reported once).
- ``invalid_code``: label codes the class table does not list (one finding per code), and, in
  :func:`colour_findings`, colours of a colour-coded annotation the image set does not map
  (one finding per colour, its ``note`` naming it).

:func:`class_shares` is the per-image class-share table (imbalance). Findings carry pixel
coordinates (x = column, y = row, origin top-left) and the outline of their region when one is
drawn (:mod:`geoseg.annotation.regions`, exact pixel edges).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast

import numpy as np
import pandas as pd
import shapely
import shapely.affinity
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.annotation.regions import FOUR, paint, regions
from geoseg.catalog import ImageSetRef
from geoseg.errors import AnnotationError
from geoseg.evaluation.boundary import class_edges
from geoseg.io.images import read_image

FindingKind = Literal[
    "missing_object", "class_mismatch", "mask_bleed", "fragment", "hole", "invalid_code"
]

#: Every kind, in the order :func:`check_labels` runs the checks.
KINDS: Final[tuple[FindingKind, ...]] = (
    "invalid_code",
    "missing_object",
    "class_mismatch",
    "mask_bleed",
    "fragment",
    "hole",
)

#: 8-connectivity, for outline stretches and for what a hole is connected to.
EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """The checks' thresholds (see the module docstring for what each one does)."""

    background: int | None = None  # the class nobody outlines (CWFID soil = 1); None: none
    confidence: float = 0.8  # a predicted pixel at least this sure is confident
    min_missing: int = 50  # px: smaller unlabelled confident objects are not flagged
    min_votes: int = 20  # px: confident object votes a class mismatch needs
    mismatch_share: float = 0.5  # the other class's share of the votes must exceed this
    bleed_distance: float = 3.0  # px: an outline farther than this from the model's is off
    min_bleed: int = 20  # px: the shortest stretch of off outline that is flagged
    min_region: int = 10  # px: smaller objects are fragments, smaller holes are holes

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence <= 1.0:
            raise ValueError(f"confidence must be in (0, 1], got {self.confidence}")
        if not 0.0 <= self.mismatch_share < 1.0:
            raise ValueError(f"mismatch_share must be in [0, 1), got {self.mismatch_share}")
        if self.bleed_distance < 0:
            raise ValueError(f"bleed_distance must be >= 0, got {self.bleed_distance}")
        sizes = (self.min_missing, self.min_votes, self.min_bleed, self.min_region)
        if min(sizes) < 1:
            raise ValueError(f"minimum sizes must be >= 1 px, got {sizes}")
        if self.background is not None and not 1 <= self.background <= 255:
            raise ValueError(f"background must be a class code 1..255, got {self.background}")


@dataclass(frozen=True, slots=True)
class Finding:
    """One flagged place in one image's labels.

    ``pixels`` is the size of the flagged region (the unlabelled object, the mislabelled object,
    the disagreement along a bleeding outline, the fragment, the hole, the invalid code's pixels);
    ``bbox`` its ``(xmin, ymin, xmax, ymax)`` in pixel edges; ``confidence`` the model's mean
    confidence over it (None where the model has no say: fragments, holes, invalid codes);
    ``polygon`` its outline in pixel coordinates (None for invalid codes and colours).
    """

    image_id: str
    kind: FindingKind
    label_class: int | None  # the labels' class there (None: no single class)
    predicted_class: int | None  # the model's class there (None: not compared)
    pixels: int
    bbox: tuple[int, int, int, int]
    confidence: float | None = None
    share: float | None = None  # class_mismatch: the other class's vote share; bleed: outline
    length: int | None = None  # mask_bleed: the off stretch's outline pixels
    polygon: shapely.Polygon | shapely.MultiPolygon | None = None
    note: str = ""

    @property
    def classes(self) -> tuple[int, ...]:
        """The class codes involved (label first), without repeats."""
        found = [c for c in (self.label_class, self.predicted_class) if c is not None]
        return tuple(dict.fromkeys(found))


def check_labels(
    image_id: str,
    labels: NDArray[np.integer],
    classes: NDArray[np.integer],
    confidence: NDArray[np.floating],
    codes: Mapping[int, str],
    settings: CheckSettings | None = None,
) -> list[Finding]:
    """Every check of one image's ``labels`` against the model's ``classes`` and ``confidence``.

    ``codes`` is the class table (code -> name) both use. Findings come in the order of
    :data:`KINDS`, each kind in image order (top to bottom, left to right).
    """
    settings = settings or CheckSettings()
    raw, predicted, sure = _same_shape(image_id, labels, classes, confidence)
    if settings.background is not None and settings.background not in codes:
        raise AnnotationError(
            f"image '{image_id}': background class {settings.background} is not in the class "
            f"table {dict(codes)}"
        )
    found = invalid_codes(image_id, raw, codes)
    known = np.where(np.isin(raw, list(codes)), raw, 0).astype(np.uint8)
    confident = (predicted != 0) & (sure >= settings.confidence)  # NaN is never confident
    missing = missing_objects(image_id, known, predicted, sure, confident, settings)
    explained = paint([(f.polygon, 1) for f in missing if f.polygon is not None], known.shape) > 0
    found += missing
    found += class_mismatches(image_id, known, predicted, sure, confident, settings)
    found += mask_bleeds(image_id, known, predicted, sure, confident, settings, explained)
    found += fragments_and_holes(image_id, known, settings)
    return found


def _same_shape(
    image_id: str,
    labels: NDArray[np.integer],
    classes: NDArray[np.integer],
    confidence: NDArray[np.floating],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float32]]:
    """The three arrays as ``uint8, uint8, float32``; arrays of other shapes are an error."""
    if labels.ndim != 2 or labels.shape != classes.shape or labels.shape != confidence.shape:
        raise AnnotationError(
            f"image '{image_id}': labels {labels.shape}, class map {classes.shape} and confidence "
            f"{confidence.shape} must be 2-D arrays of one shape (predict the labelled image)"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 255):
        raise AnnotationError(f"image '{image_id}': label codes must be 0..255")
    return (
        labels.astype(np.uint8, copy=False),
        classes.astype(np.uint8, copy=False),
        confidence.astype(np.float32, copy=False),
    )


def invalid_codes(
    image_id: str, labels: NDArray[np.integer], codes: Mapping[int, str]
) -> list[Finding]:
    """One ``invalid_code`` finding per label code (not 0) that ``codes`` does not list."""
    found = []
    for code in np.unique(labels):
        if code == 0 or int(code) in codes:
            continue
        hit = labels == code
        found.append(
            Finding(
                image_id,
                "invalid_code",
                int(code),
                None,
                int(hit.sum()),
                _bbox(hit),
                note=f"code {int(code)} is not a class ({', '.join(map(str, sorted(codes)))})",
            )
        )
    return found


def colour_findings(ref: ImageSetRef, item: str) -> list[Finding]:
    """``invalid_code`` findings for the colours of ``item``'s annotation that ``ref`` lacks.

    The annotation is read as :func:`geoseg.io.images.read_image` reads photos (a missing,
    truncated or corrupt file is its ``RasterOpenError``, naming the file). An empty list means
    :func:`geoseg.io.images.read_annotation` will map every pixel.
    """
    path = dict(ref.annotations)[item]
    rgb = read_image(Path(path), 3).astype(np.int64)
    packed = rgb[0] << 16 | rgb[1] << 8 | rgb[2]
    known = np.isin(packed, [r << 16 | g << 8 | b for (r, g, b), _ in ref.colours])
    found = []
    for value in np.unique(packed[~known]):
        hit = packed == value
        colour = f"({value >> 16},{(value >> 8) & 255},{value & 255})"
        found.append(
            Finding(
                item,
                "invalid_code",
                None,
                None,
                int(hit.sum()),
                _bbox(hit),
                note=f"{path}: colour {colour} is not one of image set '{ref.name}''s colours",
            )
        )
    return found


def missing_objects(
    image_id: str,
    labels: NDArray[np.uint8],
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32],
    confident: NDArray[np.bool_],
    settings: CheckSettings,
) -> list[Finding]:
    """Confident object predictions the labels leave as background (``missing_object``)."""
    background = settings.background
    if background is None:
        return []
    candidate = confident & (classes != background) & (labels == background)
    found = []
    for mask, (rows, cols) in _components(candidate, FOUR, 1):
        pixels = int(mask.sum())
        if pixels < settings.min_missing:
            continue
        predicted = classes[rows, cols][mask]
        ring = labels[rows, cols][ndimage.binary_dilation(mask, structure=FOUR) & ~mask]
        touching = sorted(int(c) for c in np.unique(ring) if c not in (0, background))
        found.append(
            Finding(
                image_id,
                "missing_object",
                background,
                _majority(predicted),
                pixels,
                _bbox(mask, rows, cols),
                float(confidence[rows, cols][mask].mean()),
                polygon=_outline(mask, rows, cols),
                note=f"touches labelled class {touching}" if touching else "",
            )
        )
    return found


def class_mismatches(
    image_id: str,
    labels: NDArray[np.uint8],
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32],
    confident: NDArray[np.bool_],
    settings: CheckSettings,
) -> list[Finding]:
    """Objects whose confident predictions are mostly another object class (``class_mismatch``)."""
    voting = confident & (classes != (settings.background or 0))
    found = []
    for code, mask, (rows, cols) in _objects(labels, settings.background):
        votes = voting[rows, cols] & mask
        if votes.sum() < settings.min_votes:
            continue
        predicted = classes[rows, cols][votes]
        counts = np.bincount(predicted, minlength=256)
        other = int(counts.argmax())
        share = float(counts[other] / predicted.size)
        if other == code or share <= settings.mismatch_share:
            continue
        found.append(
            Finding(
                image_id,
                "class_mismatch",
                code,
                other,
                int(mask.sum()),
                _bbox(mask, rows, cols),
                float(confidence[rows, cols][votes & (classes[rows, cols] == other)].mean()),
                share=share,
                polygon=_outline(mask, rows, cols),
            )
        )
    return found


def mask_bleeds(
    image_id: str,
    labels: NDArray[np.uint8],
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32],
    confident: NDArray[np.bool_],
    settings: CheckSettings,
    explained: NDArray[np.bool_] | None = None,
) -> list[Finding]:
    """Long stretches of object outline far from the model's confident outline (``mask_bleed``).

    ``explained`` marks pixels already reported (the missing objects): disagreement there is
    not reported again.
    """
    background = settings.background
    against = (
        ndimage.binary_dilation(labels == background, structure=FOUR)
        if background is not None
        else class_edges(labels, labels > 0)
    )
    predicted_edges = class_edges(classes, classes > 0)
    pad = int(np.ceil(settings.bleed_distance)) + 2
    cache: dict[int, _Disagreement] = {}
    found = []
    for code, mask, (rows, cols) in _objects(labels, background, pad):
        predicted = classes[rows, cols] == code
        if (mask & predicted & confident[rows, cols]).sum() < settings.min_region:
            continue  # the model does not see this object as its class: not an outline question
        if code not in cache:
            cache[code] = _Disagreement.of(
                code, labels, classes, confident, predicted_edges, background, explained
            )
        known = cache[code]
        outline = against[rows, cols] & mask & (labels[rows, cols] == code)
        off = outline & (known.distance[rows, cols] > settings.bleed_distance)
        off &= confident[rows, cols]
        if background is not None:  # another object class there: a class question
            off &= np.isin(classes[rows, cols], (code, background))
        if off.sum() < settings.min_bleed:
            continue
        stretches, count = ndimage.label(off, structure=EIGHT)
        lengths: dict[tuple[int, ...], int] = {}
        for index in range(1, count + 1):
            stretch = stretches == index
            touched = known.touching(stretch, (rows, cols))
            if touched is None:
                continue  # next to reported pixels only: explained already
            key = touched or (-index,)  # touching nothing: the stretch is its own region
            lengths[key] = lengths.get(key, 0) + int(stretch.sum())
        for key, length in lengths.items():
            if length < settings.min_bleed:
                continue
            if key[0] < 0:
                region, (r, c) = stretches == -key[0], (rows, cols)
            else:
                region, (r, c) = known.patches(key)
            found.append(
                Finding(
                    image_id,
                    "mask_bleed",
                    code,
                    code,
                    int(region.sum()),
                    _bbox(region, r, c),
                    float(confidence[r, c][region].mean()),
                    share=length / int(outline.sum()),
                    length=length,
                    polygon=_outline(region, r, c),
                )
            )
    return found


@dataclass(frozen=True)
class _Disagreement:
    """Where labels and a confident model disagree about one class's outline.

    ``distance`` is each pixel's distance to the class's predicted outline (inf without one);
    ``parts`` labels the 4-connected patches of confident pixels where one side says the class
    and the other the background (any other class without one), ``windows`` their bounding
    windows, ``explained`` the patches that touch already reported pixels.
    """

    distance: NDArray[np.float64]
    parts: NDArray[np.int32]
    windows: list[tuple[slice, slice] | None]
    explained: frozenset[int]

    @classmethod
    def of(
        cls,
        code: int,
        labels: NDArray[np.uint8],
        classes: NDArray[np.uint8],
        confident: NDArray[np.bool_],
        predicted_edges: NDArray[np.bool_],
        background: int | None,
        explained: NDArray[np.bool_] | None,
    ) -> _Disagreement:
        """The disagreement about class ``code``."""
        edges = predicted_edges & (classes == code)
        distance = (
            np.asarray(ndimage.distance_transform_edt(~edges), dtype=np.float64)
            if edges.any()
            else np.full(edges.shape, np.inf)
        )
        if background is None:
            disagree = ((labels == code) != (classes == code)) & (labels != 0)
        else:
            disagree = ((labels == code) & (classes == background)) | (
                (labels == background) & (classes == code)
            )
        parts, _ = ndimage.label(disagree & confident, structure=FOUR)
        reported = np.unique(parts[explained]) if explained is not None else np.zeros(0, int)
        return cls(
            distance,
            parts.astype(np.int32),
            list(ndimage.find_objects(parts)),
            frozenset(int(i) for i in reported if i > 0),
        )

    def touching(
        self, stretch: NDArray[np.bool_], window: tuple[slice, slice]
    ) -> tuple[int, ...] | None:
        """The patches next to ``stretch`` (on ``window``) not yet reported; None: only those."""
        part = self.parts[window]
        near = ndimage.binary_dilation(stretch, structure=EIGHT)
        touched = {int(i) for i in np.unique(part[near & (part > 0)])}
        fresh = tuple(sorted(touched - self.explained))
        return None if touched and not fresh else fresh

    def patches(self, ids: tuple[int, ...]) -> tuple[NDArray[np.bool_], tuple[slice, slice]]:
        """The patches ``ids`` as a mask on the window holding them, and that window."""
        spans = [w for i in ids if (w := self.windows[i - 1]) is not None]
        top, left = min(w[0].start for w in spans), min(w[1].start for w in spans)
        bottom, right = max(w[0].stop for w in spans), max(w[1].stop for w in spans)
        window = (slice(top, bottom), slice(left, right))
        return np.isin(self.parts[window], ids), window


def fragments_and_holes(
    image_id: str, labels: NDArray[np.uint8], settings: CheckSettings
) -> list[Finding]:
    """Objects and holes in objects below ``min_region`` px (``fragment``, ``hole``)."""
    objects = (labels != 0) & (labels != (settings.background or 0))
    fragments: list[Finding] = []
    holes: list[Finding] = []
    for code, mask, (rows, cols) in _objects(labels, settings.background, 1):
        pixels = int(mask.sum())
        if pixels < settings.min_region:
            fragments.append(
                Finding(
                    image_id,
                    "fragment",
                    code,
                    None,
                    pixels,
                    _bbox(mask, rows, cols),
                    polygon=_outline(mask, rows, cols),
                )
            )
            continue
        enclosed = ndimage.binary_fill_holes(mask, structure=EIGHT) & ~mask
        inner, count = ndimage.label(enclosed, structure=EIGHT)
        sizes = np.bincount(inner.ravel(), minlength=count + 1)
        for index in np.flatnonzero((sizes < settings.min_region) & (np.arange(count + 1) > 0)):
            hole = inner == index
            if (objects[rows, cols] & hole).any():
                continue  # an object inside: reported as a fragment if small
            filled = labels[rows, cols][hole]
            holes.append(
                Finding(
                    image_id,
                    "hole",
                    _majority(filled) if filled.any() else None,
                    None,
                    int(sizes[index]),
                    _bbox(hole, rows, cols),
                    polygon=_outline(hole, rows, cols),
                    note=f"in an object of class {code}, {pixels} px",
                )
            )
    return fragments + holes


def class_shares(
    labels: Mapping[str, NDArray[np.integer]], codes: Mapping[int, str]
) -> pd.DataFrame:
    """The per-image class-share table: how (im)balanced the labels are.

    One row per image and class of ``codes`` (absent classes with 0 px): ``image_id, class_id,
    class_name, pixels, share`` (of the image's labelled pixels, code not 0), and
    ``overall_share`` (the class's share over all images), ``relative`` (share / overall share:
    above 1 the image holds more of the class than the set does; NaN where the set has none).
    Codes outside the table are left out (``invalid_code`` reports them).
    """
    table = sorted(codes)
    rows = []
    for image_id, found in labels.items():
        counts = np.bincount(np.asarray(found, dtype=np.int64).ravel(), minlength=256)
        total = int(counts[table].sum())
        for code in table:
            share = counts[code] / total if total else np.nan
            rows.append((image_id, code, codes[code], int(counts[code]), float(share)))
    frame = pd.DataFrame(rows, columns=["image_id", "class_id", "class_name", "pixels", "share"])
    overall = frame.groupby("class_id")["pixels"].transform("sum") / max(
        int(frame["pixels"].sum()), 1
    )
    frame["overall_share"] = overall.astype(np.float64)
    frame["relative"] = frame["share"] / frame["overall_share"].replace(0.0, np.nan)
    return frame


def _objects(
    labels: NDArray[np.uint8], background: int | None, pad: int = 0
) -> Iterator[tuple[int, NDArray[np.bool_], tuple[slice, slice]]]:
    """``(code, mask, window)`` of each object, classes in code order.

    ``mask`` is the object's 4-connected pixels on ``window``, its bounding box padded by ``pad``
    px (cut at the image's edges).
    """
    for code in (int(c) for c in np.unique(labels) if c not in (0, background)):
        for mask, window in _components(labels == code, FOUR, pad):
            yield code, mask, window


def _components(
    candidate: NDArray[np.bool_], structure: NDArray[np.bool_], pad: int = 0
) -> Iterator[tuple[NDArray[np.bool_], tuple[slice, slice]]]:
    """Each connected component of ``candidate`` as a mask on its (padded) bounding window."""
    found, _ = ndimage.label(candidate, structure=structure)
    height, width = candidate.shape
    for index, window in enumerate(ndimage.find_objects(found), start=1):
        if window is None:
            continue
        rows = slice(max(window[0].start - pad, 0), min(window[0].stop + pad, height))
        cols = slice(max(window[1].start - pad, 0), min(window[1].stop + pad, width))
        yield found[rows, cols] == index, (rows, cols)


def _bbox(
    mask: NDArray[np.bool_], rows: slice | None = None, cols: slice | None = None
) -> tuple[int, int, int, int]:
    """``(xmin, ymin, xmax, ymax)`` of ``mask``'s pixels, in pixel edges on the image."""
    ys, xs = np.nonzero(mask)
    row0 = rows.start if rows is not None else 0
    col0 = cols.start if cols is not None else 0
    return (
        int(xs.min()) + col0,
        int(ys.min()) + row0,
        int(xs.max()) + col0 + 1,
        int(ys.max()) + row0 + 1,
    )


def _outline(
    mask: NDArray[np.bool_], rows: slice, cols: slice
) -> shapely.Polygon | shapely.MultiPolygon:
    """The exact pixel-edge outline of ``mask`` (on the window) in image pixel coordinates."""
    parts = [r.polygon for r in regions(mask.astype(np.uint8))]
    shape = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    moved = shapely.affinity.translate(shape, xoff=cols.start, yoff=rows.start)
    return cast(shapely.Polygon | shapely.MultiPolygon, moved)


def _majority(values: NDArray[np.uint8]) -> int:
    """The most frequent value (the smallest of equals)."""
    return int(np.bincount(values, minlength=256).argmax())
