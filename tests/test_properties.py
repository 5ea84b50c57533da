"""Property-based tests (hypothesis) of the invariants of docs/DESIGN.md §3 and §4.

Small rasters with random sizes, geotransforms (north-up, south-up, mirrored, rotated, sheared),
nodata masks (none, random, blocks, borders, all-nodata, per band) and chunk sizes (smaller than a
tile, not dividing the raster, larger than the raster):

- the chunked prediction through the production path (source files read per chunk, part files,
  COG assembly; and the lazy Dask arrays) equals the in-memory whole-scene pass bit for bit;
- the chunked vectoriser's polygons are valid single Polygons that do not overlap, and
  re-rasterise exactly to the whole-scene MMU-sieved class map of :mod:`tests.oracles`, one
  polygon per 4-connected region, with the region's pixel count, area, perimeter and mean
  confidence.

The references are independent of the code under test: ``predict_in_memory`` holds the whole
scene in memory (no windows, no file reads), and the sieve, components and perimeters are
computed here and in ``tests/oracles.py`` on the whole array.

Runs are derandomised (no example database), so CI sees the same examples every time.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import shapely
from affine import Affine
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from geoseg.catalog import Catalog
from geoseg.executor import Executor, ExecutorSpec
from geoseg.io.source import RasterSource
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.reference import predict_in_memory
from geoseg.stitch.run import PredictJob, assemble_outputs, predict_arrays, predict_chunks
from geoseg.tiling.grid import ChunkPlan, TileGrid
from geoseg.types import Grid
from geoseg.vector.vectorise import VectoriseJob, VectorSettings, vectorise
from tests import oracles
from tests.conftest import FakeModel, write_catalog

CRS = "EPSG:32633"  # metres: areas and perimeters in CRS units are metres
SERIAL = Executor(ExecutorSpec("threads", 1), show_progress=False)
NODATA = -9999.0

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------------------------
# strategies


def describe(transform: Affine) -> str:
    """The kind of a transform, for hypothesis' statistics (``--hypothesis-show-statistics``)."""
    t = transform
    turned = "rotated/sheared" if t.b or t.d else "axis-aligned"
    return f"{turned}, {'determinant < 0' if t.determinant < 0 else 'determinant > 0'}"


@st.composite
def transforms(draw: st.DrawFn) -> Affine:
    """A geotransform: north-up, south-up or mirrored; then maybe rotated and/or sheared."""
    flip = draw(st.sampled_from(["north-up", "south-up", "mirrored", "turned-180"]))
    turn = draw(st.sampled_from(["none", "rotated", "sheared", "rotated+sheared"]))
    size_x = draw(st.floats(0.25, 60.0))
    size_y = draw(st.one_of(st.just(size_x), st.floats(0.25, 60.0)))
    sign_x = -1.0 if flip in ("mirrored", "turned-180") else 1.0
    sign_y = 1.0 if flip in ("south-up", "mirrored") else -1.0
    base = Affine.scale(sign_x * size_x, sign_y * size_y)
    angle = draw(st.floats(-180.0, 180.0)) if "rotated" in turn else 0.0
    shear = (
        (draw(st.floats(-40.0, 40.0)), draw(st.floats(-40.0, 40.0)))
        if "sheared" in turn
        else (0.0, 0.0)
    )
    origin = (draw(st.floats(100_000.0, 900_000.0)), draw(st.floats(0.0, 9_000_000.0)))
    transform = Affine.translation(*origin) @ Affine.rotation(angle) @ Affine.shear(*shear) @ base
    # shearing x and y by complementary angles would make the grid degenerate
    if abs(transform.determinant) < 1e-3 * size_x * size_y:
        transform = Affine.translation(*origin) @ base
    return transform


def axis_chunk(length: int, most_chunks: int) -> st.SearchStrategy[int]:
    """A chunk edge along an axis of ``length`` px: from small (at most ``most_chunks`` chunks)
    to larger than the axis; most do not divide it."""
    return st.integers(max(1, math.ceil(length / most_chunks)), length + 5)


