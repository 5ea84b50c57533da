"""Options shared by the step kinds that run a model: tiling, batches, device, augmentation."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, model_validator

from geoseg.config import ClosedModel
from geoseg.errors import BundleError, ConfigError
from geoseg.model.bundle import BundleMeta, InputProfile
from geoseg.model.device import DeviceName
from geoseg.stitch.augment import Augment
from geoseg.stitch.predict import InferenceSpec
from geoseg.tiling.grid import TileGrid

log = logging.getLogger(__name__)


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
        sample: dict[str, tuple[float, float]],
        profile: InputProfile,
        where: str,
    ) -> None:
        """Refuse (or warn about) input whose sampled ``{band: (mean, std)}`` is off-profile."""
        problems = profile.off_profile(sample) if self.input_check != "off" else []
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

    def spec(self, meta: BundleMeta, profile: InputProfile, where: str) -> InferenceSpec:
        """How to cut, normalise (with ``profile``), batch and decode tiles for ``meta``."""
        return InferenceSpec(
            self.tiling(meta, where),
            self.batch_size,
            tuple(b.mean for b in profile.bands),
            tuple(b.std for b in profile.bands),
            meta.class_codes,
            self.augment,
        )
