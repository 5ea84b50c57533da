"""Evaluation: boundary F by hand, streamed counts equal whole-scene counts, the evaluate step."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from geoseg.catalog import Catalog
from geoseg.evaluation.boundary import boundary_counts, class_edges
from geoseg.evaluation.metrics import confusion_matrix, scores
from geoseg.evaluation.run import EvaluateJob, evaluate, missed_pixels, summarise
from geoseg.executor import Executor, ExecutorSpec
from geoseg.export.raster import validate_cog
from geoseg.io.labels import LabelLayer
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid
from tests.conftest import NC, REPO, UTM_TRANSFORM, needs_data, write_catalog

TRANSFORM = UTM_TRANSFORM
SERIAL = Executor(ExecutorSpec("threads", 1), show_progress=False)


def whole(reference: np.ndarray, prediction: np.ndarray, tolerance: int) -> np.ndarray:
    core = (slice(None), slice(None))
    return boundary_counts(reference, prediction, reference > 0, core, [1, 2], tolerance)


def test_area_iou_high_but_boundary_f_low() -> None:
    reference = np.ones((120, 120), dtype=np.int64)
    reference[10:110, 10:110] = 2  # a 100 x 100 px field
    prediction = np.ones_like(reference)
    prediction[6:114, 6:114] = 2  # its outline drawn 4 px too far out, all round
    matrix = confusion_matrix(reference, prediction, [1, 2])
    counts = whole(reference, prediction, tolerance=3)
    result = scores(matrix, [1, 2], counts, 3)
    field = result.classes[1]
    assert field.iou == pytest.approx(100 * 100 / (108 * 108))  # 0.857: area looks fine
    assert field.boundary_f == 0.0 and result.boundary_f == 0.0  # every edge pixel 4 px off
    relaxed = scores(matrix, [1, 2], whole(reference, prediction, tolerance=6), 6)
    assert relaxed.classes[1].boundary_f == 1.0  # within 6 px (corners: 5.7), all edges match


def test_boundary_edges_ignore_unlabelled_neighbours() -> None:
    values = np.array([[1, 1, 0, 2], [1, 1, 2, 2]])
    edges = class_edges(values, values > 0)
    expected = np.array([[False, False, False, False], [False, True, True, False]])
    np.testing.assert_array_equal(edges, expected)


def random_maps(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 4, size=(shape[0] // 8 + 1, shape[1] // 8 + 1))
    reference = np.kron(coarse, np.ones((8, 8), dtype=np.int64))[: shape[0], : shape[1]]
    prediction = reference.copy()
    flips = rng.random(shape) < 0.15
    prediction[flips] = rng.integers(1, 5, size=flips.sum())
    reference[rng.random(shape) < 0.3] = 0  # sparse labels
    prediction[:5, :] = 0  # imagery nodata: no prediction
    return reference, prediction


@pytest.mark.parametrize("chunk", [(80, 100), (17, 23), (7, 64)])
def test_streamed_counts_equal_whole_scene_counts(
    tmp_path: Path, chunk: tuple[int, int], write_raster: Callable[..., Path]
) -> None:
    reference, prediction = random_maps((80, 100), seed=3)
    write_raster("ref.tif", reference.astype(np.uint8), nodata=0)
    pred_path = write_raster("pred.tif", prediction.astype(np.uint8), nodata=0)
    grid = Grid(80, 100, TRANSFORM, "EPSG:32633")
    catalog = Catalog.load(
        write_catalog(
            tmp_path,
            "  s:\n    file: pred.tif\n    bands: [{name: a}]\n"
            "    labels:\n      lab: {file: ref.tif}\n",
        )
    )
    labels = LabelLayer.open(catalog.source("s").labels[0], grid, "s", pred_path)
    job = EvaluateJob(
        pred_path,
        labels,
        grid,
        ChunkPlan((80, 100), chunk),
        (3,),
        2,
        None,
        tmp_path / f"parts-{chunk}",
    )
    counts = evaluate(job, SERIAL)
    matrix, boundary = counts.matrix, counts.boundary
    result = summarise(matrix, boundary, [1, 2, 3, 4, 7], [3], 2)
    assert counts.scores([1, 2, 3, 4, 7], [3], 2).miou == result.miou

    evaluated = (reference > 0) & (reference != 3) & (prediction > 0)
    expected_matrix = confusion_matrix(reference[evaluated], prediction[evaluated], [1, 2, 4, 7])
    np.testing.assert_array_equal(result.matrix, expected_matrix)
    core = (slice(None), slice(None))
    expected_boundary = boundary_counts(reference, prediction, evaluated, core, [1, 2, 4, 7], 2)
    np.testing.assert_array_equal(boundary[[1, 2, 4, 7]], expected_boundary)
    by_code = {c.code: c for c in result.classes}
    assert 3 not in by_code, "ignored class"
    assert by_code[7].iou is None and by_code[7].support == 0, "absent class reported as absent"
    assert by_code[4].support == 0 and by_code[4].iou == 0.0, "predicted but not in reference"
    missed = missed_pixels(matrix)
    labelled = (reference > 0) & (reference != 3)
    assert sum(missed.values()) == int((labelled & (prediction == 0)).sum())


@needs_data()
def test_evaluate_step_writes_metrics_plots_and_error_map(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geoseg.cli.main import app

    # a class map on the NC grid: the reference itself with a block of errors and of nodata
    with rasterio.open(REPO.parent / "shared/data/nc-landsat7-landcover/strata.tif") as ds:
        strata, profile = ds.read(1), ds.profile
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[[1, 2, 3, 4, 5, 6, 7]] = [4, 3, 5, 6, 2, 1, 7]
    classes = lookup[np.where(strata > 0, strata, 0).astype(np.int64)]
    classes[100:150, 100:200] = 5  # grass where there is something else: wrong class
    classes[:20, :] = 0  # no prediction
    prediction = tmp_path / "classes.tif"
    profile.update(dtype="uint8", nodata=0)
    with rasterio.open(prediction, "w", **profile) as dst:
        dst.write(classes, 1)

    def evaluate_cli(*options: str) -> Any:
        common = ["--catalog", str(REPO / "data_catalog.yaml"), "--source", "nc-landsat7"]
        return CliRunner().invoke(
            app, ["-q", "evaluate", *common, "--prediction", str(prediction), *options]
        )

    result = evaluate_cli("--labels", "landcover96", "--output", str(tmp_path / "eval"))
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval"
    for name in (
        "metrics.json",
        "metrics.csv",
        "confusion.png",
        "overlay.png",
        "errors.tif",
        "reference.tif",
        "errors.qml",
        "manifest.json",
    ):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_class"]["water"]["precision"] == 1.0  # no false water anywhere
    assert metrics["per_class"]["grass"]["precision"] < 1.0
    assert metrics["labelled_px_without_prediction"]["tree"] > 0
    assert 0 < metrics["miou"] < 1 and 0 < metrics["boundary_f"] < 1
    assert metrics["classes_the_model_cannot_predict"] == {}, "no model tag, no classes given"
    assert validate_cog(out / "errors.tif") == []
    with rasterio.open(out / "errors.tif") as ds:
        errors = ds.read(1)
    assert (errors[:20][strata[:20] > 0] == 3).all()  # missed
    assert (
        errors[100:150, 100:200][
            classes[100:150, 100:200] != lookup[strata[100:150, 100:200].astype(np.int64)]
        ]
        == 2
    ).all()
    again = evaluate_cli("--output", str(out))
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_joint_stretch_keeps_a_photos_colours_and_per_band_stretch_does_not() -> None:
    from geoseg.evaluation.report import stretch

    brown = np.empty((3, 10, 10), np.float32)
    brown[0], brown[1], brown[2] = np.linspace(0, 120, 100).reshape(10, 10), 0, 0
    brown[1] = brown[0] * 0.5  # green half of red, blue zero: brown soil at every brightness
    joint = stretch(brown, joint=True)
    np.testing.assert_allclose(joint[1][joint[0] < 1], joint[0][joint[0] < 1] * 0.5, atol=0.02)
    per_band = stretch(brown)
    assert per_band[1].max() == 1.0 == per_band[0].max(), "each band stretched to its own range"


@needs_data()
def test_reference_classes_the_model_cannot_predict_are_named_and_scored_apart(
    tmp_path: Path, tiny_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import geoseg

    predicted = geoseg.predict(
        "nc-landsat7",
        tiny_bundle,
        tmp_path / "pred",
        catalog=REPO / "data_catalog.yaml",
        chunk_size=256,
        vector={"enabled": False},
    )
    with rasterio.open(predicted.outputs[0]) as ds:
        assert ds.tags(1)["GEOSEG_CLASS_CODES"] == "1,2,4,5,6,7", "the class map says its classes"
    # A model without the 'bare' class: the reference itself, bare painted as shrub.
    with rasterio.open(NC / "strata.tif") as ds:
        strata, profile = ds.read(1), ds.profile
    lookup = np.zeros(256, dtype=np.uint8)
    lookup[[1, 2, 3, 4, 5, 6, 7]] = [4, 3, 5, 6, 2, 1, 6]
    prediction = tmp_path / "classes.tif"
    profile.update(dtype="uint8", nodata=0)
    with rasterio.open(prediction, "w", **profile) as dst:
        dst.write(lookup[np.where(strata > 0, strata, 0).astype(np.int64)], 1)
        dst.update_tags(1, GEOSEG_CLASS_CODES="1,2,3,4,5,6")
    report = geoseg.evaluate(
        prediction, "nc-landsat7", tmp_path / "eval", catalog=REPO / "data_catalog.yaml"
    )
    figures = report.figures
    assert figures.classes_the_model_cannot_predict == ["bare"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    by_class = metrics["per_class"]
    assert by_class["bare"]["iou"] == 0.0 and by_class["tree"]["iou"] == 1.0
    model_ious = [v["iou"] for k, v in by_class.items() if k != "bare" and v["support_px"]]
    assert figures.miou_model_classes == pytest.approx(sum(model_ious) / len(model_ious))
    assert figures.miou == pytest.approx((sum(model_ious) + 0.0) / (len(model_ious) + 1))
    assert metrics["classes_the_model_cannot_predict"]["bare"] == by_class["bare"]["support_px"]
    assert "reference classes bare" in caplog.text and "they score IoU 0" in caplog.text
