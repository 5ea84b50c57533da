from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from geoseg.tiling.grid import ChunkPlan, TileGrid, axis_chunks, halo_window
from geoseg.types import Grid, Window


def test_window_validates_and_intersects() -> None:
    with pytest.raises(ValueError, match="sizes must be positive"):
        Window(0, 0, 0, 5)
    with pytest.raises(TypeError, match="must be an int"):
        Window(0.5, 0, 1, 1)  # type: ignore[arg-type]
    a, b = Window(0, 0, 10, 10), Window(5, 8, 10, 10)
    assert a.intersection(b) == Window(5, 8, 5, 2)
    assert a.intersection(Window(10, 0, 1, 1)) is None
    assert b.relative_to(a) == Window(5, 8, 10, 10)


def test_grid_equivalence_and_pixel_size() -> None:
    t = Affine(28.5, 0, 630534, 0, -28.5, 228114)
    g = Grid(300, 489, t, "EPSG:3358")
    assert g.pixel_size == (28.5, 28.5)
    assert g.same_as(Grid(300, 489, t, "EPSG:3358"))
    assert not g.same_as(Grid(300, 489, t @ Affine.translation(1, 0), "EPSG:3358"))
    assert not g.same_as(Grid(300, 489, t, "EPSG:32633"))
    rotated = Grid(10, 10, Affine.rotation(30) @ Affine.scale(2, -2), "EPSG:32633")
    assert rotated.is_rotated and rotated.pixel_size == pytest.approx((2.0, 2.0))


@pytest.mark.parametrize(("size", "overlap"), [(64, 16), (32, 0), (16, 14), (64, 32)])
@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 100, 237])
def test_tiles_cover_every_pixel_and_overlap_queries_are_exact(
    size: int, overlap: int, length: int
) -> None:
    grid = TileGrid(size, overlap)
    starts = [grid.start(i) for i in range(grid.count(length))]
    covered = np.zeros(length, dtype=int)
    for s in starts:
        covered[max(s, 0) : min(s + size, length)] += 1
    assert covered.min() >= 1, "every pixel is inside at least one tile"
    for begin in range(length):
        for end in range(begin + 1, length + 1):
            expected = [i for i, s in enumerate(starts) if s < end and s + size > begin]
            assert list(grid.indices_overlapping(begin, end, length)) == expected


def test_tile_grid_rejects_bad_overlap_and_taper_is_positive() -> None:
    with pytest.raises(ValueError, match="overlap must be even"):
        TileGrid(64, 7)
    with pytest.raises(ValueError, match="overlap must be even"):
        TileGrid(64, 64)
    taper = TileGrid(64, 16).taper()
    assert taper.shape == (64, 64) and taper.min() > 0 and taper.max() == 1.0
    assert np.array_equal(taper, taper.T) and np.array_equal(taper, taper[::-1, ::-1])


def test_chunk_plan_sums_to_the_image() -> None:
    plan = ChunkPlan((300, 489), (128, 100))
    assert sum(plan.row_chunks) == 300 and sum(plan.col_chunks) == 489
    assert plan.col_chunks[-1] == 89
    covered = np.zeros((300, 489), dtype=int)
    for chunk in plan.chunks():
        covered[chunk.core.slices] += 1
    assert (covered == 1).all()
    assert axis_chunks(10, 20) == (10,)
    with pytest.raises(ValueError, match="chunk size must be positive"):
        axis_chunks(10, 0)


def test_halo_is_the_union_of_tiles() -> None:
    grid = TileGrid(32, 8)
    tiles = grid.tiles_overlapping(Window(40, 0, 30, 20), (200, 200))
    halo = halo_window(tiles)
    assert halo.row == min(t.row for t in tiles) and halo.col == -4
    assert all(t.intersection(halo) == t for t in tiles)


def test_a_grid_in_pixel_coordinates_says_so_and_refuses_metric_uses() -> None:
    from geoseg.errors import GeoreferenceError

    photo = Grid.pixels(966, 1296)
    assert not photo.is_georeferenced and photo.crs_units == "pixel" and photo.crs_wkt is None
    assert photo.metres_per_unit == 1.0 and photo.pixel_area == 1.0, "measures are in pixels"
    assert photo.same_as(Grid.pixels(966, 1296)) and not photo.same_as(
        Grid(966, 1296, photo.transform, "EPSG:32632")
    )
    assert "none (pixel coordinates)" in photo.describe()
    with pytest.raises(GeoreferenceError, match=r"a STAC Item needs a georeferenced grid"):
        photo.require_crs("a STAC Item")
