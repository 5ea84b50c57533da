"""Zonal statistics and change between dates, against hand-computed values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geoseg.errors import GridMismatchError
from geoseg.workflow.run import run_workflow
from tests.conftest import UTM_TRANSFORM, gdal_client_check

X0, Y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f  # 10 m pixels, north up


def box(col0: int, row0: int, col1: int, row1: int) -> shapely.Polygon:
    """A polygon covering pixel columns col0..col1-1 and rows row0..row1-1."""
    return shapely.box(X0 + 10 * col0, Y0 - 10 * row1, X0 + 10 * col1, Y0 - 10 * row0)


def workflow(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "wf.yaml"
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("version: 1\nsources: {}\n")
    path.write_text(f"version: 1\ncatalog: {catalog}\nsteps:\n{body}")
    return path


def test_zonal_areas_are_pixel_counts_times_pixel_area(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    classes = np.zeros((20, 20), dtype=np.uint8)
    classes[:, :10] = 2  # tree
    classes[:, 10:] = 4  # built-up
    classes[:3, :] = 0  # nodata rows
    classes[15:, 5:15] = 1  # water
    write_raster("classes.tif", classes, nodata=0)
    zones = gpd.GeoDataFrame(
        {"district": ["west", "north-east"]},
        geometry=[box(0, 0, 10, 20), box(10, 0, 20, 10)],
        crs="EPSG:32633",
    )
    zones.to_file(tmp_path / "zones.gpkg")
    body = (
        f"  - zonal:\n      classes: {tmp_path / 'classes.tif'}\n"
        f"      zones: {tmp_path / 'zones.gpkg'}\n      output: {tmp_path / 'out'}\n"
    )
    reports = run_workflow(workflow(tmp_path, body), show_progress=False)
    assert reports[0].figures.zones == 2
    table = pyogrio.read_dataframe(tmp_path / "out" / "zonal.gpkg").set_index("district")
    west, north_east = table.loc["west"], table.loc["north-east"]
    # west: rows 3..19 of cols 0..9 -> tree except water in rows 15..19, cols 5..9
    assert west.area_tree_m2 == (17 * 10 - 5 * 5) * 100
    assert west.area_water_m2 == 5 * 5 * 100
    assert west.nodata_m2 == 3 * 10 * 100
    assert west.share_water == pytest.approx(25 / 170)
    assert north_east.area_built_up_m2 == 7 * 10 * 100 and north_east.area_tree_m2 == 0
    assert north_east.share_built_up == 1.0
    csv = pd.read_csv(tmp_path / "out" / "zonal.csv")
    assert list(csv.district) == ["west", "north-east"]
    assert csv.area_tree_m2.tolist() == [14500.0, 0.0]
    gdal_client_check(tmp_path / "out" / "zonal.gpkg")


def test_change_matrix_and_polygons(tmp_path: Path, write_raster: Callable[..., Path]) -> None:
    before = np.full((12, 12), 2, dtype=np.uint8)  # all tree
    before[:, 8:] = 5  # grass on the right
    after = before.copy()
    after[2:6, 2:6] = 4  # 16 px tree -> built-up
    after[8:10, 9:11] = 4  # 4 px grass -> built-up
    after[0, 0] = 1  # 1 px tree -> water
    after[11, 11] = 0  # nodata after: not counted
    write_raster("before.tif", before, nodata=0)
    write_raster("after.tif", after, nodata=0)
    body = (
        f"  - change:\n      before: {tmp_path / 'before.tif'}\n"
        f"      after: {tmp_path / 'after.tif'}\n      output: {tmp_path / 'out'}\n"
        "      to_classes: [4]\n"
    )
    reports = run_workflow(workflow(tmp_path, body), show_progress=False)
    out = tmp_path / "out"
    matrix = pd.read_csv(out / "transitions.csv", index_col=0)
    assert matrix.loc["tree", "built-up"] == 16 * 100
    assert matrix.loc["grass", "built-up"] == 4 * 100
    assert matrix.loc["tree", "water"] == 100
    assert matrix.loc["tree", "tree"] == (8 * 12 - 16 - 1) * 100
    assert matrix.loc["grass", "grass"] == (4 * 12 - 4 - 1) * 100  # the nodata pixel is out
    polygons = pyogrio.read_dataframe(out / "change.gpkg").sort_values("region_id")
    assert len(polygons) == 2 == reports[0].figures.polygons  # to_classes: only -> built-up
    assert polygons.from_class.tolist() == [2, 5] and polygons.to_class.tolist() == [4, 4]
    assert polygons.class_name.tolist() == ["tree -> built-up", "grass -> built-up"]
    assert polygons.area_m2.tolist() == [1600.0, 400.0]
    assert (out / "change.qml").exists() and (out / "change.tif").exists()
    figures = reports[0].figures
    assert figures.changed_km2 == 21 * 100 / 1e6  # every change, 21 px of 10 m x 10 m
    assert figures.mapped_change_km2 == 20 * 100 / 1e6  # only into built-up
    gdal_client_check(out / "change.tif", out / "change.gpkg")


def test_change_needs_one_grid(tmp_path: Path, write_raster: Callable[..., Path]) -> None:
    from affine import Affine

    write_raster("before.tif", np.ones((5, 5), np.uint8), nodata=0)
    write_raster(
        "after.tif",
        np.ones((5, 5), np.uint8),
        nodata=0,
        transform=Affine(10, 0, 500010, 0, -10, 5800000),
    )
    body = (
        f"  - change:\n      before: {tmp_path / 'before.tif'}\n"
        f"      after: {tmp_path / 'after.tif'}\n      output: {tmp_path / 'out'}\n"
    )
    with pytest.raises(GridMismatchError, match=r"are not on one grid"):
        run_workflow(workflow(tmp_path, body), show_progress=False)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_metric_analyses_refuse_class_maps_in_pixel_coordinates(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    from geoseg.errors import GeoreferenceError

    photo = write_raster("photo.tif", np.ones((8, 8), dtype=np.uint8), crs=None, transform=None)
    body = (
        f"  - change:\n      before: {photo}\n      after: {photo}\n"
        f"      output: {tmp_path / 'change'}\n"
        f"  - zonal:\n      classes: {photo}\n      zones: {photo}\n"
        f"      output: {tmp_path / 'zonal'}\n"
    )
    with pytest.raises(GeoreferenceError, match=r"change areas in m² .*photo\.tif.* needs a geo"):
        run_workflow(workflow(tmp_path, body), show_progress=False)
    assert not (tmp_path / "change" / "transitions.csv").exists()


def test_two_steps_may_not_share_an_output_folder(tmp_path: Path) -> None:
    from geoseg.errors import ConfigError
    from geoseg.workflow.plan import plan_workflow

    (tmp_path / "a.tif").write_bytes(b"")
    body = (
        f"  - change:\n      before: {tmp_path / 'a.tif'}\n      after: {tmp_path / 'a.tif'}\n"
        f"      output: {tmp_path / 'out'}\n"
        f"  - zonal:\n      classes: {tmp_path / 'a.tif'}\n      zones: {tmp_path / 'a.tif'}\n"
        f"      output: {tmp_path / 'out'}\n"
    )
    with pytest.raises(ConfigError, match=r"steps\.1\.zonal writes into .*out, which step 0"):
        plan_workflow(workflow(tmp_path, body))
