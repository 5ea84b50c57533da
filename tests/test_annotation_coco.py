"""COCO and Label Studio exports: exact round trips, real clients reading them, clear errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from pycocotools import mask as mask_api
from pycocotools.coco import COCO
from scipy import ndimage

from geoseg.annotation.coco import Coco
from geoseg.annotation.labelstudio import LabelStudio
from geoseg.annotation.record import (
    AnnotationFormat,
    ExportRecord,
    ItemRecord,
    Prediction,
    write_nodata,
)
from geoseg.annotation.regions import FOUR, paint, regions
from geoseg.errors import AnnotationError
from tests.test_annotation import CLASSES, random_map

FORMATS: list[AnnotationFormat] = [Coco(), LabelStudio()]
NAMES = {c.code: c.name for c in CLASSES}

#: Hand-built maps (1 soil, 2 crop, 3 weed, 0 no data).
HAND = {
    "holes": [  # crop in a weed ring in a crop ring: nested holes
        [2, 2, 2, 2, 2, 2],
        [2, 3, 3, 3, 3, 2],
        [2, 3, 2, 2, 3, 2],
        [2, 3, 3, 3, 3, 2],
        [2, 2, 2, 2, 2, 2],
    ],
    "background_holes": [  # soil inside crop (a kept background region), soil outside
        [1, 1, 1, 1, 1, 1],
        [1, 2, 2, 2, 2, 1],
        [1, 2, 1, 1, 2, 1],
        [1, 2, 2, 2, 2, 1],
        [1, 1, 1, 1, 1, 3],
    ],
    "corners": [  # regions touching only at corners, and a hole touching the outside at one
        [2, 3, 2, 2, 2, 1],
        [3, 2, 2, 1, 2, 1],
        [2, 3, 2, 2, 1, 1],
        [3, 2, 3, 1, 3, 1],
    ],
    "nodata": [  # no data at the border, inside a hole and beside a background hole
        [0, 0, 1, 1, 1, 1],
        [0, 2, 2, 2, 2, 1],
        [1, 2, 0, 1, 2, 1],
        [1, 2, 2, 2, 2, 0],
        [1, 1, 3, 0, 1, 0],
    ],
    "a": [  # used by the error tests: 6x5 px
        [1, 1, 1, 1, 1, 1],
        [1, 2, 2, 2, 1, 1],
        [1, 2, 1, 2, 1, 3],
        [1, 2, 2, 2, 1, 3],
        [1, 1, 1, 1, 1, 1],
    ],
}


JSON = r"instances_default\.json"  # the COCO file of an export


def _maps(hand: bool = True, seeds: range = range(0)) -> dict[str, np.ndarray]:
    maps = {key: np.array(rows, np.uint8) for key, rows in HAND.items()} if hand else {}
    return maps | {f"random{seed}": random_map(seed) for seed in seeds}


def _confidence(classes: np.ndarray) -> np.ndarray:
    return np.random.default_rng(classes.size).random(classes.shape).astype(np.float32)


def _export(
    folder: Path,
    maps: dict[str, np.ndarray],
    fmt: AnnotationFormat,
    background: int | None = 1,
) -> tuple[ExportRecord, list[Path]]:
    """Write the record (no-data masks included) and ``fmt``'s files for ``maps``."""
    items = [
        write_nodata(
            ItemRecord(id=key, image=f"images/{key}.png", height=c.shape[0], width=c.shape[1]),
            c,
            folder,
        )
        for key, c in maps.items()
    ]
    record = ExportRecord(source="test", classes=CLASSES, background=background, items=items)
    record.write(folder)
    predictions = [
        Prediction(item, maps[item.id], _confidence(maps[item.id])) for item in record.items
    ]
    return record, fmt.write(predictions, record, folder)


