"""Options shared by the step kinds that run a model: tiling, batches, device, augmentation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import psutil
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator

from geoseg.config import ClosedModel
from geoseg.errors import BundleError, ConfigError, ResourceError
from geoseg.executor import ExecutorSpec
from geoseg.io.fill import likely_fill
from geoseg.io.source import sample_statistics
from geoseg.model.bundle import BundleMeta, InputProfile
from geoseg.model.device import DeviceName
from geoseg.stitch.augment import Augment
from geoseg.stitch.predict import InferenceSpec
from geoseg.tiling.grid import TileGrid
from geoseg.types import Location, is_remote

log = logging.getLogger(__name__)

#: Batches of fewer pixels than this (8 tiles of 181 px) are not worth a memory estimate.
MEMORY_CHECK_PIXELS = 2**18


class InferenceConfig(ClosedModel):
    """Tile size and overlap (default: the model's), batch size, device, test-time augmentation."""

    tile_size: int | None = Field(default=None, ge=8)
    overlap: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=8, ge=1)
    device: DeviceName = "auto"  # CUDA with mixed precision when present, else CPU
    augment: Augment = "none"  # test-time augmentation (x4 / x8 passes)
    # Input that looks nothing like the model's training pixels (wrong scale, bands mixed up) is
    # refused before inference; ``warn`` runs it anyway, ``off`` skips the check.
    input_check: Literal["refuse", "warn", "off"] = "refuse"

    @field_validator("input_check", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        """YAML 1.1 reads a bare ``off`` as false: take it as the word it was written as."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _tiling(self) -> InferenceConfig:
        if self.overlap is not None and self.overlap % 2:
            raise ValueError(
                f"overlap must be even (half of it goes to each side), got {self.overlap}"
            )
        if self.tile_size is not None and self.overlap is not None:
            TileGrid(self.tile_size, self.overlap)
        return self

    def tiling(self, meta: BundleMeta, where: str) -> TileGrid:
        """The tile grid for ``meta``; ``where`` names the step in errors."""
        try:
            return meta.tile_grid(self.tile_size, self.overlap)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc

    def check_input(
        self,
        name: str,
        names: Sequence[str],
        sample: NDArray[np.float32],
        profile: InputProfile,
        where: str,
    ) -> None:
        """Refuse (or warn about) a ``(band, y, x)`` sample unlike the training pixels.

        Off-profile means and spreads (wrong scale, wrong band) and bands that look swapped
        (their correlations fit the training ones better exchanged) are named with the figures.
        """
        if self.input_check == "off":
            return
        problems = profile.off_profile(sample_statistics(names, sample))
        index = {n: i for i, n in enumerate(names)}
        if all(b.name in index for b in profile.bands):
            ordered = sample[[index[b.name] for b in profile.bands]]
            swapped = profile.swapped_bands(ordered)
            if swapped is not None:
                problems.append(
                    f"bands '{swapped[0]}' and '{swapped[1]}' look swapped: their correlations "
                    "with the other bands fit the training pixels far better exchanged"
                )
        if not problems:
            return
        message = (
            f"'{name}' does not look like what the model was trained on (input profile "
            f"'{profile.name}', {profile.units}):\n  - " + "\n  - ".join(problems) + "\nCheck "
            "the catalog's band order and scale/offset for it; if the values are right, set "
            f"'input_check: warn' in {where} to run anyway"
        )
        if self.input_check == "refuse":
            raise BundleError(message)
        log.warning(message)

    def check_fill(
        self, name: str, sample: NDArray[np.float32], files: Sequence[Location], catalog: Path
    ) -> None:
        """Warn when a value fills the sample's edge in every band but is not declared nodata.

        The warning says how to declare it: in the catalog file (when the source comes from
        one), or by tagging the local files with ``gdal_edit.py``.
        """
        guess = likely_fill(sample) if self.input_check != "off" else None
        if guess is None:
            return
        value = f"{guess.value:g}"
        fixes = []
        if catalog.is_file():
            fixes.append(f"set 'nodata: {value}' on source '{name}' in {catalog}")
        local = [str(f) for f in dict.fromkeys(files) if not is_remote(f)]
        if local:
            fixes.append(f"tag the file: gdal_edit.py -a_nodata {value} {' '.join(local)}")
        fixes = fixes or [f"declare nodata {value} in a catalog source for it"]
        log.warning(
            "'%s' has %s in every band over %.0f %% of its edge and %.1f %% of its pixels, "
            "without a nodata value saying so: this looks like a fill border, which would be "
            "classified and vectorised as a real class. If it is fill, %s",
            name,
            value,
            100 * guess.edge_share,
            100 * guess.share,
            "; or ".join(fixes),
        )

    def check_resources(
        self, meta: BundleMeta, shape: tuple[int, int] | None, spec: ExecutorSpec, where: str
    ) -> None:
        """Refuse a tile larger than a scene of ``shape``, or batches the memory cannot hold.

        The estimate is per worker: a batch of tiles through the network
        (:func:`~geoseg.model.network.forward_bytes_per_pixel`) plus its input and probabilities.
        Workers on a remote cluster (``spec.address``) are not this machine's to judge.
        """
        tile = self.tile_size or meta.tile_size
        if self.tile_size is not None and shape is not None and self.tile_size > max(shape):
            step = meta.network.divisor
            fit = max(step, max(shape) // step * step)
            raise ResourceError(
                f"{where}: tile_size {tile} is larger than the scene ({shape[0]} x {shape[1]} "
                f"px), so every tile would be mostly padding; use tile_size {fit} or less, or "
                f"leave it unset for the model's {meta.tile_size}"
            )
        pixels = self.batch_size * tile * tile
        if pixels < MEMORY_CHECK_PIXELS or spec.address is not None:
            return
        from geoseg.model.network import forward_bytes_per_pixel

        per_pixel = forward_bytes_per_pixel(meta.network, meta.input_channels, len(meta.classes))
        per_worker = pixels * (per_pixel + 4 * (len(meta.bands) + 2 * len(meta.classes)))
        free = psutil.virtual_memory().available
        if spec.workers * per_worker > free:
            fits = int(free / spec.workers / per_worker * self.batch_size)
            hint = f"batch_size {fits}" if fits >= 1 else "a smaller tile_size"
            raise ResourceError(
                f"{where}: tiles of {tile} px in batches of {self.batch_size} need about "
                f"{per_worker / 2**30:.1f} GiB per worker, {spec.workers * per_worker / 2**30:.1f} "
                f"GiB for {spec.workers} worker(s), but {free / 2**30:.1f} GiB of memory is "
                f"available; use {hint}, or fewer workers"
            )

    def spec(self, meta: BundleMeta, profile: InputProfile, where: str) -> InferenceSpec:
        """How to cut, normalise (with ``profile``), batch and decode tiles for ``meta``."""
        return InferenceSpec.of(
            meta, profile, self.tiling(meta, where), self.batch_size, self.augment
        )
