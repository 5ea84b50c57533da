"""Where a network runs: the device names a config may give, and torch's thread count.

Importing this module does not import torch; :func:`resolve_device` does, when called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from geoseg.errors import BundleError

if TYPE_CHECKING:
    import torch

#: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"

#: A device name as configs accept it (validated against :data:`DEVICE_PATTERN`).
DeviceName = Annotated[str, Field(pattern=DEVICE_PATTERN)]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu``/``cuda``/``cuda:N`` as given."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BundleError(f"device '{name}' was asked for but CUDA is not available; use auto/cpu")
    return device


def device_type(name: str) -> str:
    """The type (``cpu`` or ``cuda``) a device name resolves to, as fingerprints record it.

    Only ``auto`` needs torch (is CUDA available?); the others are read from the name, so an
    up-to-date check of a CPU or CUDA run does not pay for importing torch.
    """
    if name == "auto":
        return resolve_device(name).type
    return name.split(":", 1)[0]


def torch_threads(workers: int) -> int:
    """Torch intra-op threads per Dask worker: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
