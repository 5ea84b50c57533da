"""Boundary accuracy: how many class-boundary pixels lie within ``d`` pixels of their counterpart.

A mask can cover 90 % of an object's area and still have its outline wrong; annotation quality is
specified as outline deviation within about 3 px. For each class ``c``:

- reference boundary: labelled pixels of class ``c`` with a 4-neighbour labelled with another
  class (edges against unlabelled pixels are not class boundaries);
- predicted boundary: predicted pixels of class ``c`` with a 4-neighbour predicted as another
  class, counted only where the reference is labelled (sparse labels say nothing elsewhere).

Boundary precision is the share of predicted boundary pixels within ``d`` px (Euclidean) of a
reference boundary of the same class; recall the converse; the boundary F-score their harmonic
mean (Csurka et al. 2013's BF score). Counting happens in a chunk's core window on arrays that
carry a halo of ``d + 1`` px, so chunked totals equal whole-scene totals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Columns of the per-class count array.
PRED_TOTAL, PRED_MATCHED, REF_TOTAL, REF_MATCHED = range(4)


def disk(radius: int) -> NDArray[np.bool_]:
    """A Euclidean disk structuring element of ``radius`` px."""
    r = np.arange(-radius, radius + 1)
    return np.asarray((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2)


def class_edges(values: NDArray[np.integer], valid: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Valid pixels with a valid 4-neighbour of a different value."""
    edge = np.zeros(values.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        differ = (values[tuple(a)] != values[tuple(b)]) & valid[tuple(a)] & valid[tuple(b)]
        edge[tuple(a)] |= differ
        edge[tuple(b)] |= differ
    return edge


def boundary_counts(
    reference: NDArray[np.integer],
    prediction: NDArray[np.integer],
    evaluated: NDArray[np.bool_],
    core: tuple[slice, slice],
    codes: Sequence[int],
    tolerance: int,
) -> NDArray[np.int64]:
    """Per-class ``[pred_total, pred_matched, ref_total, ref_matched]`` in the ``core`` window.

    ``reference`` and ``prediction`` cover the core plus a halo of ``tolerance + 1`` px;
    ``evaluated`` marks labelled reference pixels that are not ignored.
    """
    counts = np.zeros((len(codes), 4), dtype=np.int64)
    ref_edges = class_edges(reference, evaluated)
    pred_edges = class_edges(prediction, prediction > 0) & evaluated
    footprint = disk(tolerance)
    in_core = np.zeros(reference.shape, dtype=bool)
    in_core[core] = True
    for k, code in enumerate(codes):
        ref_c = ref_edges & (reference == code)
        pred_c = pred_edges & (prediction == code)
        if not (ref_c[core].any() or pred_c[core].any()):
            continue
        near_ref = ndimage.binary_dilation(ref_c, structure=footprint) if ref_c.any() else ref_c
        near_pred = ndimage.binary_dilation(pred_c, structure=footprint) if pred_c.any() else pred_c
        counts[k, PRED_TOTAL] = np.count_nonzero(pred_c & in_core)
        counts[k, PRED_MATCHED] = np.count_nonzero(pred_c & near_ref & in_core)
        counts[k, REF_TOTAL] = np.count_nonzero(ref_c & in_core)
        counts[k, REF_MATCHED] = np.count_nonzero(ref_c & near_pred & in_core)
    return counts
