"""CVAT's formats: exact round trips, datumaro (CVAT's dataset framework) reading them, errors."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import datumaro as dm
import numpy as np
import pytest
import shapely
from PIL import Image

from geoseg.annotation.cvat import CvatImages, CvatMasks, _voc_palette
from geoseg.annotation.record import (
    AnnotationFormat,
    ExportRecord,
    ItemRecord,
    Prediction,
    write_nodata,
)
from geoseg.annotation.regions import paint, regions
from geoseg.errors import AnnotationError
from geoseg.model.bundle import ClassInfo
from tests.test_annotation import CLASSES, random_map

FORMATS: list[AnnotationFormat] = [CvatImages(), CvatMasks()]
NAMES = {c.code: c.name for c in CLASSES}


def hand_maps() -> dict[str, np.ndarray]:
    """Holes, background holes, corner-only contacts and no data, drawn by hand."""
    ring = np.ones((9, 10), np.uint8)
    ring[1:8, 1:8] = 2  # crop ...
    ring[3:6, 3:6] = 3  # ... with a weed in its hole ...
    ring[4, 4] = 2  # ... with crop in the weed's hole
    ring[2, 6] = 1  # soil (the background) as a hole of the crop
    ring[0, 9] = 3  # weeds touching only at corners
    ring[1, 8] = 3
    ring[2, 9] = 3
    nodata = np.full((6, 7), 2, np.uint8)
    nodata[0, :] = 0  # a no-data edge
    nodata[2:4, 2:4] = 0  # a no-data hole in the crop
    nodata[4, 5] = 1
    checker = (np.indices((5, 5)).sum(axis=0) % 2 + 2).astype(np.uint8)  # crop/weed checkerboard
    only_soil = np.ones((3, 4), np.uint8)
    return {"ring": ring, "nodata": nodata, "checker": checker, "soil": only_soil}


def export(
    folder: Path,
    maps: dict[str, np.ndarray],
    background: int | None,
    classes: list[ClassInfo] = CLASSES,
    confidence: bool = True,
) -> tuple[ExportRecord, list[Prediction]]:
    """Items with images (``images/ID.png``) and no-data masks, as the export step makes them."""
    items, predictions = [], []
    for item_id, classes_map in maps.items():
        image = f"images/{item_id}.png"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((*classes_map.shape, 3), np.uint8)).save(folder / image)
        item = ItemRecord(
            id=item_id, image=image, height=classes_map.shape[0], width=classes_map.shape[1]
        )
        item = write_nodata(item, classes_map, folder)
        rng = np.random.default_rng(len(items))
        score = rng.random(classes_map.shape).astype(np.float32) if confidence else None
        items.append(item)
        predictions.append(Prediction(item, classes_map, score))
    record = ExportRecord(source="test", classes=classes, background=background, items=items)
    record.write(folder)
    return record, predictions


def assert_round_trip(fmt: AnnotationFormat, folder: Path, maps: dict[str, np.ndarray]) -> None:
    record = ExportRecord.read(folder)
    back = fmt.read(folder, record)
    assert sorted(back) == sorted(maps)
    for item_id, expected in maps.items():
        assert back[item_id].dtype == np.uint8
        drift = int((back[item_id] != expected).sum())
        assert drift == 0, f"{fmt.name} {item_id}: {drift} px drift"


@pytest.mark.parametrize("background", [None, 1])
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_hand_built_maps_round_trip_exactly(
    fmt: AnnotationFormat, background: int | None, tmp_path: Path
) -> None:
    maps = hand_maps()
    record, predictions = export(tmp_path, maps, background)
    written = fmt.write(predictions, record, tmp_path)
    assert all(p.exists() for p in written)
    assert_round_trip(fmt, tmp_path, maps)


@pytest.mark.parametrize("background", [None, 1])
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_random_maps_round_trip_exactly(
    fmt: AnnotationFormat, background: int | None, tmp_path: Path
) -> None:
    maps = {f"r{seed}": random_map(seed) for seed in range(60)}
    record, predictions = export(tmp_path, maps, background, confidence=background is None)
    fmt.write(predictions, record, tmp_path)
    assert_round_trip(fmt, tmp_path, maps)


def test_both_formats_share_one_folder_and_write_twice(tmp_path: Path) -> None:
    maps = hand_maps()
    record, predictions = export(tmp_path, maps, 1)
    for _ in range(2):  # writing again replaces the files
        for fmt in FORMATS:
            fmt.write(predictions, record, tmp_path)
    for fmt in FORMATS:
        assert_round_trip(fmt, tmp_path, maps)


def test_the_xml_holds_one_polygon_per_region_with_confidence_in_percent(tmp_path: Path) -> None:
    maps = hand_maps()
    record, predictions = export(tmp_path, maps, 1)
    CvatImages().write(predictions, record, tmp_path)
    text = (tmp_path / "annotations.xml").read_text(encoding="utf-8")
    ring = predictions[0]
    found = regions(ring.classes, ring.confidence, 1)
    image = text[text.index('<image id="0" name="ring.png" width="10" height="9">') :]
    image = image[: image.index("</image>")]
    polygons = re.findall(r'<polygon label="(\w+)" source="auto" occluded="0" points="([^"]+)" '
                          r'z_order="(\d+)">\s*<attribute name="confidence">(\d+)</attribute>',
                          image)  # fmt: skip
    assert [(label, int(z)) for label, _, z, _ in polygons] == [
        (NAMES[r.code], z) for z, r in enumerate(found)
    ]
    assert [int(p) for *_, p in polygons] == [round(100 * (r.score or 0)) for r in found]
    assert "<input_type>number</input_type>" in text and "<values>0\n100\n1</values>" in text
    assert [NAMES[r.code] for r in found].count("soil") == 1, "the soil hole, exported"


def _datumaro_labels(dataset: dm.Dataset) -> list[str]:
    return [label.name for label in dataset.categories()[dm.AnnotationType.label]]


def test_datumaro_imports_the_xml_with_every_polygon_and_label(tmp_path: Path) -> None:
    maps = {**hand_maps(), **{f"r{seed}": random_map(seed) for seed in range(20)}}
    record, predictions = export(tmp_path, maps, 1)
    CvatImages().write(predictions, record, tmp_path)
    dataset = dm.Dataset.import_from(str(tmp_path), "cvat")
    names = _datumaro_labels(dataset)
    assert names == [c.name for c in CLASSES]
    assert len(dataset) == len(maps)
    total = 0
    for prediction in predictions:
        item = dataset.get(prediction.item.id, subset="annotations")
        assert item is not None
        found = regions(prediction.classes, prediction.confidence, 1)
        polygons = [a for a in item.annotations if isinstance(a, dm.Polygon)]
        assert len(polygons) == len(item.annotations) == len(found)
        assert Counter(names[p.label] for p in polygons) == Counter(NAMES[r.code] for r in found)
        assert [p.z_order for p in polygons] == list(range(len(found)))
        assert [p.attributes["confidence"] for p in polygons] == [
            round(100 * (r.score or 0)) for r in found
        ]
        # datumaro's polygons, painted by z_order, give the class map back
        code = {c.name: c.code for c in CLASSES}
        painted = paint(
            (
                (shapely.Polygon(np.reshape(p.points, (-1, 2))), code[names[p.label]])
                for p in sorted(polygons, key=lambda p: p.z_order)
            ),
            prediction.classes.shape,
            1,
        )
        painted[prediction.classes == 0] = 0
        assert (painted == prediction.classes).all(), prediction.item.id
        total += len(polygons)
    assert total > 500


def test_datumaro_imports_the_masks_with_every_instance_and_label(tmp_path: Path) -> None:
    maps = {**hand_maps(), **{f"r{seed}": random_map(seed) for seed in range(20)}}
    record, predictions = export(tmp_path, maps, 1)
    CvatMasks().write(predictions, record, tmp_path)
    lines = (tmp_path / "labelmap.txt").read_text().splitlines()
    assert lines[:2] == ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    assert lines[2:] == ["soil:166,118,29::", "crop:26,152,80::", "weed:215,48,39::"]
    assert (tmp_path / "ImageSets/Segmentation/default.txt").read_text().split() == list(maps)
    assert all((tmp_path / "JPEGImages" / f"{i}.png").exists() for i in maps)
    dataset = dm.Dataset.import_from(str(tmp_path), "voc_segmentation")
    names = _datumaro_labels(dataset)
    assert names == ["background", "soil", "crop", "weed"]
    assert len(dataset) == len(maps)
    code = {c.name: c.code for c in CLASSES}
    for prediction in predictions:
        item = dataset.get(prediction.item.id, subset="default")
        assert item is not None and item.media is not None
        masks = [a for a in item.annotations if isinstance(a, dm.Mask)]
        found = [r for r in regions(prediction.classes) if r.code != 1]
        assert len(masks) == len(item.annotations) == len(found)
        assert Counter(names[m.label] for m in masks) == Counter(NAMES[r.code] for r in found)
        rebuilt = np.zeros(prediction.classes.shape, np.uint8)
        for mask in masks:
            assert not rebuilt[mask.image].any(), "instances do not overlap"
            rebuilt[mask.image] = code[names[mask.label]]
        expected = np.where(prediction.classes == 1, 0, prediction.classes)
        assert (rebuilt == expected).all(), prediction.item.id


def test_more_regions_than_instance_colours_share_one_instance_per_class(tmp_path: Path) -> None:
    classes = (np.indices((40, 40)).sum(axis=0) % 2 + 2).astype(np.uint8)  # 1600 regions
    classes[:20, :20] = 2  # one big crop region
    record, predictions = export(tmp_path, {"many": classes}, None)
    CvatMasks().write(predictions, record, tmp_path)
    assert_round_trip(CvatMasks(), tmp_path, {"many": classes})
    with Image.open(tmp_path / "SegmentationObject/many.png") as image:
        rgb = np.asarray(image.convert("RGB"))
    palette = {tuple(int(v) for v in c): i for i, c in enumerate(_voc_palette())}
    instances = np.vectorize(lambda r, g, b: palette[(r, g, b)])(*np.moveaxis(rgb, -1, 0))
    assert instances.max() == 255 and (instances > 0).all()
    for index in np.unique(instances):
        assert len(np.unique(classes[instances == index])) == 1, "one class per instance"
    assert len(np.unique(instances[:20, :20])) == 1, "the largest region keeps its own colour"
    dataset = dm.Dataset.import_from(str(tmp_path), "voc_segmentation")
    item = dataset.get("many", subset="default")
    assert item is not None and len(item.annotations) == 255


def test_the_voc_palette_is_datumaros() -> None:
    from datumaro.plugins.data_formats.voc.format import VocInstColormap

    assert [tuple(int(v) for v in c) for c in _voc_palette()] == [
        tuple(int(v) for v in VocInstColormap[i]) for i in range(256)
    ]


def test_images_outside_images_are_placed_where_cvat_and_voc_look(tmp_path: Path) -> None:
    classes = np.full((4, 5), 2, np.uint8)
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "photos/p1.png")
    item = ItemRecord(id="p1", image="photos/p1.png", height=4, width=5)
    record = ExportRecord(classes=CLASSES, background=1, items=[item])
    prediction = Prediction(item, classes)
    written = CvatImages().write([prediction], record, tmp_path)
    assert tmp_path / "images/photos/p1.png" in written
    assert 'name="photos/p1.png"' in (tmp_path / "annotations.xml").read_text()
    assert tmp_path / "JPEGImages/p1.png" in CvatMasks().write([prediction], record, tmp_path)
    assert len(dm.Dataset.import_from(str(tmp_path), "cvat")) == 1
    # CVAT may know the image by its file name only
    xml = tmp_path / "annotations.xml"
    xml.write_text(xml.read_text().replace('name="photos/p1.png"', 'name="p1.png"'))
    assert (CvatImages().read(xml, record)["p1"] == classes).all()


def test_the_xml_reader_paints_boxes_masks_and_z_order_like_cvat(tmp_path: Path) -> None:
    item = ItemRecord(id="a", image="images/a.png", height=6, width=8)
    record = ExportRecord(classes=CLASSES, background=1, items=[item])
    # a mask over the box left 1, top 1, 3x2: rows "011", "110" (CVAT: 0s first, row by row)
    (tmp_path / "annotations.xml").write_text(
        """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels><label><name>crop</name></label></labels></task></meta>
  <image id="0" name="a.png" width="8" height="6">
    <box label="crop" source="manual" occluded="0" xtl="0" ytl="0" xbr="8" ybr="2" z_order="0"/>
    <mask label="weed" source="manual" occluded="0" rle="1, 4, 1" left="1" top="1" width="3"
          height="2" z_order="1"/>
    <box label="weed" occluded="0" xtl="5" ytl="2" xbr="7" ybr="6" rotation="90" z_order="0"/>
    <polygon label="crop" occluded="0" points="0,0;8,0;8,6;0,6" z_order="-1"/>
    <polyline label="weed" occluded="0" points="0,5;7,5" z_order="9"/>
    <tag label="crop"/>
  </image>
