"""Benchmark 4 (issue 12): a whole run against the model's own speed, and vectorising against
the one-liners and peers, side by side in one run.

    python benchmarks/throughput.py [--factor 13] [--memory-factors 5 20] [--no-peers]

The scene is the NC Landsat 7 sample (``samples/nc_landsat7_2000.tif``, 489 x 300 px, 6 bands,
28.5 m) tiled ``factor`` x ``factor`` times (13: 24.8 Mpx); the model is the shipped default
(``models/landcover.geoseg``: U-Net/MobileNetV2), run with 64 px tiles, overlap 16, batch 8,
2 threaded workers with 1 torch thread each, CPU, no minimum mapping unit, GeoPackage only.

Rows (every time a wall time measured in this run, every ratio against a row of this run):

- ``forward``: the bare forward passes + softmax over as many tiles as the scene's global tile
  grid has (no tile computed twice), 2 threads x 1 torch thread (``forward_reference.py``);
- ``geoseg run``: the whole ``geoseg run`` process (start-up, checks, inference, COGs,
  vectorising, GeoPackage, manifest, report) with its per-stage times;
- ``geoai-py``: geoai's semantic segmentation with the same weights, class map only (in the
  benchmark's own environment, ``benchmarks/.cache/peers-venv``; see ``peers.py``);
- vectorising geoseg's class map: geoseg's vectorise stage (2 workers, polygons with
  attributes, to GeoPackage), the four-line ``rasterio.features.shapes`` + shapely +
  GeoDataFrame + GPKG script, ``gdal_polygonize``, and geoai's ``raster_to_vector``; the
  polygon counts are checked equal before any time is reported;
- memory: peak RSS of ``geoseg run`` on the scene tiled ``--memory-factors`` (5: 3.7 Mpx,
  20: 58.7 Mpx).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

NC = common.REPO / "samples" / "nc_landsat7_2000.tif"
MODEL = common.REPO / "models" / "landcover.geoseg"
BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]
TILE, OVERLAP, BATCH, WORKERS = 64, 16, 8, 2


def nc_scene(factor: int) -> Path:
    """The NC sample tiled ``factor`` x ``factor`` times."""
    return common.enlarged_scene(factor, NC, "nc_l7")


def workflow(scene: Path, folder: Path, chunk: int, confidence: str = "float32") -> Path:
    """A catalog + predict workflow with the shipped model's defaults, writing ``folder/out``."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.yaml"
    bands = ", ".join(f"{{name: {b}}}" for b in BANDS)
    catalog.write_text(
        f"version: 1\nsources:\n  scene:\n    file: {scene}\n    units: DN\n"
        f"    licence: CC BY-SA 3.0 (GRASS GIS NC sample)\n    bands: [{bands}]\n",
        encoding="utf-8",
    )
    path = folder / "predict.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nexecutor: {{kind: threads, workers: {WORKERS}}}\n"
        f"steps:\n  - predict:\n      source: scene\n      model: {MODEL}\n"
        f"      output: {folder / 'out'}\n      chunk_size: {chunk}\n"
        f"      batch_size: {BATCH}\n      device: cpu\n      confidence: {confidence}\n"
        "      vector: {min_area_m2: 0, formats: [gpkg]}\n",
        encoding="utf-8",
    )
    return path


def grid_tiles(scene: Path) -> int:
    """Tiles of the scene's global grid (every tile once)."""
    import rasterio

    with rasterio.open(scene) as src:
        height, width = src.height, src.width
    stride = TILE - OVERLAP
    return -(-height // stride) * -(-width // stride)


def forward(scene: Path, tiles: int) -> dict[str, Any]:
    """Bare forward passes + softmax over ``tiles`` tiles (a fresh process, warm model)."""
    from geoseg.model.bundle import load_meta

    bands = ",".join(str(BANDS.index(b) + 1) for b in load_meta(MODEL).band_names)
    args = [str(MODEL), str(tiles), str(TILE), str(BATCH), str(WORKERS), str(scene), bands]
    script = Path(__file__).with_name("forward_reference.py")
    out = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def geoseg_run(scene: Path, name: str, chunk: int, confidence: str = "float32") -> dict[str, Any]:
    """A whole ``geoseg run`` process: wall, peak RSS, and the manifest's figures."""
    folder = common.CACHE / name
    measured = common.run_measured(
        common.geoseg_command(workflow(scene, folder, chunk, confidence))
    )
    figures = common.manifest(folder)["figures"]
    return {**measured, "figures": figures, "out": folder / "out"}


def vectorise_stage(classes: Path, confidence: Path, out: Path) -> dict[str, Any]:
    """geoseg's vectorise stage alone on an existing class map, in a fresh process."""
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "import rasterio\n"
        "from geoseg.executor import ExecutorSpec, open_executor\n"
        "from geoseg.export.vector import write_gpkg\n"
        "from geoseg.tiling.grid import ChunkPlan\n"
        "from geoseg.types import Grid\n"
        "from geoseg.vector.vectorise import VectoriseJob, VectorSettings, empty_features, "
        "vectorise\n"
        "classes, confidence, out = (Path(a) for a in sys.argv[1:4])\n"
        "start = time.perf_counter()\n"
        "with rasterio.open(classes) as ds:\n"
        "    grid = Grid(ds.height, ds.width, ds.transform, ds.crs)\n"
        "plan = ChunkPlan(grid.shape, (1024, 1024))\n"
        "job = VectoriseJob(classes, confidence, grid, plan, VectorSettings())\n"
        f"with open_executor(ExecutorSpec('threads', {WORKERS}), show_progress=False) as ex:\n"
        "    n = write_gpkg(vectorise(job, {}, ex), out, 'landcover', empty_features(grid))\n"
        "print(json.dumps({'stage_s': time.perf_counter() - start, 'polygons': n}))\n"
    )
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script, str(classes), str(confidence), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["wall_s"] = time.perf_counter() - start
    return result


