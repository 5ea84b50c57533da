"""Gold-standard scoring: each annotator's labels against gold labels, per class, pass or fail.

Given gold class maps for some images (``{image id: map}``) and each annotator's maps
(``{annotator: {image id: map}}``), every annotator is scored on the gold images they labelled,
summed over those images, with the evaluation's own measures (:mod:`geoseg.evaluation`): per
class the IoU, the boundary F-score at ``tolerance`` px (default 3, the usual outline standard)
and the gold pixels of the class (support).

Counted pixels are those the gold labels (code not 0, not in ``ignore``: by default the
consensus's review code, so a consensus map can serve as gold). An annotator's unlabelled pixel
(0) where the gold has a class is a miss of that class, not a pixel left out: an annotator who
draws only the objects and leaves an object out must lose that class's IoU. A class counts for an
annotator when the gold or the annotator has it on those pixels. Its boundary F is 0 when only
one side draws an outline of the class (a missed or an invented object), and ``None`` when
neither does (the class fills its images): the boundary test does not apply then.

A class passes when its IoU and its boundary F reach the :class:`Thresholds` (defaults 0.8 and
0.8, each overridable per class); an annotator passes when every class counted for them does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from geoseg.annotation.consensus import REVIEW, label_map
from geoseg.errors import AnnotationError, ConfigError
from geoseg.evaluation.boundary import PRED_TOTAL, REF_TOTAL, boundary_counts
from geoseg.evaluation.metrics import Scores, confusion_matrix, scores


@dataclass(frozen=True, slots=True)
class ClassThresholds:
    """One class's own minimums; ``None`` keeps the default."""

    min_iou: float | None = None
    min_boundary_f: float | None = None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The minimum IoU and boundary F a class needs to pass, with per-class overrides."""

    min_iou: float = 0.8
    min_boundary_f: float = 0.8
    per_class: Mapping[int, ClassThresholds] = field(default_factory=dict)

    def __post_init__(self) -> None:
        found: list[tuple[str, float | None]] = [
            ("min_iou", self.min_iou),
            ("min_boundary_f", self.min_boundary_f),
        ]
        for code, own in self.per_class.items():
            found += [(f"class {code} min_iou", own.min_iou)]
            found += [(f"class {code} min_boundary_f", own.min_boundary_f)]
        for name, value in found:
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"gold threshold {name} must lie in 0..1, got {value}")

    def of(self, code: int) -> tuple[float, float]:
        """``(min_iou, min_boundary_f)`` of class ``code``."""
        own = self.per_class.get(code, ClassThresholds())
        return (
            self.min_iou if own.min_iou is None else own.min_iou,
            self.min_boundary_f if own.min_boundary_f is None else own.min_boundary_f,
        )


@dataclass(frozen=True, slots=True)
class ClassResult:
    """One annotator's score on one class, and whether it passes."""

    code: int
    iou: float
    boundary_f: float | None  # None: neither side draws an outline of the class
    support: int  # gold pixels of the class
    labelled: int  # counted pixels the annotator gave the class
    min_iou: float
    min_boundary_f: float
    passed: bool


@dataclass(frozen=True, slots=True)
class AnnotatorResult:
    """One annotator against the gold: per class, and the full scores behind them."""

    annotator: str
    images: tuple[str, ...]  # the gold images they labelled
    classes: tuple[ClassResult, ...]
    unlabelled: int  # gold-labelled pixels they left at 0 (counted as misses)
    scores: Scores

    @property
    def passed(self) -> bool:
        """Whether every class counted for the annotator passes."""
        return all(c.passed for c in self.classes)


