"""Every failure is one clear message (issue 10): no traceback, the file and the fix, exit codes.

Also the silent-wrong-output guards that only warn: fill values without a nodata tag.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from geoseg.cli.main import app
from geoseg.errors import ConfigError, OutputLocationError, ResourceError, root_cause
from geoseg.workflow.plan import plan_workflow
from tests.conftest import DATA, REPO, needs_data, write_catalog

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
BANDS = "[{name: blue}, {name: green}, {name: red}, {name: nir}, {name: swir1}, {name: swir2}]"
runner = CliRunner()


def predict_workflow(
    tmp_path: Path, bundle: Path, output: Path | str = "out", extra: str = "", source: str = ""
) -> Path:
    """A one-step predict workflow over ``source`` (default: the shipped sample scene)."""
    catalog = write_catalog(
        tmp_path, f"  s:\n    file: {source or SAMPLE}\n    bands: {BANDS}\n{extra}"
    )
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nexecutor: {{kind: threads, workers: 1}}\nsteps:\n"
        f"  - predict:\n      source: s\n      model: {bundle}\n      output: {output}\n"
        "      chunk_size: 64\n      vector: {enabled: false}\n",
        encoding="utf-8",
    )
    return path


def cli(*args: str) -> tuple[int, str]:
    """Exit code and combined output of ``geoseg ARGS``; asserts there is no traceback."""
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.output.count("error:") <= 1, result.output
    return result.exit_code, result.output


def test_a_workflow_that_is_not_utf8_names_the_byte_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_bytes(b"version: 1\ncatalog: c.yaml\nname: caf\xe9\nsteps: []\n")  # Latin-1
    code, output = cli("validate", str(path))
    assert code == 2
    assert "is not UTF-8 text (byte 0xe9 at line 3): save it as UTF-8" in output


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    path = predict_workflow(tmp_path, tiny_bundle)
    path.write_text(
        path.read_text().replace("      chunk_size: 64\n", "      chunk_size: 64\n" * 2)
    )
    twice = r"key 'chunk_size' is given twice \(lines 9 and 10\)"
    with pytest.raises(ConfigError, match=twice):
        plan_workflow(path)
    path = predict_workflow(tmp_path, tiny_bundle)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "  s:\n    file: x.tif\n    bands: [{name: b}]\n")
    code, output = cli("validate", str(path))
    assert code == 2 and "catalog.yaml is not valid YAML at line 6" in output
    assert "key 's' is given twice (lines 3 and 6)" in output


def test_a_missing_input_is_refused_by_validate_and_run(tmp_path: Path, tiny_bundle: Path) -> None:
    path = predict_workflow(tmp_path, tiny_bundle, source=str(tmp_path / "gone.tif"))
    for command in ("validate", "run"):
        code, output = cli(command, str(path))
        assert code == 2, output
        assert f"steps.0.predict reads {tmp_path / 'gone.tif'}, which does not exist" in output
        assert "correct the path in" in output and "catalog.yaml" in output
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_refused_at_plan_time(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    (tmp_path / "afile").write_text("a file where a folder should be")
    path = predict_workflow(tmp_path, tiny_bundle, output=tmp_path / "afile" / "out")
    with pytest.raises(OutputLocationError, match=r"afile is a file, not a folder; choose"):
        plan_workflow(path)
    path = predict_workflow(tmp_path, tiny_bundle, output="/proc/geoseg-test/out")
    code, output = cli("run", str(path))
    assert code == 2 and "cannot write its output folder /proc/geoseg-test/out" in output
    assert "choose a folder you can write to" in output


def test_gdal_pointers_give_way_to_the_real_cause() -> None:
    try:
        with rasterio.open(REPO / "pyproject.toml") as ds:
            ds.read()
    except rasterio.errors.RasterioIOError as exc:
        text = root_cause(exc)
    assert "see previous" not in text.lower() and "pyproject.toml" in text
    try:
        try:
            raise OSError("TIFFAppendToStrip:Write error at scanline 64")
        except OSError as inner:
            raise rasterio.errors.RasterioIOError(
                "Write failed. See previous exception for details."
            ) from inner
    except OSError as exc:
        assert root_cause(exc) == "Write failed; TIFFAppendToStrip:Write error at scanline 64"


def test_an_unexpected_error_is_one_line_with_exit_code_70(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr("geoseg.workflow.plan.plan_workflow", broken)
    code, output = cli("run", str(predict_workflow(tmp_path, tiny_bundle)))
    assert code == 70
    assert "unexpected error (a bug in geoseg" in output
    assert "ValueError: an internal invariant broke" in output


def test_tiles_larger_than_the_scene_or_the_memory_are_refused_before_compute(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    from geoseg.workflow.run import run_workflow

    path = predict_workflow(tmp_path, tiny_bundle)
    text = path.read_text()
    path.write_text(text.replace("chunk_size: 64", "chunk_size: 64\n      tile_size: 4096"))
    with pytest.raises(
        ResourceError,
        match=r"tile_size 4096 is larger than the scene \(300 x 489 px\).*use tile_size 488 or "
        r"less, or leave it unset for the model's 64",
    ):
        run_workflow(path, show_progress=False)
    path.write_text(text.replace("chunk_size: 64", "chunk_size: 64\n      batch_size: 100000"))
    with pytest.raises(
        ResourceError,
        match=r"tiles of 64 px in batches of 100000 need about [\d.]+ GiB per worker, .* GiB "
        r"for 1 worker\(s\), but [\d.]+ GiB of memory is available; use batch_size \d+",
    ):
        run_workflow(path, show_progress=False)
    assert list((tmp_path / "out").iterdir()) == [], "nothing written, no lock left"
    for command in ("validate", "run"):
        code, output = cli(command, str(path))
        assert code == 2 and "of memory is available" in output


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only: CI runs as root); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_says_so_with_the_space_left_and_keeps_nothing_at_final_paths(
    tmp_path: Path, tiny_bundle: Path, small_disk: Path
) -> None:
    out = small_disk / "out"
    code, output = cli("run", str(predict_workflow(tmp_path, tiny_bundle, output=out)))
    assert code == 1, output
    assert f"the device holding {out} is full (" in output and " MiB free)" in output
    assert "Free some space there or choose another output folder" in output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_what_it_kept_and_how_to_resume(
    tmp_path: Path, tiny_bundle: Path, sig: signal.Signals
) -> None:
    path = predict_workflow(tmp_path, tiny_bundle)
    geoseg = [sys.executable, "-m", "geoseg.cli.main"]
    process = subprocess.Popen(
        [*geoseg, "-q", "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    parts = tmp_path / "out" / ".geoseg-work" / "parts"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if parts.exists() and len(list(parts.glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be interrupted"
    os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    message = " ".join(stderr.split())
    assert "steps.0.predict was interrupted;" in message
    assert "finished chunk(s) are kept in" in message and "no partial file is at a final" in message
    assert f"Continue with: geoseg -q run {path} --resume" in message
    assert not (tmp_path / "out" / "classes.tif").exists()
    command = shlex.split(message.split("Continue with: ")[1])
    resumed = subprocess.run([*geoseg, *command[1:]], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "out" / "classes.tif").exists()
    assert "chunks_reused: 0" not in resumed.stdout


def test_an_undeclared_fill_border_is_warned_about_with_the_setting_that_fixes_it(
    tmp_path: Path, tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from geoseg.workflow.run import run_workflow

    scene = tmp_path / "bordered.tif"
    shutil.copy(SAMPLE, scene)
    with rasterio.open(scene, "r+") as ds:
        data = ds.read()
        data[:, :, :60] = 0  # a fill border in every band, not declared as nodata
        data[:, -40:, :] = 0
        ds.write(data)
    path = predict_workflow(tmp_path, tiny_bundle, source=str(scene))
    with caplog.at_level(logging.WARNING):
        run_workflow(path, show_progress=False)
    warning = " ".join(caplog.text.split())
    assert "'s' has 0 in every band over" in warning and "looks like a fill border" in warning
    assert f"set 'nodata: 0' on source 's' in {tmp_path / 'catalog.yaml'}" in warning
    assert f"gdal_edit.py -a_nodata 0 {scene}" in warning
    caplog.clear()
    path = predict_workflow(tmp_path, tiny_bundle, source=str(scene), extra="    nodata: 0\n")
    with caplog.at_level(logging.WARNING):
        run_workflow(path, show_progress=False, overwrite=True)
    assert "fill border" not in caplog.text


def test_real_scenes_with_and_without_their_fill_tag() -> None:
    from geoseg.io.fill import likely_fill

    rgb = DATA / "rasterio-rgb-byte" / "RGB.byte.tif"  # 0 border, tagged nodata 0
    if not rgb.exists():
        pytest.skip(needs_data(rgb).kwargs["reason"])
    with rasterio.open(rgb) as ds:
        raw = ds.read(out_shape=(3, 200, 220)).astype(np.float32)
        masked = ds.read(out_shape=(3, 200, 220), masked=True).astype(np.float32)
    guess = likely_fill(raw)
    assert guess is not None and guess.value == 0 and guess.edge_share > 0.9
    assert likely_fill(masked.filled(np.nan)) is None, "a declared nodata is not a fill"
    with rasterio.open(SAMPLE) as ds:
        sample = ds.read(out_shape=(6, 150, 245), masked=True).astype(np.float32)
    assert likely_fill(sample.filled(np.nan)) is None, "natural pixels are not fill"


def test_a_truncated_scene_fails_the_run_naming_the_file_the_window_and_the_cause(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    scene = tmp_path / "tiled.tif"
    with rasterio.open(SAMPLE) as src:
        profile, data = src.profile, src.read()
    profile.update(driver="GTiff", tiled=True, blockxsize=64, blockysize=64, compress=None)
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    os.truncate(scene, int(scene.stat().st_size * 0.7))  # the header stays, late blocks go
    path = predict_workflow(tmp_path, tiny_bundle, source=str(scene))
    code, output = cli("run", str(path))
    assert code == 1, output
    text = " ".join(output.split())
    assert f"reading {scene} decimated to" in text and "TIFFReadEncodedTile" in text
    assert "see previous" not in text.lower() and "may be truncated or corrupt" in text
    path.write_text(path.read_text() + "      input_check: off\n")  # fail inside a chunk task
    code, output = cli("run", str(path))
    text = " ".join(output.split())
    assert code == 1 and f"reading {scene} band(s) [1, 2, 3, 4, 5], window rows" in text, text
    assert [p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")] == []


def test_bigtiff_is_chosen_from_the_uncompressed_size_and_reaches_the_files(
    tmp_path: Path, tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from affine import Affine

    from geoseg.export import raster
    from geoseg.export.raster import bigtiff_flag, validate_cog
    from geoseg.types import Grid
    from geoseg.workflow.run import run_workflow

    def grid(side: int) -> Grid:
        return Grid(side, side, Affine(10, 0, 0, 0, -10, 0), rasterio.crs.CRS.from_epsg(32633))

    assert bigtiff_flag(grid(60_000), "uint8") == "YES", "3.35 GiB of classes"
    assert bigtiff_flag(grid(50_000), "uint8") == "NO", "2.3 GiB"
    assert bigtiff_flag(grid(30_000), "float32") == "YES", "3.35 GiB of confidence"

    def version(path: Path) -> int:
        return int.from_bytes(path.read_bytes()[2:4], "little")  # 42 classic TIFF, 43 BigTIFF

    path = predict_workflow(tmp_path, tiny_bundle)
    run_workflow(path, show_progress=False)
    assert version(tmp_path / "out" / "classes.tif") == 42
    monkeypatch.setattr(raster, "BIGTIFF_THRESHOLD", 0)  # as if the scene were huge
    run_workflow(path, show_progress=False, overwrite=True)
    for name in ("classes.tif", "confidence.tif"):
        assert version(tmp_path / "out" / name) == 43, name
        assert validate_cog(tmp_path / "out" / name) == []


def test_odd_yaml_keys_and_unsupported_url_schemes_are_clear_errors(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("version: 1\ncatalog: c.yaml\n? [a, b]\n: 1\nsteps: []\n", encoding="utf-8")
    code, output = cli("validate", str(path))
    assert code == 2 and "is not valid YAML at line 3, column 3: found unhashable key" in output
    path = predict_workflow(tmp_path, tiny_bundle, source="gs://bucket/scene.tif")
    code, output = cli("validate", str(path))
    assert code == 2, output
    assert "gs:// is not a supported location; use a local path, or one of https://" in output


def test_an_integer_scene_with_a_nodata_tag_is_sampled_with_its_nodata_as_nan(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    from geoseg.workflow.run import run_workflow

    scene = tmp_path / "uint16.tif"
    with rasterio.open(SAMPLE) as src:
        profile, data = src.profile, src.read()
    data = np.clip(data, 0, None).astype(np.uint16)
    data[:, :, :30] = 0
    profile.update(dtype="uint16", nodata=0)
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    report = run_workflow(
        predict_workflow(tmp_path, tiny_bundle, source=str(scene)), show_progress=False
    )[0]
    assert report.figures.tiles_run > 0  # the sample read failed with a TypeError before


def test_compact_confidence_is_uint8_that_gdal_reads_as_the_probability(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    from geoseg.export.raster import validate_cog
    from geoseg.io.raster import read_values
    from geoseg.types import Window
    from geoseg.workflow.run import run_workflow

    runs = {}
    for dtype in ("float32", "uint8"):
        folder = tmp_path / dtype
        folder.mkdir()
        path = predict_workflow(folder, tiny_bundle, output=folder / "out")
        text = path.read_text().replace("vector: {enabled: false}", "vector: {min_area_m2: 0}")
        path.write_text(text + f"      confidence: {dtype}\n")
        run_workflow(path, show_progress=False)
        runs[dtype] = folder / "out"
    exact, compact = (runs[d] / "confidence.tif" for d in ("float32", "uint8"))
    assert validate_cog(compact) == []
    with rasterio.open(compact) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255
        assert ds.scales[0] == pytest.approx(1 / 254) and ds.offsets[0] == 0
    whole = Window(0, 0, 300, 489)
    a, b = read_values(exact, whole), read_values(compact, whole)
    assert (np.isnan(a) == np.isnan(b)).all()
    assert np.nanmax(np.abs(a - b)) <= 0.5 / 254 + 1e-6, "rounded to the nearest step"
    assert compact.stat().st_size < exact.stat().st_size / 2
    for name in ("classes.tif",):
        assert (runs["float32"] / name).read_bytes() == (runs["uint8"] / name).read_bytes()
    if shutil.which("gdalinfo"):
        info = subprocess.run(["gdalinfo", str(compact)], capture_output=True, text=True).stdout
        assert "Scale:0.00393" in info and "NoData Value=255" in info
    import geopandas as gpd

    polygons = [gpd.read_file(runs[d] / "landcover.gpkg") for d in ("float32", "uint8")]
    assert len(polygons[0]) == len(polygons[1])
    assert np.allclose(
        polygons[0].mean_confidence, polygons[1].mean_confidence, atol=0.5 / 254 + 1e-6
    )
