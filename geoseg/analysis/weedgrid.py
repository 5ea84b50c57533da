"""Weed-pressure grid for variable-rate spraying: square cells with class fractions and a flag.

Each cell of ``cell`` pixels holds the share of its mapped pixels that are weed, crop and soil,
and ``treat`` = 1 where the weed share reaches ``threshold`` (0 otherwise); ``rate`` scales the
weed share linearly to 0..1 (capped) for sprayers that take a rate. Edge cells are smaller.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from numpy.typing import NDArray


def weed_grid(
    classes: NDArray[np.uint8],
    cell: int,
    weed: int,
    crop: int,
    soil: int | None,
    threshold: float,
    transform: Affine,
) -> gpd.GeoDataFrame:
    """The grid over ``classes`` (0 = nodata, not counted)."""
    if cell < 1:
        raise ValueError(f"grid cell must be at least 1 px, got {cell}")
    height, width = classes.shape
    rows = []
    for row in range(0, height, cell):
        for col in range(0, width, cell):
            block = classes[row : row + cell, col : col + cell]
            mapped = int(np.count_nonzero(block))
            share = {
                name: (int(np.count_nonzero(block == code)) / mapped if mapped and code else 0.0)
                for name, code in (("weed", weed), ("crop", crop), ("soil", soil))
            }
            x0, y0 = transform @ (col, row)
            x1, y1 = transform @ (col + block.shape[1], row + block.shape[0])
            rows.append(
                {
                    "cell_row": row // cell,
                    "cell_col": col // cell,
                    "mapped_px": mapped,
                    "weed_fraction": share["weed"],
                    "crop_fraction": share["crop"],
                    "soil_fraction": share["soil"],
                    "treat": int(mapped > 0 and share["weed"] >= threshold),
                    "rate": min(1.0, share["weed"] / threshold)
                    if threshold > 0
                    else float(share["weed"] > 0),
                    "geometry": shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)),
                }
            )
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs=None)
