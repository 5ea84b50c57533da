"""The GIS side of the annotation loop: the review layer, scene chips and the labelling order."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from PIL import Image
from rasterio.crs import CRS

from geoseg.annotation.chips import (
    chip_items,
    chip_windows,
    cut,
    place,
    scene_grid,
    scene_record,
    stretch_limits,
    write_chip_images,
)
from geoseg.annotation.priority import (
    PRIORITY_CSV,
    PriorityWeights,
    prioritise,
    prioritise_predictions,
    rank,
    rare_class_weights,
)
from geoseg.annotation.record import ExportRecord, ItemRecord, Prediction, write_nodata
from geoseg.annotation.regions import regions
from geoseg.annotation.review import REVIEW_STATUS, ReviewLayer, node_coverage
from geoseg.catalog import BandRef, SourceRef
from geoseg.errors import AnnotationError
from geoseg.io.source import RasterSource
from geoseg.model.bundle import ClassInfo
from geoseg.types import PIXEL_NOTE, Grid
from tests.conftest import gdal_client_check

CLASSES = [
    ClassInfo(code=1, name="soil", color="#a6761d"),
    ClassInfo(code=2, name="crop", color="#1a9850"),
    ClassInfo(code=3, name="weed", color="#d73027"),
]
UTM = CRS.from_epsg(32633)
NORTH_UP = Affine(10, 0, 500000, 0, -10, 5800000)
ROTATED = Affine.translation(500000, 5800000) @ Affine.rotation(-17.5) @ Affine.scale(10, -10)


def class_map(height: int, width: int, seed: int, nodata: bool = True) -> NDArray[np.uint8]:
    """Blocks and speckle of classes 1-3, holes, corner-only contacts and some no data (0)."""
    rng = np.random.default_rng(seed)
    block = 7
    base = rng.integers(1, 4, (height // block + 1, width // block + 1))
    out = np.kron(base, np.ones((block, block), int))[:height, :width].astype(np.uint8)
    speck = rng.random((height, width)) < 0.03
    out[speck] = rng.integers(1, 4, int(speck.sum()))
    if nodata:
        out[: height // 5, : width // 4] = 0  # a no-data corner
        out[rng.random((height, width)) < 0.005] = 0
    return out


def confidence_map(classes: NDArray[np.uint8], seed: int) -> NDArray[np.float32]:
    """A top-class probability per pixel, NaN where there is no data."""
    values = np.random.default_rng(seed).uniform(0.34, 1.0, classes.shape).astype(np.float32)
    return np.where(classes == 0, np.nan, values).astype(np.float32)


def coverage(frame: gpd.GeoDataFrame) -> NDArray[np.object_]:
    """A frame's geometries as a plain array (``coverage_is_valid`` of a collection is True)."""
    return np.asarray(frame.geometry.values, dtype=object)


def assert_coverage(geometries: NDArray[np.object_], pixels: int, pixel_area: float) -> None:
    """A valid, edge-matched coverage of exactly ``pixels`` pixels, nothing overlapping."""
    assert shapely.coverage_is_valid(geometries), shapely.coverage_invalid_edges(geometries)
    areas = shapely.area(geometries)
    assert areas.sum() == pytest.approx(pixels * pixel_area, rel=1e-9)
    assert shapely.union_all(geometries).area == pytest.approx(areas.sum(), rel=1e-9)


# --- the review layer -----------------------------------------------------------------------


def test_noding_makes_the_regions_an_edge_matched_coverage_without_moving_them() -> None:
    for seed in range(20):
        classes = class_map(40, 37, seed)
        raw = [r.polygon for r in regions(classes)]
        noded = node_coverage(raw)
        assert all(n.is_valid and n.equals(r) for n, r in zip(noded, raw, strict=True)), seed
        assert_coverage(np.asarray(noded, dtype=object), int((classes > 0).sum()), 1.0)
    raw = [r.polygon for r in regions(np.array([[1, 1, 1, 1], [2, 2, 3, 3]], np.uint8))]
    assert not shapely.coverage_is_valid(np.asarray(raw, dtype=object)), "GDAL leaves T joints"


