"""Label QA without a second annotator: checks of one label set against a model, review queue."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from numpy.typing import NDArray
from PIL import Image

from geoseg.annotation.checks import (
    CheckSettings,
    Finding,
    check_labels,
    class_shares,
    colour_findings,
)
from geoseg.annotation.queue import (
    QUEUE_CSV,
    QUEUE_GPKG,
    QUEUE_LAYER,
    ReviewImage,
    rank,
    review_selection,
    score,
    write_queue,
    write_sheet,
)
from geoseg.annotation.record import ItemRecord
from geoseg.catalog import ImageSetRef
from geoseg.errors import AnnotationError, RasterOpenError
from geoseg.export.style import ClassStyle
from tests.conftest import gdal_client_check

SOIL, CROP, WEED = 1, 2, 3
CODES = {SOIL: "soil", CROP: "crop", WEED: "weed"}
STYLES = (
    ClassStyle(SOIL, "soil", "#a6761d"),
    ClassStyle(CROP, "crop", "#1a9850"),
    ClassStyle(WEED, "weed", "#d73027"),
)
SETTINGS = CheckSettings(background=SOIL)
SIZE = (100, 120)


def scene() -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float32]]:
    """All soil, labelled and predicted, the model sure everywhere."""
    return (
        np.full(SIZE, SOIL, np.uint8),
        np.full(SIZE, SOIL, np.uint8),
        np.full(SIZE, 0.95, np.float32),
    )


def kinds(found: list[Finding]) -> list[str]:
    return [f.kind for f in found]


def test_a_confident_plant_left_as_soil_is_a_missing_object_a_small_one_is_not() -> None:
    labels, classes, confidence = scene()
    classes[10:20, 10:20] = CROP  # 100 px, confident
    classes[10:20, 40:45] = WEED  # one plant of 100 px, half weed...
    classes[10:20, 45:50] = CROP  # ...and half crop
    classes[40:45, 10:15] = CROP  # 25 px: too small
    classes[60:70, 60:70] = WEED  # 100 px, but the model is unsure
    confidence[60:70, 60:70] = 0.6
    classes[80:90, 80:90] = WEED  # 100 px left unlabelled (0), not soil: not flagged
    labels[80:90, 80:90] = 0
    found = check_labels("a", labels, classes, confidence, CODES, SETTINGS)
    assert kinds(found) == ["missing_object", "missing_object"]
    first, second = found
    assert (first.pixels, first.label_class, first.predicted_class) == (100, SOIL, CROP)
    assert first.bbox == (10, 10, 20, 20)
    assert first.polygon is not None and first.polygon.area == 100
    assert first.confidence == pytest.approx(0.95)
    assert second.pixels == 100 and second.bbox == (40, 10, 50, 20)
    assert second.predicted_class == CROP  # 50 crop, 50 weed: the smaller code of equals
    assert first.note == ""  # touches no labelled plant: nobody outlined it
    # the size threshold is the setting's
    smaller = CheckSettings(background=SOIL, min_missing=20)
    assert len(check_labels("a", labels, classes, confidence, CODES, smaller)) == 3
    # without a background class there is nothing to miss
    assert check_labels("a", labels, classes, confidence, CODES, CheckSettings()) == []


def test_a_crop_labelled_as_weed_is_a_class_mismatch() -> None:
    labels, classes, confidence = scene()
    labels[20:30, 20:30] = WEED
    classes[20:30, 20:30] = CROP
    labels[50:60, 50:60] = WEED  # right
    classes[50:60, 50:60] = WEED
    labels[70:80, 70:80] = CROP  # wrong, but the model is unsure: no votes
    classes[70:80, 70:80] = WEED
    confidence[70:80, 70:80] = 0.5
    found = check_labels("b", labels, classes, confidence, CODES, SETTINGS)
    assert kinds(found) == ["class_mismatch"]
    (mismatch,) = found
    assert (mismatch.label_class, mismatch.predicted_class) == (WEED, CROP)
    assert mismatch.classes == (WEED, CROP)
    assert mismatch.share == 1.0 and mismatch.pixels == 100
    assert mismatch.polygon is not None and mismatch.polygon.bounds == (20, 20, 30, 30)


def test_a_mixed_vote_needs_a_majority() -> None:
    labels, classes, confidence = scene()
    labels[20:30, 20:30] = WEED
    classes[20:30, 20:26] = CROP  # 60 % crop
    classes[20:30, 26:30] = WEED
    found = check_labels("b", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.share) for f in found] == [("class_mismatch", pytest.approx(0.6))]
    strict = CheckSettings(background=SOIL, mismatch_share=0.7)
    assert check_labels("b", labels, classes, confidence, CODES, strict) == []


@pytest.mark.parametrize(("offset", "flagged"), [(6, True), (2, False), (3, False), (4, True)])
def test_an_outline_far_from_the_model_along_a_long_edge_is_mask_bleed(
    offset: int, flagged: bool
) -> None:
    labels, classes, confidence = scene()
    classes[20:60, 20:60] = CROP
    labels[20:60, 20 : 60 + offset] = CROP  # the right edge bleeds into the soil
    found = check_labels("c", labels, classes, confidence, CODES, SETTINGS)
    assert kinds(found) == (["mask_bleed"] if flagged else [])
    if flagged:
        (bleed,) = found
        assert bleed.length is not None and bleed.length >= 40
        assert bleed.pixels == 40 * offset  # the band the label adds
        assert bleed.polygon is not None and bleed.polygon.bounds == (60, 20, 60 + offset, 60)
        assert bleed.share is not None and 0 < bleed.share < 0.5
        assert bleed.label_class == CROP


def test_bleed_needs_a_long_stretch_and_a_confident_model() -> None:
    labels, classes, confidence = scene()
    classes[20:60, 20:60] = CROP
    labels[20:60, 20:60] = CROP
    labels[30:40, 60:66] = CROP  # a 10 px long tongue, 6 px out: too short a stretch
    assert check_labels("c", labels, classes, confidence, CODES, SETTINGS) == []
    labels[20:60, 60:66] = CROP  # long now, but the model is unsure along it
    confidence[:, 58:70] = 0.5
    assert check_labels("c", labels, classes, confidence, CODES, SETTINGS) == []
    # an outline drawn too small leaves a plant band as soil: reported once, as a missing
    # object beside the crop, or (a band below min_missing) as mask bleed
    labels, classes, confidence = scene()
    classes[20:60, 20:60] = CROP
    labels[20:60, 20:54] = CROP
    found = check_labels("c", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.pixels, f.note) for f in found] == [
        ("missing_object", 240, "touches labelled class [2]")
    ]
    larger = CheckSettings(background=SOIL, min_missing=300)
    found = check_labels("c", labels, classes, confidence, CODES, larger)
    assert [(f.kind, f.pixels, f.label_class) for f in found] == [("mask_bleed", 240, CROP)]
    assert found[0].polygon is not None and found[0].polygon.bounds == (54, 20, 60, 60)


def test_an_outline_between_two_objects_is_a_class_question_not_bleed() -> None:
    labels, classes, confidence = scene()
    labels[20:60, 20:40] = CROP
    labels[20:60, 40:60] = WEED
    classes[20:60, 20:60] = CROP  # the model sees one crop plant: a class mismatch, no bleed
    found = check_labels("c", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.label_class, f.predicted_class) for f in found] == [
        ("class_mismatch", WEED, CROP)
    ]
    # a crop whose right quarter the model calls weed: its right edge is far from the model's
    # crop outline, but that is a (minority) class question, not bleed
    labels, classes, confidence = scene()
    labels[20:60, 20:60] = CROP
    classes[20:60, 20:50] = CROP
    classes[20:60, 50:60] = WEED
    assert check_labels("c", labels, classes, confidence, CODES, SETTINGS) == []


def test_small_fragments_and_holes_are_flagged() -> None:
    labels, classes, confidence = scene()
    labels[5, 5:10] = WEED  # a 5 px fragment
    labels[20:40, 20:40] = CROP
    labels[25:27, 25:27] = SOIL  # a 4 px hole
    labels[30:38, 30:38] = SOIL  # a 64 px hole: large enough, not flagged
    labels[33, 33] = WEED  # a 1 px weed inside it: a fragment
    labels[29, 22] = WEED  # a 1 px weed as a hole of its own: a fragment, not also a hole
    classes[:] = labels  # the model agrees: only the fragments and holes are findings
    found = check_labels("d", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.pixels, f.bbox) for f in found] == [
        ("fragment", 5, (5, 5, 10, 6)),
        ("fragment", 1, (22, 29, 23, 30)),
        ("fragment", 1, (33, 33, 34, 34)),
        ("hole", 4, (25, 25, 27, 27)),
    ]
    hole = found[3]
    assert hole.label_class == SOIL and hole.polygon is not None and hole.polygon.area == 4
    assert all(f.confidence is None for f in found)


def test_a_hole_open_at_a_corner_is_not_a_hole() -> None:
    labels, classes, confidence = scene()
    labels[20:25, 20:25] = CROP
    labels[22, 22] = SOIL  # enclosed
    labels[20, 20] = SOIL  # on the outside
    classes[:] = labels
    found = check_labels("d", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.bbox) for f in found] == [("hole", (22, 22, 23, 23))]


def test_invalid_codes_are_flagged_and_left_out_of_the_other_checks() -> None:
    labels, classes, confidence = scene()
    labels[10:12, 10:20] = 7
    found = check_labels("e", labels, classes, confidence, CODES, SETTINGS)
    assert [(f.kind, f.label_class, f.pixels, f.bbox) for f in found] == [
        ("invalid_code", 7, 20, (10, 10, 20, 12))
    ]
    assert "code 7" in found[0].note


def test_unmapped_colours_are_flagged_by_colour(tmp_path: Path) -> None:
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[2:4, 2:5] = (0, 255, 0)
    rgb[6, 6:9] = (9, 9, 9)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    ref = ImageSetRef(
        name="t",
        images=(("a", tmp_path / "a.png"), ("b", tmp_path / "broken.png")),
        annotations=(("a", tmp_path / "a.png"), ("b", tmp_path / "broken.png")),
        polygons=(),
        vegetation=(),
        vegetation_value=0,
        background=None,
        bands=("red", "green", "blue"),
        units="8-bit RGB",
        colours=(((0, 0, 0), SOIL), ((0, 255, 0), CROP)),
        classes=tuple((c, n, "#000000") for c, n in CODES.items()),
        georeference=None,
        description="",
        licence="",
    )
    (found,) = colour_findings(ref, "a")
    assert (found.kind, found.pixels, found.bbox) == ("invalid_code", 3, (6, 6, 9, 7))
    assert "(9,9,9)" in found.note and "a.png" in found.note
    with pytest.raises(RasterOpenError, match=r"broken\.png"):
        colour_findings(ref, "b")


def test_bad_input_is_an_annotation_error() -> None:
    labels, classes, confidence = scene()
    with pytest.raises(AnnotationError, match="one shape"):
        check_labels("f", labels[:-1], classes, confidence, CODES, SETTINGS)
    with pytest.raises(AnnotationError, match="background class 9"):
        check_labels("f", labels, classes, confidence, CODES, CheckSettings(background=9))
    with pytest.raises(ValueError, match="confidence"):
        CheckSettings(confidence=0)


def test_class_shares_table() -> None:
    a = np.array([[1, 1, 2, 0]], np.uint8)
    b = np.array([[1, 3, 3, 3]], np.uint8)
    table = class_shares({"a": a, "b": b}, CODES)
    assert list(table.columns) == [
        "image_id",
        "class_id",
        "class_name",
        "pixels",
        "share",
        "overall_share",
        "relative",
    ]
    row = table.set_index(["image_id", "class_name"])
    assert row.loc[("a", "soil"), "share"] == pytest.approx(2 / 3)
    assert row.loc[("a", "weed"), "pixels"] == 0
    assert row.loc[("b", "weed"), "overall_share"] == pytest.approx(3 / 7)
    assert row.loc[("a", "crop"), "relative"] == pytest.approx((1 / 3) / (1 / 7))


def finding(image: str, pixels: int, confidence: float | None, x: int = 0) -> Finding:
    kind = "missing_object" if confidence is not None else "fragment"
    return Finding(image, kind, SOIL, CROP, pixels, (x, 0, x + 10, 10), confidence)


def test_the_queue_ranks_by_size_times_confidence() -> None:
    found = [
        finding("b", 100, 0.9),  # 90
        finding("a", 50, None),  # 50: no model confidence counts as 1
        finding("c", 200, 0.3),  # 60
        finding("a", 100, 0.9, x=20),  # 90: tie, image a first
    ]
    assert [score(f) for f in found] == pytest.approx([90, 50, 60, 90])
    assert [(f.image_id, f.pixels) for f in rank(found)] == [
        ("a", 100),
        ("b", 100),
        ("c", 200),
        ("a", 50),
    ]
    selection = review_selection(found)
    assert selection.ids == ("a", "b", "c")
    assert selection.priority == {"a": 1.0, "b": 1.0, "c": pytest.approx(60 / 90)}
    assert [f.pixels for f in selection.findings["a"]] == [100, 50]
    assert len(selection.regions("a")) == 2
    items = [ItemRecord(id=i, image=f"images/{i}.png", height=10, width=40) for i in "dcba"]
    chosen = selection.items(items)
    assert [(i.id, i.priority) for i in chosen] == [("a", 1.0), ("b", 1.0), ("c", 0.666667)]
    assert review_selection(found, kinds=["fragment"]).ids == ("a",)
    assert review_selection(found, limit=1).ids == ("a",)
    with pytest.raises(AnnotationError, match="do not hold"):
        selection.items(items[:2])
    with pytest.raises(AnnotationError, match="unknown finding kinds"):
        review_selection(found, kinds=["typo"])


def test_the_queue_is_written_as_gpkg_csv_and_crops(tmp_path: Path) -> None:
    labels, classes, confidence = scene()
    classes[10:20, 10:20] = CROP  # a missing object
    labels[40:50, 40:52] = WEED  # a crop labelled weed
    classes[40:50, 40:52] = CROP
    labels[70, 70:73] = 9  # an invalid code
    found = check_labels("x", labels, classes, confidence, CODES, SETTINGS)
    assert sorted(kinds(found)) == ["class_mismatch", "invalid_code", "missing_object"]
    photo = np.zeros((*SIZE, 3), np.uint8)
    photo[..., 1] = 120
    images = {"x": ReviewImage(photo, labels, classes)}
    written = write_queue(found, tmp_path, images, STYLES, crops=2)
    assert [p.name for p in written] == [QUEUE_GPKG, QUEUE_CSV, "0001.png", "0002.png"]
    gdal_client_check(tmp_path / QUEUE_GPKG)
    layer = pyogrio.read_dataframe(tmp_path / QUEUE_GPKG, layer=QUEUE_LAYER)
    assert list(layer["rank"]) == [1, 2, 3]
    assert list(layer["kind"]) == ["class_mismatch", "missing_object", "invalid_code"]
    assert list(layer["score"]) == pytest.approx([114, 95, 3])
    assert list(layer["crop"]) == ["crops/0001.png", "crops/0002.png", ""]
    assert layer.crs is None and set(layer["review_status"]) == {"todo"}
    assert layer.geometry.iloc[0].bounds == (40, 40, 52, 50)
    assert layer.geometry.iloc[2].bounds == (70, 70, 73, 71)  # no outline: its box
    meta = pyogrio.read_info(tmp_path / QUEUE_GPKG, layer=QUEUE_LAYER)["layer_metadata"]
    assert "NOT georeferenced" in meta["GEOSEG_COORDINATES"]
    with (tmp_path / QUEUE_CSV).open() as stream:
        rows = list(csv.DictReader(stream))
    assert [r["kind"] for r in rows] == list(layer["kind"])
    assert {r["units"] for r in rows} == {"px"}
    with Image.open(tmp_path / "crops" / "0001.png") as crop:
        assert crop.mode == "RGB" and crop.width > 2.5 * (crop.height - 28)  # three panels
        pixels = np.asarray(crop)
    assert ((pixels == (255, 230, 0)).all(axis=-1)).any()  # the region is outlined
    sheet = write_sheet(written[2:], tmp_path / "top.png")
    with Image.open(sheet) as stacked:
        assert stacked.height > 2 * crop.height
    with pytest.raises(AnnotationError, match="'x'"):
        write_queue(found, tmp_path / "again", {}, STYLES)


def test_an_empty_queue_is_still_a_valid_layer(tmp_path: Path) -> None:
    labels, classes, confidence = scene()
    assert check_labels("x", labels, classes, confidence, CODES, SETTINGS) == []
    written = write_queue([], tmp_path, {}, STYLES)
    assert [p.name for p in written] == [QUEUE_GPKG, QUEUE_CSV]
    gdal_client_check(tmp_path / QUEUE_GPKG)
    assert len(pyogrio.read_dataframe(tmp_path / QUEUE_GPKG, layer=QUEUE_LAYER)) == 0
    assert review_selection([]).ids == ()
    with pytest.raises(AnnotationError, match="queue is empty"):
        write_sheet([], tmp_path / "top.png")