@st.composite
def nodata_masks(draw: st.DrawFn, shape: tuple[int, int], bands: int) -> NDArray[np.bool_]:
    """``(bands, y, x)`` invalid-pixel masks: none, random, blocks, border, all, or per band."""
    kind = draw(
        st.sampled_from(["random", "blocks", "border", "per-band", "none", "random", "all"])
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    height, width = shape
    mask = np.zeros((bands, *shape), dtype=bool)
    if kind == "random":
        mask[:] = rng.random(shape) < draw(st.sampled_from([0.05, 0.3, 0.7, 0.95]))
    elif kind == "blocks":
        for _ in range(draw(st.integers(1, 4))):
            r0, c0 = rng.integers(0, height), rng.integers(0, width)
            mask[:, r0 : r0 + rng.integers(1, height + 1), c0 : c0 + rng.integers(1, width + 1)] = 1
    elif kind == "border":  # a constant fill border, as from a reprojection
        top, left, bottom, right = (draw(st.integers(0, 12)) for _ in range(4))
        mask[:, :top], mask[:, :, :left] = True, True
        mask[:, height - bottom :], mask[:, :, width - right :] = bottom > 0, right > 0
    elif kind == "all":
        mask[:] = True
    elif kind == "per-band":
        mask[:] = rng.random(mask.shape) < draw(st.sampled_from([0.05, 0.2]))
    return mask


@dataclass(frozen=True)
class PredictCase:
    shape: tuple[int, int]
    transform: Affine
    dtype: str
    encoding: str  # how nodata is stored: file tag, NaN tag, catalog override, GDAL mask, none
    seed: int
    invalid: NDArray[np.bool_]
    tile: int
    overlap: int
    batch: int
    codes: tuple[int, ...]
    augment: str
    chunks: tuple[tuple[int, int], tuple[int, int]]
    through_files: bool

    def __repr__(self) -> str:  # hypothesis prints this for a falsifying example
        fields = {k: v for k, v in self.__dict__.items() if k != "invalid"}
        return f"PredictCase({fields}, invalid_pixels={int(self.invalid.any(axis=0).sum())})"


@st.composite
def predict_cases(draw: st.DrawFn) -> PredictCase:
    shape = (draw(st.integers(1, 70)), draw(st.integers(1, 70)))
    bands = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "int16"]))
    encodings = ["mask", "tag", "catalog"] + (["nan"] if dtype == "float32" else [])
    invalid = draw(nodata_masks(shape, bands))
    encoding = "none" if not invalid.any() else draw(st.sampled_from(encodings))
    if encoding == "mask":  # a GDAL mask is one per dataset: every band shares it
        invalid[:] = invalid.any(axis=0)
    tile = draw(st.integers(8, 40))
    overlap = 2 * draw(st.integers(0, (tile - 1) // 2))
    n_classes = draw(st.integers(2, 5))
    codes = tuple(sorted(draw(st.sets(st.integers(1, 8), min_size=n_classes, max_size=n_classes))))
    chunks = tuple(  # a fine chunking (often smaller than a tile) and a coarse one
        (draw(axis_chunk(shape[0], most)), draw(axis_chunk(shape[1], most))) for most in (6, 2)
    )
    return PredictCase(
        shape=shape,
        transform=draw(transforms()),
        dtype=dtype,
        encoding=encoding,
        seed=draw(st.integers(0, 2**32 - 1)),
        invalid=invalid,
        tile=tile,
        overlap=overlap,
        batch=draw(st.integers(1, 4)),
        codes=codes,
        augment=draw(st.sampled_from(["none", "none", "flips", "d4"])),
        chunks=chunks,  # type: ignore[arg-type]
        through_files=draw(st.sampled_from([True, False])),
    )


# ---------------------------------------------------------------------------------------------
# property 1: chunked prediction == in-memory pass


def write_source(folder: Path, case: PredictCase) -> tuple[RasterSource, NDArray[np.float32]]:
    """The scene as a GeoTIFF + catalog, opened as a source; and its values (NaN = nodata)."""
    bands = case.invalid.shape[0]
    rng = np.random.default_rng(case.seed)
    values = rng.normal(size=(bands, *case.shape))
    if case.dtype == "int16":
        values = np.round(values * 100)
    stored = values.astype(case.dtype)
    expected = stored.astype(np.float32)
    expected[np.broadcast_to(case.invalid.any(axis=0), expected.shape)] = np.nan
    profile: dict[str, Any] = {}
    if case.encoding in ("tag", "catalog"):
        stored[case.invalid] = NODATA
        profile["nodata"] = NODATA if case.encoding == "tag" else None
    elif case.encoding == "nan":
        stored[case.invalid] = np.nan
        profile["nodata"] = float("nan")
    path = folder / "scene.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=case.shape[0],
        width=case.shape[1],
        count=bands,
        dtype=case.dtype,
        crs=CRS,
        transform=case.transform,
        **profile,
    ) as dst:
        dst.write(stored)
        if case.encoding == "mask":
            dst.write_mask(np.where(case.invalid[0], 0, 255).astype(np.uint8))
    names = ", ".join(f"{{name: b{i}}}" for i in range(bands))
    nodata = f"    nodata: {NODATA}\n" if case.encoding == "catalog" else ""
    catalog = write_catalog(folder, f"  s:\n    file: scene.tif\n    bands: [{names}]\n{nodata}")
    return RasterSource.open(Catalog.load(catalog).source("s")), expected


def _corner_nodata(shape: tuple[int, int], bands: int) -> NDArray[np.bool_]:
    invalid = np.zeros((bands, *shape), dtype=bool)
    invalid[:, :9, :13] = True
    return invalid


ROTATED_15 = Affine.translation(500_000, 5_800_000) @ Affine.rotation(15) @ Affine.scale(10, -10)


@PROPERTY
@given(case=predict_cases())
@example(  # always run: rotated grid, GDAL mask, chunks smaller than a tile, part files and COGs
    case=PredictCase(
        shape=(37, 53),
        transform=ROTATED_15,
        dtype="float32",
        encoding="mask",
        seed=1,
        invalid=_corner_nodata((37, 53), 3),
        tile=32,
        overlap=8,
        batch=3,
        codes=(1, 2, 5, 7),
        augment="none",
        chunks=((5, 7), (16, 60)),
        through_files=True,
    )
)
def test_chunked_prediction_equals_the_in_memory_pass(case: PredictCase) -> None:
    bands = case.invalid.shape[0]
    model = FakeModel(bands, len(case.codes), seed=case.seed % 1000)
    scale = 100.0 if case.dtype == "int16" else 1.0
    spec = InferenceSpec(
        TileGrid(case.tile, case.overlap),
        case.batch,
        (0.0,) * bands,
        (scale,) * bands,
        case.codes,
        case.augment,  # type: ignore[arg-type]
    )
    event(f"transform: {describe(case.transform)}")
    event(f"nodata stored as: {case.encoding}")
    for name, chunk in zip(("fine", "coarse"), case.chunks, strict=True):
        event(f"{name} chunk smaller than a tile: {min(chunk) < case.tile}")
    event(f"through part files and COGs: {case.through_files}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source, data = write_source(folder, case)
        assert source.grid.shape == case.shape and source.grid.transform == case.transform
        reference = predict_in_memory(data, model, spec)  # the whole scene, no windows, no files
        valid = np.isfinite(data).all(axis=0)
        # the reference itself: nodata exactly where some band is nodata, a class everywhere else
        np.testing.assert_array_equal(reference.classes > 0, valid)
        assert set(np.unique(reference.classes[valid])) <= set(case.codes)
        assert np.isnan(reference.confidence[~valid]).all()
        assert (reference.confidence[valid] >= 1 / len(case.codes) - 1e-6).all()

        job = PredictJob(source, lambda: model, spec, folder / "parts")
        for chunk in case.chunks:
            plan = ChunkPlan(case.shape, chunk)
            classes, confidence = dask.compute(*predict_arrays(job, plan), scheduler="sync")
            np.testing.assert_array_equal(classes, reference.classes, err_msg=f"chunks {chunk}")
            np.testing.assert_array_equal(confidence, reference.confidence)
        if case.through_files:  # the predict step's path: part files -> COGs
            plan = ChunkPlan(case.shape, case.chunks[0])
            outcomes = predict_chunks(job, plan.chunks(), SERIAL)
            counts = pd.DataFrame([o.class_counts for o in outcomes]).sum()
            codes, pixels = np.unique(reference.classes[valid], return_counts=True)
            assert {int(k): int(v) for k, v in counts.items() if v} == dict(
                zip(codes.tolist(), pixels.tolist(), strict=True)
            )
            class_path, conf_path = folder / "classes.tif", folder / "confidence.tif"
            colormap = {code: (10, 20, 30, 255) for code in case.codes}
            assemble_outputs(job, plan, class_path, conf_path, colormap, overwrite=False)
            for path, expected in ((class_path, reference.classes), (conf_path, None)):
                with rasterio.open(path) as ds:
                    assert ds.transform == case.transform and ds.crs == source.grid.crs
                    written = ds.read(1)
                if expected is not None:
                    np.testing.assert_array_equal(written, expected)
                else:
                    np.testing.assert_array_equal(written, reference.confidence)
    # every forward pass has the configured batch shape; tiles without a valid pixel never run
    assert set(model.batch_sizes) <= {case.batch}
    assert (model.calls > 0) == valid.any() and (reference.tiles_run > 0) == valid.any()


# ---------------------------------------------------------------------------------------------
# property 2: chunked polygons == sieved class map


@dataclass(frozen=True)
class VectorCase:
    classes: NDArray[np.uint8]
    transform: Affine
    min_pixels: int
    chunk: tuple[int, int]
    recipe: str

    def __repr__(self) -> str:
        return (
            f"VectorCase(shape={self.classes.shape}, transform={tuple(self.transform)[:6]}, "
            f"min_pixels={self.min_pixels}, chunk={self.chunk}, {self.recipe},\n"
            f"classes=np.array({self.classes.tolist()}, dtype=np.uint8))"
        )


@st.composite
def vector_cases(draw: st.DrawFn) -> VectorCase:
    """A class map of blocks of random size, speckle and nodata; a transform; an MMU; a chunk."""
    shape = (draw(st.integers(1, 70)), draw(st.integers(1, 70)))
    n_classes = draw(st.sampled_from([3, 2, 4, 5, 1]))
    block = draw(st.sampled_from([3, 1, 2, 5, 8, 12]))
    speckle = draw(st.sampled_from([0.05, 0.0, 0.02, 0.1, 0.3]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, n_classes + 1, size=(shape[0] // block + 1, shape[1] // block + 1))
    classes = np.kron(coarse, np.ones((block, block), dtype=np.int64))[: shape[0], : shape[1]]
    noisy = rng.random(shape) < speckle
    classes[noisy] = rng.integers(1, n_classes + 1, size=int(noisy.sum()))
    classes[draw(nodata_masks(shape, 1))[0]] = 0
    recipe = f"n_classes={n_classes}, block={block}, speckle={speckle}, seed={seed}"
    return VectorCase(
        classes=classes.astype(np.uint8),
        transform=draw(transforms()),
        min_pixels=draw(st.sampled_from([4, 0, 1, 2, 3, 9, 20])),
        chunk=(draw(axis_chunk(shape[0], 12)), draw(axis_chunk(shape[1], 12))),
        recipe=recipe,
    )


def write_single_band(path: Path, array: NDArray[Any], transform: Affine, nodata: float) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=array.shape[0],
        width=array.shape[1],
        count=1,
        dtype=str(array.dtype),
        crs=CRS,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array, 1)


def edge_perimeters(labels: NDArray[np.int64], transform: Affine) -> NDArray[np.float64]:
    """Perimeter of each label (holes included): its pixel edges against any other label or the
    outside, each a column step (|(a, d)|) or a row step (|(b, e)|) of the affine."""
    t = transform
    col_step, row_step = math.hypot(t.a, t.d), math.hypot(t.b, t.e)
    padded = np.pad(labels, 1)
    n = int(labels.max()) + 1
    perimeter = np.zeros(n)
    for a, b, length in (
        (padded[:, :-1], padded[:, 1:], row_step),  # left/right neighbours: vertical edges
        (padded[:-1, :], padded[1:, :], col_step),  # upper/lower neighbours: horizontal edges
    ):
        edge = a != b
        perimeter += np.bincount(a[edge], minlength=n) * length
        perimeter += np.bincount(b[edge], minlength=n) * length
    return perimeter


def _blobby(shape: tuple[int, int], seed: int) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 5, size=(shape[0] // 6 + 1, shape[1] // 6 + 1))
    classes = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[: shape[0], : shape[1]]
    speckle = rng.random(shape) < 0.05
    classes[speckle] = rng.integers(1, 5, size=int(speckle.sum()))
    classes[10:20, 30:45] = 0
    return classes.astype(np.uint8)


@PROPERTY
@given(case=vector_cases())
@example(  # always run: regions crossing seams of a rotated grid, with a minimum mapping unit
    case=VectorCase(_blobby((40, 50), 7), ROTATED_15, 4, (9, 11), "blobby seed 7")
)
@example(  # and of a sheared south-up grid
    case=VectorCase(
        _blobby((33, 29), 3),
        Affine.translation(500_000, 5_700_000) @ Affine.shear(12, 0) @ Affine.scale(10, 10),
        3,
        (16, 7),
        "blobby seed 3",
    )
)
def test_chunked_polygons_are_a_valid_partition_of_the_sieved_class_map(case: VectorCase) -> None:
    classes, transform = case.classes, case.transform
    grid = Grid(*classes.shape, transform, CRS)
    pixel_area = abs(transform.determinant)  # m² (the CRS is in metres)
    # map coordinates are doubles: each vertex is exact to about one ULP of the coordinates, so
    # an area is exact to about (ULP x perimeter) and a perimeter to (ULP x vertex count)
    corners = [transform @ (x, y) for x in (0, classes.shape[1]) for y in (0, classes.shape[0])]
    ulp = 4 * float(np.spacing(np.abs(corners).max()))
    settings_ = VectorSettings(min_area_m2=case.min_pixels * pixel_area)
    assert settings_.min_pixels(grid) == case.min_pixels
    confidence = np.random.default_rng(classes.size).random(classes.shape).astype(np.float32)
    confidence[classes == 0] = np.nan

    sieved = oracles.sieve(classes, case.min_pixels)  # whole scene, independent of geoseg
    labels, label_class = oracles.components(sieved)
    n_regions = len(label_class) - 1
    sizes = np.bincount(labels.ravel(), minlength=n_regions + 1)
    conf_sums = np.bincount(labels.ravel(), np.nan_to_num(confidence).ravel(), n_regions + 1)
    perimeters = edge_perimeters(labels, transform)
    plan = ChunkPlan(classes.shape, case.chunk)
    event(f"transform: {describe(transform)}")
    event(f"all nodata: {n_regions == 0}; MMU merges: {(sieved != classes).any()}")
    event(f"chunk grid: {'one chunk' if plan.grid_shape == (1, 1) else 'several chunks'}")

    with tempfile.TemporaryDirectory() as tmp:
        class_path, conf_path = Path(tmp) / "classes.tif", Path(tmp) / "confidence.tif"
        write_single_band(class_path, classes, transform, 0)
        write_single_band(conf_path, confidence, transform, float("nan"))
        job = VectoriseJob(class_path, conf_path, grid, plan, settings_)
        batches = list(vectorise(job, {}, SERIAL))
    if n_regions == 0:
        assert batches == []
        return
    layer = pd.concat(batches).reset_index(drop=True)
    geoms = layer.geometry.values

    # valid single polygons, one per region of the sieved map
    assert len(layer) == n_regions and layer.region_id.is_unique
    assert shapely.is_valid(geoms).all(), shapely.is_valid_reason(geoms)[~shapely.is_valid(geoms)]
    assert set(layer.geom_type) == {"Polygon"}, "regions crossing seams must dissolve"

    # no two polygons overlap (shared edges only); float noise of mapped vertices is tolerated
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    shorter = np.minimum(shapely.length(geoms[left[pairs]]), shapely.length(geoms[right[pairs]]))
    assert (overlap <= ulp * shorter).all(), (left[pairs], right[pairs], overlap)

    # re-rasterised at pixel centres: exactly the valid pixels of the sieved map, one polygon each
    burned = rasterio.features.rasterize(
        zip(geoms, range(1, n_regions + 1), strict=True),
        out_shape=classes.shape,
        transform=transform,
        all_touched=False,
        dtype="int32",
    )
    class_of = np.concatenate([[0], layer.class_id.to_numpy()])
    np.testing.assert_array_equal(class_of[burned], sieved)
    pairs_seen = np.unique(np.stack([labels.ravel(), burned.ravel()]), axis=1)
    pairs_seen = pairs_seen[:, pairs_seen[0] > 0]
    assert pairs_seen.shape[1] == n_regions, "each region is burned by exactly one polygon"
    assert len(set(pairs_seen[1])) == n_regions, "each polygon burns exactly one region"

    # attributes, matched region by region
    polygon_of = dict(zip(pairs_seen[0], pairs_seen[1] - 1, strict=True))
    rows = layer.iloc[[polygon_of[r] for r in range(1, n_regions + 1)]]
    np.testing.assert_array_equal(rows.pixels, sizes[1:])
    np.testing.assert_array_equal(rows.class_id, label_class[1:])
    area_tolerance = ulp * perimeters[1:]
    vertices = shapely.get_num_coordinates(rows.geometry.values)
    for area in (rows.area_m2, shapely.area(rows.geometry.values)):
        assert (np.abs(area - sizes[1:] * pixel_area) <= area_tolerance).all()
    assert (np.abs(rows.perimeter_m - perimeters[1:]) <= ulp * vertices).all()
    np.testing.assert_allclose(rows.mean_confidence, conf_sums[1:] / sizes[1:], rtol=1e-5)