@pytest.mark.parametrize("background", [None, 1])
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_export_then_import_gives_back_the_class_maps_exactly(
    tmp_path: Path, fmt: AnnotationFormat, background: int | None
) -> None:
    maps = _maps(seeds=range(60))
    record, files = _export(tmp_path, maps, fmt, background)
    back = fmt.read(files[0], ExportRecord.read(tmp_path))
    assert back.keys() == maps.keys()
    drift = {key: int((back[key] != c).sum()) for key, c in maps.items()}
    assert drift == dict.fromkeys(maps, 0)
    assert all(m.dtype == np.uint8 for m in back.values())
    assert fmt.read(tmp_path, record).keys() == maps.keys(), "a folder reads its file"


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy 2
def test_pycocotools_loads_the_file_and_its_masks_are_geosegs_regions(tmp_path: Path) -> None:
    maps = _maps(seeds=range(40))
    record, (path,) = _export(tmp_path, maps, Coco())
    coco = COCO(str(path))
    categories = coco.loadCats(coco.getCatIds())
    assert {c["id"]: c["name"] for c in categories} == NAMES
    assert {c["supercategory"] for c in categories} == {""}
    images = coco.loadImgs(coco.getImgIds())
    assert [f"images/{i['file_name']}" for i in images] == [item.image for item in record.items]
    kinds = set()
    for image in images:
        key = Path(image["file_name"]).stem
        classes = maps[key]
        assert (image["height"], image["width"]) == classes.shape
        found = regions(classes, _confidence(classes), background=1)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert [a["category_id"] for a in annotations] == [r.code for r in found]
        for annotation, region in zip(annotations, found, strict=True):
            mask = coco.annToMask(annotation).astype(bool)
            own = paint([(region.polygon, 1)], classes.shape) == 1
            assert (mask == own).all(), (key, annotation["id"])
            patches, _ = ndimage.label(classes == annotation["category_id"], FOUR)
            (patch,) = np.unique(patches[mask])
            assert patch > 0 and ((patches == patch) == mask).all(), "a whole 4-connected patch"
            rle = coco.annToRLE(annotation)
            assert annotation["area"] == region.pixels == mask.sum() == mask_api.area(rle)
            assert annotation["bbox"] == list(region.bbox) == mask_api.toBbox(rle).tolist()
            assert annotation["iscrowd"] == 0
            assert annotation["score"] == pytest.approx(_confidence(classes)[mask].mean())
            holes = len(region.polygon.interiors) > 0
            kinds.add(holes)
            assert isinstance(annotation["segmentation"], dict) == holes, "RLE only with holes"
            if not holes:
                (ring,) = annotation["segmentation"]
                assert ring[:2] != ring[-2:], "the ring is not closed by a repeated point"
                assert shapely.Polygon(np.reshape(ring, (-1, 2))).equals(region.polygon)
    assert kinds == {True, False}
    assert coco.getAnnIds(catIds=[1]), "soil is exported where it is a hole"


def test_datumaro_imports_the_coco_file_with_the_same_annotations(tmp_path: Path) -> None:
    dm = pytest.importorskip("datumaro")
    maps = _maps(seeds=range(10))
    _, (path,) = _export(tmp_path, maps, Coco())
    (tmp_path / "images").mkdir()  # datumaro reads COCO's layout: annotations/ beside images/
    assert path == tmp_path / "annotations" / "instances_default.json"
    dataset = dm.Dataset.import_from(str(tmp_path / "annotations"), "coco_instances")
    labels = dataset.categories()[dm.AnnotationType.label]
    assert [label.name for label in labels] == [c.name for c in CLASSES]
    document = json.loads(path.read_text())
    assert len(dataset) == len(document["images"]) == len(maps)
    shapes = [
        (str(item.id), labels[a.label].name, type(a).__name__)
        for item in dataset
        for a in item.annotations
        if a.type != dm.AnnotationType.bbox
    ]
    assert sorted((s[0], s[1]) for s in shapes) == sorted(
        (str(Path(image["file_name"]).with_suffix("")), NAMES[a["category_id"]])
        for image in document["images"]
        for a in document["annotations"]
        if a["image_id"] == image["id"]
    )
    assert {s[2] for s in shapes} == {"Polygon", "RleMask"}


def test_label_studio_tasks_and_labelling_config(tmp_path: Path) -> None:
    maps = _maps()
    prefix = "/data/local-files/?d=export/"
    record, (path, config) = _export(tmp_path, maps, LabelStudio(image_prefix=prefix))
    assert (path.name, config.name) == ("labelstudio.json", "config.xml")
    tasks = json.loads(path.read_text())
    assert isinstance(tasks, list) and len(tasks) == len(maps)
    edges = []
    for task in tasks:
        item = record.item(task["data"]["geoseg_item"], "test")
        assert task["data"]["image"] == prefix + item.image
        classes = maps[item.id]
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "test"
        assert prediction["score"] == pytest.approx(_confidence(classes)[classes > 0].mean())
        found = regions(classes, _confidence(classes), background=1)
        assert len(prediction["result"]) == len(found)
        for result, region in zip(prediction["result"], found, strict=True):
            assert {k: result[k] for k in ("type", "from_name", "to_name", "image_rotation")} == {
                "type": "polygonlabels",
                "from_name": "label",
                "to_name": "image",
                "image_rotation": 0,
            }
            assert (result["original_width"], result["original_height"]) == (
                item.width,
                item.height,
            )
            value = result["value"]
            assert value["polygonlabels"] == [NAMES[region.code]] and value["closed"] is True
            points = np.array(value["points"])
            assert ((points >= 0) & (points <= 100)).all(), "percent of width and height"
            edges.append(points.max())
            pixels = shapely.Polygon(points * [item.width, item.height] / 100)
            assert pixels.area == pytest.approx(region.exterior.area)
            assert result["score"] == pytest.approx(region.score)
    assert max(edges) == 100, "a shape reaches the right or bottom edge: 100 %"
    root = ET.parse(config).getroot()
    assert root.tag == "View"
    image, labels = list(root)
    assert (image.tag, image.attrib) == ("Image", {"name": "image", "value": "$image"})
    assert (labels.tag, labels.attrib) == ("PolygonLabels", {"name": "label", "toName": "image"})
    assert [(x.tag, x.attrib) for x in labels] == [
        ("Label", {"value": c.name, "background": c.color}) for c in CLASSES
    ]


