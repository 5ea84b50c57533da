"""``geoseg view`` (issue 14): a run's outputs as a web map, checked in a real headless browser.

The browser tests drive Debian's headless Chromium with Playwright; they skip, saying why, where
no Chromium is installed (``.ci/run`` installs ``chromium-headless-shell``).
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
from PIL import Image

import geoseg
from geoseg.errors import ConfigError
from geoseg.view.layers import RunLayers
from geoseg.view.server import ViewServer, open_view
from geoseg.view.tiles import render
from tests.conftest import REPO

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
CHROMIUM = os.environ.get("GEOSEG_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium-headless-shell", "chromium")) if p), None
)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium: install Debian's chromium-headless-shell (.ci/run does) or "
    "set GEOSEG_CHROMIUM to a Chromium binary",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped default model over the sample scene (class map, confidence, polygons)."""
    out = tmp_path_factory.mktemp("view") / "demo"
    geoseg.predict(
        "nc-landsat7-sample",
        REPO / "models" / "landcover.geoseg",
        out,
        catalog=REPO / "data_catalog.yaml",
        chunk_size=256,
        vector={"min_area_m2": 4000},
    )
    return out


@pytest.fixture(scope="module")
def server(run: Path) -> Iterator[ViewServer]:
    served = open_view(run)
    served.start()
    yield served
    served.shutdown()
    served.server_close()


def palette(run: Path) -> dict[tuple[int, int, int], int]:
    """The class map's colours (RGB -> code) for the classes the model has."""
    with rasterio.open(run / "classes.tif") as ds:
        table = ds.colormap(1)
    codes = {entry.code for entry in RunLayers.discover(run).legend}
    return {tuple(table[c][:3]): c for c in codes}


def test_a_run_folder_describes_its_layers_legend_and_extent(run: Path) -> None:
    layers = RunLayers.discover(run)
    described = layers.describe()
    assert described["rasters"] == ["imagery", "classes", "confidence"]
    assert described["polygons"] is True
    assert [e["name"] for e in described["legend"]][:3] == ["water", "tree", "cropland"]
    west, south, east, north = layers.bounds
    assert -78.8 < west < east < -78.6 and 35.7 < south < north < 35.9, "Raleigh, NC"
    with pytest.raises(ConfigError, match=r"is not the output folder of a predict run"):
        RunLayers.discover(run.parent)


def test_class_tiles_carry_only_the_class_maps_colours(run: Path) -> None:
    from rio_tiler.io import Reader

    layers = RunLayers.discover(run)
    west, south, east, north = layers.bounds
    with Reader(str(layers.classes)) as src:
        tile = src.tms.tile((west + east) / 2, (south + north) / 2, 13)
    png = render(layers, "classes", tile.z, tile.x, tile.y)
    assert png is not None
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
    opaque = rgba[rgba[..., 3] > 0][:, :3]
    assert len(opaque) > 1000
    colours = {tuple(int(v) for v in c) for c in np.unique(opaque, axis=0)}
    assert colours <= set(palette(run)), "nearest-neighbour tiles: no blended colours"
    assert render(layers, "classes", 13, 0, 0) is None, "outside the scene"


@needs_browser
def test_the_map_loads_renders_the_class_map_and_shows_a_polygon_on_click(
    run: Path, server: ViewServer, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 900, "height": 640})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=yes]", timeout=30_000)
        page.wait_for_load_state("networkidle")
        legend = page.inner_text(".legend")
        assert "water" in legend and "wetland" in legend
        screenshot(page, tmp_path / "map.png")

        # Only the class map, opaque: every map pixel is a class colour or the background.
        page.evaluate(
            "() => { const g = window.geoseg; g.map.removeLayer(g.layers.imagery);"
            " g.map.removeLayer(g.layers.polygons); g.layers.classes.setOpacity(1); }"
        )
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(300)
        shot = screenshot(page, tmp_path / "classes.png")
        colours = palette(run)
        inner = shot[150:450, 150:600, :3].reshape(-1, 3).astype(int)  # away from the panels
        known = np.array(list(colours), dtype=int)
        gaps = np.abs(inner[:, None, :] - known[None, :, :]).max(axis=2)  # pixel x colour
        distance, nearest = gaps.min(axis=1), gaps.argmin(axis=1)
        assert (distance <= 2).mean() > 0.97, "the map shows the class map's colours"
        matched = np.unique(nearest[distance <= 2])
        seen = {colours[tuple(int(v) for v in known[i])] for i in matched}
        assert {2, 4} <= seen, "tree and built-up dominate the scene"

        # Clicking inside the largest polygon opens its class and area.
        page.evaluate("() => window.geoseg.layers.polygons.addTo(window.geoseg.map)")
        frame = pyogrio.read_dataframe(run / "landcover.gpkg")
        largest = frame.loc[frame.area.idxmax()]
        point = gpd.GeoSeries([largest.geometry.representative_point()], crs=frame.crs)
        lonlat = point.to_crs("EPSG:4326").iloc[0]
        xy = page.evaluate(
            f"() => window.geoseg.map.latLngToContainerPoint([{lonlat.y}, {lonlat.x}])"
        )
        page.mouse.click(xy["x"], xy["y"])
        popup = page.wait_for_selector(".leaflet-popup-content", timeout=10_000).inner_text()
        assert largest["class_name"] in popup
        assert f"{round(largest['area_m2']):,} m²" in popup
        browser.close()
    assert errors == [], f"console errors: {errors}"


def screenshot(page: Any, path: Path) -> np.ndarray[Any, Any]:
    """A screenshot saved to ``path`` and returned as an RGBA array."""
    page.screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGBA"))


def test_geoseg_view_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geoseg.cli.main import app

    result = CliRunner().invoke(app, ["view", str(tmp_path), "--no-browser"])
    assert result.exit_code == 2
    assert "is not the output folder of a predict run" in result.output


def test_a_port_in_use_is_refused_with_the_fix(run: Path, server: ViewServer) -> None:
    port = server.server_address[1]
    with pytest.raises(
        ConfigError, match=rf"cannot serve the web map on 127\.0\.0\.1:{port}: .*--port 0"
    ):
        open_view(run, port=port)
