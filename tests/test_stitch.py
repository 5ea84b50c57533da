from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio

from geoseg.catalog import Catalog
from geoseg.executor import Executor, ExecutorSpec
from geoseg.export.raster import validate_cog
from geoseg.io.raster import read_window
from geoseg.io.source import RasterSource
from geoseg.model.bundle import load_meta
from geoseg.stitch.predict import InferenceSpec, predict_window
from geoseg.stitch.reference import predict_in_memory
from geoseg.stitch.run import PredictJob, assemble_outputs, predict_arrays, predict_chunks
from geoseg.tiling.grid import ChunkPlan, TileGrid
from geoseg.types import Window
from tests.conftest import NC_BANDS, REPO, FakeModel, needs_data


def fake_spec(tile: int = 32, overlap: int = 8, batch: int = 3, bands: int = 3) -> InferenceSpec:
    return InferenceSpec(
        TileGrid(tile, overlap), batch, (0.0,) * bands, (1.0,) * bands, (1, 2, 5, 7)
    )


def image(shape: tuple[int, int], bands: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(bands, *shape)).astype(np.float32)
    data[:, :5, :7] = np.nan  # a nodata corner
    return data


def chunked(data: np.ndarray, model: Any, spec: InferenceSpec, chunk: tuple[int, int]) -> tuple:
    shape = data.shape[1:]
    plan = ChunkPlan(shape, chunk)
    classes = np.zeros(shape, np.uint8)
    conf = np.zeros(shape, np.float32)

    def read(w: Window) -> np.ndarray:
        out = np.full((data.shape[0], w.height, w.width), np.nan, np.float32)
        inside = w.intersection(Window(0, 0, *shape))
        if inside is not None:
            out[(slice(None), *inside.relative_to(w).slices)] = data[(slice(None), *inside.slices)]
        return out

    for c in plan.chunks():
        result = predict_window(c.core, shape, read, model, spec)
        classes[c.core.slices], conf[c.core.slices] = result.classes, result.confidence
    return classes, conf


@pytest.mark.parametrize("chunk", [(17, 23), (40, 64), (100, 100), (5, 200)])
def test_chunked_prediction_equals_in_memory_pass_bit_for_bit(chunk: tuple[int, int]) -> None:
    data, model, spec = image((70, 90)), FakeModel(3, 4), fake_spec()
    reference = predict_in_memory(data, model, spec)
    classes, conf = chunked(data, model, spec, chunk)
    np.testing.assert_array_equal(classes, reference.classes)
    np.testing.assert_array_equal(conf, reference.confidence)
    assert len(np.unique(reference.classes)) > 2, "the fake model must produce varied classes"


def test_test_time_augmentation_averages_the_views_mapped_back() -> None:
    from geoseg.stitch.augment import predict_views

    model = FakeModel(3, 4)
    batch = np.random.default_rng(2).normal(size=(2, 3, 8, 8)).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, 8, dtype=np.float32) * 0.8

    def softmax_with(term: np.ndarray) -> np.ndarray:  # the model's maths, with its ramp given
        logits = np.einsum("kb,nbyx->nkyx", model.weights, batch)
        logits[:, 0] += term
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    along_x, along_y = ramp[None, None, :], ramp[None, :, None]
    np.testing.assert_array_equal(
        predict_views(model.predict_tiles, batch, "none"), model.predict_tiles(batch)
    )
    # flips: the x-flipped views see the ramp reversed; the y-flips do not change it
    expected = (softmax_with(along_x) + softmax_with(-along_x)) / 2
    np.testing.assert_allclose(
        predict_views(model.predict_tiles, batch, "flips"), expected, atol=1e-6
    )
    # d4: the transposed views see the ramp along y
    expected = (
        softmax_with(along_x)
        + softmax_with(-along_x)
        + softmax_with(along_y)
        + softmax_with(-along_y)
    ) / 4
    np.testing.assert_allclose(predict_views(model.predict_tiles, batch, "d4"), expected, atol=1e-6)


