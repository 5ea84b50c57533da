"""Running a bundle's network over batches of tiles, on CPU or CUDA.

A :class:`Predictor` is loaded once per process and shared by its threads (see :func:`predictor`);
Dask tasks receive only the bundle path and device name, never a model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from geoseg.model.device import resolve_device
from geoseg.model.store import load_network

_CACHE: dict[tuple[str, str], Predictor] = {}
_CACHE_LOCK = threading.Lock()


@dataclass
class Predictor:
    """A network in eval mode on a device, as a :class:`geoseg.stitch.predict.TileModel`."""

    network: torch.nn.Module
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict_tiles(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Softmax probabilities ``(n, classes, T, T)`` of normalised tiles ``(n, bands, T, T)``."""
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with self.lock, torch.autocast("cuda", dtype=torch.float16):
                    logits = self.network(tensor)
            else:
                logits = self.network(tensor)
            probs = torch.softmax(logits.float(), dim=1)
        return probs.cpu().numpy()


def predictor(bundle: Path, device: str = "auto", threads: int | None = None) -> Predictor:
    """The process-wide predictor for ``bundle`` on ``device`` (loaded on first use).

    ``threads`` fixes torch's intra-op thread count; results are bit-identical only between runs
    with the same device and thread count.
    """
    key = (str(Path(bundle).resolve()), device)
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            target = resolve_device(device)
            _, network = load_network(Path(bundle), target)
            cached = Predictor(network, target)
            _CACHE[key] = cached
        return cached
