"""Edit effort: how much annotators changed a pre-annotation (did pre-annotating save work?).

Per item and class, from the exported pre-annotation and the imported correction (both class
maps on the item's pixels): the share of the class's pixels that were added or removed, the
regions left exactly as they were, edited or drawn anew, and deleted (a region is unchanged when
the same pixels carry the same class), and the boundary F-score at a tolerance (default 3 px)
between the two outlines (:func:`geoseg.evaluation.boundary.boundary_counts`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.annotation.regions import FOUR
from geoseg.evaluation.boundary import boundary_counts
from geoseg.evaluation.metrics import boundary_f

#: Columns of the effort table, one row per item and class.
COLUMNS = (
    "item_id",
    "class_name",
    "pixels_before",
    "pixels_after",
    "pixels_added",
    "pixels_removed",
    "changed_share",
    "regions_before",
    "regions_after",
    "regions_unchanged",
    "regions_edited_or_new",
    "regions_deleted",
    "boundary_f",
)


@dataclass(frozen=True, slots=True)
class ClassEffort:
    """What changed for one class of one item."""

    pixels_before: int
    pixels_after: int
    pixels_added: int
    pixels_removed: int
    regions_before: int
    regions_after: int
    regions_unchanged: int
    boundary_f: float | None  # None when neither map has an edge of the class

    @property
    def changed_share(self) -> float:
        """Pixels added or removed, as a share of the class's pixels before (or after)."""
        base = max(self.pixels_before, self.pixels_after, 1)
        return (self.pixels_added + self.pixels_removed) / base


def _regions(classes: NDArray[np.integer], code: int) -> set[bytes]:
    """The regions of ``code``, each as a hashable set of its pixel indexes."""
    labels, count = ndimage.label(classes == code, structure=FOUR)
    if not count:
        return set()
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], np.arange(1, count + 2))
    return {order[starts[k] : starts[k + 1]].tobytes() for k in range(count)}


def class_effort(
    before: NDArray[np.integer], after: NDArray[np.integer], code: int, tolerance: int = 3
) -> ClassEffort:
    """The effort on class ``code`` between a pre-annotation and its correction."""
    was, now = before == code, after == code
    old, new = _regions(before, code), _regions(after, code)
    valid = (before > 0) | (after > 0)
    whole = (slice(None), slice(None))
    counts = boundary_counts(after, before, valid, whole, [code], tolerance)[0]
    return ClassEffort(
        pixels_before=int(was.sum()),
        pixels_after=int(now.sum()),
        pixels_added=int((now & ~was).sum()),
        pixels_removed=int((was & ~now).sum()),
        regions_before=len(old),
        regions_after=len(new),
        regions_unchanged=len(old & new),
        boundary_f=boundary_f(counts),
    )


def effort_table(
    pairs: Mapping[str, tuple[NDArray[np.integer], NDArray[np.integer]]],
    names: Mapping[int, str],
    skip: Sequence[int] = (),
    tolerance: int = 3,
) -> pd.DataFrame:
    """One row per item and class (``names``; codes in ``skip``, e.g. background, left out).

    ``pairs`` maps item ids to ``(pre-annotation, correction)``; the boundary F treats the
    correction as the reference (None where either map has no edge of the class).
    """
    rows = []
    for item, (before, after) in pairs.items():
        if before.shape != after.shape:
            raise ValueError(f"item {item}: pre-annotation {before.shape} vs {after.shape}")
        for code, name in names.items():
            if code in skip:
                continue
            e = class_effort(before, after, code, tolerance)
            rows.append(
                (
                    item,
                    name,
                    e.pixels_before,
                    e.pixels_after,
                    e.pixels_added,
                    e.pixels_removed,
                    round(e.changed_share, 6),
                    e.regions_before,
                    e.regions_after,
                    e.regions_unchanged,
                    e.regions_after - e.regions_unchanged,
                    e.regions_before - e.regions_unchanged,
                    None if e.boundary_f is None else round(e.boundary_f, 6),
                )
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))