@pytest.mark.parametrize("augment", ["flips", "d4"])
def test_augmented_chunked_prediction_equals_the_in_memory_pass(augment: str) -> None:
    from dataclasses import replace

    data, model = image((70, 90)), FakeModel(3, 4)
    spec = replace(fake_spec(), augment=augment)
    reference = predict_in_memory(data, model, spec)
    classes, conf = chunked(data, model, spec, (17, 23))
    np.testing.assert_array_equal(classes, reference.classes)
    np.testing.assert_array_equal(conf, reference.confidence)
    plain = predict_in_memory(data, model, fake_spec())
    assert (plain.classes != reference.classes).any(), "augmentation must change something here"


def test_nodata_stays_nodata_and_every_pixel_is_predicted_once() -> None:
    data, model, spec = image((70, 90)), FakeModel(3, 4), fake_spec()
    result = predict_in_memory(data, model, spec)
    assert (result.classes[:5, :7] == 0).all() and np.isnan(result.confidence[:5, :7]).all()
    valid = np.isfinite(data).all(axis=0)
    assert (result.classes[valid] > 0).all()
    assert ((result.confidence[valid] > 0) & (result.confidence[valid] <= 1)).all()


@pytest.mark.parametrize("shape", [(5, 9), (1, 1), (3, 100), (33, 31)])
def test_rasters_smaller_than_a_tile_or_thinner_than_the_overlap(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(3, *shape)).astype(np.float32)
    model, spec = FakeModel(3, 4), fake_spec(tile=32, overlap=8)
    reference = predict_in_memory(data, model, spec)
    assert reference.classes.shape == shape and (reference.classes > 0).all()
    classes, _ = chunked(data, model, spec, (2, 4))
    np.testing.assert_array_equal(classes, reference.classes)


def test_all_nodata_window_makes_no_model_call_and_batches_are_fixed_size() -> None:
    data = np.full((3, 40, 40), np.nan, np.float32)
    model = FakeModel(3, 4)
    result = predict_in_memory(data, model, fake_spec())
    assert model.calls == 0 and result.tiles_run == 0 and (result.classes == 0).all()
    predict_in_memory(image((70, 90)), model, fake_spec(batch=5))
    assert set(model.batch_sizes) == {5}, "every forward pass has the configured batch size"


@needs_data()
def test_real_scene_two_dask_chunkings_are_bit_identical_to_the_in_memory_pass(
    tiny_model: Callable[[], Any], tiny_bundle: Path, tmp_path: Path
) -> None:
    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    source = source.select(NC_BANDS)
    meta = load_meta(tiny_bundle)
    spec = InferenceSpec(
        TileGrid(64, 16),
        4,
        tuple(b.mean for b in meta.bands),
        tuple(b.std for b in meta.bands),
        meta.class_codes,
    )
    reference = predict_in_memory(source.read(source.grid.window), tiny_model(), spec)
    job = PredictJob(source, tiny_model, spec, tmp_path / "parts")
    maps = []
    for chunk in [(100, 489), (64, 96)]:
        classes, conf = predict_arrays(job, ChunkPlan(source.grid.shape, chunk))
        assert classes.chunks[0][0] == chunk[0] and classes.chunks[1][0] == chunk[1]
        classes, conf = dask.compute(classes, conf, scheduler="threads", num_workers=2)
        maps.append(classes)
        np.testing.assert_array_equal(conf, reference.confidence)
    np.testing.assert_array_equal(maps[0], maps[1])
    np.testing.assert_array_equal(maps[0], reference.classes)

    # and through part files into COGs
    plan = ChunkPlan(source.grid.shape, (128, 128))
    outcomes = predict_chunks(job, plan.chunks(), Executor(ExecutorSpec("threads", 2), False))
    assert len(outcomes) == 12 and sum(o.tiles_run for o in outcomes) >= reference.tiles_run
    colormap = {c.code: (1, 2, 3, 255) for c in meta.classes}
    cls_path, conf_path = tmp_path / "classes.tif", tmp_path / "confidence.tif"
    assemble_outputs(job, plan, cls_path, conf_path, colormap, overwrite=False)
    assert validate_cog(cls_path) == [] and validate_cog(conf_path) == []
    with rasterio.open(cls_path) as ds:
        np.testing.assert_array_equal(ds.read(1), reference.classes)
        assert ds.crs == source.grid.crs and ds.transform == source.grid.transform
        assert ds.nodata == 0 and ds.colormap(1)[1] == (1, 2, 3, 255)
    assert not list(tmp_path.glob(".*partial*")), "no temporary files left behind"

    # chunks sharing their seam tiles run each tile of the global grid once (one worker; two
    # may run neighbours side by side, then both run their common tiles), with the same bits
    tiles_without_sharing = sum(o.tiles_run for o in outcomes)
    shared = replace(job, parts_dir=tmp_path / "shared", plan=plan)
    outcomes = predict_chunks(shared, plan.chunks(), Executor(ExecutorSpec("threads", 1), False))
    assert sum(o.tiles_run for o in outcomes) == reference.tiles_run < tiles_without_sharing
    assemble_outputs(shared, plan, tmp_path / "c2.tif", tmp_path / "p2.tif", colormap, False)
    with rasterio.open(tmp_path / "c2.tif") as ds, rasterio.open(tmp_path / "p2.tif") as dp:
        np.testing.assert_array_equal(ds.read(1), reference.classes)
        np.testing.assert_array_equal(dp.read(1), reference.confidence)


