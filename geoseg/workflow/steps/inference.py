"""Options shared by the step kinds that run a model: tiling, batches, device, augmentation."""

from __future__ import annotations

from pydantic import Field, model_validator

from geoseg.config import ClosedModel
from geoseg.errors import ConfigError
from geoseg.model.bundle import BundleMeta, InputProfile
from geoseg.model.device import DeviceName
from geoseg.stitch.augment import Augment
from geoseg.stitch.predict import InferenceSpec
from geoseg.tiling.grid import TileGrid


class InferenceConfig(ClosedModel):
    """Tile size and overlap (default: the model's), batch size, device, test-time augmentation."""

    tile_size: int | None = Field(default=None, ge=8)
    overlap: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=8, ge=1)
    device: DeviceName = "auto"  # CUDA with mixed precision when present, else CPU
    augment: Augment = "none"  # test-time augmentation (x4 / x8 passes)

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
