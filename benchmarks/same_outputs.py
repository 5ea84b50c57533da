"""Are two predict runs' outputs the same? Rasters byte for byte, vectors after normalising.

    python benchmarks/same_outputs.py OUT_A OUT_B

For each COG in both folders: equal SHA-256. For each GeoPackage layer: the same CRS, the same
rows by ``region_id``, equal attributes (floats to 1e-12 relative: sums over the same pixels
added in a different order), and equal geometries after ``shapely.normalize`` (ring start and
orientation), counted as exactly equal coordinates or else topologically equal (the same point
set, e.g. a collinear vertex more on a seam). Prints JSON; exits 1 when anything differs.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely


def sha256(path: Path) -> str:
    """The file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare_layer(a: Path, b: Path) -> dict[str, Any]:
    """Rows, attributes and geometries of two GeoPackages' first layers."""
    fa, fb = pyogrio.read_dataframe(a), pyogrio.read_dataframe(b)
    result: dict[str, Any] = {"rows": [len(fa), len(fb)], "crs_equal": fa.crs == fb.crs}
    if len(fa) != len(fb) or list(fa.columns) != list(fb.columns):
        result["same"] = False
        return result
    key = "region_id" if "region_id" in fa.columns else fa.columns[0]
    fa, fb = fa.sort_values(key, ignore_index=True), fb.sort_values(key, ignore_index=True)
    differing = []
    for column in fa.columns:
        if column == fa.geometry.name:
            continue
        x, y = fa[column].to_numpy(), fb[column].to_numpy()
        if x.dtype.kind == "f":
            same = np.allclose(x, y, rtol=1e-12, atol=0, equal_nan=True)
        else:
            same = bool((x == y).all())
        if not same:
            differing.append(column)
    ga = shapely.normalize(fa.geometry.to_numpy())
    gb = shapely.normalize(fb.geometry.to_numpy())
    exact = shapely.equals_exact(ga, gb, tolerance=0)
    topological = exact | shapely.equals(ga, gb)
    result.update(
        attributes_differing=differing,
        geometries_exactly_equal=int(exact.sum()),
        geometries_topologically_equal=int(topological.sum()),
        same=not differing and bool(topological.all()) and result["crs_equal"],
    )
    return result


def main() -> None:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    report: dict[str, Any] = {}
    for raster in sorted(a.glob("*.tif")):
        other = b / raster.name
        report[raster.name] = {"same": other.exists() and sha256(raster) == sha256(other)}
    for layer in sorted(a.glob("*.gpkg")):
        report[layer.name] = compare_layer(layer, b / layer.name)
    print(json.dumps(report, indent=2))
    sys.exit(0 if all(r["same"] for r in report.values()) else 1)


if __name__ == "__main__":
    main()