@needs_data()
def test_the_model_is_loaded_once_per_process_not_per_chunk(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import geoseg.model.predictor as predictor_module

    loads: list[object] = []
    real = predictor_module.load_network

    def counting(*args: Any) -> Any:
        loads.append(args)
        return real(*args)

    monkeypatch.setattr(predictor_module, "load_network", counting)
    monkeypatch.setattr(predictor_module, "_CACHE", {})
    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    source = source.select(NC_BANDS)
    meta = load_meta(tiny_bundle)
    spec = InferenceSpec(TileGrid(64, 16), 4, (60.0,) * 5, (25.0,) * 5, meta.class_codes)
    factory = functools.partial(predictor_module.predictor, tiny_bundle, "cpu")
    job = PredictJob(source, factory, spec, tmp_path / "parts")
    chunks = ChunkPlan(source.grid.shape, (64, 128)).chunks()
    outcomes = predict_chunks(job, chunks, Executor(ExecutorSpec(), False))
    assert len(outcomes) == 20 and len(loads) == 1


@needs_data()
def test_chunk_tasks_prepare_vectorising_and_a_chunk_without_its_file_is_not_finished(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    import functools

    from geoseg.model.predictor import predictor
    from geoseg.stitch.run import finished_chunks
    from geoseg.vector.prepared import load_traced, prepared_path

    source = RasterSource.open(Catalog.load(REPO / "data_catalog.yaml").source("nc-landsat7"))
    source = source.select(NC_BANDS)
    meta = load_meta(tiny_bundle)
    spec = InferenceSpec(TileGrid(64, 16), 4, (60.0,) * 5, (25.0,) * 5, meta.class_codes)
    factory = functools.partial(predictor, tiny_bundle, "cpu")
    job = PredictJob(source, factory, spec, tmp_path / "parts", vectors="outlines")
    chunks = ChunkPlan(source.grid.shape, (160, 256)).chunks()[:2]
    predict_chunks(job, chunks, Executor(ExecutorSpec(), False))
    traced = load_traced(prepared_path(job.parts_dir, chunks[0]))
    assert traced is not None and len(traced.outlines) > 0
    classes = read_window(job.part_paths(chunks[0])[0], Window(0, 0, *chunks[0].core.shape))
    assert traced.pixels[1:].sum() == (classes > 0).sum()
    prepared_path(job.parts_dir, chunks[1]).unlink()
    assert list(finished_chunks(job, chunks)) == [chunks[0].key]
