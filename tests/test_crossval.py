"""Cross-validation (issue 13): folds partition blocks or images; none trains on what it scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from geoseg.catalog import Catalog
from geoseg.training.config import ValidationConfig
from geoseg.training.crossval import FoldScore, Spread, cross_validate
from geoseg.training.holdout import spatial_split
from tests.conftest import REPO, needs_data
from tests.test_train import small_nc_step


def labels(shape: tuple[int, int] = (100, 120), seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(1, 4, size=shape).astype(np.uint8)
    out[:30, :30] = 0  # an unlabelled corner: its block is no candidate
    return out


def test_spatial_folds_partition_the_blocks_and_never_train_on_a_scored_pixel() -> None:
    codes = labels()
    k, buffer = 4, 3
    splits = [
        spatial_split(codes, ValidationConfig(block_size=20, buffer=buffer, folds=k, fold=f), 7)
        for f in range(k)
    ]
    blocks = [set(s.blocks) for s in splits]
    assert all(blocks), "every fold holds out blocks"
    for i in range(k):
        for j in range(i + 1, k):
            assert not blocks[i] & blocks[j], "no block is scored by two folds"
            assert not (splits[i].validation & splits[j].validation).any()
    candidates = {
        (r, c)
        for r in range(0, 100, 20)
        for c in range(0, 120, 20)
        if (codes[r : r + 20, c : c + 20] > 0).mean() > 0.25
    }
    assert set().union(*blocks) == candidates, "every labelled block is scored once"
    for split in splits:
        assert not (split.train & split.validation).any()
        grown = ndimage.binary_dilation(split.validation, iterations=buffer)
        assert not (split.train & grown).any(), "nor within the buffer of a scored pixel"
    again = spatial_split(codes, ValidationConfig(block_size=20, buffer=buffer, folds=k, fold=2), 7)
    assert again.blocks == splits[2].blocks, "seeded"


def test_image_folds_partition_the_images_and_the_fraction_split_is_unchanged() -> None:
    folds = [set(ValidationConfig(folds=3, fold=f).held_out(10, seed=5)) for f in range(3)]
    assert set().union(*folds) == set(range(10)) and sum(len(f) for f in folds) == 10
    # without folds: the same draw as before folds existed (a seeded rng.choice of the share)
    rng = np.random.default_rng(5)
    expected = sorted(int(i) for i in rng.choice(10, 3, replace=False))
    assert ValidationConfig(fraction=0.3).held_out(10, seed=5) == expected
    with pytest.raises(ValueError, match="fold must be below folds"):
        ValidationConfig(folds=3, fold=3)
    with pytest.raises(ValueError, match="2 item"):
        ValidationConfig(folds=3).held_out(2, seed=0)


def test_spread_is_the_mean_and_sample_deviation_of_the_folds_that_scored() -> None:
    spread = Spread.of([0.5, None, 0.7, 0.6])
    assert spread.n == 3 and spread.mean == pytest.approx(0.6)
    assert spread.std == pytest.approx(0.1)
    assert Spread.of([None, None]) == Spread(None, None, 0)


def test_a_multi_source_fold_keeps_each_sources_own_scores() -> None:
    def figures(miou: float, **iou: float | None) -> dict[str, object]:
        return {"miou": miou, "per_class": {name: {"iou": v} for name, v in iou.items()}}

    metrics = {
        "validation": figures(0.5, tree=0.6, cropland=0.4),
        "validation_per_source": {
            "nc": figures(0.6, tree=0.6, cropland=None),
            "s2": figures(0.4, tree=0.4, cropland=0.4),
        },
    }
    fold = FoldScore.of(2, metrics)
    assert fold.fold == 2 and fold.miou == 0.5 and fold.per_class == {"tree": 0.6, "cropland": 0.4}
    assert fold.per_source["nc"] == {"mIoU": 0.6, "tree": 0.6, "cropland": None}
    assert fold.per_source["s2"]["cropland"] == 0.4
    metrics["validation_per_source"] = {"nc": figures(0.5, tree=0.6)}
    assert FoldScore.of(0, metrics).per_source == {}, "one source: the overall figures say it"


@needs_data()
def test_cross_validation_trains_one_model_per_fold_and_reports_mean_and_spread(
    tmp_path: Path,
) -> None:
    step = small_nc_step(epochs=1, chips_per_epoch=16)
    result = cross_validate(step, Catalog.load(REPO / "data_catalog.yaml"), tmp_path, folds=3)
    assert [f.fold for f in result.folds] == [0, 1, 2]
    assert result.miou.n == 3 and result.miou.mean is not None and result.miou.std is not None
    assert "3-fold cross-validation over spatial blocks of 48 px" in result.protocol
    assert "last epoch kept" in result.protocol and result.per_class["tree"].n == 3
    assert result.per_source == {}, "one source: no per-source breakdown"
    assert (tmp_path / "crossval.json").exists()
    for fold in range(3):
        assert (tmp_path / f"fold-{fold}.geoseg" / "bundle.json").exists()


@needs_data()
def test_a_train_step_with_cross_validation_reports_it_in_its_bundle_and_card(
    tmp_path: Path,
) -> None:
    from geoseg.training.loop import train

    step = small_nc_step(epochs=1, chips_per_epoch=16, cross_validation=2)
    result = train(step, Catalog.load(REPO / "data_catalog.yaml"), tmp_path / "m.geoseg", False)
    crossval = result.meta.metrics["cross_validation"]
    assert len(crossval["folds"]) == 2 and crossval["miou"]["n"] == 2
    card = (result.bundle / "MODEL_CARD.md").read_text()
    assert "## Cross-validation of the recipe" in card and "2-fold cross-validation" in card
    tree = crossval["per_class"]["tree"]
    assert f"| tree | {tree['mean']:.3f} +- {tree['std']:.3f} (n=2) |" in card
    assert (tmp_path / "m.geoseg.checkpoints" / "crossval" / "crossval.json").exists()