def photo_export(folder: Path) -> tuple[ExportRecord, list[Prediction]]:
    """Three photos of different sizes (pixel coordinates), with no data and confidence."""
    predictions = []
    for index, (height, width) in enumerate([(60, 80), (45, 45), (33, 70)]):
        classes = class_map(height, width, index)
        item = write_nodata(
            ItemRecord(
                id=f"IMG_{index}",
                image=f"images/IMG_{index}.png",
                height=height,
                width=width,
                priority=0.5 - index / 10,
            ),
            classes,
            folder,
        )
        predictions.append(Prediction(item, classes, confidence_map(classes, index)))
    record = ExportRecord(
        source="test", classes=CLASSES, background=1, items=[p.item for p in predictions]
    )
    return record, predictions


def test_the_review_layer_of_photos_is_a_pixel_coverage_and_round_trips_exactly(
    tmp_path: Path,
) -> None:
    record, predictions = photo_export(tmp_path)
    written = ReviewLayer().write(predictions, record, tmp_path)
    assert written == [tmp_path / "review.gpkg", tmp_path / "review.qml"]
    gdal_client_check(tmp_path / "review.gpkg")
    info = pyogrio.read_info(tmp_path / "review.gpkg", layer="review")
    assert info["crs"] is None and info["geometry_type"] == "Polygon"
    assert info["layer_metadata"]["GEOSEG_COORDINATES"] == PIXEL_NOTE
    assert "NOT georeferenced" in info["layer_metadata"]["DESCRIPTION"]
    assert list(info["fields"]) == [
        "item_id",
        "class_id",
        "class_name",
        "confidence",
        "pixels",
        "review_status",
        "priority",
    ]
    frame = pyogrio.read_dataframe(tmp_path / "review.gpkg", layer="review")
    assert set(frame.review_status) == {"todo"}
    for prediction in predictions:
        item, classes = prediction.item, prediction.classes
        rows = frame[frame.item_id == item.id]
        assert_coverage(coverage(rows), int((classes > 0).sum()), 1.0)
        assert set(rows.priority) == {item.priority}
        assert rows.pixels.sum() == (classes > 0).sum()
        # each polygon is its region: class and mean confidence of the pixels it covers
        first = rows.iloc[0]
        painted = rasterio.features.rasterize(
            [(first.geometry, 1)], out_shape=classes.shape, transform=Affine.identity()
        ).astype(bool)
        assert (classes[painted] == first.class_id).all()
        assert first.class_name == {c.code: c.name for c in CLASSES}[first.class_id]
        assert first.confidence == pytest.approx(
            float(prediction.confidence[painted].astype(np.float64).mean())
        )
    back = ReviewLayer().read(tmp_path / "review.gpkg", record)
    assert set(back) == {p.item.id for p in predictions}
    for prediction in predictions:
        assert back[prediction.item.id].dtype == np.uint8
        assert (back[prediction.item.id] == prediction.classes).all(), prediction.item.id
    assert ReviewLayer().read(tmp_path, record).keys() == back.keys(), "the folder reads too"


def scene_export(
    folder: Path, transform: Affine, size: int = 96
) -> tuple[ExportRecord, NDArray[np.uint8], Grid, list[Prediction]]:
    """A 250x170 px scene in EPSG:32633 cut into chips, with no-data masks recorded."""
    grid = Grid(170, 250, transform, UTM)
    classes = class_map(170, 250, 7)
    classes[:100, :100] = 0  # the top-left chip has no data at all
    chips = cut(classes, grid, confidence_map(classes, 7), size=size)
    predictions = [
        Prediction(write_nodata(p.item, p.classes, folder), p.classes, p.confidence)
        for p in chips.predictions
    ]
    record = ExportRecord(
        source="scene",
        classes=CLASSES,
        background=None,
        scene=chips.scene,
        items=[p.item for p in predictions],
    )
    return record, classes, grid, predictions


