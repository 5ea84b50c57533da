"""Fixed costs of a run (issue 12): remembered input checksums, and COG writing without warnings."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

import geoseg
import geoseg.workflow.checksums as checksums
import geoseg.workflow.manifest as manifest
from geoseg.export.raster import assemble_cog, mosaic_vrt, validate_cog, write_part
from geoseg.model.bundle import file_sha256
from geoseg.types import Grid, RemoteLocation, Window
from geoseg.workflow.checksums import CACHE_ENV, CACHE_FILE, cache_dir
from geoseg.workflow.manifest import input_checksum
from tests.conftest import REPO

HOUR_NS = 3600 * 10**9
PALETTE = "palette index raster bands without a palette"

# --- input checksums remembered between runs -------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files whose whole SHA-256 is computed (``input_checksum``'s hashing, counted)."""
    calls: list[Path] = []

    def counting(path: Path) -> str:
        calls.append(path)
        return file_sha256(path)

    monkeypatch.setattr(manifest, "file_sha256", counting)
    return calls


def aged(path: Path, hours: int = 1) -> Path:
    """``path`` with its modification time set ``hours`` back (not recently modified)."""
    old = time.time_ns() - hours * HOUR_NS
    os.utime(path, ns=(old, old))
    return path


@pytest.fixture(autouse=True)
def an_hour_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's clock an hour ahead: files written by a test (their ctime, which no test can
    set back) count as settled, as inputs of real runs are."""
    clock = time.time_ns
    monkeypatch.setattr(checksums, "time", SimpleNamespace(time_ns=lambda: clock() + HOUR_NS))


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    path = tmp_path / "scene.tif"
    path.write_bytes(np.random.default_rng(0).bytes(300_000))
    return aged(path)


def test_an_unchanged_input_is_read_once(cache: Path, hashed: list[Path], scene: Path) -> None:
    first = input_checksum(scene)
    second = input_checksum(scene)
    assert first == second
    assert first.sha256 == file_sha256(scene)
    assert hashed == [scene]
    assert (cache / CACHE_FILE).is_file()


def test_a_touched_input_is_read_again_and_keeps_its_digest(
    cache: Path, hashed: list[Path], scene: Path
) -> None:
    first = input_checksum(scene)
    aged(scene, hours=2)  # same content, another mtime
    second = input_checksum(scene)
    assert len(hashed) == 2
    assert second.sha256 == first.sha256
    input_checksum(scene)
    assert len(hashed) == 2  # remembered again


def test_a_rewritten_input_of_the_same_size_is_read_again(
    cache: Path, hashed: list[Path], scene: Path
) -> None:
    first = input_checksum(scene)
    stat = scene.stat()
    scene.write_bytes(np.random.default_rng(1).bytes(stat.st_size))  # same size, new content
    os.utime(scene, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime back
    second = input_checksum(scene)
    assert len(hashed) == 2
    assert second.bytes == first.bytes
    assert second.sha256 == file_sha256(scene) != first.sha256


def test_a_replaced_input_is_read_again(cache: Path, hashed: list[Path], scene: Path) -> None:
    first = input_checksum(scene)
    stat = scene.stat()
    other = scene.with_name("other.tif")
    other.write_bytes(np.random.default_rng(2).bytes(stat.st_size))
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(other, scene)  # another inode at the same path, same size and mtime
    second = input_checksum(scene)
    assert len(hashed) == 2
    assert second.sha256 == file_sha256(scene) != first.sha256


def test_a_file_modified_just_now_is_not_remembered(
    cache: Path, hashed: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checksums, "time", time)  # the real clock
    fresh = tmp_path / "fresh.tif"
    fresh.write_bytes(b"written a moment ago")
    input_checksum(fresh)
    input_checksum(fresh)
    assert len(hashed) == 2  # a same-size write in the same clock tick would go unseen


def test_a_corrupt_cache_is_ignored(
    cache: Path, hashed: list[Path], scene: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache.mkdir()
    (cache / CACHE_FILE).write_bytes(b"this is not an SQLite database" * 100)
    with caplog.at_level(logging.DEBUG, logger="geoseg.workflow.checksums"):
        first = input_checksum(scene)
        second = input_checksum(scene)
    assert first.sha256 == second.sha256 == file_sha256(scene)
    assert len(hashed) == 2
    assert "checksum cache" in caplog.text


def test_an_unwritable_cache_folder_is_fine(
    hashed: list[Path], scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))  # cannot be created
    assert input_checksum(scene).sha256 == input_checksum(scene).sha256 == file_sha256(scene)
    assert len(hashed) == 2


def test_runs_writing_the_cache_at_once(cache: Path, tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}.tif" for i in range(24)]
    for i, path in enumerate(files):
        path.write_bytes(np.random.default_rng(i).bytes(50_000))
        aged(path)
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(input_checksum, files * 2))
    assert [r.sha256 for r in records] == [file_sha256(p) for p in files * 2]
    with sqlite3.connect(cache / CACHE_FILE) as db:
        assert db.execute("SELECT count(*) FROM checksums").fetchone()[0] == len(files)


def test_remote_inputs_keep_their_head_fingerprint(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stat = SimpleNamespace(size=1234, etag='"abc"', modified="Tue, 01 Jul 2025 10:00:00 GMT")
    monkeypatch.setattr(manifest, "remote_stat", lambda location: stat)
    record = input_checksum(RemoteLocation("https://example.com/scene.tif"))
    assert (record.bytes, record.etag, record.sha256) == (1234, '"abc"', None)
    assert not cache.exists()


def test_the_cache_folder_follows_the_platform(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert cache_dir() == tmp_path / "xdg" / "geoseg"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


# --- COGs: a class map's overviews without GDAL's palette warning ----------------------------


def class_parts(folder: Path, grid: Grid, seed: int = 0) -> list[tuple[Window, Path]]:
    """A class map (codes 0..8, 0 = nodata) of ``grid`` as four part files."""
    rng = np.random.default_rng(seed)
    h, w = grid.height, grid.width
    parts = []
    for row, height in ((0, h // 2), (h // 2, h - h // 2)):
        for col, width in ((0, w // 3), (w // 3, w - w // 3)):
            blocks = rng.integers(0, 9, (height // 8 + 1, width // 8 + 1), dtype=np.uint8)
            values = np.kron(blocks, np.ones((8, 8), np.uint8))[:height, :width]
            noise = rng.integers(0, 9, (height, width), dtype=np.uint8)
            values = np.where(rng.random((height, width)) < 0.3, noise, values)
            path = folder / f"part-{row}-{col}.tif"
            window = Window(row, col, height, width)
            write_part(path, values.astype(np.uint8), grid, window, 0)
            parts.append((window, path))
    return parts


GRID = Grid(1100, 1300, Affine(28.5, 0, 630000, 0, -28.5, 230000), rasterio.CRS.from_epsg(32617))
COLORS = {c: (20 * c, 255 - 20 * c, 40, 255) for c in range(1, 9)} | {8: (140, 95, 40, 255)}


def test_a_class_map_gets_its_overviews_and_palette_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parts = class_parts(tmp_path, GRID)
    with caplog.at_level(logging.WARNING):
        assemble_cog(parts, GRID, tmp_path / "classes.tif", "uint8", 0, "mode", COLORS, "class")
        assemble_cog(parts, GRID, tmp_path / "plain.tif", "uint8", 0, "mode", None, "class")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert validate_cog(tmp_path / "classes.tif") == []
    with rasterio.open(tmp_path / "classes.tif") as cog:
        assert cog.overviews(1) == [2, 4]
        assert cog.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert cog.colormap(1)[3] == COLORS[3]
        assert cog.tags()["OVERVIEW_RESAMPLING"] == "MODE"
    for level in range(2):  # the palette changes no overview value
        with (
            rasterio.open(tmp_path / "classes.tif", overview_level=level) as a,
            rasterio.open(tmp_path / "plain.tif", overview_level=level) as b,
        ):
            np.testing.assert_array_equal(a.read(1), b.read(1))
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("part-"))
    assert left == ["classes.tif", "plain.tif"]  # no mosaic or staging file stays behind


def rio_cogeo_cog(
    parts: list[tuple[Window, Path]],
    path: Path,
    dtype: str,
    nodata: float,
    resampling: str,
    **kw: Any,
) -> bytes:
    """The COG rio-cogeo's ``cog_translate`` made of the same mosaic (geoseg's writer before)."""
    vrt = path.with_suffix(".vrt")
    vrt.write_text(
        mosaic_vrt(parts, GRID, dtype, nodata, kw.get("description", ""), kw.get("tags"))
    )
    profile = dict(cog_profiles.get("deflate"), BIGTIFF="NO", NUM_THREADS="ALL_CPUS")
    if dtype == "float32":
        profile["predictor"] = 3
    with rasterio.Env(GDAL_CACHEMAX=256, GDAL_NUM_THREADS="ALL_CPUS"):
        cog_translate(
            vrt,
            path,
            profile,
            nodata=nodata,
            overview_resampling=resampling,
            colormap=kw.get("colormap"),
            forward_band_tags=True,
            in_memory=False,
            quiet=True,
        )
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PendingDeprecationWarning")
def test_cogs_are_byte_identical_to_rio_cogeos(tmp_path: Path) -> None:
    parts = class_parts(tmp_path, GRID)
    tags = {"GEOSEG_CLASS_CODES": "1,2,3"}
    assemble_cog(parts, GRID, tmp_path / "new.tif", "uint8", 0, "mode", COLORS, "class", tags=tags)
    before = rio_cogeo_cog(
        parts,
        tmp_path / "old.tif",
        "uint8",
        0,
        "mode",
        colormap=COLORS,
        description="class",
        tags=tags,
    )
    assert (tmp_path / "new.tif").read_bytes() == before

    rng = np.random.default_rng(3)
    conf = []
    for window, _ in parts:
        path = tmp_path / f"conf-{window.row}-{window.col}.tif"
        values = rng.random((window.height, window.width), dtype=np.float32)
        values[:3, :5] = np.nan
        write_part(path, values, GRID, window, float("nan"))
        conf.append((window, path))
    assemble_cog(conf, GRID, tmp_path / "conf.tif", "float32", float("nan"), "average")
    assert (tmp_path / "conf.tif").read_bytes() == rio_cogeo_cog(
        conf, tmp_path / "conf-old.tif", "float32", float("nan"), "average"
    )


def test_a_predict_run_with_overviews_logs_no_palette_warning(
    tmp_path: Path,
    tiny_bundle: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with rasterio.open(REPO / "samples" / "nc_landsat7_2000.tif") as sample:
        data, profile = sample.read(), sample.profile
    scene = np.tile(data, (1, 4, 3))[:, :1100, :1100]  # more than 1024 px: two overview levels
    profile.update(height=1100, width=1100, blockxsize=512, blockysize=512)
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene)
    bands = ["blue", "green", "red", "nir", "swir1", "swir2"]
    with caplog.at_level(logging.WARNING):
        geoseg.predict(
            path,
            tiny_bundle,
            tmp_path / "out",
            bands=bands,
            chunk_size=512,
            tile_size=256,
            vector={"enabled": False},
            input_check="off",
        )
    assert PALETTE not in caplog.text
    with rasterio.open(tmp_path / "out" / "classes.tif") as classes:
        assert classes.overviews(1) == [2, 4]
        assert classes.colorinterp[0] == rasterio.enums.ColorInterp.palette


# --- fingerprints without torch ---------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [("cpu", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda")])
def test_a_device_type_is_read_from_its_name_without_torch(name: str, kind: str) -> None:
    from geoseg.model.device import device_type

    script = (
        "import sys; from geoseg.model.device import device_type; "
        f"print(device_type({name!r}), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [kind, "False"]
    assert device_type("auto") in ("cpu", "cuda")


def test_a_copy_keeping_an_old_mtime_is_not_remembered_at_once(
    cache: Path, hashed: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checksums, "time", time)  # the real clock: the copy's ctime is now
    copy = tmp_path / "copied.tif"
    copy.write_bytes(b"copied")
    aged(copy)  # an old mtime, as cp -p or rsync -t leave it
    input_checksum(copy)
    input_checksum(copy)
    assert len(hashed) == 2
