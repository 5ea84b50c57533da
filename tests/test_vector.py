from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import shapely
from affine import Affine
from shapely.geometry import shape

from geoseg.executor import Executor, ExecutorSpec
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Grid
from geoseg.vector.components import chunk_components
from geoseg.vector.prepared import (
    load_components,
    load_traced,
    prepare_chunk,
    prepared_path,
    save_prepared,
)
from geoseg.vector.regions import build_regions
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, vectorise
from tests import oracles

SERIAL = Executor(ExecutorSpec("threads", 1), show_progress=False)
TWO_THREADS = Executor(ExecutorSpec("threads", 2), show_progress=False)
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5800000)


def regions_of(classes: np.ndarray, chunk: tuple[int, int], min_pixels: int = 0):
    plan = ChunkPlan(classes.shape, chunk)
    parts = [chunk_components(classes[c.core.slices], c, classes.shape[1]) for c in plan.chunks()]
    return plan, build_regions(plan, parts, min_pixels)


def sieved(classes: np.ndarray, chunk: tuple[int, int], min_pixels: int) -> np.ndarray:
    plan, table = regions_of(classes, chunk, min_pixels)
    out = np.zeros_like(classes)
    from geoseg.vector.polygonize import region_image

    for c in plan.chunks():
        out[c.core.slices] = table.classes[
            region_image(classes[c.core.slices], table.local_to_region[c.index])
        ]
    return out


def test_components_join_across_seams_like_a_whole_scene_labelling() -> None:
    classes = np.array(
        [
            [1, 1, 2, 2, 2],
            [1, 0, 0, 0, 2],
            [1, 1, 1, 2, 2],
            [3, 3, 1, 2, 1],
        ],
        dtype=np.uint8,
    )
    for chunk in [(4, 5), (2, 2), (1, 1), (3, 2)]:
        _, table = regions_of(classes, chunk)
        # 1 (U-shape), 2 (ring right side), 3, and the lone 1 at bottom-right: 4 regions
        assert table.size == 4, chunk
        assert table.classes[1:].tolist() == [1, 2, 3, 1]  # ordered by first pixel
        assert table.counts[1:].tolist() == [7, 7, 2, 1]


def test_minimum_mapping_unit_merges_into_the_largest_non_small_neighbour() -> None:
    classes = np.array(
        [
            [1, 1, 1, 2, 2],
            [1, 3, 1, 2, 2],
            [1, 1, 4, 2, 2],
            [5, 5, 5, 5, 5],
        ],
        dtype=np.uint8,
    )
    # sizes: class1 = 7, class2 = 6, class3 = 1, class4 = 1, class5 = 5; MMU = 2 pixels.
    # 3 touches only class 1 -> 1. 4 touches 1 (7), 2 (6) and 5 (5): the largest is 1.
    expected = classes.copy()
    expected[1, 1] = 1
    expected[2, 2] = 1
    for chunk in [(4, 5), (2, 3), (1, 2)]:
        np.testing.assert_array_equal(sieved(classes, chunk, 2), expected)


def test_small_components_without_a_large_neighbour_keep_their_class() -> None:
    classes = np.zeros((5, 5), np.uint8)
    classes[2, 2] = 3  # an island in nodata
    classes[0, 0], classes[0, 1] = 1, 2  # two small neighbours only
    np.testing.assert_array_equal(sieved(classes, (2, 2), 5), classes)


def test_ties_between_equal_neighbours_go_to_the_first_in_raster_order() -> None:
    classes = np.array([[1, 1, 1], [2, 9, 3], [2, 2, 3]], dtype=np.uint8)
    classes[2, 2] = 3  # class 1: 3 px, class 2: 3 px, class 3: 2 px
    out = sieved(classes, (1, 1), 2)
    assert out[1, 1] == 1  # 1 and 2 both have 3 px; class 1's first pixel comes first


def write_classmap(
    tmp_path: Path, classes: np.ndarray, crs: str = "EPSG:32633", transform: Affine = TRANSFORM
) -> tuple[Path, Grid]:
    path = tmp_path / "classes.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=classes.shape[0],
        width=classes.shape[1],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(classes, 1)
    return path, Grid(classes.shape[0], classes.shape[1], transform, crs)


