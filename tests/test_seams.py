"""Seam tiles computed once: the store's bookkeeping and the chunk plan's overlap count."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.stitch.seams import SharedTiles, seam_order
from geoseg.tiling.grid import ChunkPlan
from geoseg.types import Window


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (Window(0, 0, 10, 10), 1),  # inside the first chunk
        (Window(90, 10, 20, 10), 2),  # across the first row seam
        (Window(90, 90, 20, 20), 4),  # on the corner of four chunks
        (Window(-8, -8, 64, 64), 1),  # reaching past the image's top-left edge
        (Window(240, 290, 64, 64), 1),  # past the bottom-right: the small last chunk only
        (Window(-70, 0, 64, 64), 0),  # entirely outside
    ],
)
def test_cores_overlapping_counts_chunks_by_hand(window: Window, expected: int) -> None:
    plan = ChunkPlan((250, 300), (100, 100))  # chunk rows 100, 100, 50; columns 100 x 3
    assert plan.cores_overlapping(window) == expected


def test_a_kept_tile_leaves_when_every_waiting_chunk_took_it() -> None:
    store = SharedTiles()
    tile, probs = Window(40, 40, 8, 8), np.ones((2, 8, 8), np.float32)
    assert store.take(tile) is None
    store.offer(tile, probs, waiting=3)
    probs[:] = 7  # the store holds its own copy
    assert store.take(tile) is not None and store.take(tile) is not None and store.size == 1
    kept = store.take(tile)
    assert kept is not None and (kept == 1).all() and store.size == 0
    assert store.take(tile) is None
    store.offer(tile, probs, waiting=0)  # nobody else needs it
    assert store.size == 0


def test_the_store_keeps_no_more_than_its_byte_cap_and_one_copy_per_tile() -> None:
    probs = np.zeros((1, 8, 8), np.float32)  # 256 bytes
    store = SharedTiles(limit_bytes=512)
    for col in range(4):
        store.offer(Window(0, col * 8, 8, 8), probs, waiting=1)
    assert store.size == 2, "the third and fourth tiles are over the cap: computed again later"
    store.offer(Window(0, 0, 8, 8), probs + 1, waiting=5)
    first = store.take(Window(0, 0, 8, 8))
    assert first is not None and (first == 0).all() and store.size == 1


def test_seam_order_runs_every_other_chunk_of_a_row_first() -> None:
    chunks = ChunkPlan((200, 500), (100, 100)).chunks()
    order = [c.index for c in seam_order(chunks)]
    assert order[:5] == [(0, 0), (0, 2), (0, 4), (0, 1), (0, 3)]
    assert sorted(order) == [c.index for c in chunks]


def test_a_new_run_never_sees_another_runs_tiles() -> None:
    from geoseg.stitch.seams import shared_tiles

    tile = Window(0, 0, 8, 8)
    shared_tiles("run-a").offer(tile, np.ones((2, 8, 8), np.float32), waiting=1)
    assert shared_tiles("run-b").take(tile) is None, "another run's store, empty"
    assert shared_tiles("run-a").take(tile) is None, "and run-a's store was dropped"
    store = shared_tiles("run-c")
    store.offer(tile, np.ones((2, 8, 8), np.float32), waiting=2)
    assert store.take(Window(0, 0, 16, 16)) is None, "a tile of another size never matches"
