"""Crops and weeds: image sets, instances and boxes, the weed grid, pixel coordinates."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from PIL import Image

from geoseg.analysis.instances import boxes, counts, instances
from geoseg.analysis.weedgrid import weed_grid
from geoseg.catalog import Catalog
from geoseg.errors import CatalogError, ConfigError, RasterOpenError
from geoseg.io.images import read_annotation, read_image
from tests.conftest import REPO, gdal_client_check, needs_data

NAMES = {1: "soil", 2: "crop", 3: "weed"}


def test_instances_and_boxes_of_a_hand_built_mask() -> None:
    classes = np.ones((10, 12), dtype=np.uint8)  # soil
    classes[1:4, 1:4] = 2  # crop plant, 9 px
    classes[6:9, 2:3] = 3  # weed, 3 px (vertical)
    classes[6:8, 8:11] = 3  # another weed, 6 px
    classes[0, 11] = 3  # a 1-px weed in the corner
    confidence = np.full(classes.shape, 0.5, dtype=np.float32)
    confidence[1:4, 1:4] = 0.9
    plants = instances(classes, confidence, [2, 3], NAMES, Affine.identity(), "px")
    assert len(plants) == 4 and plants.is_valid.all()
    crop = plants[plants.class_name == "crop"].iloc[0]
    assert crop.area_px2 == 9 and crop.pixels == 9 and crop.perimeter_px == 12
    assert crop.mean_confidence == pytest.approx(0.9)
    assert (crop.xmin, crop.ymin, crop.xmax, crop.ymax) == (1, 1, 4, 4)  # x = column, y = row
    weeds = plants[plants.class_name == "weed"].sort_values("area_px2")
    assert weeds.area_px2.tolist() == [1, 3, 6]
    assert len(set(plants.instance_id)) == 4
    box = boxes(plants)
    assert sorted(box.geometry.area) == [1.0, 3.0, 6.0, 9.0]  # boxes of these blocks: themselves
    assert list(box.columns) == list(plants.columns)
    table = counts(plants, "px").set_index("class_name")
    assert table.loc["weed", "instances"] == 3 and table.loc["crop", "area_px2"] == 9


def test_instances_in_asserted_metres() -> None:
    classes = np.zeros((4, 4), dtype=np.uint8)
    classes[:2, :2] = 3
    transform = Affine(0.002, 0, 1000.0, 0, -0.002, 2000.0)  # 2 mm pixels
    plants = instances(classes, np.ones((4, 4), np.float32), [3], NAMES, transform, "m")
    assert plants.area_m2.iloc[0] == pytest.approx(4 * 0.002**2)
    assert plants.xmin.iloc[0] == pytest.approx(1000.0) and plants.ymax.iloc[0] == 2000.0


def test_weed_grid_fractions_by_hand() -> None:
    classes = np.ones((4, 6), dtype=np.uint8)
    classes[0, 0] = 3  # cell (0, 0): 1 weed of 4 px
    classes[0:2, 2:4] = 3  # cell (0, 1): 4 weed of 4
    classes[2, 4] = 2  # cell (1, 2): 1 crop, 1 nodata, 2 soil
    classes[3, 5] = 0
    grid = weed_grid(
        classes, cell=2, weed=3, crop=2, soil=1, threshold=0.3, transform=Affine.identity()
    ).set_index(["cell_row", "cell_col"])
    assert len(grid) == 6
    assert grid.loc[(0, 0), "weed_fraction"] == 0.25 and grid.loc[(0, 0), "treat"] == 0
    assert grid.loc[(0, 1), "weed_fraction"] == 1.0 and grid.loc[(0, 1), "treat"] == 1
    assert grid.loc[(0, 0), "rate"] == pytest.approx(0.25 / 0.3)
    assert grid.loc[(1, 2), "mapped_px"] == 3
    assert grid.loc[(1, 2), "crop_fraction"] == pytest.approx(1 / 3)
    assert grid.loc[(1, 2), "soil_fraction"] == pytest.approx(2 / 3)
    assert grid.geometry.area.tolist() == [4.0] * 6


def test_uneven_edges_give_smaller_cells() -> None:
    grid = weed_grid(np.ones((5, 5), np.uint8), 2, 3, 2, 1, 0.1, Affine.identity())
    assert len(grid) == 9 and sorted(set(grid.geometry.area)) == [1.0, 2.0, 4.0]


def make_set(tmp_path: Path, annotation: np.ndarray) -> Catalog:
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((4, 5, 3), 90, np.uint8)).save(tmp_path / "img" / "001.png")
    Image.fromarray(annotation).save(tmp_path / "img" / "001_ann.png")
    body = (
        "image_sets:\n  s:\n    images: img/{id:03d}.png\n    annotations: img/{id:03d}_ann.png\n"
        '    ids: [1]\n    colours: {"0,0,0": 1, "0,255,0": 2}\n'
        "    classes: {1: {name: soil, color: '#aa7722'}, 2: {name: crop, color: '#22aa22'}}\n"
    )
    return Catalog.load(_catalog(tmp_path, body))


def _catalog(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text("version: 1\nsources: {}\n" + body)
    return path


def test_image_set_reading_and_unmapped_colours(tmp_path: Path) -> None:
    annotation = np.zeros((4, 5, 3), np.uint8)
    annotation[1, 1] = (0, 255, 0)
    ref = make_set(tmp_path, annotation).image_set("s")
    assert ref.ids == ("1",) and ref.georeference is None
    codes = read_annotation(ref.annotations[0][1], ref)
    assert codes[1, 1] == 2 and (codes == 1).sum() == 19
    assert read_image(ref.images[0][1]).shape == (3, 4, 5)
    annotation[2, 2] = (255, 0, 0)
    Image.fromarray(annotation).save(tmp_path / "img" / "001_ann.png")
    with pytest.raises(
        CatalogError,
        match=r"001_ann\.png has colours .* does not map: "
        r"\(255,0,0\): 1 px",
    ):
        read_annotation(ref.annotations[0][1], ref)


def test_vegetation_masks_make_unannotated_plants_unlabelled(tmp_path: Path) -> None:
    from geoseg.io.images import read_image, read_labels

    annotation = np.zeros((4, 5, 3), np.uint8)  # all black = soil
    annotation[0, 0] = (0, 255, 0)  # an annotated crop pixel
    make_set(tmp_path, annotation)
    mask = np.full((4, 5), 255, np.uint8)
    mask[0, 0] = mask[2, 1:3] = 0  # vegetation: the crop pixel and two unannotated plant pixels
    Image.fromarray(mask).save(tmp_path / "img" / "001_mask.png")
    body = (
        "image_sets:\n  s:\n    images: img/{id:03d}.png\n    annotations: img/{id:03d}_ann.png\n"
        "    vegetation_masks:\n      path: 'img/{id:03d}_mask.png'\n"
        "      vegetation_value: 0\n      background: 1\n"
        '    ids: [1]\n    colours: {"0,0,0": 1, "0,255,0": 2}\n'
        "    classes: {1: {name: soil, color: '#aa7722'}, 2: {name: crop, color: '#22aa22'}}\n"
    )
    ref = Catalog.load(_catalog(tmp_path, body)).image_set("s")
    codes = read_labels(ref, "1", (4, 5))
    assert codes[0, 0] == 2, "annotated plants keep their class"
    assert (codes[2, 1:3] == 0).all(), "vegetation the annotation calls soil is unlabelled"
    assert (codes == 1).sum() == 20 - 3
    Image.fromarray(mask[:3]).save(tmp_path / "img" / "001_mask.png")
    with pytest.raises(
        CatalogError, match=r"001_mask\.png is 5x3 px but its image .*001\.png is 5x4"
    ):
        read_labels(ref, "1", (4, 5))
    with pytest.raises(CatalogError, match=r"001_ann\.png is 5x4 px but its image .* is 6x4 px"):
        read_labels(ref, "1", (4, 6))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(photo)
    photo.write_bytes(photo.read_bytes()[:6000])  # cut inside the image data
    with pytest.raises(
        RasterOpenError, match=r"photo\.png is not an image .* truncated or corrupt"
    ):
        read_image(photo)
    with pytest.raises(ConfigError, match=r"vegetation_masks\.background 7 is not a code"):
        Catalog.load(_catalog(tmp_path, body.replace("background: 1", "background: 7")))


def test_image_set_config_errors(tmp_path: Path) -> None:
    body = (
        "image_sets:\n  s:\n    images: a/{id}.png\n    annotations: b/{id}.png\n    ids: [1]\n"
        "    colours: {\"0,0,0\": 4}\n    classes: {1: {name: soil, color: '#000000'}}\n"
    )
    with pytest.raises(ConfigError, match=r"colours map to codes \[4\] that 'classes' does not"):
        Catalog.load(_catalog(tmp_path, body))
    with pytest.raises(CatalogError, match="has no image set 'x'"):
        Catalog.load(_catalog(tmp_path, body.replace("4}", "1}"))).image_set("x")


def test_polygon_annotations_and_plant_level_matches(tmp_path: Path) -> None:
    from geoseg.evaluation.plants import plant_matches, plant_scores
    from geoseg.io.images import read_polygons

    ref = make_set(tmp_path, np.zeros((4, 5, 3), np.uint8)).image_set("s")
    path = tmp_path / "ann.yaml"
    path.write_text(
        "annotation:\n"
        "- {type: crop, points: {x: [1, 5, 5, 1], y: [1, 1, 5, 5]}}\n"  # 4 x 4 px square
        "- {type: crop, points: {x: [10, 14, 14, 10], y: [1, 1, 4, 4]}}\n"  # 4 x 3 px
        "- {type: crop, points: {x: 2.5, y: 8.5}}\n"  # a plant marked by one point
        "- {type: crop, points: {x: [10, 14, 10, 14], y: [6, 6, 9, 9]}}\n"  # a bow tie
    )
    outlines = read_polygons(path, ref)
    assert outlines.outline.tolist() == ["polygon", "polygon", "point", "polygon"]
    assert outlines.is_valid.all() and outlines.area.tolist() == [16.0, 12.0, 9.0, 6.0]
    classes = np.full((10, 16), 1, dtype=np.uint8)  # soil
    classes[1:5, 1:5] = 2  # the square: found as crop
    classes[2, 2] = 3  # ... with one weed pixel: the majority still crop
    classes[1:4, 10:14] = 3  # the second: predicted as weed
    # the point at (2.5, 8.5) and the bow tie: soil only -> not found
    matches = plant_matches(outlines, classes, Affine.identity(), 1, NAMES)
    assert matches.predicted_name.tolist() == ["crop", "weed", "soil", "soil"]
    assert matches.match.tolist() == [1, 0, 0, 0]
    assert matches.class_share.iloc[0] == 15 / 16 and matches.vegetation_share.iloc[0] == 1.0
    assert plant_scores(matches) == {
        "crop": {"annotated": 4, "matched": 1, "as_other_class": 1, "not_found": 2, "recall": 0.25}
    }
    path.write_text("annotation:\n- {type: tree, points: {x: [1, 2, 3], y: [1, 2, 1]}}\n")
    with pytest.raises(CatalogError, match=r"ann\.yaml, annotation 0: type 'tree' is not a class"):
        read_polygons(path, ref)
    path.write_text("annotation:\n- {type: crop, points: {x: [1, 2, 3], y: [1, 2]}}\n")
    with pytest.raises(CatalogError, match=r"annotation 0: points need as many x as y"):
        read_polygons(path, ref)
    path.write_text("plants: []\n")
    with pytest.raises(CatalogError, match=r"ann\.yaml must hold an 'annotation:' list"):
        read_polygons(path, ref)


@needs_data()
def test_cwfid_is_read_in_pixel_coordinates() -> None:
    ref = Catalog.load(REPO / "data_catalog.yaml").image_set("cwfid")
    assert len(ref.ids) == 39 and ref.georeference is None
    assert "NON-COMMERCIAL" in ref.licence
    codes = read_annotation(ref.annotations[0][1], ref)
    assert set(np.unique(codes)) == {1, 2, 3}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # pixel coordinates
@needs_data()
def test_crop_weed_workflow_outputs_say_pixel_coordinates(tmp_path: Path) -> None:
    import json

    import pyogrio
    import rasterio

    from geoseg.workflow.run import run_workflow

    fields = gpd.GeoDataFrame(
        {"field_id": ["A", "B"]},
        geometry=[shapely.box(0, 0, 648, 966), shapely.box(648, 0, 1296, 966)],  # pixels
    )
    fields.to_file(tmp_path / "fields.gpkg")
    path = tmp_path / "cw.yaml"
    path.write_text(
        f"version: 1\ncatalog: {REPO / 'data_catalog.yaml'}\nsteps:\n  - train:\n"
        f"      image_set: cwfid\n      output: {tmp_path / 'cw.geoseg'}\n      chip_size: 64\n"
        "      epochs: 1\n      chips_per_epoch: 16\n      batch_size: 8\n      threads: 1\n"
        "      device: cpu\n      validation: {fraction: 0.05}\n"
        f"  - predict_images:\n      image_set: cwfid\n      model: {tmp_path / 'cw.geoseg'}\n"
        f"      output: {tmp_path / 'out'}\n      images: ['2']\n      overlays: 1\n"
        "      grid: {cell: 200, threshold: 0.05}\n      min_plant_area: 20\n"
        f"      fields: {tmp_path / 'fields.gpkg'}\n",
        encoding="utf-8",
    )
    reports = run_workflow(path, show_progress=False)
    out = tmp_path / "out"
    figures = reports[1].figures
    assert figures.images == 1 and "NOT georeferenced" in figures.coordinates
    assert figures.cells == 5 * 7  # 966 x 1296 px in 200 px cells
    info = pyogrio.read_info(out / "plants.gpkg", layer="plants")
    assert (
        info["crs"] is None and "NOT georeferenced" in info["layer_metadata"]["GEOSEG_COORDINATES"]
    )
    assert "area_px2" in info["fields"] and "area_m2" not in info["fields"]
    assert {lay for lay, _ in pyogrio.list_layers(out / "plants.gpkg")} == {"plants", "boxes"}
    shp_fields = pyogrio.read_info(out / "weed_grid.shp")["fields"]
    assert "weed_frac" in shp_fields and all(len(f) <= 10 for f in shp_fields)
    with rasterio.open(out / "classes" / "2.tif") as ds:
        assert ds.crs is None and ds.tags()["COORDINATES"].startswith("image pixel")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"soil", "crop", "weed"}
    assert "NOT georeferenced" in metrics["coordinates"]
    assert (out / "overlays" / "overlay_2.png").exists()
    outlines = pyogrio.read_dataframe(out / "annotations.gpkg", layer="annotations")
    assert len(outlines) == 12 and {"predicted_name", "match"} <= set(outlines.columns)
    assert set(metrics["plants"]) == {"crop", "weed"} and (out / "annotations.qml").exists()
    gdal_client_check(
        out / "classes" / "2.tif",
        out / "plants.gpkg",
        out / "weed_grid.gpkg",
        out / "weed_grid.shp",
        out / "annotations.gpkg",
    )
    assert "units" in (out / "counts.csv").read_text().splitlines()[0]
    import pandas as pd

    per_field = pd.read_csv(out / "fields.csv").set_index("field_id")
    assert list(per_field.index) == ["A", "B"]
    shares = per_field[["share_soil", "share_crop", "share_weed"]].sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    assert (per_field.weed_pressure == per_field.share_weed).all()
    assert per_field.mapped_px2.sum() == 966 * 1296
    plants = pyogrio.read_dataframe(out / "plants.gpkg", layer="plants")
    assert len(plants) and (plants.area_px2 >= 20).all(), "smaller regions are not plants"
    west = plants.geometry.representative_point().x <= 648  # field A first: it takes the edge
    assert per_field.loc["A", "plants_weed"] == (west & (plants.class_name == "weed")).sum()
    assert per_field[["plants_crop", "plants_weed"]].sum().sum() == len(plants)
    bundle = json.loads((tmp_path / "cw.geoseg" / "bundle.json").read_text())
    assert (
        bundle["crs_units"] == "pixel" and "NON-COMMERCIAL" in bundle["training_data"][0]["licence"]
    )


@pytest.mark.filterwarnings("ignore:'crs' was not provided")  # pixel coordinates
def test_fields_layer_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    from geoseg.analysis.zonal import field_layer

    with pytest.raises(ConfigError, match=r"nope\.gpkg does not exist: fix 'fields'"):
        field_layer(tmp_path / "nope.gpkg", "field_id")
    layer = tmp_path / "f.gpkg"
    gpd.GeoDataFrame({"name": ["A"]}, geometry=[shapely.box(0, 0, 5, 5)]).to_file(layer)
    with pytest.raises(ConfigError, match=r"f\.gpkg has no 'field_id' column \(it has name"):
        field_layer(layer, "field_id")
    assert list(field_layer(layer, "name").name) == ["A"]


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_asserted_georeferencing_puts_every_output_in_the_asserted_crs(tmp_path: Path) -> None:
    import pyogrio
    import rasterio
    import torch

    from geoseg.model.bundle import BandStats, BundleMeta, ClassInfo, NetworkSpec
    from geoseg.model.network import build_network
    from geoseg.model.store import save_bundle
    from geoseg.workflow.run import run_workflow

    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(
        tmp_path / "img" / "001.png"
    )
    (tmp_path / "img" / "001.yaml").write_text(
        "annotation:\n- {type: weed, points: {x: [10, 30, 30, 10], y: [5, 5, 25, 25]}}\n"
    )
    catalog = _catalog(
        tmp_path,
        "image_sets:\n  s:\n    images: img/{id:03d}.png\n    annotations: img/{id:03d}_ann.png\n"
        "    polygons: img/{id:03d}.yaml\n    ids: [1]\n"
        '    colours: {"0,0,0": 1, "0,255,0": 2, "255,0,0": 3}\n'
        "    classes: {1: {name: soil, color: '#aa7722'}, 2: {name: crop, color: '#22aa22'},"
        " 3: {name: weed, color: '#dd2222'}}\n"
        "    georeference: {pixel_size: 0.002, crs: 'EPSG:32632', origin: [500000, 5800000]}\n",
    )
    torch.manual_seed(0)
    network = NetworkSpec(encoder="resnet18", encoder_depth=2, decoder_channels=[16, 8])
    meta = BundleMeta(
        name="rgb",
        network=network,
        bands=[BandStats(name=n, mean=128.0, std=64.0) for n in ("red", "green", "blue")],
        units="8-bit RGB",
        pixel_size=0.002,
        classes=[ClassInfo(code=c, name=NAMES[c], color="#336699") for c in (1, 2, 3)],
        tile_size=32,
        overlap=8,
    )
    model = tmp_path / "rgb.geoseg"
    save_bundle(meta, build_network(network, 3, 3).state_dict(), model, "# test\n")
    path = tmp_path / "wf.yaml"
    path.write_text(
        f"version: 1\ncatalog: {catalog}\nsteps:\n  - predict_images:\n      image_set: s\n"
        f"      model: {model}\n      output: {tmp_path / 'out'}\n      images: all\n"
        "      grid: {cell: 0.05}\n      device: cpu\n"
    )
    figures = run_workflow(path, show_progress=False)[0].figures
    out = tmp_path / "out"
    assert figures.cells == 3 * 4  # 25 px cells over 64 x 80 px
    assert figures.coordinates.startswith("asserted in the catalog: EPSG:32632")
    with rasterio.open(out / "classes" / "1.tif") as ds:
        assert ds.crs.to_epsg() == 32632 and ds.transform.c == 500000 and ds.transform.a == 0.002
    for name, layer in (("plants.gpkg", "plants"), ("weed_grid.gpkg", "weed_grid")):
        info = pyogrio.read_info(out / name, layer=layer)
        assert info["crs"] == "EPSG:32632", name
        assert any(f.endswith("_m2") for f in info["fields"]) or name == "weed_grid.gpkg"
    cells = pyogrio.read_dataframe(out / "weed_grid.gpkg")
    np.testing.assert_allclose(cells.total_bounds, [500000, 5800000 - 0.128, 500000.16, 5800000])
    outline = pyogrio.read_dataframe(out / "annotations.gpkg")
    np.testing.assert_allclose(
        outline.total_bounds, [500000.02, 5800000 - 0.05, 500000.06, 5800000 - 0.01]
    )
    assert pyogrio.read_info(out / "weed_grid.shp")["crs"] == "EPSG:32632"
    path.write_text(path.read_text().replace("images: all", "images: holdout"))
    with pytest.raises(ConfigError, match=r"holdout needs a model trained on the images of image"):
        run_workflow(path, show_progress=False, overwrite=True)