def ratio(a: float, b: float) -> float:
    """``a / b`` rounded for the table."""
    return round(a / b, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=13)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--memory-factors", type=int, nargs="*", default=[5, 20])
    parser.add_argument("--no-peers", action="store_true", help="geoseg rows only")
    args = parser.parse_args()

    scene = nc_scene(args.factor)
    tiles = grid_tiles(scene)
    rows: list[dict[str, Any]] = []
    clock = time.perf_counter()

    ref = forward(scene, tiles)
    rows.append(
        {"what": f"bare forward passes + softmax, {tiles} tiles", "wall_s": ref["forward_s"]}
    )
    run = geoseg_run(scene, f"throughput-x{args.factor}", args.chunk)
    figures = run["figures"]
    rows.append(
        {
            "what": "geoseg run (class map + confidence COGs + GeoPackage)",
            "wall_s": run["wall_s"],
            "peak_rss_mib": run["peak_rss_mib"],
            "stages_s": figures["timings"],
            "tiles_run": figures["tiles_run"],
            "polygons": figures["polygons"],
        }
    )
    classes, confidence = run["out"] / "classes.tif", run["out"] / "confidence.tif"
    vec_out = common.CACHE / "throughput-vectorise"
    vec_out.mkdir(parents=True, exist_ok=True)
    stage = vectorise_stage(classes, confidence, vec_out / "geoseg.gpkg")
    timings, tasks = figures["timings"], figures["chunk_task_seconds"]
    vector_rows = [
        {
            "what": "geoseg vectorise stage inside the run (2 workers, from the chunks' prepared "
            "outlines; polygons + attributes -> GPKG, COGs written meanwhile)",
            "work_s": timings["vectorise_s"],
            "prepared_in_chunk_tasks_s": round(tasks.get("vectors", 0.0) / WORKERS, 2),
            "polygons": figures["polygons"],
        },
        {
            "what": "geoseg vectorise stage alone on the class map (2 workers, from pixels)",
            "work_s": stage["stage_s"],
            "wall_s": stage["wall_s"],
            "polygons": stage["polygons"],
        },
    ]
    if not args.no_peers:
        import peers

        rows.append(
            {
                "what": "geoai-py semantic segmentation, same weights, class map only",
                **peers.geoai_predict(
                    scene, MODEL, common.CACHE / "throughput-geoai.tif", TILE, OVERLAP, BATCH
                ),
            }
        )
        for name, fn in (
            (
                "rasterio shapes + shapely + GeoDataFrame + GPKG, one process",
                peers.shapes_vectorise,
            ),
            ("gdal_polygonize to GPKG", peers.gdal_polygonize),
            ("geoai-py raster_to_vector", peers.geoai_vectorise),
        ):
            vector_rows.append({"what": name, **fn(classes, vec_out / f"{fn.__name__}.gpkg")})
    counts = {r["what"]: r["polygons"] for r in vector_rows}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"polygon counts differ: {counts}")

    memory = []
    for factor in args.memory_factors:
        measured = geoseg_run(nc_scene(factor), f"throughput-mem-x{factor}", args.chunk)
        memory.append(
            {
                "factor": factor,
                "megapixels": measured["figures"]["throughput"]["megapixels"],
                "peak_rss_mib": round(measured["peak_rss_mib"], 1),
                "wall_s": round(measured["wall_s"], 1),
            }
        )
    base = rows[0]["wall_s"]
    for row in rows:
        row["ratio_vs_forward"] = ratio(row["wall_s"], base)
    shapes_s = next((r["work_s"] for r in vector_rows if r["what"].startswith("rasterio")), None)
    for row in vector_rows:
        if shapes_s:  # work inside each process, interpreter start-up and imports left out
            row["ratio_vs_shapes"] = ratio(row["work_s"], shapes_s)
    report = {
        "scene": f"{scene.name}: {figures['throughput']['megapixels']} Mpx (NC sample tiled "
        f"{args.factor}x{args.factor})",
        "settings": f"tiles {TILE}, overlap {OVERLAP}, batch {BATCH}, chunks {args.chunk}, "
        f"{WORKERS} threaded workers x 1 torch thread, CPU",
        "pipeline": rows,
        "vectorising": vector_rows,
        "polygons_equal": counts,
        "memory": memory,
        "memory_ratio_largest_vs_smallest": (
            ratio(memory[-1]["peak_rss_mib"], memory[0]["peak_rss_mib"]) if memory else None
        ),
        "targets": {
            "geoseg run / forward": "<= 1.3 (moonshot 1.15)",
            "vectorise stage / shapes script": "<= 1.0",
            "peak RSS": "flat in scene size, < 1.5 GiB",
        },
        "benchmark_wall_s": round(time.perf_counter() - clock, 1),
    }
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