@pytest.mark.parametrize("transform", [NORTH_UP, ROTATED], ids=["north-up", "rotated"])
def test_the_review_layer_of_scene_chips_is_georeferenced_and_round_trips_exactly(
    tmp_path: Path, transform: Affine
) -> None:
    record, classes, grid, predictions = scene_export(tmp_path, transform)
    assert len(predictions) == 5, "the all-no-data corner chip is left out"
    ReviewLayer().write(predictions, record, tmp_path)
    gdal_client_check(tmp_path / "review.gpkg")
    frame = pyogrio.read_dataframe(tmp_path / "review.gpkg", layer="review")
    assert CRS.from_wkt(frame.crs.to_wkt()) == UTM
    info = pyogrio.read_info(tmp_path / "review.gpkg", layer="review")
    assert info["layer_metadata"]["GEOSEG_COORDINATES"].startswith("EPSG:32633")
    for prediction in predictions:
        rows = frame[frame.item_id == prediction.item.id]
        assert_coverage(coverage(rows), int((prediction.classes > 0).sum()), 100.0)
    # the chips are noded together on the scene's grid: the whole layer is one coverage
    assert_coverage(coverage(frame), int((classes > 0).sum()), 100.0)
    # and it lies on the scene: pixel centres fall in polygons of their class
    rng = np.random.default_rng(0)
    tree = shapely.STRtree(coverage(frame))
    for row, col in zip(rng.integers(0, 170, 300), rng.integers(0, 250, 300), strict=True):
        centre = shapely.Point(grid.transform @ (col + 0.5, row + 0.5))
        hits = tree.query(centre, predicate="within")
        assert len(hits) == (1 if classes[row, col] else 0), (row, col)
        if len(hits):
            assert frame.class_id.iloc[hits[0]] == classes[row, col], (row, col)
    back = ReviewLayer().read(tmp_path / "review.gpkg", record)
    for prediction in predictions:
        assert (back[prediction.item.id] == prediction.classes).all(), prediction.item.id
    assert (place(back, record) == classes).all(), "placed back on the scene: 0 px drift"


def edit(folder: Path, change: Callable[[gpd.GeoDataFrame], None]) -> Path:
    """A copy of the review layer with ``change`` applied to its frame, as QGIS would save it."""
    frame = pyogrio.read_dataframe(folder / "review.gpkg", layer="review", fid_as_index=True)
    change(frame)
    path = folder / "edited.gpkg"
    path.unlink(missing_ok=True)
    pyogrio.write_dataframe(frame, path, layer="review", driver="GPKG")
    return path


def test_edits_come_back_and_bad_edits_are_errors_naming_the_file_and_feature(
    tmp_path: Path,
) -> None:
    record, _, grid, predictions = scene_export(tmp_path, ROTATED)
    ReviewLayer().write(predictions, record, tmp_path)
    frame = pyogrio.read_dataframe(tmp_path / "review.gpkg", layer="review")
    target = predictions[0]
    weeds = frame[(frame.item_id == target.item.id) & (frame.class_name == "weed")]
    at = int(weeds.pixels.idxmax())  # the position of a weed patch the reviewer works on
    assert target.item.window is not None
    row, col = target.item.window[:2]
    inverse = ~(grid.transform @ Affine.translation(col, row))
    outline = shapely.transform(
        frame.geometry.iloc[at], lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1]))
    )
    inside = rasterio.features.rasterize(
        [(outline, 1)], out_shape=target.item.shape, transform=Affine.identity()
    ).astype(bool)
    assert inside.sum() == frame.pixels.iloc[at]

    def set_values(**values: object) -> Callable[[gpd.GeoDataFrame], None]:
        def change(f: gpd.GeoDataFrame) -> None:
            for field, value in values.items():
                f.loc[f.index[at], field] = value

        return change

    relabelled = edit(tmp_path, set_values(class_name="crop", review_status="corrected"))
    corrected = ReviewLayer().read(relabelled, record)[target.item.id]
    assert (corrected[inside] == 2).all() and (corrected[~inside] == target.classes[~inside]).all()
    rejected = ReviewLayer().read(edit(tmp_path, set_values(review_status="rejected")), record)
    assert (rejected[target.item.id][inside] == 0).all(), "rejected, not corrected: unlabelled"
    assert (rejected[target.item.id][~inside] == target.classes[~inside]).all()
    deleted = edit(tmp_path, lambda f: f.drop(index=f.index[at], inplace=True))
    assert (ReviewLayer().read(deleted, record)[target.item.id][inside] == record.fill).all()

    path = edit(tmp_path, set_values(class_name="tree"))
    fid = pyogrio.read_dataframe(path, layer="review", fid_as_index=True).index[at]
    with pytest.raises(
        AnnotationError, match=rf"edited\.gpkg, feature {fid}: label 'tree' is not one of"
    ):
        ReviewLayer().read(path, record)
    with pytest.raises(
        AnnotationError, match=rf"edited\.gpkg, feature {fid}: image 'r9999-c0000' is not one"
    ):
        ReviewLayer().read(edit(tmp_path, set_values(item_id="r9999-c0000")), record)
    with pytest.raises(
        AnnotationError, match=rf"edited\.gpkg, feature {fid}: review_status 'done' is not one"
    ):
        ReviewLayer().read(edit(tmp_path, set_values(review_status="done")), record)

    def to_point(f: gpd.GeoDataFrame) -> None:
        f.geometry = f.geometry.where(
            f.index != f.index[at], shapely.Point(grid.transform @ (5, 5))
        )

    with pytest.raises(AnnotationError, match=rf"edited\.gpkg, feature {fid} is a Point"):
        ReviewLayer().read(edit(tmp_path, to_point), record)
    broken = tmp_path / "broken.gpkg"
    broken.write_bytes((tmp_path / "review.gpkg").read_bytes()[:2000])
    with pytest.raises(AnnotationError, match=r"cannot read layer 'review' of .*broken\.gpkg"):
        ReviewLayer().read(broken, record)