def test_label_studio_export_the_first_annotation_wins_and_images_match_by_stem(
    tmp_path: Path,
) -> None:
    maps = _maps()
    record, (path, _) = _export(tmp_path, {"a": maps["a"]}, LabelStudio())
    (task,) = json.loads(path.read_text())
    result = task["predictions"][0]["result"]
    for shape in result:
        if shape["value"]["polygonlabels"] == ["crop"]:
            shape["value"]["polygonlabels"] = ["weed"]  # the annotator swaps a class
    drawn = [[50.0, 0.0], [100.0, 0.0], [100.0, 50.0]]  # and draws a triangle (off-grid vertex)
    result.append({"type": "polygonlabels", "value": {"points": drawn, "polygonlabels": ["crop"]}})
    exported = {  # what Label Studio's JSON export of an uploaded image looks like
        "id": 7,
        "data": {"image": "/data/upload/1/1a2b3c4d-a.png"},
        "annotations": [{"was_cancelled": True, "result": []}, {"result": result}],
        "predictions": [task["predictions"][0] | {"result": []}],
    }
    bare = {"id": 8, "data": {"image": "https://host/x/a.png?token=1"}, "predictions": [3]}
    path.write_text(json.dumps([exported]))
    expected = np.where(maps["a"] == 2, 3, maps["a"]).astype(np.uint8)
    triangle = shapely.Polygon([(3, 0), (6, 0), (6, 2.5)])
    expected = np.where(paint([(triangle, 2)], expected.shape) == 2, 2, expected)
    (back,) = LabelStudio().read(path, record).values()
    assert (back == expected).all()
    path.write_text(json.dumps([bare]))  # nobody annotated it: not "all background"
    with pytest.raises(AnnotationError, match=r"\(task 8\): task of item 'a' has no annotation"):
        LabelStudio().read(path, record)


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _first_rle(document: Any) -> dict[str, Any]:
    return next(a for a in document["annotations"] if isinstance(a["segmentation"], dict))


def _first_polygon(tasks: Any) -> dict[str, Any]:
    return tasks[0]["predictions"][0]["result"][0]


COCO_ERRORS: list[tuple[Callable[[Any], None], str]] = [
    (
        lambda d: d["categories"][1].update(name="maize"),
        JSON + r" \(annotation \d+\): label 'maize' is not one of the exported classes",
    ),
    (
        lambda d: d["annotations"][0].update(category_id=99),
        JSON + r" \(annotation 1\): label \(category id\) 99 is not one of the file's",
    ),
    (
        lambda d: d["images"][0].update(file_name="images/zzz.png"),
        JSON + r" \(image 1 'images/zzz\.png'\): image 'zzz' is not one of the 1 exported",
    ),
    (
        lambda d: d["images"][0].update(width=7),
        JSON + r" \(image 1 'a\.png'\) is 7x5 px but the exported item 'a' is 6x5",
    ),
    (
        lambda d: d["annotations"][0].update(image_id=5),
        JSON + r" \(annotation 1\): image id 5 is not one of the file's images",
    ),
    (
        lambda d: _first_rle(d)["segmentation"].update(counts="0"),
        JSON + r" \(annotation \d+\): its RLE runs cover 0 pixels, not the 30 of a 6x5 mask",
    ),
    (
        lambda d: _first_rle(d)["segmentation"].update(size=[6, 5]),
        JSON + r" \(annotation \d+\): its RLE mask is 5x6 px but item 'a' is 6x5",
    ),
    (
        lambda d: d.pop("images"),
        r"COCO file .*instances_default\.json is invalid:\n  - images: Field required",
    ),
]


