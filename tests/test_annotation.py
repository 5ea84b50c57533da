"""The annotation loop's core: regions out of class maps and back, and the export record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.annotation.record import ExportRecord, ItemRecord, restore_nodata, write_nodata
from geoseg.annotation.regions import paint, regions
from geoseg.errors import AnnotationError
from geoseg.model.bundle import ClassInfo

CLASSES = [
    ClassInfo(code=1, name="soil", color="#a6761d"),
    ClassInfo(code=2, name="crop", color="#1a9850"),
    ClassInfo(code=3, name="weed", color="#d73027"),
]


def random_map(seed: int) -> np.ndarray:
    """A class map of blocks and speckle, with no-data pixels, holes and corner-only contacts."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    block = int(rng.integers(1, 6))
    base = rng.integers(0, 4, (h // block + 1, w // block + 1))
    out = np.kron(base, np.ones((block, block), int))[:h, :w].astype(np.uint8)
    speck = rng.random((h, w)) < 0.1
    out[speck] = rng.integers(0, 4, int(speck.sum()))
    return out


@pytest.mark.parametrize("background", [None, 1])
def test_painting_the_regions_exteriors_gives_back_the_class_map(background: int | None) -> None:
    for seed in range(150):
        classes = random_map(seed)
        found = regions(classes, None, background)
        assert all(r.polygon.is_valid and r.code != 0 for r in found)
        fill = 0 if background is None else background
        painted = paint([(r.exterior, r.code) for r in found], classes.shape, fill)
        painted[classes == 0] = 0  # no data comes back from the record's mask
        assert (painted == classes).all(), seed


def test_regions_by_hand() -> None:
    classes = np.array(
        [
            [1, 1, 1, 1, 3],
            [1, 2, 2, 1, 1],
            [1, 2, 1, 1, 1],  # crop with a soil pixel beside it, and a hole in the soil ring
            [1, 1, 1, 3, 1],
        ],
        dtype=np.uint8,
    )
    confidence = np.full(classes.shape, 0.5, np.float32)
    confidence[1, 1:3] = 0.9
    found = regions(classes, confidence)
    assert [(r.code, r.pixels) for r in found] == [(1, 15), (2, 3), (3, 1), (3, 1)]
    soil, crop = found[0], found[1]
    assert len(soil.polygon.interiors) == 1, "the crop patch is a hole in the soil"
    assert crop.bbox == (1.0, 1.0, 2.0, 2.0) and crop.score == pytest.approx((0.9 * 2 + 0.5) / 3)
    assert soil.polygon.area == 15 and crop.polygon.area == 3
    without = regions(classes, confidence, background=1)
    assert [r.code for r in without] == [2, 3, 3], "soil is not a hole of any other region here"


def test_a_background_hole_is_kept_so_exteriors_paint_back_exactly() -> None:
    classes = np.ones((5, 5), np.uint8)
    classes[1:4, 1:4] = 2
    classes[2, 2] = 1  # soil inside the crop: painting the crop's exterior would cover it
    found = regions(classes, None, background=1)
    assert [(r.code, r.pixels) for r in found] == [(2, 8), (1, 1)]
    painted = paint([(r.exterior, r.code) for r in found], classes.shape, 1)
    assert (painted == classes).all()


def test_the_record_round_trips_and_its_errors_name_the_file(tmp_path: Path) -> None:
    classes = np.array([[0, 2], [3, 1]], np.uint8)
    item = write_nodata(
        ItemRecord(id="a", image="images/a.png", height=2, width=2), classes, tmp_path
    )
    assert item.nodata == "nodata/a.png"
    record = ExportRecord(source="test", classes=CLASSES, background=1, items=[item])
    record.write(tmp_path)
    back = ExportRecord.read(tmp_path)
    assert back == record and back.fill == 1
    assert (
        restore_nodata(np.ones((2, 2), np.uint8), back.items[0], tmp_path) == [[0, 1], [1, 1]]
    ).all()
    with pytest.raises(AnnotationError, match=r"x\.xml: label 'tree' is not one of the exported "):
        back.code("tree", "x.xml")
    with pytest.raises(AnnotationError, match=r"x\.xml: image 'b' is not one of the 1 exported"):
        back.item("b", "x.xml")
    (tmp_path / "tasks.json").write_text('{"format": "geoseg-annotations", "classes": []}')
    with pytest.raises(AnnotationError, match=r"tasks\.json is invalid:\n  - classes"):
        ExportRecord.read(tmp_path)
    with pytest.raises(AnnotationError, match=r"does not exist: import from a folder"):
        ExportRecord.read(tmp_path / "elsewhere")


def test_edit_effort_by_hand() -> None:
    from geoseg.annotation.effort import effort_table

    before = np.ones((20, 20), np.uint8)
    before[2:6, 2:6] = 2  # a crop kept as it is
    before[10:14, 10:14] = 3  # a weed the annotator enlarges by one column
    before[16:18, 0:2] = 3  # a weed the annotator deletes (it was soil)
    after = before.copy()
    after[10:14, 14] = 3
    after[16:18, 0:2] = 1
    after[0:2, 17:19] = 2  # a crop the model missed
    table = effort_table({"a": (before, after)}, {1: "soil", 2: "crop", 3: "weed"}, skip=[1])
    crop, weed = (table[table.class_name == n].iloc[0] for n in ("crop", "weed"))
    assert (crop.pixels_before, crop.pixels_after, crop.pixels_added, crop.pixels_removed) == (
        16,
        20,
        4,
        0,
    )
    assert (crop.regions_unchanged, crop.regions_edited_or_new, crop.regions_deleted) == (1, 1, 0)
    assert (weed.pixels_added, weed.pixels_removed, weed.changed_share) == (4, 4, 8 / 20)
    assert (weed.regions_unchanged, weed.regions_edited_or_new, weed.regions_deleted) == (0, 1, 2)
    assert 0 < weed.boundary_f < 1 and crop.boundary_f < 1
    same = effort_table({"a": (before, before)}, {2: "crop", 3: "weed"})
    assert (same.changed_share == 0).all() and (same.boundary_f == 1).all()