</annotations>
"""
    )
    expected = np.array(
        [
            [2, 2, 2, 2, 2, 2, 2, 2],
            [2, 2, 3, 3, 2, 2, 2, 2],
            [2, 3, 3, 2, 2, 2, 2, 2],
            [2, 2, 2, 2, 3, 3, 3, 3],  # the 2x4 box turned a quarter: 4x2 around (6, 4)
            [2, 2, 2, 2, 3, 3, 3, 3],
            [2, 2, 2, 2, 2, 2, 2, 2],
        ],
        np.uint8,
    )
    assert (CvatImages().read(tmp_path, record)["a"] == expected).all()


def test_a_rotated_box_turns_as_datumaro_reads_cvat(tmp_path: Path) -> None:
    from datumaro.components.annotation import RotatedBbox

    item = ItemRecord(id="a", image="images/a.png", height=20, width=20)
    record = ExportRecord(classes=CLASSES, items=[item])
    (tmp_path / "annotations.xml").write_text(
        '<annotations><image id="0" name="a.png" width="20" height="20">'
        '<box label="weed" xtl="4" ytl="2" xbr="16" ybr="7" rotation="30"/></image></annotations>'
    )
    turned = shapely.Polygon(RotatedBbox(10, 4.5, 12, 5, 30).as_polygon())
    expected = paint([(turned, 3)], (20, 20))
    assert expected.sum() > 100
    assert (CvatImages().read(tmp_path, record)["a"] == expected).all()


@pytest.fixture
def xml_export(tmp_path: Path) -> tuple[Path, ExportRecord]:
    record, predictions = export(tmp_path, hand_maps(), 1)
    CvatImages().write(predictions, record, tmp_path)
    return tmp_path / "annotations.xml", record


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_xml_reader_names_the_file_line_image_and_label(
    xml_export: tuple[Path, ExportRecord],
) -> None:
    xml, record = xml_export
    _edit(xml, '<polygon label="weed"', '<polygon label="tree"')
    with pytest.raises(
        AnnotationError,
        match=r"annotations\.xml line \d+: image 'ring\.png': label 'tree' is not one of the "
        r"exported classes \(soil, crop, weed\)",
    ):
        CvatImages().read(xml, record)


def test_the_xml_reader_names_an_unknown_image(xml_export: tuple[Path, ExportRecord]) -> None:
    xml, record = xml_export
    _edit(xml, 'name="nodata.png"', 'name="elsewhere/other.png"')
    with pytest.raises(
        AnnotationError,
        match=r"annotations\.xml line \d+: image 'elsewhere/other\.png' is not one of the 4 "
        "exported items",
    ):
        CvatImages().read(xml, record)


def test_the_xml_reader_names_both_sizes(xml_export: tuple[Path, ExportRecord]) -> None:
    xml, record = xml_export
    _edit(xml, 'name="ring.png" width="10" height="9"', 'name="ring.png" width="20" height="18"')
    with pytest.raises(
        AnnotationError,
        match=r"annotations\.xml line \d+: image 'ring\.png' is 20x18 px but item 'ring' was "
        r"exported at 10x9 px",
    ):
        CvatImages().read(xml, record)


def test_the_xml_reader_names_the_line_of_truncated_xml(
    xml_export: tuple[Path, ExportRecord],
) -> None:
    xml, record = xml_export
    text = xml.read_text(encoding="utf-8")
    xml.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(
        AnnotationError, match=r"annotations\.xml line \d+, column \d+: not well-formed XML"
    ):
        CvatImages().read(xml, record)
    xml.write_bytes(b"")
    with pytest.raises(AnnotationError, match=r"annotations\.xml line 1, column 0: not well-"):
        CvatImages().read(xml, record)


@pytest.mark.parametrize(
    ("pattern", "replacement", "message"),
    [
        (
            r"<\?xml[^>]*>",
            '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]>',
            r"annotations\.xml: refused EntitiesForbidden",
        ),
        (
            r"(?s)<annotations>(.*)</annotations>",
            r"<dataset>\1</dataset>",
            r"annotations\.xml: the root element is <dataset>",
        ),
        (
            r'(?s)<polygon label="weed"(.*?)</polygon>',
            r'<ellipse label="weed"\1</ellipse>',
            r"annotations\.xml line \d+: image 'ring\.png': <ellipse> shapes are not supported",
        ),
        (r'name="nodata\.png"', 'name="ring.png"', r"images 'ring\.png' and 'ring\.png' are"),
        (r'points="[^"]*"', 'points="1,2;3"', r"image 'ring\.png': <polygon> points '1,2;3' are"),
        (r'z_order="0"', 'z_order="top"', r"<polygon> z_order='top' is not a number"),
    ],
)
def test_the_xml_reader_refuses_what_it_cannot_paint(
    xml_export: tuple[Path, ExportRecord], pattern: str, replacement: str, message: str
) -> None:
    xml, record = xml_export
    text = xml.read_text(encoding="utf-8")
    edited = re.sub(pattern, replacement, text, count=1)
    assert edited != text
    xml.write_text(edited, encoding="utf-8")
    with pytest.raises(AnnotationError, match=message):
        CvatImages().read(xml, record)


def test_a_mask_whose_runs_do_not_fill_its_box_is_an_error(tmp_path: Path) -> None:
    item = ItemRecord(id="a", image="images/a.png", height=4, width=4)
    record = ExportRecord(classes=CLASSES, items=[item])
    (tmp_path / "annotations.xml").write_text(
        '<annotations><image id="0" name="a.png" width="4" height="4">'
        '<mask label="crop" rle="1, 2" left="0" top="0" width="2" height="2"/></image>'
        "</annotations>"
    )
    with pytest.raises(AnnotationError, match=r"run lengths add up to 3 pixels but its box is 2x2"):
        CvatImages().read(tmp_path, record)


@pytest.fixture
def mask_export(tmp_path: Path) -> tuple[Path, ExportRecord]:
    record, predictions = export(tmp_path, hand_maps(), 1)
    CvatMasks().write(predictions, record, tmp_path)
    return tmp_path, record


def test_the_mask_reader_names_an_unknown_colour_and_its_pixels(
    mask_export: tuple[Path, ExportRecord],
) -> None:
    folder, record = mask_export
    png = folder / "SegmentationClass/ring.png"
    with Image.open(png) as image:
        rgb = np.array(image.convert("RGB"))
    rgb[0, :3] = (1, 2, 3)
    Image.fromarray(rgb).save(png)
    with pytest.raises(
        AnnotationError,
        match=r"SegmentationClass/ring\.png: colour \(1, 2, 3\) #010203 \(3 px\) is not in "
        r".*labelmap\.txt",
    ):
        CvatMasks().read(folder, record)


def test_the_mask_reader_names_an_unknown_label(mask_export: tuple[Path, ExportRecord]) -> None:
    folder, record = mask_export
    with (folder / "labelmap.txt").open("a") as f:
        f.write("tree:9,9,9::\n")
    with pytest.raises(
        AnnotationError, match=r"labelmap\.txt line 6: label 'tree' is not one of the exported"
    ):
        CvatMasks().read(folder, record)


def test_the_mask_reader_names_both_sizes(mask_export: tuple[Path, ExportRecord]) -> None:
    folder, record = mask_export
    Image.new("RGB", (3, 2)).save(folder / "SegmentationClass/nodata.png")
    with pytest.raises(
        AnnotationError,
        match=r"SegmentationClass/nodata\.png is 3x2 px but item 'nodata' was exported at 7x6",
    ):
        CvatMasks().read(folder, record)


def test_the_mask_reader_names_a_corrupt_png_unknown_image_and_missing_labelmap(
    mask_export: tuple[Path, ExportRecord],
) -> None:
    folder, record = mask_export
    png = folder / "SegmentationClass/soil.png"
    png.write_bytes(png.read_bytes()[:20])
    with pytest.raises(AnnotationError, match=r"cannot read the class mask .*soil\.png"):
        CvatMasks().read(folder, record)
    png.unlink()  # CVAT writes no mask for an image without shapes: all background
    back = CvatMasks().read(folder, record)
    assert (back["soil"] == 1).all() and (back["nodata"] == hand_maps()["nodata"]).all()
    with (folder / "ImageSets/Segmentation/default.txt").open("a") as f:
        f.write("stranger\n")
    with pytest.raises(AnnotationError, match=r"Segmentation: image 'stranger' is not one of"):
        CvatMasks().read(folder, record)
    (folder / "labelmap.txt").unlink()
    with pytest.raises(AnnotationError, match=r"cannot read .*labelmap\.txt"):
        CvatMasks().read(folder, record)


@pytest.mark.parametrize(
    ("classes", "background", "message"),
    [
        (
            [*CLASSES[:2], ClassInfo(code=3, name="weed", color="#1A9850")],
            1,
            r"classes 'crop' and 'weed' share the colour #1A9850",
        ),
        (
            [*CLASSES[:2], ClassInfo(code=3, name="weed", color="#000000")],
            1,
            r"classes 'background' and 'weed' share the colour #000000",
        ),
        (
            [ClassInfo(code=1, name="background", color="#a6761d"), *CLASSES[1:]],
            None,
            r"class 'background' \(code 1\) is not the record's background class",
        ),
        (
            [ClassInfo(code=1, name="soil:wet", color="#a6761d"), *CLASSES[1:]],
            1,
            r"class 'soil:wet' cannot be written to labelmap\.txt",
        ),
    ],
)
def test_the_mask_writer_refuses_colours_that_do_not_tell_classes_apart(
    classes: list[ClassInfo], background: int | None, message: str, tmp_path: Path
) -> None:
    record, predictions = export(tmp_path, hand_maps(), background, classes=classes)
    with pytest.raises(AnnotationError, match=message):
        CvatMasks().write(predictions, record, tmp_path)


def test_a_class_called_background_that_is_the_background_round_trips(tmp_path: Path) -> None:
    classes = [ClassInfo(code=1, name="background", color="#a6761d"), *CLASSES[1:]]
    maps = hand_maps()
    record, predictions = export(tmp_path, maps, 1, classes=classes)
    CvatMasks().write(predictions, record, tmp_path)
    assert (tmp_path / "labelmap.txt").read_text().count("background") == 1
    assert_round_trip(CvatMasks(), tmp_path, maps)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_the_writers_refuse_predictions_that_do_not_match_the_record(
    fmt: AnnotationFormat, tmp_path: Path
) -> None:
    record, predictions = export(tmp_path, {"a": np.full((2, 3), 2, np.uint8)}, 1)
    bad_code = Prediction(predictions[0].item, np.full((2, 3), 7, np.uint8))
    with pytest.raises(AnnotationError, match=r"item 'a': class codes \[7\] are not in the"):
        fmt.write([bad_code], record, tmp_path)
    bad_size = Prediction(predictions[0].item, np.full((3, 3), 2, np.uint8))
    with pytest.raises(AnnotationError, match=r"item 'a': its class map is 3x3 px but the record"):
        fmt.write([bad_size], record, tmp_path)
    stranger_item = ItemRecord(id="b", image="b.png", height=1, width=1)
    stranger = Prediction(stranger_item, np.ones((1, 1), np.uint8))
    with pytest.raises(AnnotationError, match=r"image 'b' is not one of the 1 exported items"):
        fmt.write([stranger], record, tmp_path)