@pytest.mark.parametrize(("change", "message"), COCO_ERRORS)
def test_coco_errors_name_the_file(
    tmp_path: Path, change: Callable[[Any], None], message: str
) -> None:
    record, (path,) = _export(tmp_path, {"a": _maps()["a"]}, Coco())
    _edit(path, change)
    with pytest.raises(AnnotationError, match=message):
        Coco().read(path, record)


LABEL_STUDIO_ERRORS: list[tuple[Callable[[Any], None], str]] = [
    (
        lambda t: _first_polygon(t)["value"].update(polygonlabels=["maize"]),
        r"labelstudio\.json \(task 1\): label 'maize' is not one of the exported classes",
    ),
    (
        lambda t: t[0].update(data={"image": "images/zzz.png"}),
        r"labelstudio\.json \(task 1\): image 'zzz' is not one of the 1 exported items",
    ),
    (
        lambda t: _first_polygon(t).update(original_width=7),
        r"labelstudio\.json \(task 1\): a polygon on a 7x5 px image but the exported item is 6x5",
    ),
    (
        lambda t: _first_polygon(t).update(type="brushlabels"),
        r"labelstudio\.json \(task 1\): a 'brushlabels' result; geoseg reads polygons",
    ),
    (
        lambda t: _first_polygon(t)["value"].pop("points"),
        r"labelstudio\.json is invalid:\n  - 0\.predictions\.0\.result\.0\.value\.points: Field",
    ),
    (
        lambda t: t.append(t[0]),
        r"labelstudio\.json \(task 2\): a second task of item 'a'",
    ),
]


@pytest.mark.parametrize(("change", "message"), LABEL_STUDIO_ERRORS)
def test_label_studio_errors_name_the_file_and_task(
    tmp_path: Path, change: Callable[[Any], None], message: str
) -> None:
    record, (path, _) = _export(tmp_path, {"a": _maps()["a"]}, LabelStudio())
    _edit(path, change)
    with pytest.raises(AnnotationError, match=message):
        LabelStudio().read(path, record)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_a_truncated_or_missing_file_is_an_error_naming_it(
    tmp_path: Path, fmt: AnnotationFormat
) -> None:
    record, files = _export(tmp_path, {"a": _maps()["a"]}, fmt)
    text = files[0].read_text()
    files[0].write_text(text[: len(text) // 2])
    with pytest.raises(
        AnnotationError,
        match=rf"{files[0].name} is not valid JSON: .* at line \d+, column \d+ \(character "
        rf"\d+ of {len(text) // 2}\); the file is corrupt or truncated",
    ):
        fmt.read(files[0], record)
    with pytest.raises(AnnotationError, match=r"elsewhere\.json does not exist"):
        fmt.read(tmp_path / "elsewhere.json", record)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_writing_refuses_what_would_not_come_back(tmp_path: Path, fmt: AnnotationFormat) -> None:
    classes = np.array(HAND["a"], np.uint8)
    item = ItemRecord(id="a", image="images/a.png", height=5, width=6)
    record = ExportRecord(classes=CLASSES, background=1, items=[item])
    name = "instances_default.json" if fmt.name == "coco" else "labelstudio.json"
    cases = [
        (np.where(classes == 3, 7, classes), rf"{name}: item 'a' has class codes \[7\]"),
        (np.where(classes == 3, 0, classes), rf"{name}: item 'a' has no-data pixels but no"),
        (classes[:4], rf"{name}: the class map of item 'a' is 6x4 px but the record says 6x5"),
    ]
    for bad, message in cases:
        with pytest.raises(AnnotationError, match=message):
            fmt.write([Prediction(item, bad.astype(np.uint8))], record, tmp_path)
    with pytest.raises(AnnotationError, match=rf"{name}: item 'a' has two predictions"):
        fmt.write([Prediction(item, classes)] * 2, record, tmp_path)
    assert not (tmp_path / name).exists(), "nothing half-written"


def test_coco_names_images_as_coco_1_0_and_label_studio_refuses_empty_tasks(
    tmp_path: Path,
) -> None:
    maps = _maps(seeds=range(2))
    _, (path,) = _export(tmp_path, maps, Coco())
    names = [image["file_name"] for image in json.loads(path.read_text())["images"]]
    assert names and all("/" not in name for name in names), "relative to images/"
    _, (tasks, _config) = _export(tmp_path / "ls", maps, LabelStudio())
    document = json.loads(tasks.read_text())
    document[0]["predictions"] = [17]  # as Label Studio exports a task nobody annotated
    tasks.write_text(json.dumps(document))
    record = ExportRecord.read(tmp_path / "ls")
    with pytest.raises(AnnotationError, match=r"has no annotation \(and no prediction inline\)"):
        LabelStudio().read(tasks, record)
