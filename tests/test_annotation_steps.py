"""The annotation loop as workflow steps: predict, export for labelling tools, import back."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoseg.annotation.formats import FILES, FORMATS
from geoseg.annotation.record import ExportRecord
from geoseg.catalog import Catalog
from geoseg.errors import AnnotationError, ConfigError
from geoseg.io.images import read_labels
from geoseg.workflow.plan import plan_workflow
from geoseg.workflow.run import run_workflow

COLOURS = {(0, 0, 0): 1, (0, 255, 0): 2, (255, 0, 0): 3}


def photo_set(folder: Path, count: int = 3) -> Path:
    """Photos of soil with green and red blobs, their annotations, and a catalog naming them."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True)
    for k in range(1, count + 1):
        codes = np.ones((48, 64), np.uint8)
        for _ in range(6):
            y, x = rng.integers(0, 40), rng.integers(0, 56)
            codes[y : y + rng.integers(3, 9), x : x + rng.integers(3, 9)] = rng.integers(2, 4)
        codes[20:30, 20:30] = 2
        codes[24:26, 24:26] = 1  # a soil hole in a crop plant
        rgb = np.zeros((48, 64, 3), np.uint8)
        rgb[codes == 1] = (120, 90, 60)
        rgb[codes == 2] = (40, 180, 40)
        rgb[codes == 3] = (180, 40, 40)
        noise = rng.integers(-15, 15, rgb.shape)
        Image.fromarray((rgb + noise).clip(0, 255).astype(np.uint8)).save(
            folder / "img" / f"{k}.png"
        )
        ann = np.zeros((48, 64, 3), np.uint8)
        for colour, code in COLOURS.items():
            ann[codes == code] = colour
        Image.fromarray(ann).save(folder / "img" / f"{k}_ann.png")
    catalog = folder / "catalog.yaml"
    catalog.write_text(
        "version: 1\nsources: {}\nimage_sets:\n  photos:\n    images: img/{id}.png\n"
        f"    annotations: img/{{id}}_ann.png\n    ids: {list(range(1, count + 1))}\n"
        "    bands: [red, green, blue]\n    units: 8-bit RGB\n"
        '    colours: {"0,0,0": 1, "0,255,0": 2, "255,0,0": 3}\n'
        "    classes:\n      1: {name: soil, color: '#a6761d'}\n"
        "      2: {name: crop, color: '#1a9850'}\n      3: {name: weed, color: '#d73027'}\n"
        "    georeference: pixels\n",
        encoding="utf-8",
    )
    return catalog


def loop_workflow(folder: Path, formats: list[str]) -> Path:
    catalog = photo_set(folder)
    steps = (
        f"  - train:\n      image_set: photos\n      output: {folder / 'm.geoseg'}\n"
        "      chip_size: 32\n      overlap: 8\n      epochs: 2\n      chips_per_epoch: 16\n"
        "      batch_size: 8\n      threads: 1\n      device: cpu\n"
        "      network: {architecture: Unet, encoder: resnet18, encoder_depth: 2, "
        "decoder_channels: [16, 8]}\n      validation: {fraction: 0.34}\n"
        f"  - predict_images:\n      image_set: photos\n      model: {folder / 'm.geoseg'}\n"
        f"      output: {folder / 'pred'}\n      images: all\n      overlays: 0\n"
        "      grid: {cell: 16, threshold: 0.05}\n"
        f"  - export_annotations:\n      predictions: {folder / 'pred'}\n"
        f"      image_set: photos\n      output: {folder / 'export'}\n"
        f"      formats: [{', '.join(formats)}]\n      background: 1\n"
    )
    for name in formats:
        steps += (
            f"  - import_annotations:\n      export: {folder / 'export'}\n"
            f"      format: {name}\n      output: {folder / ('back-' + name)}\n"
        )
    path = folder / "loop.yaml"
    path.write_text(f"version: 1\ncatalog: {catalog}\nsteps:\n{steps}", encoding="utf-8")
    return path


