"""STAC Items as catalog sources (issue 14): bands picked by name, values as the item says.

The items are written by the tests with pystac over COGs cut from the shipped sample scene; the
remote case serves item and COGs from the loopback range server of the reliability tests.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio

import geoseg
from geoseg.catalog import Catalog
from geoseg.errors import CatalogError, ConfigError
from geoseg.io.source import RasterSource
from tests.conftest import REPO, write_catalog
from tests.test_remote import RangeServer, same_pixels

SAMPLE = REPO / "samples" / "nc_landsat7_2000.tif"
KEYS = ("B1", "B2", "B3", "B4", "B5", "B7")  # Landsat 7 band numbers
COMMON = ("blue", "green", "red", "nir08", "swir16", "swir22")
NAMES = ("blue", "green", "red", "nir", "swir1", "swir2")  # the model's names


def write_item(folder: Path, raster: dict[str, dict[str, Any]] | None = None) -> Path:
    """An item with one single-band COG asset per sample band, a thumbnail, relative hrefs.

    ``raster`` gives an asset's ``raster:bands`` entry (nodata, scale, offset, unit).
    """
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(SAMPLE) as ds:
        bbox = list(ds.bounds)
    item = pystac.Item(
        "LE07_016035_20000301",
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        bbox,
        dt.datetime(2000, 3, 1, tzinfo=dt.UTC),
        {"license": "CC-BY-SA-3.0", "platform": "landsat-7"},
    )
    for index, (key, common, name) in enumerate(zip(KEYS, COMMON, NAMES, strict=True), 1):
        cog_translate(
            SAMPLE, folder / f"{key}.tif", cog_profiles.get("deflate"), indexes=[index], quiet=True
        )
        fields: dict[str, Any] = {"eo:bands": [{"name": key, "common_name": common}]}
        if raster and key in raster:
            fields["raster:bands"] = [raster[key]]
        item.add_asset(
            key,
            pystac.Asset(
                f"./{key}.tif",
                name,
                media_type=pystac.MediaType.COG,
                roles=["data"],
                extra_fields=fields,
            ),
        )
    item.add_asset(
        "thumbnail", pystac.Asset("./thumb.png", media_type="image/png", roles=["thumbnail"])
    )
    path = folder / "item.json"
    item.set_self_href(str(path))
    item.save_object(include_self_link=False)
    return path


def stac_catalog(folder: Path, item: str | Path, bands: str) -> Catalog:
    folder.mkdir(parents=True, exist_ok=True)
    return Catalog.load(write_catalog(folder, f"  s:\n    stac: {item}\n    bands: {bands}\n"))


def test_bands_are_found_by_common_name_band_name_or_asset_key(tmp_path: Path) -> None:
    item = write_item(tmp_path / "item")
    bands = "[{name: red}, {name: B4}, {name: B1}, {name: swir16}]"
    ref = stac_catalog(tmp_path, item, bands).source("s")
    assert [Path(str(b.path)).name for b in ref.bands] == ["B3.tif", "B4.tif", "B1.tif", "B5.tif"]
    assert {b.band for b in ref.bands} == {1} and {b.scale for b in ref.bands} == {1.0}
    assert "LE07_016035_20000301" in ref.description and ref.licence == "CC-BY-SA-3.0"


def test_values_follow_the_items_raster_metadata_unless_the_catalog_says_otherwise(
    tmp_path: Path,
) -> None:
    raster = {
        "B3": {"nodata": 0, "scale": 0.5, "offset": 10.0, "unit": "DN"},
        "B4": {"nodata": 0, "scale": 2.0, "offset": -1.0, "unit": "DN"},
    }
    item = write_item(tmp_path / "item", raster)
    bands = "[{name: red}, {name: nir, asset: B4, scale: 1.0}]"
    source = RasterSource.open(stac_catalog(tmp_path, item, bands).source("s"))
    ref = source.ref
    assert [(b.nodata, b.scale, b.offset) for b in ref.bands] == [(0, 0.5, 10.0), (0, 1.0, -1.0)]
    values = source.read(source.grid.window)
    with rasterio.open(SAMPLE) as ds:
        raw = ds.read([3, 4]).astype(np.float32)
    expected = np.stack([raw[0] * 0.5 + 10.0, raw[1] - 1.0])
    valid = raw != 0
    np.testing.assert_allclose(values[valid], expected[valid])
    assert np.isnan(values[~valid]).all(), "the item's nodata (0) is nodata"


def test_a_stac_source_predicts_what_the_same_files_do_and_is_checked_against_the_model(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    item = write_item(tmp_path / "item")
    # The model's band names; STAC's Landsat common names are nir08 and swir16.
    bands = (
        "[{name: blue}, {name: green}, {name: red}, {name: nir, asset: nir08}, "
        "{name: swir1, asset: B5}]"
    )
    catalog = write_catalog(tmp_path, f"  s:\n    stac: {item}\n    bands: {bands}\n")
    options: dict[str, Any] = {"chunk_size": 128, "vector": {"enabled": False}}
    geoseg.predict("s", tiny_bundle, tmp_path / "stac", catalog=catalog, **options)
    (tmp_path / "plain").mkdir()
    (tmp_path / "four").mkdir()
    plain = write_catalog(
        tmp_path / "plain",
        f"  s:\n    file: {SAMPLE}\n    bands: [{', '.join(f'{{name: {n}}}' for n in NAMES)}]\n",
    )
    geoseg.predict("s", tiny_bundle, tmp_path / "plain-out", catalog=plain, **options)
    assert same_pixels(tmp_path / "stac", tmp_path / "plain-out")
    four = bands.replace(", {name: swir1, asset: B5}", "")
    catalog = write_catalog(tmp_path / "four", f"  s:\n    stac: {item}\n    bands: {four}\n")
    with pytest.raises(Exception, match=r"missing \['swir1'\]"):
        geoseg.predict("s", tiny_bundle, tmp_path / "refused", catalog=catalog, **options)
    assert not (tmp_path / "refused" / "classes.tif").exists()


def test_an_item_over_http_reads_its_assets_relative_to_its_url(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    item = write_item(tmp_path / "item")
    server = RangeServer()
    for path in (tmp_path / "item").iterdir():
        server.put(path.name, path.read_bytes())
    httpd = server.start()
    try:
        bands = "[{name: blue}, {name: green}]"
        ref = stac_catalog(tmp_path, server.url("item.json"), bands).source("s")
        assert [str(b.path) for b in ref.bands] == [server.url("B1.tif"), server.url("B2.tif")]
        source = RasterSource.open(ref)
        local = RasterSource.open(stac_catalog(tmp_path / "local", item, bands).source("s"))
        np.testing.assert_array_equal(
            source.read(source.grid.window), local.read(local.grid.window)
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_what_a_stac_source_cannot_find_is_named(tmp_path: Path) -> None:
    item = write_item(tmp_path / "item")
    with pytest.raises(CatalogError, match=r"has no band 'pan': its raster assets are \['B1'"):
        stac_catalog(tmp_path, item, "[{name: pan}]").source("s")
    with pytest.raises(CatalogError, match=r"no band 'thumbnail'"):
        stac_catalog(tmp_path, item, "[{name: thumbnail}]").source("s")
    collection = tmp_path / "collection.json"
    collection.write_text('{"type": "Collection", "id": "c"}')
    with pytest.raises(CatalogError, match=r"is not a STAC Item \(its type is 'Collection'"):
        stac_catalog(tmp_path, collection, "[{name: red}]").source("s")
    with pytest.raises(CatalogError, match=r"cannot read the STAC item .*missing\.json"):
        stac_catalog(tmp_path, tmp_path / "missing.json", "[{name: red}]").source("s")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match=r"bad\.json is not JSON"):
        stac_catalog(tmp_path, tmp_path / "bad.json", "[{name: red}]").source("s")
    with pytest.raises(ConfigError, match=r"finds its bands' files in the item's assets"):
        stac_catalog(tmp_path, item, "[{name: red, file: x.tif}]")
    with pytest.raises(ConfigError, match=r"bands \['red'\] give 'asset', which only a 'stac:'"):
        Catalog.load(
            write_catalog(tmp_path, "  s:\n    file: x.tif\n    bands: [{name: red, asset: B3}]\n")
        )
