"""Benchmark 3: geoseg's chunked vectorising vs one whole-scene ``rasterio.features.shapes``.

    python benchmarks/vectorise.py [--factor 2] [--chunk 2048]

The class map is the one geoseg predicted for the real Landsat 8 mosaic tiled ``factor`` x
``factor`` (the pipeline-efficiency benchmark's output; predicted here first if missing). The
reference reads the whole class map and runs ``rasterio.features.shapes`` once (4-connected,
nodata masked), building nothing else. geoseg runs its vectorise step (components, seams,
polygons with attributes, seam merges; no minimum mapping unit, so the polygons must be the
same) with 1, 2 and 4 workers on the threaded and the process executors. The polygon count and
per-class areas are checked equal to the reference before any time is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import rasterio
import rasterio.features
from shapely.geometry import shape

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from geoseg.executor import ExecutorSpec, open_executor
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, vectorise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2, help="best of N timings")
    args = parser.parse_args()

    folder = common.CACHE / f"efficiency-x{args.factor}"
    classes = folder / "out" / "classes.tif"
    if not classes.exists():
        workflow = common.write_workflow(
            common.enlarged_scene(args.factor), folder, chunk=2048, tile=128, overlap=16
        )
        common.run_measured(common.geoseg_command(workflow))

    def reference() -> tuple[int, pd.Series]:
        with rasterio.open(classes) as ds:
            data, transform = ds.read(1), ds.transform
        areas: dict[int, float] = {}
        count = 0
        for geojson, value in rasterio.features.shapes(
            data, mask=data > 0, connectivity=4, transform=transform
        ):
            count += 1
            areas[int(value)] = areas.get(int(value), 0.0) + shape(geojson).area
        return count, pd.Series(areas).sort_index()

    def reference_shapes_only() -> int:
        with rasterio.open(classes) as ds:
            data, transform = ds.read(1), ds.transform
        return sum(
            1
            for _ in rasterio.features.shapes(
                data, mask=data > 0, connectivity=4, transform=transform
            )
        )

    ref_count, ref_area = reference()
    ref_s = min(common.timed(reference_shapes_only)[1] for _ in range(args.repeat))

    with rasterio.open(classes) as ds:
        grid = Grid(ds.height, ds.width, ds.transform, ds.crs)
    job = VectoriseJob(
        classes,
        folder / "out" / "confidence.tif",
        grid,
        ChunkPlan(grid.shape, (args.chunk, args.chunk)),
        VectorSettings(),
    )

    def geoseg_run(spec: ExecutorSpec) -> tuple[int, pd.Series]:
        with open_executor(spec, show_progress=False) as ex:
            frames = list(vectorise(job, {}, ex))
        layer = pd.concat(frames)
        return len(layer), layer.groupby("class_id").area_m2.sum().sort_index()

    rows = []
    for kind in ("threads", "processes"):
        for workers in (1, 2, 4):
            spec = ExecutorSpec(kind, workers)
            (count, area), _ = common.timed(geoseg_run, spec)  # warm-up and check
            assert count == ref_count, (count, ref_count)
            pd.testing.assert_series_equal(
                area, ref_area, check_names=False, rtol=1e-9, check_index_type=False
            )
            best = min(common.timed(geoseg_run, spec)[1] for _ in range(args.repeat))
            rows.append(
                {
                    "executor": kind,
                    "workers": workers,
                    "seconds": round(best, 2),
                    "speedup_vs_shapes": round(ref_s / best, 3),
                }
            )
    print(
        json.dumps(
            {
                "class_map": f"{classes} ({grid.width} x {grid.height} px)",
                "chunk": args.chunk,
                "polygons": ref_count,
                "identical": "polygon count and per-class areas equal to whole-scene shapes",
                "rasterio_shapes_whole_scene_s": round(ref_s, 2),
                "geoseg": rows,
                "target": ">= 1.6x faster than shapes with 2 workers",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
