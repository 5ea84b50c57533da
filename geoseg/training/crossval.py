"""K-fold cross-validation of a training recipe: stable, honest figures for small datasets.

One hold-out of a few blocks or images gives a figure that swings with the draw. Here the
scene's labelled blocks (or an image set's images) are dealt into k seeded folds
(:meth:`~geoseg.training.config.ValidationConfig.held_out`); the recipe is trained k times, each
time scored on the fold it never trained on (buffered, for blocks), and the per-class IoU is
reported as mean and spread over the folds.

Nothing reported is selected on the data it is scored on: each fold keeps its *last* epoch
(``keep: last``), since picking the best epoch by the fold's own score would flatter it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geoseg.catalog import Catalog
from geoseg.training.config import TrainConfig
from geoseg.training.loop import train


@dataclass(frozen=True, slots=True)
class FoldScore:
    """One fold: its mIoU and per-class IoU on the items it held out, overall and per source."""

    fold: int
    miou: float | None
    per_class: dict[str, float | None]
    per_source: dict[str, dict[str, float | None]]

    @classmethod
    def of(cls, fold: int, metrics: dict[str, Any]) -> FoldScore:
        """The fold's scores from its bundle's ``metrics`` (each source's mIoU under "mIoU")."""

        def scores(figures: dict[str, Any]) -> dict[str, float | None]:
            return {name: c.get("iou") for name, c in figures["per_class"].items()}

        per_source = metrics.get("validation_per_source") or {}
        return cls(
            fold,
            metrics["validation"].get("miou"),
            scores(metrics["validation"]),
            {
                source: {"mIoU": figures.get("miou"), **scores(figures)}
                for source, figures in per_source.items()
            }
            if len(per_source) > 1
            else {},
        )


@dataclass(frozen=True, slots=True)
class Spread:
    """Mean and sample standard deviation over the folds that scored (``n`` of them)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Spread:
        """The spread of ``values``, leaving out folds without a score (class absent)."""
        scored = [v for v in values if v is not None]
        if not scored:
            return cls(None, None, 0)
        mean = sum(scored) / len(scored)
        var = sum((v - mean) ** 2 for v in scored) / (len(scored) - 1) if len(scored) > 1 else 0
        return cls(mean, math.sqrt(var), len(scored))


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """The folds' scores and their mean and spread, with the protocol that produced them."""

    protocol: str
    folds: list[FoldScore]
    miou: Spread
    per_class: dict[str, Spread]
    per_source: dict[str, dict[str, Spread]]

    def to_json(self) -> str:
        """The result as JSON (``crossval.json``)."""
        return json.dumps(asdict(self), indent=2)


def cross_validate(
    step: TrainConfig, catalog: Catalog, folder: Path, folds: int, show_progress: bool = False
) -> CrossValidation:
    """Train ``step``'s recipe ``folds`` times into ``folder``, each scored on its own fold."""
    folder.mkdir(parents=True, exist_ok=True)
    scores = []
    for fold in range(folds):
        validation = step.validation.model_copy(update={"folds": folds, "fold": fold})
        recipe = step.model_copy(update={"validation": validation, "keep": "last"})
        meta = train(recipe, catalog, folder / f"fold-{fold}.geoseg", show_progress).meta
        scores.append(FoldScore.of(fold, meta.metrics))
    names = list(dict.fromkeys(n for s in scores for n in s.per_class))
    sources = list(dict.fromkeys(source for s in scores for source in s.per_source))
    unit = "images" if step.image_set else f"spatial blocks of {step.validation.block_size} px"
    protocol = (
        f"{folds}-fold cross-validation over {unit} (seed {step.seed}; each fold scored on the "
        f"{unit} it never trained on"
        + ("" if step.image_set else f", {step.validation.buffer} px buffer")
        + "; last epoch kept, nothing selected on the scored data)"
    )
    result = CrossValidation(
        protocol,
        scores,
        Spread.of([s.miou for s in scores]),
        {n: Spread.of([s.per_class.get(n) for s in scores]) for n in names},
        {
            source: {
                n: Spread.of([s.per_source.get(source, {}).get(n) for s in scores])
                for n in ["mIoU", *names]
            }
            for source in sources
        },
    )
    (folder / "crossval.json").write_text(result.to_json(), encoding="utf-8")
    return result
