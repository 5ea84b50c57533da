"""Plant-level scores against polygon annotations: was each annotated plant found as its class.

Pixel IoU says how much area is right; an agronomist also asks how many of the weeds were found.
Each annotated outline is compared with the class map inside it: the plant's predicted class is
the most frequent non-background class among its predicted pixels (background = nodata and the
``background`` class, e.g. soil between the leaves), or the background when none is predicted.
A plant is *matched* when that class is its annotated class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.features
from affine import Affine
from numpy.typing import NDArray


def plant_matches(
    annotations: gpd.GeoDataFrame,
    classes: NDArray[np.uint8],
    transform: Affine,
    background: int | None,
    names: Mapping[int, str],
) -> gpd.GeoDataFrame:
    """The annotations with the predicted class and shares inside each outline added.

    Added columns: ``predicted_class, predicted_name, vegetation_share, class_share, match``;
    shares are of the outline's pixels (pixel centres inside; touched pixels for slivers).
    """
    predicted, vegetation, own = [], [], []
    for geometry, code in zip(annotations.geometry, annotations.class_id, strict=True):
        inside = _inside(geometry, classes.shape, transform)
        values = classes[inside]
        plant = values[(values > 0) & (values != (background or 0))]
        if plant.size:
            found, n = np.unique(plant, return_counts=True)
            predicted.append(int(found[np.argmax(n)]))  # ties: the lower code
        else:
            predicted.append(int(background or 0))
        vegetation.append(plant.size / max(values.size, 1))
        own.append(int(np.count_nonzero(values == code)) / max(values.size, 1))
    out = annotations.copy()
    out["predicted_class"] = np.asarray(predicted, dtype=np.int32)
    out["predicted_name"] = [names.get(c, "nodata") for c in predicted]
    out["vegetation_share"] = vegetation
    out["class_share"] = own
    out["match"] = (out.predicted_class == out.class_id).astype(np.int32)
    return out


def _inside(geometry: Any, shape: tuple[int, ...], transform: Affine) -> NDArray[np.bool_]:
    for touched in (False, True):
        mask = rasterio.features.rasterize(
            [(geometry, 1)], out_shape=shape, transform=transform, all_touched=touched
        ).astype(bool)
        if mask.any():
            break
    return mask


def plant_scores(matches: gpd.GeoDataFrame) -> dict[str, dict[str, Any]]:
    """Per annotated class: plants annotated, matched, as another class, not found, recall.

    ``not_found``: no plant pixel predicted inside the outline; ``recall`` = matched / annotated.
    """
    scores: dict[str, dict[str, Any]] = {}
    for name, group in matches.groupby("class_name", sort=True):
        background = group.vegetation_share == 0
        scores[str(name)] = {
            "annotated": len(group),
            "matched": int(group.match.sum()),
            "as_other_class": int(((group.match == 0) & ~background).sum()),
            "not_found": int(background.sum()),
            "recall": float(group.match.mean()),
        }
    return scores
