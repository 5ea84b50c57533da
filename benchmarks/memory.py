"""Benchmark 2: peak resident memory of a whole predict run for ~25, 100 and 400 Mpx scenes.

    python benchmarks/memory.py [--factors 2 4 8]

Scenes are the real Landsat 8 mosaic (6.2 Mpx) tiled 2x2, 4x4 and 8x8 (24.9, 99.5, 397.9 Mpx).
Each size runs ``geoseg run`` (read, infer, blend, COG writing, vectorising, GeoPackage export)
in a fresh child process with the same settings (2 threaded workers, 1024 px chunks, 128 px
tiles, batch 16); its peak RSS comes from ``getrusage(RUSAGE_CHILDREN)`` in a wrapper process.
Target: the 400 Mpx peak at most 1.25x the 25 Mpx peak, and below 3 GB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args()
    rows = []
    for factor in args.factors:
        scene = common.enlarged_scene(factor)
        folder = common.CACHE / f"memory-x{factor}"
        workflow = common.write_workflow(scene, folder, chunk=args.chunk, tile=128, overlap=16)
        measured = common.run_measured(common.geoseg_command(workflow))
        figures = common.manifest(folder)["figures"]
        rows.append(
            {
                "factor": factor,
                "megapixels": figures["throughput"]["megapixels"],
                "peak_rss_mib": round(measured["peak_rss_mib"], 1),
                "wall_s": round(measured["wall_s"], 1),
                "chunks": figures["chunks"],
                "polygons": figures["polygons"],
                "timings_s": figures["timings"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    first, last = rows[0], rows[-1]
    print(
        json.dumps(
            {
                "peak_ratio_largest_vs_smallest": round(
                    last["peak_rss_mib"] / first["peak_rss_mib"], 3
                ),
                "largest_peak_gib": round(last["peak_rss_mib"] / 1024, 3),
                "target": "ratio <= 1.25 and largest < 3 GB",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
