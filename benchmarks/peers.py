"""Peer measurements for the benchmarks: geoai-py and the plain GDAL / rasterio tools.

Each function runs its work in a child process and returns at least ``wall_s`` (the child's
whole wall time, start-up and imports included), ``work_s`` (timed inside the child around the
work itself, imports excluded) and ``peak_rss_mib`` (the child's peak RSS, ``ru_maxrss`` of
children, MiB).

The peers live in the benchmark's own environment, not in geoseg's dependencies:
``benchmarks/.cache/peers-venv`` (git-ignored), made by :func:`peer_python` on first use with
``pip install -c constraints.txt geoai-py==0.40.1 segmentation-models-pytorch==0.6.0`` where
the constraints file pins ``torch==2.14.1`` and ``torchvision==0.29.1`` (so the resolver never
pulls another torch; they come from the local wheel mirror). geoai-py installs whole with its
declared dependencies (about 250 packages: leafmap, localtileserver, transformers, torchgeo,
datasets, ...; 280 in ``pip freeze``; 7.3 GB with torch's CUDA build and its NVIDIA
libraries), no ``--no-deps`` needed; 138 s through :func:`peer_python` on the 2-core machine
(101 s in an earlier trial).
segmentation-models-pytorch is *not* a declared dependency of geoai-py, so it is named
explicitly, at the version geoseg uses (same state-dict layout). ``uv`` is used instead of pip
when it is on PATH (with pip's configured find-links and index URLs passed on). What was
installed is frozen into ``peers-venv/peers-freeze.txt``; the install time is kept in
``peers-venv/peers-installed.json``.

geoai-py caveats (0.40.1), all reported in :func:`geoai_predict`'s ``notes``:

- Its public ``geoai.train.semantic_segmentation(input, output, model_path, ...)`` builds the
  network with ``get_smp_model(architecture, encoder_name, in_channels, classes)`` only (its
  ``**kwargs`` go to the tiling function, not to the network), so it cannot rebuild a U-Net with
  ``encoder_depth=3`` and custom ``decoder_channels``: the checkpoint would not load. The peer
  therefore does what that function does for GeoTIFFs, step by step: ``get_smp_model`` with the
  bundle's ``encoder_depth`` / ``decoder_channels``, ``load_state_dict`` of the converted
  checkpoint (float32 state dict under ``benchmarks/.cache/peers/``), and geoai's
  ``semantic_inference_on_geotiff`` (sliding windows, batches, weighted blending, argmax,
  GeoTIFF writing).
- geoai only scales inputs by 1/255; it has no per-band mean/std option. The bundle's
  normalisation is applied by a wrapper module in front of the unchanged U-Net
  (``(x * 255 - mean) / std``, one element-wise pass), so the network sees geoseg's inputs.
  Pass ``normalise=False`` for geoai's own 1/255 scaling (then the class map is meaningless).
- geoai feeds nodata pixels' raw values to the network and writes a class for every pixel
  (geoseg fills nodata with the band mean and writes 0 there).
- geoai writes the argmax *index* (0..n-1), not the bundle's class codes (``class_codes`` in
  the result maps index to code), and copies the scene's nodata value into its uint8 output;
  it fails outright when that value does not fit uint8 (the NC scenes' -99999). For such scenes
  the peer runs on a file copy of the scene with only its nodata tag removed (same blocks,
  same compression, same pixel values), made once under ``benchmarks/.cache/peers/``.
- geoai accumulates every class's probabilities for the whole scene in memory (two float32
  arrays of classes x height x width, plus temporaries), so its peak RSS grows with scene size
  (3.8 GiB at 24.8 Mpx with 6 classes, against 1.2 GiB on the 0.15 Mpx sample).
- geoai reads all the scene's bands in every window and keeps the first ``num_channels``: the
  scene's first bands must be the bundle's bands, in order.
- geoai's blending counts the clamped last row and column of windows once per loop step that
  lands on them (often twice). Apart from that its probabilities equal the bundle network's on
  the same windows (checked on the NC sample with overlap 0: within 1.5e-6 outside those
  strips), so the weights and normalisation match; its class map still differs from geoseg's
  (about 94 % agreement away from nodata on the sample) through tile blending and nodata.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # geoseg.model.bundle reads the bundle's metadata
CACHE = BENCHMARKS / ".cache"
PEERS_CACHE = CACHE / "peers"
VENV = CACHE / "peers-venv"
#: The project's own environment (where the user's shapes script runs).
GEOSEG_PYTHON = REPO / ".venv" / "bin" / "python"
#: torch threads for geoai's inference (all of the machine's 2 cores).
THREADS = 2

REQUIREMENTS = ("geoai-py==0.40.1", "segmentation-models-pytorch==0.6.0")
CONSTRAINTS = ("torch==2.14.1", "torchvision==0.29.1")
_MARKER = "peers-installed.json"

# Runs a command, then prints its wall time, peak RSS (MiB) and output tails as JSON.
_MEASURE = """\
import json, resource, subprocess, sys, time
args = json.loads(sys.argv[1])
start = time.perf_counter()
done = subprocess.run(args, capture_output=True, text=True)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"rc": done.returncode, "wall_s": wall, "peak_rss_mib": peak,
                  "stdout": done.stdout[-4000:], "stderr": done.stderr[-4000:]}))
