"""Reference for the pipeline-efficiency benchmark: bare model forward passes, nothing else.

Run as a script: ``forward_reference.py BUNDLE TILES TILE_SIZE BATCH WORKERS SCENE [BANDS]``
(``BANDS``: the scene's 1-based band indexes in the model's order, comma-separated; default
all). It loads the bundle's network once, then times ``TILES`` tiles' worth of forward passes
(fixed batches of ``BATCH``), split across ``WORKERS`` Python threads with torch's intra-op
threads shared out as geoseg does (cores // workers). Inputs are real tiles cut from the
benchmark scene. Prints JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from geoseg.model.store import load_network


def main() -> None:
    bundle, tiles, size, batch, workers = (
        Path(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        int(sys.argv[5]),
    )
    scene = Path(sys.argv[6])
    indexes = [int(i) for i in sys.argv[7].split(",")] if len(sys.argv) > 7 else None
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    meta, network = load_network(bundle, torch.device("cpu"))
    with rasterio.open(scene) as src:
        window = rasterio.windows.Window(512, 512, size * 8, size * 8)
        data = src.read(indexes, window=window).astype(np.float32)
    mean = np.array([b.mean for b in meta.bands], np.float32)[:, None, None]
    std = np.array([b.std for b in meta.bands], np.float32)[:, None, None]
    data = (data - mean) / std
    pool = [
        data[:, r * size : (r + 1) * size, c * size : (c + 1) * size]
        for r in range(8)
        for c in range(8)
    ]
    batches = -(-tiles // batch)
    x = torch.from_numpy(np.stack([pool[i % len(pool)] for i in range(batch)]))
    with torch.inference_mode():
        network(x)  # warm-up, as geoseg's first chunk also pays it

    def work(count: int) -> None:
        with torch.inference_mode():
            for _ in range(count):
                torch.softmax(network(x), dim=1)

    shares = [batches // workers + (1 if i < batches % workers else 0) for i in range(workers)]
    threads = [threading.Thread(target=work, args=(n,)) for n in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"forward_s": time.perf_counter() - start, "batches": batches}))


if __name__ == "__main__":
    main()
