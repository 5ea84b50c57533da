"""Instance-aware output: every connected plant region as its own polygon, and its box.

A class map says which pixels are crop or weed; agronomists count plants. Each 4-connected region
of one class is an instance with an id, class, area, bounding box and mean confidence. A mask
gives a box for free, so boxes are offered as their own layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.vector.components import label_classes
from geoseg.vector.polygonize import TRACE_ORIGIN, to_map, trace, traced_to_map


def instances(
    classes: NDArray[np.uint8],
    confidence: NDArray[np.float32],
    codes: Sequence[int],
    names: Mapping[int, str],
    transform: Affine,
    unit: str,
) -> gpd.GeoDataFrame:
    """One polygon per connected region of each class in ``codes``.

    Coordinates are ``transform`` applied to pixel corners (the identity for images in pixel
    coordinates: x = column, y = row). ``unit`` names the length unit of the measures
    (``px`` or ``m``): columns are ``area_<unit>2``, ``bbox_width_<unit>``...
    """
    keep = np.where(np.isin(classes, codes), classes, 0).astype(np.uint8)
    labels, label_class = label_classes(keep)
    values, polygons = trace(labels, Affine.translation(TRACE_ORIGIN, TRACE_ORIGIN))
    polygons = to_map(polygons, traced_to_map(transform))
    count = len(label_class)
    pixels = np.bincount(labels.ravel(), minlength=count)
    sums = np.asarray(ndimage.sum_labels(np.nan_to_num(confidence), labels, np.arange(count)))
    scale = abs(transform.a) if transform.b == 0 else float(np.hypot(transform.a, transform.d))
    bounds = shapely.bounds(polygons) if len(values) else np.zeros((0, 4))
    frame = pd.DataFrame(
        {
            "instance_id": values.astype(np.int64),
            "class_id": label_class[values].astype(np.int32),
            "class_name": [names.get(int(c), str(c)) for c in label_class[values]],
            f"area_{unit}2": pixels[values] * scale**2,
            f"perimeter_{unit}": shapely.length(polygons) if len(values) else [],
            "pixels": pixels[values].astype(np.int64),
            "mean_confidence": sums[values] / np.maximum(pixels[values], 1),
            "xmin": bounds[:, 0],
            "ymin": bounds[:, 1],
            "xmax": bounds[:, 2],
            "ymax": bounds[:, 3],
        }
    )
    frame = frame.sort_values("instance_id").reset_index(drop=True)
    order = np.argsort(values, kind="stable")
    return gpd.GeoDataFrame(frame, geometry=list(np.asarray(polygons)[order]), crs=None)


def boxes(plants: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The instances' bounding boxes as their own layer (same attributes)."""
    geometry = shapely.box(plants.xmin, plants.ymin, plants.xmax, plants.ymax)
    return gpd.GeoDataFrame(
        plants.drop(columns=plants.geometry.name), geometry=geometry, crs=plants.crs
    )


def counts(plants: gpd.GeoDataFrame, unit: str) -> pd.DataFrame:
    """Instances and area per class (one row per class present)."""
    grouped = plants.groupby(["class_id", "class_name"])
    return grouped.agg(
        instances=("instance_id", "count"), **{f"area_{unit}2": (f"area_{unit}2", "sum")}
    ).reset_index()


def instances_per_zone(
    plants: gpd.GeoDataFrame, zones: gpd.GeoDataFrame, names: Sequence[str]
) -> pd.DataFrame:
    """Instances of each class name in ``names`` per zone: columns ``plants_<name>``.

    An instance counts in the first zone (in ``zones`` order) that holds its representative
    point (a point inside it), so a plant on the edge of two fields counts once.
    """
    anchors = plants.geometry.representative_point()
    owner = np.full(len(plants), -1)
    for k, geometry in enumerate(zones.geometry):
        owner[(owner < 0) & anchors.intersects(geometry).to_numpy()] = k
    held = np.asarray(plants.class_name)
    return pd.DataFrame(
        {
            f"plants_{name}": [
                int(((owner == k) & (held == name)).sum()) for k in range(len(zones))
            ]
            for name in names
        },
        index=zones.index,
    )
