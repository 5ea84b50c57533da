"""The ``train`` step: a model bundle from one source, several, or an image set.

The bundle is trained into the transaction's staging folder and renamed into place at the
commit; its checkpoints are written beside the final bundle (``NAME.geoseg.checkpoints``) as
training goes, so a crash keeps them. The bundle's
``bundle.json`` records the run (config, data, validation figures), so no manifest is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from geoseg.catalog import ImageSetRef, SourceRef
from geoseg.errors import ConfigError
from geoseg.model.bundle import BUNDLE_SUFFIX
from geoseg.training.config import TrainConfig
from geoseg.workflow.manifest import Figures, ModelRecord, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction


class TrainFigures(Figures):
    """Hold-out scores of the weights the bundle keeps."""

    validation_miou: float | None
    best_epoch: int
    per_class_iou: dict[str, float | None]


@dataclass(frozen=True)
class PlannedTrain(PlannedStep[TrainConfig]):
    """A train step with its sources resolved and its bundle path."""

    kind: ClassVar[str] = "train"
    config_type: ClassVar[type[TrainConfig]] = TrainConfig
    figures_type: ClassVar[type[TrainFigures]] = TrainFigures

    output: Path
    sources: tuple[SourceRef, ...]
    image_set: ImageSetRef | None

    @classmethod
    def plan(cls, index: int, config: TrainConfig, ctx: PlanContext) -> PlannedTrain:
        """Check the bundle path, the sources, their labels and bands, or the image set."""
        output = ctx.path(config.output)
        if output.suffix != BUNDLE_SUFFIX:
            raise ConfigError(f"{ctx.where}.output must end in .geoseg (a bundle folder): {output}")
        inputs = config.inputs
        if len(inputs) > 1 and not config.bands:
            raise ConfigError(
                f"{ctx.where}: training on several sources needs 'bands:' listing the bands they "
                "share (the network's input order)"
            )
        sources = tuple(ctx.catalog.source(i.source) for i in inputs)
        for item, source in zip(inputs, sources, strict=True):
            source.label(item.labels)
            missing = [b for b in config.bands or [] if b not in source.band_names]
            if missing:
                raise ConfigError(
                    f"{ctx.where}.bands: source '{source.name}' has no band(s) {missing}; it has "
                    f"{list(source.band_names)}"
                )
        image_set = ctx.catalog.image_set(config.image_set) if config.image_set else None
        return cls(index, config, output.parent, output, sources, image_set)

    def outputs(self) -> list[Path]:
        """The bundle folder."""
        return [self.output]

    def reads(self) -> list[Path]:
        """The training sources' files and label layers, or the image set's files."""
        paths = [p for source in self.sources for p in source.paths]
        labels = [
            s.label(i.labels).path for s, i in zip(self.sources, self.config.inputs, strict=True)
        ]
        if self.image_set is not None:
            ref = self.image_set
            files = (*ref.images, *ref.annotations, *ref.polygons, *ref.vegetation)
            paths += [path for _, path in files]
        return [*paths, *labels]

    def describe(self) -> str:
        """``train source=NAME`` or ``train image_set=NAME``."""
        if self.sources:
            return f"{self.kind} source={self.sources[0].name}"
        return f"{self.kind} image_set={self.config.image_set}"

    @property
    def work(self) -> Path:
        """``.NAME.geoseg.work`` beside the bundle (the folder may hold other bundles)."""
        return self.folder / f".{self.output.name}.work"

    @property
    def lock(self) -> Path:
        """``.NAME.geoseg.lock`` beside the bundle."""
        return self.folder / f".{self.output.name}.lock"

    @property
    def manifest(self) -> Path | None:
        """None: the bundle's ``bundle.json`` is the record of the run."""
        return None

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Train into the staging folder."""
        from geoseg.training.loop import train

        # Checkpoints go beside the final bundle at once, so a crash keeps them.
        checkpoints = self.output.with_name(self.output.name + ".checkpoints")
        staged = tx.stage(self.output)
        result = train(self.config, ctx.catalog, staged, ctx.show_progress, checkpoints)
        validation = result.meta.metrics.get("validation", {})
        figures = TrainFigures(
            validation_miou=validation.get("miou"),
            best_epoch=int(result.meta.metrics.get("best_epoch", 0)),
            per_class_iou={k: v["iou"] for k, v in validation.get("per_class", {}).items()},
        )
        model = ModelRecord(
            path=str(self.output), name=result.meta.name, weights_sha256=result.meta.weights_sha256
        )
        return Outcome(figures, Provenance(model=model))