def blobby(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A class map with large and tiny regions, holes, and a nodata patch."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 5, size=(shape[0] // 6 + 1, shape[1] // 6 + 1))
    classes = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[: shape[0], : shape[1]]
    speckle = rng.random(shape) < 0.05
    classes[speckle] = rng.integers(1, 5, size=speckle.sum())
    classes[10:20, 30:45] = 0
    return classes.astype(np.uint8)


@pytest.mark.parametrize("min_pixels", [0, 4])
def test_polygons_equal_whole_scene_polygonize_for_any_chunking(
    tmp_path: Path, min_pixels: int
) -> None:
    classes = blobby((90, 110), seed=4)
    path, grid = write_classmap(tmp_path, classes)
    settings = VectorSettings(min_area_m2=min_pixels * 100.0)
    assert settings.min_pixels(grid) == min_pixels
    reference_map = oracles.sieve(classes, min_pixels)  # plain whole-scene reference
    reference = [
        (shape(g), int(v))
        for g, v in rasterio.features.shapes(
            reference_map, mask=reference_map > 0, connectivity=4, transform=TRANSFORM
        )
    ]
    ref_area = pd.Series([g.area for g, _ in reference]).groupby([v for _, v in reference]).sum()
    layers = []
    for chunk in [(90, 110), (32, 32), (13, 29)]:
        job = VectoriseJob(path, None, grid, ChunkPlan(classes.shape, chunk), settings)
        layer = pd.concat(list(vectorise(job, {1: "a"}, TWO_THREADS)))
        layer = layer.sort_values("region_id").reset_index(drop=True)
        assert len(layer) == len(reference), chunk
        assert layer.is_valid.all() and set(layer.geom_type) == {"Polygon"}
        area = layer.groupby("class_id").area_m2.sum()
        pd.testing.assert_series_equal(area, ref_area, check_names=False, check_index_type=False)
        np.testing.assert_array_equal(layer.pixels * 100.0, layer.area_m2)
        burned = rasterio.features.rasterize(
            zip(layer.geometry, layer.class_id, strict=True),
            out_shape=classes.shape,
            transform=TRANSFORM,
            dtype="uint8",
        )
        np.testing.assert_array_equal(burned, reference_map)
        layers.append(layer)
    for other in layers[1:]:
        assert shapely.equals(other.geometry.values, layers[0].geometry.values).all()
        np.testing.assert_array_equal(other.class_id, layers[0].class_id)
    assert_no_small_component_keeps_its_class_beside_a_large_one(classes, burned, min_pixels)


def assert_no_small_component_keeps_its_class_beside_a_large_one(
    classes: np.ndarray, sieved: np.ndarray, min_pixels: int
) -> None:
    """The MMU's exact invariant, checked on the input's own components (not a threshold).

    Every component below the MMU that touches one at or above it takes the class of such a
    neighbour of the largest size; components at or above the MMU keep their class.
    """
    labels, label_class = oracles.components(classes)
    sizes = np.bincount(labels.ravel(), minlength=len(label_class))
    pairs = oracles.neighbours(labels)
    small_with_large = 0
    for label in range(1, len(label_class)):
        pixels = sieved[labels == label]
        if sizes[label] >= min_pixels:
            assert (pixels == label_class[label]).all()
            continue
        large = [b for a, b in pairs if a == label and sizes[b] >= min_pixels]
        if large:
            small_with_large += 1
            biggest = max(sizes[b] for b in large)
            assert set(pixels) <= {label_class[b] for b in large if sizes[b] == biggest}
    assert small_with_large > 0 or min_pixels == 0, "the scene exercises the rule"


def test_attributes_and_mean_confidence(tmp_path: Path) -> None:
    classes = np.array([[1, 1, 2], [1, 1, 2]], dtype=np.uint8)
    path, grid = write_classmap(tmp_path, classes)
    conf_path = tmp_path / "conf.tif"
    conf = np.array([[0.5, 0.7, 0.9], [0.6, 0.6, 0.8]], dtype=np.float32)
    with rasterio.open(
        conf_path,
        "w",
        driver="GTiff",
        height=2,
        width=3,
        count=1,
        dtype="float32",
        crs=grid.crs,
        transform=TRANSFORM,
    ) as dst:
        dst.write(conf, 1)
    job = VectoriseJob(path, conf_path, grid, ChunkPlan((2, 3), (1, 2)), VectorSettings())
    layer = pd.concat(list(vectorise(job, {1: "water", 2: "tree"}, SERIAL)))
    layer = layer.sort_values("region_id")
    assert layer.class_name.tolist() == ["water", "tree"]
    np.testing.assert_allclose(layer.area_m2, [400.0, 200.0])
    np.testing.assert_allclose(layer.perimeter_m, [80.0, 60.0])
    np.testing.assert_allclose(layer.mean_confidence, [0.6, 0.85], rtol=1e-6)


def test_areas_are_in_metres_for_a_feet_crs(tmp_path: Path) -> None:
    classes = np.ones((2, 2), dtype=np.uint8)
    feet = Affine(10, 0, 2000000, 0, -10, 700000)
    path, grid = write_classmap(tmp_path, classes, crs="EPSG:2264", transform=feet)  # NC, US ft
    job = VectoriseJob(path, None, grid, ChunkPlan((2, 2), (2, 2)), VectorSettings())
    layer = pd.concat(list(vectorise(job, {}, SERIAL)))
    assert layer.area_m2.iloc[0] == pytest.approx(400 * 0.3048006096**2, rel=1e-6)


def test_simplification_keeps_a_valid_coverage_with_shared_edges(tmp_path: Path) -> None:
    classes = blobby((60, 80), seed=2)
    path, grid = write_classmap(tmp_path, classes)
    job = VectoriseJob(
        path,
        None,
        grid,
        ChunkPlan(classes.shape, (25, 30)),
        VectorSettings(min_area_m2=400, simplify_m=15),
    )
    layer = pd.concat(list(vectorise(job, {}, SERIAL)))
    exact = pd.concat(
        list(
            vectorise(
                VectoriseJob(
                    path,
                    None,
                    grid,
                    ChunkPlan(classes.shape, (25, 30)),
                    VectorSettings(min_area_m2=400),
                ),
                {},
                SERIAL,
            )
        )
    )
    assert layer.is_valid.all() and len(layer) == len(exact)
    # simplification starts from outlines with a vertex at every pixel corner (10 m here)
    dense = shapely.segmentize(exact.geometry.values, 10.0)
    simplified = shapely.get_num_coordinates(layer.geometry.values).sum()
    assert simplified < 0.8 * shapely.get_num_coordinates(dense).sum()
    assert shapely.coverage_is_valid(layer.geometry.values), "no gaps or overlaps between polygons"
    assert layer.area_m2.sum() == pytest.approx(exact.area_m2.sum(), rel=1e-9)


def test_all_nodata_class_map_gives_no_polygons(tmp_path: Path) -> None:
    path, grid = write_classmap(tmp_path, np.zeros((20, 20), np.uint8))
    job = VectoriseJob(path, None, grid, ChunkPlan((20, 20), (8, 8)), VectorSettings())
    assert list(vectorise(job, {}, SERIAL)) == []


@pytest.mark.parametrize(
    "transform",
    [
        Affine.rotation(20) @ Affine(10, 0, 0, 0, -10, 0) @ Affine.identity(),
        Affine.rotation(15) @ Affine(10, 0, 0, 0, -10, 0),
        Affine.shear(12, 0) @ Affine(10, 0, 0, 0, -10, 0),
        Affine(10, 0, 500000, 0, 10, 5700000),  # south-up
    ],
    ids=["rotated-20", "rotated-15", "sheared", "south-up"],
)
def test_rotated_sheared_and_south_up_grids_give_whole_scene_polygons(
    tmp_path: Path, transform: Affine
) -> None:
    transform = Affine.translation(500000, 5800000) @ transform
    classes = blobby((60, 80), seed=7)
    path, grid = write_classmap(tmp_path, classes, transform=transform)
    job = VectoriseJob(path, None, grid, ChunkPlan(classes.shape, (16, 16)), VectorSettings())
    layer = pd.concat(list(vectorise(job, {}, SERIAL)))
    assert layer.is_valid.all() and set(layer.geom_type) == {"Polygon"}, "seams dissolve"
    whole = [
        shape(g)
        for g, _ in rasterio.features.shapes(
            classes, mask=classes > 0, connectivity=4, transform=transform
        )
    ]  # the whole-scene polygonize, an independent reference
    assert len(layer) == len(whole)
    perimeter = sum(g.length for g in whole) * abs(grid.metres_per_unit or 1.0)
    assert layer.perimeter_m.sum() == pytest.approx(perimeter, rel=1e-9)
    np.testing.assert_allclose(layer.area_m2, layer.pixels * 100.0, rtol=1e-9)
    burned = rasterio.features.rasterize(
        zip(layer.geometry, layer.class_id, strict=True),
        out_shape=classes.shape,
        transform=transform,
        dtype="uint8",
    )
    np.testing.assert_array_equal(burned, classes)
    first = layer.sort_values("region_id").geometry.iloc[0]
    corner = transform @ (0, 0)
    assert shapely.intersects(first, shapely.Point(corner).buffer(1e-6))


def test_geographic_crs_areas_are_geodesic_metres(tmp_path: Path) -> None:
    classes = np.ones((10, 10), dtype=np.uint8)
    degrees = Affine(0.001, 0, 10.0, 0, -0.001, 0.005)  # ~111 m pixels at the equator
    path, grid = write_classmap(tmp_path, classes, crs="EPSG:4326", transform=degrees)
    job = VectoriseJob(path, None, grid, ChunkPlan((10, 10), (4, 4)), VectorSettings())
    layer = pd.concat(list(vectorise(job, {}, SERIAL)))
    assert len(layer) == 1
    assert layer.area_m2.iloc[0] == pytest.approx(1113.2**2, rel=0.01)
    assert VectorSettings(min_area_m2=111.32**2 * 4).min_pixels(grid) in (4, 5)


def prepare_all(
    folder: Path, classes: np.ndarray, confidence: np.ndarray, plan: ChunkPlan, outlines: bool
) -> None:
    """What predict's chunk tasks leave for vectorising, for every chunk of ``plan``."""
    folder.mkdir(exist_ok=True)
    for chunk in plan.chunks():
        part = chunk.core.slices
        prepared = prepare_chunk(classes[part], confidence[part], chunk, classes.shape[1], outlines)
        save_prepared(prepared, prepared_path(folder, chunk))


@pytest.mark.parametrize(
    ("min_area_m2", "simplify_m", "outlines"),
    [(0.0, 0.0, True), (0.0, 15.0, True), (400.0, 0.0, False), (0.0, 0.0, False)],
)
def test_prepared_chunks_give_the_layer_vectorising_the_pixels_gives(
    tmp_path: Path, min_area_m2: float, simplify_m: float, outlines: bool
) -> None:
    # Chunks of 13 x 29 px cut the blobs so that regions leave a chunk and come back into it
    # (pieces of several polygons) and cross several seams.
    classes = blobby((90, 110), seed=5)
    confidence = np.random.default_rng(5).random(classes.shape).astype(np.float32)
    confidence[classes == 0] = np.nan
    path, grid = write_classmap(tmp_path, classes)
    conf_path = tmp_path / "confidence.tif"
    with rasterio.open(
        conf_path, "w", driver="GTiff", height=90, width=110, count=1, dtype="float32",
        crs=grid.crs, transform=TRANSFORM, nodata=float("nan"),
    ) as dst:  # fmt: skip
        dst.write(confidence, 1)
    plan = ChunkPlan(classes.shape, (13, 29))
    settings = VectorSettings(min_area_m2=min_area_m2, simplify_m=simplify_m)
    prepare_all(tmp_path / "parts", classes, confidence, plan, outlines)
    # the class map is not read when outlines are prepared: a missing file proves it
    classes_path = tmp_path / "gone.tif" if outlines else path

    def layer(prepared: Path | None, source: Path) -> pd.DataFrame:
        job = VectoriseJob(source, conf_path, grid, plan, settings, prepared)
        frame = pd.concat(list(vectorise(job, {1: "a"}, TWO_THREADS)))
        return frame.sort_values("region_id").reset_index(drop=True)

    expected, got = layer(None, path), layer(tmp_path / "parts", classes_path)
    assert len(got) == len(expected) > 50
    columns = [c for c in expected.columns if c != "geometry"]
    pd.testing.assert_frame_equal(got[columns], expected[columns], rtol=1e-12)
    same = shapely.equals_exact(
        shapely.normalize(got.geometry.values), shapely.normalize(expected.geometry.values), 0
    )
    assert same.all(), f"{(~same).sum()} polygons differ"


def test_prepared_files_round_trip_exactly(tmp_path: Path) -> None:
    classes = blobby((40, 50), seed=6)
    confidence = np.full(classes.shape, 0.25, dtype=np.float32)
    chunk = ChunkPlan(classes.shape, (40, 50)).chunks()[0]
    prepared = prepare_chunk(classes, confidence, chunk, 50, outlines=True)
    save_prepared(prepared, tmp_path / "c.npz")
    components = chunk_components(classes, chunk, 50)
    loaded = load_components(tmp_path / "c.npz", chunk)
    for field in ("classes", "counts", "anchors", "pairs", "top", "bottom", "left", "right"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(components, field))
    traced = load_traced(tmp_path / "c.npz")
    assert traced is not None and prepared.outlines is not None
    np.testing.assert_array_equal(traced.outlines.coords, prepared.outlines.coords)
    assert traced.outlines.coords.dtype == np.float64
    np.testing.assert_array_equal(traced.pixels, components.counts)
    assert traced.confidence_sums[1:].sum() == pytest.approx(0.25 * (classes > 0).sum())
    untraced = prepare_chunk(classes, confidence, chunk, 50, outlines=False)
    save_prepared(untraced, tmp_path / "u.npz")
    assert load_traced(tmp_path / "u.npz") is None
