"""What a training run is asked to do: sources, network, chips, schedule, hold-out, output.

The ``train`` step of a workflow, ``geoseg train`` and :func:`geoseg.train` all validate their
options into :class:`TrainConfig`. This module does not import torch.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from geoseg.config import ClosedModel
from geoseg.model.bundle import NetworkSpec
from geoseg.model.device import DeviceName, torch_threads
from geoseg.model.indices import IndexName
from geoseg.tiling.grid import TileGrid


class ValidationConfig(ClosedModel):
    """Spatial hold-out: square blocks of the scene, a seeded fraction held out for validation.

    With ``folds`` (k >= 2) the blocks (or an image set's images) are dealt into k seeded folds
    instead, and fold ``fold`` is held out (cross-validation: :mod:`geoseg.training.crossval`).
    """

    block_size: int = Field(default=64, ge=8)
    fraction: float = Field(default=0.2, gt=0, lt=1)
    buffer: int = Field(default=8, ge=0)
    folds: int | None = Field(default=None, ge=2)
    fold: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _fold_exists(self) -> ValidationConfig:
        if self.folds is not None and self.fold >= self.folds:
            raise ValueError(f"fold must be below folds ({self.folds}), got {self.fold}")
        return self

    def held_out(self, count: int, seed: int) -> list[int]:
        """Which of ``count`` items (blocks or images) are held out (seeded; sorted).

        Without folds: a ``fraction`` of them (at least one, never all). With folds: the items
        of fold ``fold`` after a seeded shuffle dealt round robin, so the k folds partition
        the items and no item is held out by two folds.
        """
        rng = np.random.default_rng(seed)
        if self.folds is None:
            held = min(count - 1, max(1, round(self.fraction * count)))
            return sorted(int(i) for i in rng.choice(count, held, replace=False))
        if count < self.folds:
            raise ValueError(f"{count} item(s) cannot be dealt into {self.folds} folds")
        order = rng.permutation(count)
        return sorted(int(i) for i in order[self.fold :: self.folds])


class TrainSource(ClosedModel):
    """One training source and its label layer (default: the source's first)."""

    source: str
    labels: str | None = None


class TrainConfig(ClosedModel):
    """Train a segmentation network from one source (``source``) or several (``sources``).

    With several sources, each is normalised with its own statistics (one input profile per
    source in the bundle) and they must share the listed ``bands``.
    """

    source: str | None = None
    labels: str | None = None
    sources: list[TrainSource] | None = Field(default=None, min_length=1)
    image_set: str | None = None
    output: str
    name: str | None = None
    bands: list[str] | None = None
    # Spectral indices fed to the network after the bands (geoseg.model.indices), e.g. [ndvi];
    # the bundle records them and prediction computes them the same way.
    indices: list[IndexName] = Field(default_factory=list)
    classes: list[int] | None = None
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    chip_size: int = Field(default=64, ge=16)
    overlap: int = Field(default=16, ge=0)
    epochs: int = Field(default=30, ge=1)
    chips_per_epoch: int = Field(default=256, ge=1)
    batch_size: int = Field(default=16, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    class_weighting: Literal["none", "inverse_sqrt", "inverse"] = "inverse_sqrt"
    loss: Literal["cross_entropy", "cross_entropy+dice"] = "cross_entropy"
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    # k >= 2: before the model itself, the recipe is cross-validated over k folds of blocks or
    # images (geoseg.training.crossval); the bundle's metrics and card report mean and spread.
    cross_validation: int | None = Field(default=None, ge=2)
    validate_every: int = Field(default=1, ge=1)
    # A resumable checkpoint every N epochs (and after the last): writing the optimiser state
    # costs about 0.3 s per epoch for a 4 M-parameter network; a resumed run redoes < N epochs.
    checkpoint_every: int = Field(default=1, ge=1)
    keep: Literal["best", "last"] = "best"
    # Speed on CPU: channels-last tensors (oneDNN's faster convolution layout), and bfloat16
    # autocast for the forward pass (loss and weights stay float32). Both change results in the
    # last bits, so they are options; benchmarks/training_speed.py measures what they give.
    channels_last: bool = False
    precision: Literal["float32", "bfloat16"] = "float32"
    seed: int = 0
    device: DeviceName = "auto"
    threads: int | None = Field(default=None, ge=1)
    card: str = ""

    @property
    def inputs(self) -> list[TrainSource]:
        """Every raster training source, in order (none for an image set)."""
        if self.sources:
            return list(self.sources)
        return [TrainSource(source=self.source, labels=self.labels)] if self.source else []

    @property
    def thread_count(self) -> int:
        """Torch threads for training: ``threads``, else every core (as one inference worker).

        Set explicitly, so a run and its resumption compute alike whatever ran before them.
        """
        return self.threads or torch_threads(1)

    @model_validator(mode="after")
    def _chips_fit_the_network(self) -> TrainConfig:
        given = [k for k in ("source", "sources", "image_set") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'source' (with optional 'labels'), 'sources' or 'image_set'"
            )
        TileGrid(self.chip_size, self.overlap)
        if self.chip_size % self.network.divisor:
            raise ValueError(
                f"chip_size {self.chip_size} must be a multiple of {self.network.divisor} for "
                f"{self.network.architecture} with encoder_depth {self.network.encoder_depth}"
            )
        bad = [c for c in self.classes or [] if not 1 <= c <= 255]
        if bad:
            raise ValueError(f"classes must be codes 1..255 (0 is nodata), got {bad}")
        return self