def test_the_review_style_colours_classes_by_name_and_outlines_by_status(tmp_path: Path) -> None:
    record, predictions = photo_export(tmp_path)
    ReviewLayer().write(predictions, record, tmp_path)
    root = ET.fromstring((tmp_path / "review.qml").read_bytes())
    renderer = root.find("renderer-v2")
    assert renderer is not None and renderer.get("attr") == "class_name"
    categories = {c.get("value"): c.get("label") for c in renderer.iter("category")}
    assert categories == {"soil": "soil", "crop": "crop", "weed": "weed"}
    colours = [o.get("value") for o in renderer.iter("Option") if o.get("name") == "color"]
    assert colours == ["166,118,29,255", "26,152,80,255", "215,48,39,255"]
    outline = [o.get("value") for o in renderer.iter("Option") if o.get("name") == "expression"]
    assert len(outline) == 3 and all('"review_status"' in e for e in outline)
    assert all(colour in outline[0] for colour in REVIEW_STATUS.values())
    widgets = {f.get("name"): f for f in root.iter("field")}
    assert {o.get("name") for o in widgets["review_status"].iter("Option")} >= set(REVIEW_STATUS)


# --- chips ----------------------------------------------------------------------------------


def test_chips_cover_the_scene_once_and_place_back_exactly() -> None:
    grid = Grid(700, 1000, NORTH_UP, UTM)
    windows = chip_windows(700, 1000, 256)
    assert len(windows) == 12
    assert {w.shape for w in windows} == {(256, 256), (256, 232), (188, 256), (188, 232)}
    hits = np.zeros(grid.shape, np.int32)
    for window in windows:
        hits[window.slices] += 1
    assert (hits == 1).all(), "every pixel in exactly one chip"
    items = chip_items(grid, 256)
    assert [i.id for i in items[:5]] == [
        "r0000-c0000",
        "r0000-c0256",
        "r0000-c0512",
        "r0000-c0768",
        "r0256-c0000",
    ]
    assert items[3].image == "images/r0000-c0768.png" and items[3].window == (0, 768, 256, 232)
    assert (items[3].height, items[3].width) == (256, 232)
    scene = scene_record(grid)
    assert scene.transform == (10, 0, 500000, 0, -10, 5800000)
    assert CRS.from_wkt(scene.crs_wkt or "") == UTM and scene_grid(scene).same_as(grid)

    classes = class_map(700, 1000, 3)
    classes[:300, :300] = 0  # the top-left chip has no data at all: not exported
    chips = cut(classes, grid, confidence_map(classes, 3), size=256)
    assert len(chips.predictions) == 11 and chips.items[0].id == "r0000-c0256"
    assert len(cut(classes, grid, size=256, keep_empty=True).predictions) == 12
    record = ExportRecord(classes=CLASSES, scene=chips.scene, items=chips.items)
    unchanged = {p.item.id: p.classes.copy() for p in chips.predictions}
    assert (place(unchanged, record) == classes).all()
    assert (place(unchanged, record, (700, 1000)) == classes).all()
    partial = place({"r0256-c0512": unchanged["r0256-c0512"]}, record)
    assert (partial[256:512, 512:768] == classes[256:512, 512:768]).all()
    assert partial.sum() == classes[256:512, 512:768].sum(), "chips not returned stay 0"


