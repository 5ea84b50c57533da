"""The ``train`` step: a model bundle from one source, several, or an image set.

The bundle is trained into the transaction's staging folder and renamed into place at the
commit. Its checkpoints are written after every epoch into the work folder's ``parts/``
(``.NAME.geoseg.work/parts/last.pt``, ``best.pt``), which the transaction keeps for ``--resume``
and discards on a fresh start; at the end they are staged as ``NAME.geoseg.checkpoints`` beside
the bundle. The fingerprint (the config with the catalog's definitions of the sources or image
set, the checksums of every file read, geoseg's version, device and torch threads) guards
``--resume`` as for predict. The bundle's ``bundle.json`` records the run (config, data,
validation figures), so no manifest is written and a finished step is never "up to date".
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from geoseg import __version__
from geoseg.catalog import ImageSetRef, SourceRef
from geoseg.config import canonical_sha256
from geoseg.errors import ConfigError
from geoseg.executor import ExecutorSpec
from geoseg.model.bundle import BUNDLE_SUFFIX
from geoseg.model.device import device_type
from geoseg.training.config import TrainConfig
from geoseg.types import Location
from geoseg.workflow.manifest import (
    Figures,
    Fingerprint,
    ModelRecord,
    Provenance,
    SourceDefinition,
    definition,
    input_checksum,
)
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
        """The bundle folder and its checkpoints folder (``NAME.geoseg.checkpoints``)."""
        from geoseg.training.checkpoint import checkpoint_folder

        return [self.output, checkpoint_folder(self.output)]

    def reads(self) -> list[Location]:
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

    def fingerprint(self, spec: ExecutorSpec) -> Fingerprint:
        """What the trained weights depend on (see the module docstring); guards ``--resume``.

        Its ``config_sha256`` covers the step's config and the catalog's definitions of the
        labels or the image set (colours, classes) it trains on; ``sources`` the sources' bands
        (files, nodata, scale, offset). Descriptions and licences do not count.
        """
        labels = [
            definition(s.label(i.labels))
            for s, i in zip(self.sources, self.config.inputs, strict=True)
        ]
        image_set = definition(self.image_set) if self.image_set is not None else None
        return Fingerprint(
            geoseg=__version__,
            config_sha256=canonical_sha256(
                {
                    "config": self.config.model_dump(mode="json"),
                    "labels": labels,
                    "image_set": image_set,
                }
            ),
            sources=[
                SourceDefinition.of(s, self.config.bands or s.band_names) for s in self.sources
            ],
            inputs=[input_checksum(p) for p in dict.fromkeys(self.reads())],
            device=device_type(self.config.device),
            torch_threads=self.config.thread_count,
        )

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

    def kept(self, parts: Path) -> str:
        """The checkpoint an interrupted training keeps for ``--resume``."""
        from geoseg.training.checkpoint import completed_epochs

        epochs = completed_epochs(parts)
        if not epochs:
            return "no epoch had completed, so nothing was kept"
        return f"the checkpoint after epoch {epochs} of {self.config.epochs} is kept in {self.work}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Train into the staging folder, from the last checkpoint when resuming."""
        from geoseg.training.checkpoint import BEST, LAST, checkpoint_folder
        from geoseg.training.loop import train

        staged = tx.stage(self.output)
        result = train(
            self.config, ctx.catalog, staged, ctx.show_progress, tx.parts, resume=tx.resuming
        )
        # Copies: the work folder keeps its checkpoints for --resume until the commit ends; only
        # the complete ones (a kill during a save can leave a temporary file beside them).
        kept = tx.stage(checkpoint_folder(self.output))
        kept.mkdir(parents=True)
        for name in (LAST, BEST):
            if (tx.parts / name).exists():
                shutil.copy2(tx.parts / name, kept / name)
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