"""

_CONVERT = """\
import sys
import torch
source, target = sys.argv[1:3]
state = torch.load(source, map_location="cpu", weights_only=True)
torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, target)
"""

_GEOAI_PREDICT = """\
import json, sys, time
start = time.perf_counter()
import torch
from geoai.train import get_smp_model, semantic_inference_on_geotiff
job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
loaded = time.perf_counter()
network = get_smp_model(architecture=job["architecture"], encoder_name=job["encoder"],
                        encoder_weights=None, in_channels=len(job["mean"]),
                        classes=job["classes"], **job["kwargs"])
network.load_state_dict(torch.load(job["checkpoint"], map_location="cpu", weights_only=True))


class Normalised(torch.nn.Module):
    # geoai feeds x / 255; the network was trained on (x - mean) / std.
    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x * 255.0 - self.mean) / self.std)


model = Normalised(network, job["mean"], job["std"]) if job["normalise"] else network
_, inference_s = semantic_inference_on_geotiff(
    model=model, geotiff_path=job["scene"], output_path=job["out"],
    window_size=job["tile"], overlap=job["overlap"], batch_size=job["batch"],
    num_channels=len(job["mean"]), num_classes=job["classes"],
    device=torch.device(job["device"]), quiet=True)
print(json.dumps({"work_s": time.perf_counter() - loaded, "inference_s": inference_s,
                  "import_s": loaded - start}))
"""

_GEOAI_VECTORISE = """\
import json, sys, time
start = time.perf_counter()
from geoai.utils import raster_to_vector
loaded = time.perf_counter()
raster_to_vector(sys.argv[1], output_path=sys.argv[2], min_area=0, output_format="gpkg")
print(json.dumps({"work_s": time.perf_counter() - loaded, "import_s": loaded - start}))
"""

# The user's script: read, shapes (4-connected, nodata 0 masked), shapely, GeoDataFrame, GPKG.
_SHAPES = """\
import json, sys, time
start = time.perf_counter()
import geopandas as gpd
import rasterio
from rasterio.features import shapes
from shapely.geometry import shape
loaded = time.perf_counter()
with rasterio.open(sys.argv[1]) as src:
    data = src.read(1)
    feats = [(shape(g), int(v)) for g, v in
             shapes(data, mask=data != 0, connectivity=4, transform=src.transform)]
    gdf = gpd.GeoDataFrame({"class": [v for _, v in feats]},
                           geometry=[g for g, _ in feats], crs=src.crs)
