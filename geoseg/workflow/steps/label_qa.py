"""The ``label_qa`` step: checks, gold-standard scores and consensus of a label set.

Checks one image set's labels against a ``predict_images`` run over the same photos (missing
objects, class mismatches, mask bleed, fragments and holes, invalid codes: a ranked review queue
with crops, and the class shares); with ``gold``, scores the labels (and every annotator's) on
gold-standard images; with ``annotators``, builds their consensus (vote, REVIEW where they
disagree), agreement heatmaps, pairwise agreement and the low-agreement list
(docs/DESIGN.md §16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field

from geoseg.annotation.checks import (
    CheckSettings,
    Finding,
    check_labels,
    class_shares,
    colour_findings,
)
from geoseg.annotation.consensus import (
    REVIEW,
    consensus,
    low_agreement,
    low_agreement_table,
    pairwise,
    pairwise_table,
    write_agreement_png,
)
from geoseg.annotation.exporting import export, photo_ids, photo_prediction, run_maps, write_png
from geoseg.annotation.formats import FormatName
from geoseg.annotation.gold import Thresholds, score_against_gold
from geoseg.annotation.queue import (
    CROPS,
    QUEUE_CSV,
    QUEUE_GPKG,
    ReviewImage,
    review_selection,
    write_queue,
)
from geoseg.annotation.record import ExportRecord
from geoseg.catalog import ImageSetRef
from geoseg.config import ClosedModel
from geoseg.errors import CatalogError, ConfigError
from geoseg.export.atomic import atomic_path
from geoseg.export.style import ClassStyle
from geoseg.io.images import read_image, read_labels, read_set_labels
from geoseg.model.bundle import ClassInfo
from geoseg.workflow.manifest import Figures, Provenance
from geoseg.workflow.step import Outcome, PlanContext, PlannedStep, RunContext
from geoseg.workflow.transaction import Transaction

#: Where label_qa writes the review task (an export of the flagged photos).
REVIEW_TASK = "review_task"


class QaChecks(ClosedModel):
    """Thresholds of the automated checks (:class:`geoseg.annotation.checks.CheckSettings`)."""

    confidence: float = Field(default=0.8, gt=0, le=1)
    min_missing: int = Field(default=50, ge=1)
    min_votes: int = Field(default=20, ge=1)
    mismatch_share: float = Field(default=0.5, ge=0, lt=1)
    bleed_distance: float = Field(default=3.0, ge=0)
    min_bleed: int = Field(default=20, ge=1)
    min_region: int = Field(default=10, ge=1)


class LabelQaConfig(ClosedModel):
    """Automated checks, gold-standard scores and consensus of an image set's labels."""

    image_set: str  # the labels checked
    output: str
    predictions: str | None = None  # a predict_images run over the same photos
    images: list[str] | None = None  # default: the run's photos, else the whole set
    background: int | None = Field(default=None, ge=1, le=255)  # the class nobody outlines
    checks: QaChecks = Field(default_factory=QaChecks)
    crops: int = Field(default=100, ge=0)  # PNG crops of the top of the review queue
    # Send the flagged photos back to annotators: their current labels as tasks in these
    # formats (review_task/), in queue order; review_kinds limits which findings count.
    review_task: list[FormatName] = Field(default_factory=list)
    review_kinds: list[str] | None = None
    gold: str | None = None  # an image set of gold-standard labels of (some of) the photos
    annotators: dict[str, str] = Field(default_factory=dict)  # name -> image set of its labels
    min_iou: float = Field(default=0.8, ge=0, le=1)  # gold: pass marks
    min_boundary_f: float = Field(default=0.8, ge=0, le=1)
    min_agreement: float = Field(default=0.5, gt=0, le=1)  # consensus: below is REVIEW
    tolerance: int = Field(default=3, ge=1)  # px, boundary F


class QaFigures(Figures):
    """What the QA found."""

    images: int
    findings: dict[str, int]  # per kind
    gold_passed: dict[str, bool] | None = None  # per annotator
    review_pixels: int | None = None  # consensus pixels left for review
    low_agreement_images: int | None = None


