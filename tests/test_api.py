"""The Python API: the README example runs, and each function is the workflow step's code path."""

from __future__ import annotations

import filecmp
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import geoseg
from geoseg.errors import ConfigError, OutputExistsError
from geoseg.workflow.run import run_workflow
from tests.conftest import DATA, REPO, needs_data

CATALOG = REPO / "data_catalog.yaml"
MODEL = REPO / "models" / "landcover.geoseg"


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(
        r"<!-- api-example[^>]*-->\n```python\n(.*?)```\n<!-- /api-example -->", text, re.S
    )
    assert found, "README.md has the API example between its markers"
    return found.group(1)


def repo_like(tmp_path: Path) -> Path:
    """A working folder that looks like the repository root (its inputs linked, outputs local)."""
    for name in ("models", "samples", "data_catalog.yaml"):
        (tmp_path / name).symlink_to(REPO / name)
    return tmp_path


@needs_data()
def test_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo_like(tmp_path))
    monkeypatch.setenv("GEOSEG_DATA", str(DATA))
    exec(compile(readme_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "landcover ('blue', 'green', 'red', 'nir')" in printed
    assert "{'band': 6, 'y': 300, 'x': 489}" in printed and "mIoU 0." in printed
    for folder in ("notebook", "notebook-file", "notebook/evaluation"):
        manifest = json.loads((tmp_path / "out" / folder / "manifest.json").read_text())
        assert manifest["status"] == "complete"
    assert (tmp_path / "out" / "small.geoseg" / "bundle.json").exists()
    # A catalog source and the same file named directly give the same class map.
    out = tmp_path / "out"
    assert _same_pixels(out / "notebook" / "classes.tif", out / "notebook-file" / "classes.tif")


def _same_pixels(a: Path, b: Path) -> bool:
    import rasterio

    with rasterio.open(a) as one, rasterio.open(b) as two:
        return bool(np.array_equal(one.read(), two.read()))


def test_api_predict_is_the_workflow_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "workflows" / "demo.yaml").read_text()
    workflow = tmp_path / "demo.yaml"
    workflow.write_text(
        text.replace("../data_catalog.yaml", str(CATALOG))
        .replace("../models/", str(REPO / "models") + "/")
        .replace("../out/demo", str(tmp_path / "workflow"))
    )
    run_workflow(workflow, show_progress=False)
    monkeypatch.chdir(tmp_path)
    report = geoseg.predict(
        "nc-landsat7-sample",
        geoseg.load_model(MODEL),
        "api",
        catalog=CATALOG,
        chunk_size=256,
        vector={"min_area_m2": 4000, "formats": ["gpkg"], "layer": "landcover"},
    )
    assert report.kind == "predict" and not report.up_to_date
    for name in ("classes.tif", "confidence.tif"):
        assert filecmp.cmp(tmp_path / "workflow" / name, tmp_path / "api" / name, shallow=False)
    again = geoseg.predict(
        "nc-landsat7-sample",
        MODEL,
        "api",
        catalog=CATALOG,
        chunk_size=256,
        vector={"min_area_m2": 4000, "formats": ["gpkg"], "layer": "landcover"},
    )
    assert again.up_to_date, "same inputs and config: a no-op"
    assert again.figures == report.figures, "its figures come from the manifest"
    with pytest.raises(OutputExistsError, match=r"classes\.tif exists; pass --overwrite"):
        geoseg.predict("nc-landsat7-sample", MODEL, "api", catalog=CATALOG, chunk_size=512)


def test_api_errors_name_the_option_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_raster: Callable[..., Path]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no catalog given and no data_catalog\.yaml in"):
        geoseg.predict("nc-landsat7-sample", MODEL, "out")
    with pytest.raises(
        ConfigError, match=r"geoseg\.predict\(\) is invalid:\n  - unknown key 'tile_sise'; allowed"
    ):
        geoseg.predict("nc-landsat7-sample", MODEL, "out", catalog=CATALOG, tile_sise=64)
    with pytest.raises(ConfigError, match=r"^geoseg\.evaluate\(\): .*nope\.tif does not exist$"):
        geoseg.evaluate("nope.tif", "nc-landsat7", "ev", catalog=CATALOG)
    sample = REPO / "samples" / "nc_landsat7_2000.tif"
    with pytest.raises(
        ConfigError, match=r"bands names 2 band\(s\) but .*nc_landsat7_2000\.tif has 6"
    ):
        geoseg.predict(sample, MODEL, "out", bands=["red", "nir"])
    scene = geoseg.open_source(sample)
    assert list(scene.band.values) == [*model_bands(), "swir1", "swir2"], "the file's bands"
    plain = write_raster("plain.tif", np.ones((2, 4, 4), dtype=np.uint16))
    assert list(geoseg.open_source(plain).band.values) == ["band1", "band2"]
    model = geoseg.load_model(MODEL)
    with pytest.raises(ValueError, match=r"takes \(band, y, x\) arrays with 4 bands"):
        model.predict_array(np.zeros((3, 8, 8), dtype=np.float32))


def model_bands() -> list[str]:
    return list(geoseg.load_model(MODEL).band_names)


def test_model_predicts_small_arrays_as_scenes_are_predicted() -> None:
    model = geoseg.load_model(MODEL)
    scene = geoseg.open_source("nc-landsat7-sample", catalog=CATALOG).sel(
        band=list(model.band_names)
    )
    window = scene[:, :64, :96].values
    result = model.predict_array(window, device="cpu")
    assert result.classes.shape == (64, 96) and result.classes.dtype == np.uint8
    assert set(np.unique(result.classes)) <= {c.code for c in model.classes} | {0}
    assert np.all((result.confidence > 0) | np.isnan(result.confidence))