def test_a_chip_that_matches_no_window_is_an_error_naming_it() -> None:
    grid = Grid(700, 1000, NORTH_UP, UTM)
    chips = cut(class_map(700, 1000, 1, nodata=False), grid, size=256)
    record = ExportRecord(classes=CLASSES, scene=chips.scene, items=chips.items)
    with pytest.raises(
        AnnotationError, match=r"masks/: image 'r0000-c0999' is not one of the 12 exported items"
    ):
        place({"r0000-c0999": np.ones((256, 256), np.uint8)}, record, where="masks/")
    with pytest.raises(
        AnnotationError,
        match=r"chip 'r0512-c0768' is 256x256 px but its recorded window "
        r"\(rows 512:700, cols 768:1000\) is 232x188",
    ):
        place({"r0512-c0768": np.ones((256, 256), np.uint8)}, record)
    photo = ItemRecord(id="IMG_1", image="images/IMG_1.png", height=4, width=4)
    mixed = record.model_copy(update={"items": [*record.items, photo]})
    with pytest.raises(AnnotationError, match=r"item 'IMG_1' is not a chip"):
        place({"IMG_1": np.ones((4, 4), np.uint8)}, mixed)
    with pytest.raises(AnnotationError, match=r"the class map is 999x700 px but the scene's grid"):
        cut(np.ones((700, 999), np.uint8), grid)


def test_chip_images_are_stretched_alike_and_georeferenced(
    tmp_path: Path, write_raster: Callable[..., Path]
) -> None:
    rng = np.random.default_rng(5)
    data = rng.integers(0, 4000, (4, 150, 200)).astype(np.uint16)
    data[:, :10, :10] = 0  # nodata
    path = write_raster("scene.tif", data, transform=ROTATED, nodata=0)
    names = ("blue", "green", "red", "nir")
    ref = SourceRef(
        name="scene",
        bands=tuple(BandRef(n, path, i + 1, 0.0, 1.0, 0.0) for i, n in enumerate(names)),
        units="DN",
        crs=None,
        labels=(),
        description="",
        licence="",
    )
    source = RasterSource.open(ref)
    grid = source.grid
    record = ExportRecord(classes=CLASSES, scene=scene_record(grid), items=chip_items(grid, 128))
    written = write_chip_images(source, record, tmp_path / "export")
    assert len(written) == 8, "4 chips, each with its GDAL sidecar"
    windows = [i.chip for i in record.items if i.chip is not None]
    limits = stretch_limits(source, ["red", "green", "blue"], windows)
    for item in record.items:
        with Image.open(tmp_path / "export" / item.image) as image:
            assert image.mode == "RGB" and image.size == (item.width, item.height)
            picture = np.asarray(image)
        window = item.chip
        assert window is not None
        red = data[2][window.slices].astype(np.float64)
        expected = np.clip((red - limits[0, 0]) / (limits[0, 1] - limits[0, 0]), 0, 1) * 255
        expected[red == 0] = 0
        assert np.abs(picture[..., 0] - np.round(expected)).max() <= 1, item.id
        with rasterio.open(tmp_path / "export" / item.image) as ds:
            assert ds.crs == UTM
            assert ds.transform.almost_equals(grid.window_transform(window), precision=1e-6)
    pixels = ExportRecord(classes=CLASSES, items=[])
    with pytest.raises(AnnotationError, match="has no scene"):
        write_chip_images(source, pixels, tmp_path)
    other = record.model_copy(update={"scene": scene_record(Grid(150, 200, NORTH_UP, UTM))})
    with pytest.raises(AnnotationError, match="is not the grid the chips were cut from"):
        write_chip_images(source, other, tmp_path)


# --- the labelling order --------------------------------------------------------------------


def item(name: str) -> ItemRecord:
    return ItemRecord(id=name, image=f"images/{name}.png", height=32, width=32)