def test_every_format_round_trips_through_the_workflow_with_no_drift(tmp_path: Path) -> None:
    formats = list(FORMATS)
    reports = run_workflow(loop_workflow(tmp_path, formats), show_progress=False)
    export = tmp_path / "export"
    exported = reports[2].figures
    assert exported.items == 3 and exported.formats == formats and len(exported.label_first) == 3
    for name in formats:
        assert all((export / f).exists() for f in FILES[name]), name
    for report, name in zip(reports[3:], formats, strict=True):
        assert report.figures.items == 3, name
        assert report.figures.changed_share == 0 and report.figures.unchanged_items == 3, name
        back = tmp_path / f"back-{name}"
        ref = Catalog.load(back / "catalog.yaml").image_set("corrected")
        for item in ref.ids:
            with Image.open(export / "preannotation" / f"{item}.png") as image:
                pre = np.asarray(image)
            assert (read_labels(ref, item, pre.shape) == pre).all(), (name, item)


def test_export_and_import_settings_are_checked_at_plan_time(tmp_path: Path) -> None:
    path = loop_workflow(tmp_path, ["coco"])
    text = path.read_text()
    path.write_text(text.replace("      background: 1\n", "      background: 9\n"))
    with pytest.raises(ConfigError, match=r"background 9 is not a class of image set 'photos'"):
        plan_workflow(path)
    path.write_text(text.replace("formats: [coco]", "formats: [shapefile]"))
    with pytest.raises(ConfigError, match=r"formats\.0: Input should be 'cvat-images'"):
        plan_workflow(path)


def test_an_import_without_an_export_record_names_the_folder(tmp_path: Path) -> None:
    from geoseg.annotation.record import ExportRecord

    with pytest.raises(AnnotationError, match=r"tasks\.json does not exist: import from a folder"):
        ExportRecord.read(tmp_path)


@pytest.mark.slow
def test_a_scene_is_cut_into_chips_that_come_back_in_place(
    tmp_path: Path, tiny_bundle: Path
) -> None:
    import rasterio

    from tests.conftest import REPO, write_catalog

    bands = "[{name: blue}, {name: green}, {name: red}, {name: nir}, {name: swir1}, {name: swir2}]"
    sample = REPO / "samples" / "nc_landsat7_2000.tif"
    catalog = write_catalog(tmp_path, f"  nc:\n    file: {sample}\n    bands: {bands}\n")
    formats = list(FORMATS)
    steps = (
        f"  - predict:\n      source: nc\n      model: {tiny_bundle}\n"
        f"      output: {tmp_path / 'pred'}\n      vector: {{enabled: false}}\n"
        f"  - export_annotations:\n      predictions: {tmp_path / 'pred'}\n      source: nc\n"
        f"      output: {tmp_path / 'export'}\n      chip_size: 128\n"
        f"      formats: [{', '.join(formats)}]\n"
    )
    for name in formats:
        steps += (
            f"  - import_annotations:\n      export: {tmp_path / 'export'}\n"
            f"      format: {name}\n      output: {tmp_path / ('back-' + name)}\n"
        )
    path = tmp_path / "scene.yaml"
    path.write_text(f"version: 1\ncatalog: {catalog}\nsteps:\n{steps}", encoding="utf-8")
    reports = run_workflow(path, show_progress=False)
    assert reports[1].figures.items == 3 * 4  # 300 x 489 px in 128 px chips
    with rasterio.open(tmp_path / "pred" / "classes.tif") as ds:
        predicted, transform, crs = ds.read(1), ds.transform, ds.crs
    with rasterio.open(tmp_path / "export" / "images" / "r0128-c0256.png") as ds:
        assert ds.transform == transform * transform.translation(256, 128) and ds.crs == crs
    for report, name in zip(reports[2:], formats, strict=True):
        assert report.figures.changed_share == 0, name
        with rasterio.open(tmp_path / f"back-{name}" / "labels" / "scene.tif") as ds:
            assert ds.transform == transform and ds.crs == crs, name
            assert (ds.read(1) == predicted).all(), name
        source = Catalog.load(tmp_path / f"back-{name}" / "catalog.yaml").source("corrected")
        assert source.band_names[:3] == ("blue", "green", "red")
        assert source.label("corrected").path == tmp_path / f"back-{name}" / "labels" / "scene.tif"