gdf.to_file(sys.argv[2], driver="GPKG", engine="pyogrio")
print(json.dumps({"work_s": time.perf_counter() - loaded, "import_s": loaded - start}))
"""


def peer_python() -> Path:
    """The peer venv's python, creating and installing the venv first if needed.

    Quick when the venv is there and was installed with the current pins (a marker file).
    """
    python = VENV / "bin" / "python"
    marker = VENV / _MARKER
    spec = {"requirements": list(REQUIREMENTS), "constraints": list(CONSTRAINTS)}
    if (
        python.exists()
        and marker.exists()
        and json.loads(marker.read_text(encoding="utf-8")).get("spec") == spec
    ):
        return python
    PEERS_CACHE.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    constraints = PEERS_CACHE / "constraints.txt"
    constraints.write_text("\n".join(CONSTRAINTS) + "\n", encoding="utf-8")
    start = time.perf_counter()
    # The installer's output goes to stderr: the benchmarks print their JSON on stdout.
    subprocess.run(
        _install_command(python, constraints), check=True, env=_clean_env(), stdout=sys.stderr
    )
    install_s = time.perf_counter() - start
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    (VENV / "peers-freeze.txt").write_text(freeze, encoding="utf-8")
    marker.write_text(
        json.dumps({"spec": spec, "install_s": round(install_s, 1), "installed": time.ctime()})
        + "\n",
        encoding="utf-8",
    )
    return python


def geoai_predict(
    scene: Path,
    bundle: Path,
    out: Path,
    tile: int,
    overlap: int,
    batch: int,
    *,
    normalise: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """geoai-py's GeoTIFF semantic segmentation of ``scene`` with the bundle's weights.

    Writes geoai's class map (uint8 argmax *indices*, see ``class_codes``) to ``out``; no
    probabilities. Windows of ``tile`` px overlapping by ``overlap``, batches of ``batch``,
    :data:`THREADS` torch threads. Extra fields: ``notes`` (how this differs from geoseg),
    ``class_codes`` (bundle class code of each index), ``inference_s`` (geoai's own timer),
    ``scene_used`` (the file geoai read).
    """
    from geoseg.model.bundle import load_meta

    python = peer_python()
    meta = load_meta(bundle)
    checkpoint = _geoai_checkpoint(python, bundle, meta.name, meta.weights_sha256)
    notes = [
        "geoai.train.semantic_segmentation cannot rebuild this network (its get_smp_model call "
        "gets no encoder_depth/decoder_channels), so the peer calls geoai's get_smp_model with "
        "them, loads the converted checkpoint and runs semantic_inference_on_geotiff, as "
        "semantic_segmentation does for GeoTIFFs",
        "geoai writes argmax indices 0..n-1, not class codes (see class_codes)",
    ]
    if normalise:
        notes.append(
            "geoai only scales inputs by 1/255 (no mean/std option); the bundle's per-band "
            "mean/std is applied by a wrapper module in front of the unchanged U-Net "
            "((x * 255 - mean) / std)"
        )
    else:
        notes.append(
            "geoai's own normalisation (x / 255), not the bundle's mean/std: classes are "
            "not comparable with geoseg's"
        )
    used, more = _geoai_scene(scene, len(meta.bands))
    notes += more
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    job = {
        "architecture": meta.network.architecture,
        "encoder": meta.network.encoder,
        "kwargs": meta.network.kwargs(),
        "classes": len(meta.classes),
        "mean": [b.mean for b in meta.bands],
        "std": [b.std for b in meta.bands],
        "checkpoint": str(checkpoint),
        "scene": str(used),
        "out": str(out),
        "tile": tile,
        "overlap": overlap,
        "batch": batch,
        "device": device,
        "threads": THREADS,
        "normalise": normalise,
    }
    result = _measured([str(python), "-c", _GEOAI_PREDICT, json.dumps(job)], peer=True)
    return {
        **result,
        "notes": notes,
        "class_codes": [c.code for c in meta.classes],
        "scene_used": str(used),
    }


def geoai_vectorise(class_map: Path, out: Path) -> dict[str, Any]:
    """geoai-py's ``raster_to_vector`` (``min_area=0``) on a uint8 class map to a GPKG.

    Extra field: ``polygons``. geoai masks ``value > 0`` and calls ``rasterio.features.shapes``
    (4-connected) on the whole band, shapely per feature, then ``GeoDataFrame.to_file``.
    """
    _check_class_map(class_map)
    python = peer_python()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    result = _measured([str(python), "-c", _GEOAI_VECTORISE, str(class_map), str(out)], peer=True)
    return {**result, "polygons": _count(out)}


def shapes_vectorise(class_map: Path, out: Path) -> dict[str, Any]:
    """The user's script in geoseg's venv: ``rasterio.features.shapes`` (4-connected, nodata 0
    masked), shapely ``shape()`` per feature, a GeoDataFrame with a ``class`` column, GPKG
    through pyogrio; one process. Extra field: ``polygons``."""
    _check_class_map(class_map)
    python = GEOSEG_PYTHON if GEOSEG_PYTHON.exists() else Path(sys.executable)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    result = _measured([str(python), "-c", _SHAPES, str(class_map), str(out)])
    return {**result, "polygons": _count(out)}


def gdal_polygonize(class_map: Path, out: Path) -> dict[str, Any]:
    """GDAL's ``gdal_polygonize`` command-line tool: band 1, 4-connected (its default), the
    band's mask (nodata 0) applied (its default), to a GPKG. Extra field: ``polygons``."""
    _check_class_map(class_map)
    tool = shutil.which("gdal_polygonize.py") or shutil.which("gdal_polygonize")
    if tool is None:
        raise RuntimeError("gdal_polygonize not found: install GDAL's tools (Debian: gdal-bin)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    args = [tool, "-q", "-b", "1", "-of", "GPKG", str(class_map), str(out), "polygons", "class"]
    result = _measured(args, peer=True)
    result["work_s"] = result["wall_s"]
    return {**result, "polygons": _count(out)}


def _install_command(python: Path, constraints: Path) -> list[str]:
    """uv when it is on PATH (with pip's find-links and indexes passed on), else pip."""
    uv = shutil.which("uv")
    if uv is None:
        return [str(python), "-m", "pip", "install", "-c", str(constraints), *REQUIREMENTS]
    command = [uv, "pip", "install", "--python", str(python), "-c", str(constraints)]
    command += ["--index-strategy", "unsafe-best-match", *_pip_sources()]
    return [*command, *REQUIREMENTS]


def _pip_sources() -> list[str]:
    """pip's configured find-links and index URLs (config files, then environment) as uv
    options, since uv does not read pip's configuration."""
    values: dict[str, str] = {}
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        values[key.split(".", 1)[-1]] = value.strip().strip("'\"")
    for key in ("find-links", "index-url", "extra-index-url"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            values[key] = env
    options: list[str] = []
    for key in ("find-links", "index-url", "extra-index-url"):
        for value in values.get(key, "").split():
            options += [f"--{key}", value]
    return options


def _geoai_checkpoint(python: Path, bundle: Path, name: str, sha: str | None) -> Path:
    """The bundle's weights as the float32 state dict that geoai loads, converted once."""
    weights = bundle / "weights.pt"
    key = sha or hashlib.sha256(weights.read_bytes()).hexdigest()
    path = PEERS_CACHE / f"{name}-{key[:12]}.pth"
    if not path.exists():
        PEERS_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial")
        subprocess.run(
            [str(python), "-c", _CONVERT, str(weights), str(tmp)], check=True, env=_clean_env()
        )
        tmp.rename(path)
    return path


def _geoai_scene(scene: Path, bands: int) -> tuple[Path, list[str]]:
    """The file geoai can read (see the module notes on nodata) and notes about it."""
    import rasterio

    with rasterio.open(scene) as src:
        nodata, count, names = src.nodata, src.count, src.descriptions
    if count < bands:
        raise ValueError(f"{scene} has {count} bands; the bundle needs {bands}")
    notes = [
        f"geoai reads all {count} bands of each window and keeps the first {bands} (named "
        f"{list(names[:bands])} in the scene)"
    ]
    if nodata is None:
        return scene, notes
    notes.append(
        "geoai feeds nodata pixels' raw values to the network and writes a class for every "
        "pixel (geoseg fills nodata with the band mean and writes 0)"
    )
    if float(nodata).is_integer() and 0 <= nodata <= 255:
        notes.append(
            f"geoai copies the scene's nodata ({nodata:g}) into its class map, where it marks "
            "that argmax index as nodata"
        )
        return scene, notes
    stat = scene.stat()
    key = hashlib.sha256(f"{scene.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    copy = PEERS_CACHE / f"{scene.stem}-nonodata-{key.hexdigest()[:12]}{scene.suffix}"
    if not copy.exists():
        PEERS_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = copy.with_name(f".{copy.name}.partial{scene.suffix}")
        shutil.copyfile(scene, tmp)
        with rasterio.open(tmp, "r+") as dst:
            dst.nodata = None
        tmp.rename(copy)
    notes.append(
        f"geoai cannot write its uint8 class map with the scene's nodata ({nodata:g}), so it "
        "reads a file copy of the scene with only its nodata tag removed (same pixels, "
        "blocks and compression)"
    )
    return copy, notes


def _check_class_map(path: Path) -> None:
    import rasterio

    with rasterio.open(path) as src:
        if src.count != 1 or src.dtypes[0] != "uint8" or src.nodata != 0:
            raise ValueError(
                f"{path}: expected a 1-band uint8 class map with nodata 0, got {src.count} "
                f"band(s) of {src.dtypes[0]} with nodata {src.nodata}"
            )


def _count(path: Path) -> int:
    """Features in the first layer of ``path``."""
    import pyogrio

    return int(pyogrio.read_info(path, force_feature_count=True)["features"])


def _clean_env() -> dict[str, str]:
    """This environment less anything that would leak geoseg's venv into another Python."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    return env


def _measured(args: list[str], *, peer: bool = False) -> dict[str, Any]:
    """Run ``args`` in a child process: wall seconds, peak RSS (MiB) and the child's own JSON
    figures (its last stdout line, if JSON)."""
    env = _clean_env() if peer else None
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured["rc"] != 0:
        raise RuntimeError(f"{args[0]} failed ({measured['rc']}): {measured['stderr']}")
    result: dict[str, Any] = {
        "wall_s": measured["wall_s"],
        "peak_rss_mib": measured["peak_rss_mib"],
    }
    lines = measured["stdout"].strip().splitlines()
    if lines:
        try:
            figures = json.loads(lines[-1])
        except json.JSONDecodeError:
            figures = None
        if isinstance(figures, dict):
            result.update(figures)
    return result
