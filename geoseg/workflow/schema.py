"""The workflow YAML schema (version 1): closed, typed, validated before any data is opened.

```yaml
version: 1
name: demo
catalog: ../data_catalog.yaml     # relative to this file
executor: {kind: threads, workers: 2}
steps:
  - train:   {source: nc-landsat7, labels: landcover96, output: ../out/model.geoseg, ...}
  - predict: {source: nc-landsat7-sample, model: ../models/x.geoseg, output: ../out/demo, ...}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from geoseg.config import ClosedModel, parse_model, read_yaml
from geoseg.model.bundle import NetworkSpec
from geoseg.stitch.augment import Augment
from geoseg.tiling.grid import TileGrid

VectorFormatName = Literal["gpkg", "geojson", "parquet", "fgb", "shp"]

#: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


class ExecutorConfig(ClosedModel):
    """Where chunk tasks run: Dask threads (default), processes, or a distributed cluster."""

    kind: Literal["threads", "processes", "distributed"] = "threads"
    workers: int = Field(default=2, ge=1)
    address: str | None = None
    retries: int = Field(default=2, ge=0)


class VectorConfig(ClosedModel):
    """Vectorising and vector export."""

    enabled: bool = True
    min_area_m2: float = Field(default=0.0, ge=0)
    simplify_m: float = Field(default=0.0, ge=0)
    formats: list[VectorFormatName] = Field(default=["gpkg"], min_length=1)
    layer: str = Field(default="landcover", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _gpkg_first(self) -> VectorConfig:
        if "gpkg" not in self.formats:
            raise ValueError("formats must include 'gpkg' (the other formats are derived from it)")
        return self


class PredictStep(ClosedModel):
    """Predict a source with a model bundle: class map, confidence, polygons."""

    source: str
    model: str
    output: str
    tile_size: int | None = Field(default=None, ge=8)
    overlap: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=8, ge=1)
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    augment: Augment = "none"  # test-time augmentation (x4 / x8 passes)
    chunk_size: int = Field(default=1024, ge=64)
    vector: VectorConfig = Field(default_factory=VectorConfig)

    @model_validator(mode="after")
    def _tiling(self) -> PredictStep:
        if self.overlap is not None and self.overlap % 2:
            raise ValueError(
                f"overlap must be even (half of it goes to each side), got {self.overlap}"
            )
        if self.tile_size is not None and self.overlap is not None:
            TileGrid(self.tile_size, self.overlap)
        return self


class ValidationConfig(ClosedModel):
    """Spatial hold-out: square blocks of the scene, a seeded fraction held out for validation."""

    block_size: int = Field(default=64, ge=8)
    fraction: float = Field(default=0.2, gt=0, lt=1)
    buffer: int = Field(default=8, ge=0)


class TrainSource(ClosedModel):
    """One training source and its label layer (default: the source's first)."""

    source: str
    labels: str | None = None


class TrainStep(ClosedModel):
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
    validate_every: int = Field(default=1, ge=1)
    keep: Literal["best", "last"] = "best"
    seed: int = 0
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    threads: int | None = Field(default=None, ge=1)
    card: str = ""

    @property
    def inputs(self) -> list[TrainSource]:
        """Every raster training source, in order (none for an image set)."""
        if self.sources:
            return list(self.sources)
        return [TrainSource(source=self.source, labels=self.labels)] if self.source else []

    @model_validator(mode="after")
    def _chips_fit_the_network(self) -> TrainStep:
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


class EvaluateStep(ClosedModel):
    """Compare a class map with reference labels of a catalog source (raster or polygons)."""

    prediction: str
    source: str
    labels: str | None = None
    output: str
    tolerance: int = Field(default=3, ge=0, le=50)
    ignore: list[int] = Field(default_factory=list)
    classes: list[int] | None = None
    within: str | None = None
    chunk_size: int = Field(default=1024, ge=64)


class ZonalStep(ClosedModel):
    """Area and share of each class per district / parcel polygon."""

    classes: str
    zones: str
    layer: str | None = None
    output: str
    name: str = Field(default="zonal", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    chunk_size: int = Field(default=1024, ge=64)


class ChangeStep(ClosedModel):
    """Transitions between two class maps of the same grid, and change polygons."""

    before: str
    after: str
    output: str
    to_classes: list[int] = Field(default_factory=list)
    min_area_m2: float = Field(default=0.0, ge=0)
    simplify_m: float = Field(default=0.0, ge=0)
    chunk_size: int = Field(default=1024, ge=64)


class WeedGridConfig(ClosedModel):
    """Cells for variable-rate spraying: size (px, or m when georeferenced) and weed threshold."""

    cell: float = Field(default=100, gt=0)
    threshold: float = Field(default=0.05, ge=0, le=1)


class PredictImagesStep(ClosedModel):
    """Predict photos of an image set; per-plant polygons, boxes, counts, weed grid, metrics."""

    image_set: str
    model: str
    output: str
    images: Literal["holdout", "all"] | list[str] = "holdout"
    tile_size: int | None = Field(default=None, ge=8)
    overlap: int | None = Field(default=None, ge=0)
    batch_size: int = Field(default=8, ge=1)
    device: str = Field(default="auto", pattern=DEVICE_PATTERN)
    augment: Augment = "none"  # test-time augmentation (x4 / x8 passes)
    crop_class: str = "crop"
    weed_class: str = "weed"
    soil_class: str | None = "soil"
    grid: WeedGridConfig = Field(default_factory=WeedGridConfig)
    tolerance: int = Field(default=3, ge=0, le=50)
    overlays: int = Field(default=4, ge=0)
    fields: str | None = None
    field_id: str = "field_id"
    min_plant_area: float = Field(default=0.0, ge=0)  # px² or m²: smaller regions are not plants


STEP_KINDS = ("train", "predict", "evaluate", "zonal", "change", "predict_images")


class Step(ClosedModel):
    """One step: exactly one of the ``STEP_KINDS``."""

    train: TrainStep | None = None
    predict: PredictStep | None = None
    evaluate: EvaluateStep | None = None
    zonal: ZonalStep | None = None
    change: ChangeStep | None = None
    predict_images: PredictImagesStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        given = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step has exactly one of {', '.join(STEP_KINDS)}, got {given or 'none'}"
            )
        return self

    @property
    def kind(self) -> str:
        """Which kind of step this is."""
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class Workflow(ClosedModel):
    """A whole workflow file."""

    version: Literal[1]
    name: str = "workflow"
    catalog: str = "data_catalog.yaml"
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    steps: list[Step] = Field(min_length=1)


def load_workflow(path: str | Path) -> tuple[Path, Workflow]:
    """Read and validate a workflow file; returns its absolute path and the model."""
    path = Path(path).resolve()
    return path, parse_model(Workflow, read_yaml(path, "workflow"), path, "workflow")
