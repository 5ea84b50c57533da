"""Confusion matrices and the scores derived from them.

Reference pixels with code 0 (unlabelled / nodata) are excluded. A predicted 0 on a labelled pixel
(the model made no prediction there) counts as an error for the reference class. Classes absent
from both reference and prediction are reported as absent (``None``), never as 0 or 1, and the
macro mIoU averages only classes present in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def confusion_matrix(
    reference: NDArray[np.integer], prediction: NDArray[np.integer], codes: Sequence[int]
) -> NDArray[np.int64]:
    """Counts ``[i, j]`` = pixels of reference class ``codes[i]`` predicted as ``codes[j]``.

    An extra last column counts labelled pixels predicted as something outside ``codes``
    (nodata or an unknown class). Reference pixels outside ``codes`` are ignored.
    (The streamed evaluation leaves nodata predictions out before building this matrix.)
    """
    k = len(codes)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[np.asarray(codes, dtype=np.int64)] = np.arange(k)
    ref = lookup[np.asarray(reference, dtype=np.int64).ravel()]
    pred = lookup[np.asarray(prediction, dtype=np.int64).ravel()]
    keep = ref >= 0
    pred = np.where(pred[keep] >= 0, pred[keep], k)
    counts = np.bincount(ref[keep] * (k + 1) + pred, minlength=k * (k + 1))
    return counts.reshape(k, k + 1).astype(np.int64)


@dataclass(frozen=True, slots=True)
class ClassScore:
    """Scores of one class; ``None`` where undefined (class absent)."""

    code: int
    support: int
    predicted: int
    iou: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    boundary_precision: float | None = None
    boundary_recall: float | None = None
    boundary_f: float | None = None


@dataclass(frozen=True, slots=True)
class Scores:
    """All scores of one comparison."""

    codes: tuple[int, ...]
    matrix: NDArray[np.int64]
    classes: tuple[ClassScore, ...]
    miou: float | None
    overall_accuracy: float | None
    boundary_f: float | None = None
    tolerance_px: int | None = None

    def as_dict(self, names: dict[int, str] | None = None) -> dict[str, object]:
        """JSON-ready figures."""
        names = names or {}
        return {
            "miou": self.miou,
            "overall_accuracy": self.overall_accuracy,
            "boundary_f": self.boundary_f,
            "boundary_tolerance_px": self.tolerance_px,
            "per_class": {
                names.get(c.code, str(c.code)): {
                    "code": c.code,
                    "iou": c.iou,
                    "precision": c.precision,
                    "recall": c.recall,
                    "f1": c.f1,
                    "support_px": c.support,
                    "predicted_px": c.predicted,
                    "boundary_precision": c.boundary_precision,
                    "boundary_recall": c.boundary_recall,
                    "boundary_f": c.boundary_f,
                }
                for c in self.classes
            },
            "confusion_matrix": {"codes": list(self.codes), "counts": self.matrix.tolist()},
        }


def _ratio(num: int, den: int) -> float | None:
    return float(num) / float(den) if den > 0 else None


def _f(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def boundary_f(counts: NDArray[np.int64]) -> float | None:
    """Boundary F from ``[pred_total, pred_matched, ref_total, ref_matched]``.

    For one class or summed over classes; None when either side has no boundary pixel.
    """
    return _f(_ratio(int(counts[1]), int(counts[0])), _ratio(int(counts[3]), int(counts[2])))


def scores(
    matrix: NDArray[np.int64],
    codes: Sequence[int],
    boundary: NDArray[np.int64] | None = None,
    tolerance: int | None = None,
) -> Scores:
    """Per-class IoU/precision/recall/F1, macro mIoU over classes present in the reference.

    ``boundary`` (per class ``[pred_total, pred_matched, ref_total, ref_matched]``, see
    :mod:`geoseg.evaluation.boundary`) adds boundary precision/recall/F per class and overall.
    """
    k = len(codes)
    square = matrix[:, :k]
    support = matrix.sum(axis=1)
    predicted = square.sum(axis=0)
    correct = np.diag(square)
    per_class = []
    for i, code in enumerate(codes):
        tp, sup, pred = int(correct[i]), int(support[i]), int(predicted[i])
        precision, recall = _ratio(tp, pred), _ratio(tp, sup)
        f1 = _ratio(2 * tp, sup + pred)
        iou = _ratio(tp, sup + pred - tp)
        bp = br = bf = None
        if boundary is not None:
            bp = _ratio(int(boundary[i, 1]), int(boundary[i, 0]))
            br = _ratio(int(boundary[i, 3]), int(boundary[i, 2]))
            bf = _f(bp, br)
        per_class.append(ClassScore(int(code), sup, pred, iou, precision, recall, f1, bp, br, bf))
    present = [c.iou for c in per_class if c.support > 0 and c.iou is not None]
    miou = float(np.mean(present)) if present else None
    overall_bf = None
    if boundary is not None:
        overall_bf = boundary_f(boundary.sum(axis=0))
    return Scores(
        tuple(int(c) for c in codes),
        matrix,
        tuple(per_class),
        miou,
        _ratio(int(correct.sum()), int(support.sum())),
        overall_bf,
        tolerance,
    )