@dataclass(frozen=True, slots=True)
class GoldResult:
    """Every annotator's result, and the settings they were scored with."""

    annotators: tuple[AnnotatorResult, ...]
    thresholds: Thresholds
    tolerance: int

    def table(self, names: Mapping[int, str] | None = None) -> pd.DataFrame:
        """One row per annotator and class (``class``: its name from ``names``, else its code)."""
        names = names or {}
        columns = ["annotator", "class", "code", "iou", "boundary_f", "support", "labelled"]
        columns += ["min_iou", "min_boundary_f", "passed"]
        rows = [
            (
                a.annotator,
                names.get(c.code, str(c.code)),
                c.code,
                c.iou,
                c.boundary_f,
                c.support,
                c.labelled,
                c.min_iou,
                c.min_boundary_f,
                c.passed,
            )
            for a in self.annotators
            for c in a.classes
        ]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> pd.DataFrame:
        """One row per annotator: images, mIoU, overall boundary F, unlabelled pixels, passed."""
        columns = ["annotator", "images", "miou", "boundary_f", "unlabelled", "passed"]
        rows = [
            (
                a.annotator,
                len(a.images),
                a.scores.miou,
                a.scores.boundary_f,
                a.unlabelled,
                a.passed,
            )
            for a in self.annotators
        ]
        return pd.DataFrame(rows, columns=columns)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def score_against_gold(
    gold: Mapping[str, NDArray[np.integer]],
    labels: Mapping[str, Mapping[str, NDArray[np.integer]]],
    thresholds: Thresholds | None = None,
    tolerance: int = 3,
    ignore: Sequence[int] = (REVIEW,),
) -> GoldResult:
    """Score every annotator in ``labels`` on the ``gold`` images they labelled.

    Images an annotator labelled that have no gold are left out. An annotator without any gold
    image, or whose map of a gold image differs from it in size, is an error naming them.
    """
    thresholds = thresholds or Thresholds()
    if not gold:
        raise AnnotationError("gold-standard scoring needs gold labels of at least one image")
    truth = {image: label_map(array, "gold", image, review=True) for image, array in gold.items()}
    evaluated = {
        image: (values > 0) & ~np.isin(values, list(ignore)) for image, values in truth.items()
    }
    checked: dict[str, dict[str, NDArray[np.uint8]]] = {}
    for annotator, maps in labels.items():
        common = sorted(set(maps) & set(truth))
        if not common:
            raise AnnotationError(
                f"annotator '{annotator}' labelled none of the {len(truth)} gold images "
                f"({', '.join(sorted(truth)[:5])}{', ...' if len(truth) > 5 else ''}); give their "
                "labels of the gold images, or leave them out of gold scoring"
            )
        checked[annotator] = {}
        for image in common:
            values = label_map(maps[image], annotator, image)
            if values.shape != truth[image].shape:
                raise AnnotationError(
                    f"annotator '{annotator}', image '{image}': the label map is "
                    f"{_size(values.shape)} px but the gold map is {_size(truth[image].shape)}"
                )
            checked[annotator][image] = values
    seen: set[int] = set()
    for image, values in truth.items():
        seen.update(int(c) for c in np.unique(values[evaluated[image]]))
    for maps_of in checked.values():
        for image, values in maps_of.items():
            seen.update(int(c) for c in np.unique(values[evaluated[image]]))
    codes = sorted(seen - {0} - set(ignore))
    results = tuple(
        _score(annotator, maps_of, truth, evaluated, codes, thresholds, tolerance)
        for annotator, maps_of in checked.items()
    )
    return GoldResult(results, thresholds, tolerance)


def _score(
    annotator: str,
    maps: Mapping[str, NDArray[np.uint8]],
    truth: Mapping[str, NDArray[np.uint8]],
    evaluated: Mapping[str, NDArray[np.bool_]],
    codes: Sequence[int],
    thresholds: Thresholds,
    tolerance: int,
) -> AnnotatorResult:
    """One annotator's counts summed over their gold images, then scored per class."""
    matrix = np.zeros((len(codes), len(codes) + 1), dtype=np.int64)
    boundary = np.zeros((len(codes), 4), dtype=np.int64)
    unlabelled = 0
    whole = (slice(None), slice(None))
    for image, values in maps.items():
        counted = evaluated[image]
        reference = np.where(counted, truth[image], 0)
        matrix += confusion_matrix(reference, values, codes)
        boundary += boundary_counts(reference, values, counted, whole, codes, tolerance)
        unlabelled += int(np.count_nonzero(counted & (values == 0)))
    result = scores(matrix, codes, boundary, tolerance)
    classes = []
    for k, c in enumerate(result.classes):
        if c.iou is None:  # neither the gold nor the annotator has the class here
            continue
        bf = c.boundary_f
        if bf is None and boundary[k, PRED_TOTAL] + boundary[k, REF_TOTAL] > 0:
            bf = 0.0  # only one side draws an outline of the class
        min_iou, min_bf = thresholds.of(c.code)
        passed = c.iou >= min_iou and (bf is None or bf >= min_bf)
        classes.append(
            ClassResult(c.code, c.iou, bf, c.support, c.predicted, min_iou, min_bf, passed)
        )
    return AnnotatorResult(annotator, tuple(sorted(maps)), tuple(classes), unlabelled, result)