@dataclass(frozen=True)
class PlannedLabelQa(PlannedStep[LabelQaConfig]):
    """A label_qa step: its image sets and prediction run resolved."""

    kind: ClassVar[str] = "label_qa"
    config_type: ClassVar[type[LabelQaConfig]] = LabelQaConfig
    figures_type: ClassVar[type[QaFigures]] = QaFigures

    image_set: ImageSetRef
    predictions: Path | None
    gold: ImageSetRef | None
    annotators: dict[str, ImageSetRef]

    @classmethod
    def plan(cls, index: int, config: LabelQaConfig, ctx: PlanContext) -> PlannedLabelQa:
        """Resolve the image sets (same classes) and the prediction run."""
        catalog = ctx.catalog
        step = cls(
            index,
            config,
            ctx.folder(config.output),
            catalog.image_set(config.image_set),
            ctx.path(config.predictions) if config.predictions is not None else None,
            catalog.image_set(config.gold) if config.gold is not None else None,
            {name: catalog.image_set(set_) for name, set_ in config.annotators.items()},
        )
        codes = [c for c, _, _ in step.image_set.classes]
        for other in [step.gold, *step.annotators.values()]:
            if other is not None and [c for c, _, _ in other.classes] != codes:
                raise ConfigError(
                    f"{ctx.where}: image set '{other.name}' has classes "
                    f"{[c for c, _, _ in other.classes]}, '{step.image_set.name}' {codes}: "
                    "compare labels of one class table"
                )
        if config.background is not None and config.background not in codes:
            raise ConfigError(f"{ctx.where}.background {config.background} is not one of {codes}")
        if step.predictions is None and step.gold is None and len(step.annotators) < 2:
            raise ConfigError(
                f"{ctx.where}: nothing to do: give predictions (automated checks), gold, or "
                "two or more annotators (consensus)"
            )
        return step

    def outputs(self) -> list[Path]:
        """The review queue and class shares; gold scores; consensus and agreement."""
        names = [QUEUE_GPKG, QUEUE_CSV, CROPS, "class_shares.csv"]
        if self.gold is not None:
            names += ["gold.csv", "gold_summary.csv"]
        if self.annotators:
            names += ["consensus", "pairwise.csv", "low_agreement.csv"]
        if self.config.review_task:
            names.append(REVIEW_TASK)
        return [self.folder / n for n in names]

    def inputs(self) -> list[Path]:
        """The prediction run's class maps."""
        return [self.predictions / "classes"] if self.predictions is not None else []

    def reads(self) -> list[Path]:
        """The run's class maps, the photos and every label file compared."""
        sets = [self.image_set, *([self.gold] if self.gold else []), *self.annotators.values()]
        files = [p for ref in sets for _, p in (*ref.images, *ref.annotations)]
        return [*self.inputs(), *files]

    def describe(self) -> str:
        """``label_qa image_set=NAME``."""
        return f"{self.kind} image_set={self.image_set.name}"

    def run(self, ctx: RunContext, tx: Transaction) -> Outcome:
        """Check, score and compare; stage the tables, queue, crops and heatmaps."""
        cfg, ref, out = self.config, self.image_set, tx.staged
        ids = self._ids()
        styles = [ClassStyle(c, n, col) for c, n, col in ref.classes]
        names = {s.code: s.name for s in styles}
        labels: dict[str, NDArray[np.uint8]] = {}
        findings, review = [], {}
        for item in ids:
            photo = read_image(dict(ref.images)[item], 3)
            try:
                labels[item] = read_labels(ref, item, photo.shape[1:])
            except CatalogError:  # colours the set does not map: findings, not a failure
                findings += colour_findings(ref, item)
                continue
            if self.predictions is None:
                continue
            classes, confidence = run_maps(self.predictions, item)
            if confidence is None:
                raise ConfigError(
                    f"{self.predictions / 'confidence'} has no map of photo '{item}': the "
                    "automated checks need the run's confidence (re-run predict_images)"
                )
            settings = CheckSettings(background=cfg.background, **cfg.checks.model_dump())
            findings += check_labels(item, labels[item], classes, confidence, names, settings)
            picture = np.moveaxis(photo, 0, -1).clip(0, 255).astype(np.uint8)
            review[item] = ReviewImage(picture, labels[item], classes)
        write_queue(findings, out, review, styles, cfg.crops)
        if cfg.review_task:
            self._review_task(findings, labels, out / REVIEW_TASK)
        _csv(class_shares(labels, names), out / "class_shares.csv")
        counts = pd.Series([f.kind for f in findings], dtype=object).value_counts()
        everyone = {"labels": labels} | {
            n: read_set_labels(r, ids) for n, r in self.annotators.items()
        }
        passed = self._gold(everyone, ids, names, out) if self.gold is not None else None
        agreement = self._consensus(everyone, out) if self.annotators else (None, None)
        figures = QaFigures(
            images=len(ids),
            findings={str(k): int(v) for k, v in counts.items()},
            gold_passed=passed,
            review_pixels=agreement[0],
            low_agreement_images=agreement[1],
        )
        return Outcome(figures, Provenance(image_set=ref.name, licence=ref.licence))

    def _ids(self) -> list[str]:
        """The photos to check: the listed ones, the run's, or the whole set."""
        ref = self.image_set
        if self.config.images is not None:
            ids = self.config.images
        elif self.predictions is not None:
            ids = photo_ids(self.predictions)
        else:
            ids = list(ref.ids)
        unknown = [i for i in ids if i not in ref.ids]
        if unknown:
            raise ConfigError(f"label_qa: images {unknown} are not in image set '{ref.name}'")
        return list(ids)

    def _gold(
        self,
        everyone: dict[str, dict[str, NDArray[np.uint8]]],
        ids: list[str],
        names: Mapping[int, str],
        out: Path,
    ) -> dict[str, bool]:
        """Score every annotator on the gold images; the pass/fail per annotator."""
        assert self.gold is not None
        gold = read_set_labels(self.gold, ids)
        thresholds = Thresholds(self.config.min_iou, self.config.min_boundary_f)
        result = score_against_gold(gold, everyone, thresholds, self.config.tolerance)
        _csv(result.table(names), out / "gold.csv")
        summary = result.summary()
        _csv(summary, out / "gold_summary.csv")
        return {str(r.annotator): bool(r.passed) for r in summary.itertuples()}

    def _consensus(
        self, everyone: dict[str, dict[str, NDArray[np.uint8]]], out: Path
    ) -> tuple[int, int]:
        """The vote of every annotator (the checked labels included), agreement and pairs.

        Returns the consensus pixels left for review and the number of low-agreement images.
        """
        results = consensus(everyone, self.config.min_agreement)
        for image, found in results.items():
            write_png(out / "consensus" / f"{image}.png", found.labels)
            write_agreement_png(out / "consensus" / f"{image}_agreement.png", found.agreement)
        _csv(pairwise_table(pairwise(everyone)), out / "pairwise.csv")
        low = low_agreement(results)
        _csv(low_agreement_table(low), out / "low_agreement.csv")
        return int(sum((r.labels == REVIEW).sum() for r in results.values())), len(low)

    def _review_task(
        self, findings: list[Finding], labels: dict[str, NDArray[np.uint8]], out: Path
    ) -> None:
        """The flagged photos, their current labels as the pre-annotation, as an export."""
        cfg, ref = self.config, self.image_set
        readable = [f for f in findings if f.image_id in labels]  # not unmapped-colour files
        selection = review_selection(readable, cfg.review_kinds)
        ids = list(selection.ids)
        out.mkdir(parents=True, exist_ok=True)
        photos = dict(ref.images)
        predictions = [photo_prediction(i, photos[i], labels[i], None, out) for i in ids]
        items = selection.items([p.item for p in predictions]) if ids else []
        predictions = [replace(p, item=item) for p, item in zip(predictions, items, strict=True)]
        record = ExportRecord(
            source=f"labels of image set {ref.name} flagged by label_qa",
            origin=ref.name,
            classes=[ClassInfo(code=c, name=n, color=col) for c, n, col in ref.classes],
            background=cfg.background,
        )
        export(predictions, record, list(dict.fromkeys(cfg.review_task)), out)


def _csv(table: pd.DataFrame, path: Path) -> None:
    """A table written atomically as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        table.to_csv(tmp, index=False)