def test_uncertain_and_rare_class_items_are_labelled_first(tmp_path: Path) -> None:
    """Three 32x32 items of soil (1). ``confident``: 0.95 everywhere. ``uncertain``: 0.45
    everywhere. ``rare``: 0.95, with a 16x16 weed (3) patch, the export's only weed.

    Weed is 256 of 3072 px (1/12), soil the rest: weights 0 (soil) and 1 (weed) after
    normalisation. Scores (equal weights, mean of the three terms):
    uncertain (1 + 0.55 + 0) / 3 = 0.5167, rare (0 + 0.05 + 0.25) / 3 = 0.1, confident
    (0 + 0.05 + 0) / 3 = 0.0167: uncertain, rare, confident.
    """
    soil = np.ones((32, 32), np.uint8)
    weed = soil.copy()
    weed[8:24, 8:24] = 3
    sure = np.full((32, 32), 0.95, np.float32)
    predictions = [
        Prediction(item("confident"), soil, sure),
        Prediction(item("uncertain"), soil, np.full((32, 32), 0.45, np.float32)),
        Prediction(item("rare"), weed, sure),
    ]
    ranked = rank(predictions)
    assert [p.id for p in ranked] == ["uncertain", "rare", "confident"]
    by_id = {p.id: p for p in ranked}
    assert by_id["uncertain"].priority == pytest.approx((1 + 0.55) / 3)
    assert by_id["rare"].priority == pytest.approx((0.05 + 0.25) / 3)
    assert by_id["confident"].priority == pytest.approx(0.05 / 3)
    assert by_id["rare"].rare_class_share == pytest.approx(0.25)
    assert by_id["uncertain"].low_confidence_share == 1.0
    # rare classes weigh more than uncertainty when asked to
    heavy = rank(predictions, PriorityWeights(rare_class=10))
    assert [p.id for p in heavy] == ["rare", "uncertain", "confident"]

    items = prioritise(predictions, tmp_path)
    assert [i.id for i in items] == ["confident", "uncertain", "rare"], "record order kept"
    assert [i.priority for i in items] == [0.016667, 0.516667, 0.1]
    again = prioritise_predictions(predictions, tmp_path)
    assert [p.item for p in again] == items and again[2].classes is weed
    with (tmp_path / PRIORITY_CSV).open() as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == [
        "id",
        "priority",
        "low_confidence_share",
        "mean_uncertainty",
        "rare_class_share",
    ]
    assert [r["id"] for r in rows] == ["uncertain", "rare", "confident"]
    assert rows[0]["mean_uncertainty"] == "0.550000" and rows[1]["rare_class_share"] == "0.250000"


def test_priority_terms_edge_cases() -> None:
    counts = np.zeros(256, np.int64)
    counts[[0, 1, 2, 3]] = [1000, 600, 300, 100]
    weights = rare_class_weights(counts)
    assert weights[0] == 0 and weights[1] == 0 and weights[3] == 1 and 0 < weights[2] < 1
    counts[[1, 2, 3]] = 500
    assert not rare_class_weights(counts).any(), "equally common classes: nothing is rare"
    empty = Prediction(item("empty"), np.zeros((32, 32), np.uint8), None)
    blind = Prediction(item("blind"), np.ones((32, 32), np.uint8), None)
    ranked = {p.id: p for p in rank([empty, blind])}
    assert ranked["empty"].priority == 0 and ranked["blind"].low_confidence_share is None
    with pytest.raises(ValueError, match="threshold"):
        PriorityWeights(threshold=0)
    with pytest.raises(AnnotationError, match="item 'bad'"):
        rank([Prediction(item("bad"), np.ones((8, 8), np.uint8), None)])


def test_an_item_without_data_is_an_empty_but_valid_layer(tmp_path: Path) -> None:
    nothing = np.zeros((5, 6), np.uint8)
    empty = write_nodata(
        ItemRecord(id="a", image="images/a.png", height=5, width=6), nothing, tmp_path
    )
    record = ExportRecord(classes=CLASSES, background=1, items=[empty])
    ReviewLayer().write([Prediction(empty, nothing)], record, tmp_path)
    gdal_client_check(tmp_path / "review.gpkg")
    assert pyogrio.read_info(tmp_path / "review.gpkg", layer="review")["features"] == 0
    assert (ReviewLayer().read(tmp_path / "review.gpkg", record)["a"] == 0).all()
