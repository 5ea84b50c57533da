"""Which images to label first: model uncertainty and rare classes, one score per item.

Predictions carry only the winning class's probability (``confidence``), not the whole
distribution, so entropy is not available. Per item, over its valid pixels (class code not 0,
finite confidence):

- ``low_confidence_share`` L: the share of pixels whose confidence is below ``threshold``
  (default 0.6);
- ``mean_uncertainty`` U: the mean of ``1 - confidence``;
- ``rare_class_share`` R: the share of the item's pixels predicted as classes that are rare
  in the whole export. Each class ``c`` with export-wide pixel share ``s_c`` weighs
  ``w_c = 1 / sqrt(s_c)``, normalised to 0..1 over the classes present
  (``(w_c - min w) / (max w - min w)``: the most common class 0, the rarest 1; all 0 when every
  class is equally common), and ``R = sum_c share_of_item(c) * w_c``.

The score is their weighted mean, ``priority = (a L + b U + c R) / (a + b + c)`` with weights
``a, b, c`` (:class:`PriorityWeights`, 1 each by default), in 0..1; an item without confidence
gets its score from R alone, an item without valid pixels 0. Higher means label first; ties are
broken by id. So an item the model is unsure about ranks above one holding a rare class where
the model is sure, which ranks above a confident item of common classes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from geoseg.annotation.record import ItemRecord, Prediction
from geoseg.errors import AnnotationError
from geoseg.export.atomic import atomic_path

#: The ranking's file in an export folder.
PRIORITY_CSV: Final = "priority.csv"

#: Its columns, in order.
COLUMNS: Final = ("id", "priority", "low_confidence_share", "mean_uncertainty", "rare_class_share")


@dataclass(frozen=True, slots=True)
class PriorityWeights:
    """How the score is made: the confidence ``threshold`` and each term's weight."""

    threshold: float = 0.6
    low_confidence: float = 1.0
    uncertainty: float = 1.0
    rare_class: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"the confidence threshold must be in (0, 1], got {self.threshold}")
        weights = (self.low_confidence, self.uncertainty, self.rare_class)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"priority weights must be >= 0 and not all 0, got {weights}")


@dataclass(frozen=True, slots=True)
class ItemPriority:
    """One item's score and its terms (``None``: the item has no confidence)."""

    id: str
    priority: float
    low_confidence_share: float | None
    mean_uncertainty: float | None
    rare_class_share: float


def rare_class_weights(counts: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per class code, its normalised rarity weight (0 for absent classes and code 0).

    ``counts`` holds export-wide pixel counts per class code (index = code).
    """
    pixels = counts.astype(np.float64)
    pixels[0] = 0
    weights = np.zeros(pixels.shape, dtype=np.float64)
    present = pixels > 0
    if not present.any():
        return weights
    raw = 1.0 / np.sqrt(pixels[present] / pixels.sum())
    spread = raw.max() - raw.min()
    weights[present] = (raw - raw.min()) / spread if spread > 0 else 0.0
    return weights


def rank(
    predictions: Sequence[Prediction], weights: PriorityWeights | None = None
) -> list[ItemPriority]:
    """Every item's priority, highest first (ties by id); see the module docstring."""
    weights = weights or PriorityWeights()
    terms: list[tuple[str, float | None, float | None]] = []
    counts: list[NDArray[np.int64]] = []
    for prediction in predictions:
        item, classes, confidence = prediction.item, prediction.classes, prediction.confidence
        if classes.shape != item.shape or (
            confidence is not None and confidence.shape != item.shape
        ):
            raise AnnotationError(
                f"item '{item.id}': its class map or confidence is not {item.width}x"
                f"{item.height} px"
            )
        valid = classes != 0
        if confidence is not None:
            valid &= np.isfinite(confidence)
        counts.append(np.bincount(classes[valid].ravel(), minlength=256).astype(np.int64))
        low = uncertainty = None
        if confidence is not None:
            values = confidence[valid].astype(np.float64)
            low = float((values < weights.threshold).mean()) if values.size else 0.0
            uncertainty = float((1.0 - values).mean()) if values.size else 0.0
        terms.append((item.id, low, uncertainty))
    rarity = rare_class_weights(np.sum(counts, axis=0)) if counts else np.zeros(256)
    ranked = []
    for (item_id, low, uncertainty), found in zip(terms, counts, strict=True):
        total = int(found.sum())
        rare = float((found * rarity).sum() / total) if total else 0.0
        parts = [(weights.rare_class, rare)]
        if low is not None and uncertainty is not None:
            parts += [(weights.low_confidence, low), (weights.uncertainty, uncertainty)]
        weight = sum(w for w, _ in parts)
        score = sum(w * v for w, v in parts) / weight if total and weight > 0 else 0.0
        ranked.append(ItemPriority(item_id, score, low, uncertainty, rare))
    return sorted(ranked, key=lambda p: (-p.priority, p.id))


def write_priority(ranked: Sequence[ItemPriority], path: Path) -> Path:
    """The ranking as CSV (:data:`COLUMNS`, highest priority first), written atomically."""
    with atomic_path(path, overwrite=True) as tmp, tmp.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for p in ranked:
            writer.writerow(
                [
                    p.id,
                    f"{p.priority:.6f}",
                    "" if p.low_confidence_share is None else f"{p.low_confidence_share:.6f}",
                    "" if p.mean_uncertainty is None else f"{p.mean_uncertainty:.6f}",
                    f"{p.rare_class_share:.6f}",
                ]
            )
    return path


def prioritise(
    predictions: Sequence[Prediction], folder: Path, weights: PriorityWeights | None = None
) -> list[ItemRecord]:
    """The predictions' items with their ``priority`` set, in their order; writes the CSV.

    ``folder/priority.csv`` lists them highest priority first (:func:`write_priority`).
    """
    ranked = rank(predictions, weights)
    write_priority(ranked, folder / PRIORITY_CSV)
    scores = {p.id: round(p.priority, 6) for p in ranked}
    return [p.item.model_copy(update={"priority": scores[p.item.id]}) for p in predictions]


def prioritise_predictions(
    predictions: Sequence[Prediction], folder: Path, weights: PriorityWeights | None = None
) -> list[Prediction]:
    """:func:`prioritise`, returning the predictions with their items' ``priority`` set."""
    items = prioritise(predictions, folder, weights)
    return [replace(p, item=item) for p, item in zip(predictions, items, strict=True)]
