"""Running a bundle's network over batches of tiles, on CPU or CUDA.

A :class:`Predictor` is loaded once per process and shared by its threads (see :func:`predictor`);
Dask tasks receive only the bundle path and device name, never a model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from geoseg.errors import BundleError
from geoseg.model.bundle import BundleMeta
from geoseg.model.store import load_network

_CACHE: dict[tuple[str, str], Predictor] = {}
_CACHE_LOCK = threading.Lock()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BundleError(f"device '{name}' was asked for but CUDA is not available; use auto/cpu")
    return device


@dataclass
class Predictor:
    """A loaded network and what it needs to turn normalised tiles into class probabilities."""

    meta: BundleMeta
    network: torch.nn.Module
    device: torch.device
    lock: threading.Lock

    def predict_tiles(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Softmax probabilities ``(n, classes, T, T)`` for normalised tiles ``(n, bands, T, T)``."""
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with self.lock, torch.autocast("cuda", dtype=torch.float16):
                    logits = self.network(tensor)
            else:
                logits = self.network(tensor)
            probs = torch.softmax(logits.float(), dim=1)
        return probs.cpu().numpy()


def predictor(bundle: Path, device: str = "auto") -> Predictor:
    """The process-wide predictor for ``bundle`` on ``device`` (loaded on first use)."""
    key = (str(Path(bundle).resolve()), device)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            target = resolve_device(device)
            meta, network = load_network(Path(bundle), target)
            cached = Predictor(meta, network, target, threading.Lock())
            _CACHE[key] = cached
        return cached