def test_the_cli_exports_imports_and_names_a_bad_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geoseg.cli.main import app

    path = loop_workflow(tmp_path, ["coco"])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: lines.index("  - export_annotations:\n")]))
    run_workflow(path, show_progress=False)  # train and predict only
    runner = CliRunner()
    export = tmp_path / "cli-export"
    result = runner.invoke(
        app,
        [
            "annotate", "export", "--predictions", str(tmp_path / "pred"), "--image-set",
            "photos", "--formats", "cvat-images,coco", "--background", "1", "--output",
            str(export), "--catalog", str(tmp_path / "catalog.yaml"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "items: 3" in result.output and "label_first:" in result.output
    back = ["annotate", "import", "--export", str(export), "--output", str(tmp_path / "b")]
    result = runner.invoke(app, [*back, "--format", "cvat-images"])
    assert result.exit_code == 0 and "changed_share: 0.0" in result.output, result.output
    xml = export / "annotations.xml"
    xml.write_text(re.sub(r'(<polygon label=")[^"]+', r"\1thistle", xml.read_text(), count=1))
    result = runner.invoke(app, [*back, "--format", "cvat-images", "--overwrite"])
    assert result.exit_code == 1 and "label 'thistle' is not one of the exported" in result.output
    assert "annotations.xml" in result.output and "Traceback" not in result.output
    coco = export / "annotations" / "instances_default.json"
    coco.write_text(coco.read_text()[:-40])
    result = runner.invoke(app, [*back, "--format", "coco", "--overwrite"])
    assert result.exit_code == 1 and "instances_default.json" in result.output
    assert "Traceback" not in result.output


def test_label_qa_checks_scores_against_gold_and_builds_a_consensus(tmp_path: Path) -> None:
    import pyogrio

    path = loop_workflow(tmp_path, ["coco"])
    lines = path.read_text().splitlines(keepends=True)
    catalog = tmp_path / "catalog.yaml"
    for k in (1, 2, 3):  # annotator b missed the big crop plant in every photo
        with Image.open(tmp_path / "img" / f"{k}_ann.png") as image:
            ann = np.asarray(image).copy()
        ann[20:30, 20:30] = (0, 0, 0)
        Image.fromarray(ann).save(tmp_path / "img" / f"{k}_b.png")
    text = catalog.read_text()
    body = text[text.index("  photos:\n") :]
    catalog.write_text(
        text
        + body.replace("  photos:", "  b:").replace("{id}_ann.png", "{id}_b.png")
        + body.replace("  photos:", "  c:")
    )
    qa = (
        f"  - label_qa:\n      image_set: b\n      predictions: {tmp_path / 'pred'}\n"
        f"      output: {tmp_path / 'qa'}\n      background: 1\n      gold: photos\n"
        "      annotators: {c: c}\n      crops: 5\n      review_task: [cvat-images]\n"
        "      checks: {confidence: 0.4}\n"
    )
    path.write_text("".join(lines[: lines.index("  - export_annotations:\n")]) + qa)
    report = run_workflow(path, show_progress=False)[-1]
    figures = report.figures
    assert figures.images == 3
    assert figures.gold_passed == {"labels": False, "c": True}, "b missed a plant; c is gold"
    assert figures.review_pixels == 3 * (100 - 4), "b and c disagree on the plant: a tie"
    out = tmp_path / "qa"
    for name in ("class_shares.csv", "gold.csv", "pairwise.csv", "review_queue.csv"):
        assert (out / name).exists(), name
    assert pyogrio.read_info(out / "review_queue.gpkg")["features"] == sum(
        figures.findings.values()
    )
    with Image.open(out / "consensus" / "1.png") as image:
        assert (np.asarray(image)[20:30, 20:30] == 255).sum() == 100 - 4  # REVIEW
    task = ExportRecord.read(out / "review_task")  # b's flagged photos, back to annotators
    flagged = {i for i in pyogrio.read_dataframe(out / "review_queue.gpkg").image_id}
    assert {item.id for item in task.items} == flagged and (
        out / "review_task" / "annotations.xml"
    ).exists()
    for item in task.items:
        with Image.open(out / "review_task" / "preannotation" / f"{item.id}.png") as image:
            assert (np.asarray(image)[20:30, 20:30] == 1).all(), "b's own labels go back"
