"""The training loop: chips from a labelled raster -> a validated model bundle.

Seeded and reproducible: chip windows, augmentations and weight initialisation all derive from
``step.seed``. Validation predicts the whole scene with the same stitched sliding-window inference
used in production and scores only the held-out blocks, so the reported IoUs are what a user gets.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from geoseg.catalog import Catalog
from geoseg.classes import class_info
from geoseg.errors import TrainingError
from geoseg.evaluate.metrics import Scores, confusion_matrix, scores
from geoseg.executor import progress_bar
from geoseg.export.atomic import atomic_path, check_writable
from geoseg.io.labels import open_labels
from geoseg.io.source import RasterSource
from geoseg.model.bundle import BandStats, BundleMeta, ClassInfo, DataProvenance
from geoseg.model.network import build_network
from geoseg.model.predictor import Predictor, resolve_device
from geoseg.model.store import save_bundle
from geoseg.stitch.predict import InferenceSpec, valid_mask
from geoseg.stitch.reference import predict_in_memory
from geoseg.tiling.grid import TileGrid
from geoseg.train.card import model_card
from geoseg.train.chips import augment, cut, sample_chip_windows
from geoseg.train.holdout import Split, spatial_split
from geoseg.workflow.schema import TrainStep

log = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    """Loss and validation scores after one epoch."""

    epoch: int
    loss: float
    miou: float | None
    per_class_iou: dict[str, float | None]
    seconds: float


@dataclass
class TrainResult:
    """The bundle written, its metadata, and the per-epoch history."""

    bundle: Path
    meta: BundleMeta
    history: list[EpochRecord] = field(default_factory=list)


def _class_weights(target: NDArray[np.int64], k: int, how: str) -> NDArray[np.float32]:
    counts = np.bincount(target[target >= 0], minlength=k).astype(np.float64)
    if how == "none":
        return np.ones(k, dtype=np.float32)
    power = 0.5 if how == "inverse_sqrt" else 1.0
    weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1) ** power, 0.0)
    weights *= k / max(weights.sum(), 1e-12)
    return weights.astype(np.float32)


def _validate(
    network: torch.nn.Module,
    device: torch.device,
    image: NDArray[np.float32],
    spec: InferenceSpec,
    codes: NDArray[np.uint8],
    split: Split,
) -> Scores:
    network.eval()
    prediction = predict_in_memory(image, Predictor(network, device), spec).classes
    matrix = confusion_matrix(codes[split.validation], prediction[split.validation], spec.codes)
    network.train()
    return scores(matrix, spec.codes)


def train(
    step: TrainStep,
    catalog: Catalog,
    output: Path,
    overwrite: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train a network as ``step`` says and write its bundle to ``output``."""
    check_writable(output, overwrite)
    torch.manual_seed(step.seed)
    rng = np.random.default_rng(step.seed)
    if step.threads:
        torch.set_num_threads(step.threads)
    device = resolve_device(step.device)
    source = RasterSource.open(catalog.source(step.source))
    source = source.select(step.bands or list(source.band_names))
    labels = open_labels(source, step.labels)
    image = source.read(source.grid.window)
    valid = valid_mask(image)
    codes = np.where(valid, labels.read(source.grid.window), 0).astype(np.uint8)
    class_codes = step.classes or [int(c) for c in np.unique(codes) if c != 0]
    if len(class_codes) < 2:
        raise TrainingError(f"labels of '{step.source}' hold {len(class_codes)} class(es); need 2+")
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[class_codes] = np.arange(len(class_codes))
    index = lookup[codes]
    split = spatial_split(
        np.where(index >= 0, codes, 0),
        step.validation.block_size,
        step.validation.fraction,
        step.validation.buffer,
        step.seed,
    )
    target = np.where(split.train, index, -1)

    mean = np.array([float(np.mean(b[valid])) for b in image])
    std = np.array([max(float(np.std(b[valid])), 1e-6) for b in image])
    spec = InferenceSpec(
        TileGrid(step.chip_size, step.overlap),
        step.batch_size,
        tuple(mean),
        tuple(std),
        tuple(class_codes),
    )
    normalised = spec.normalise(image)
    weights = _class_weights(target, len(class_codes), step.class_weighting)
    network = build_network(step.network, source.count, len(class_codes)).to(device)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=step.learning_rate, weight_decay=step.weight_decay
    )
    steps_per_epoch = -(-step.chips_per_epoch // step.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=step.learning_rate, total_steps=step.epochs * steps_per_epoch
    )
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.from_numpy(weights).to(device), ignore_index=-1
    )
    checkpoints = output.with_name(output.name + ".checkpoints")
    checkpoints.mkdir(parents=True, exist_ok=True)

    history: list[EpochRecord] = []
    best: tuple[float, int, dict[str, torch.Tensor], Scores] | None = None
    names = {c: class_info(c).name for c in class_codes}
    network.train()
    with progress_bar(show_progress) as progress:
        epochs = progress.add_task("train epochs", total=step.epochs)
        for epoch in range(1, step.epochs + 1):
            start = time.perf_counter()
            windows = sample_chip_windows(target, step.chip_size, step.chips_per_epoch, rng)
            batches = progress.add_task(f"epoch {epoch} batches", total=steps_per_epoch)
            losses = []
            for first in range(0, len(windows), step.batch_size):
                pairs = [
                    augment(cut(normalised, w, 0.0), cut(target, w, -1), rng)
                    for w in windows[first : first + step.batch_size]
                ]
                x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
                y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(network(x), y)
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
                progress.advance(batches)
            progress.remove_task(batches)
            result = _validate(network, device, image, spec, codes, split)
            record = EpochRecord(
                epoch,
                float(np.mean(losses)),
                result.miou,
                {names[c.code]: c.iou for c in result.classes},
                time.perf_counter() - start,
            )
            history.append(record)
            log.info("epoch %d loss %.4f val mIoU %s", epoch, record.loss, record.miou)
            state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
            _save_checkpoint(checkpoints / "last.pt", state, epoch)
            miou = result.miou if result.miou is not None else -1.0
            if best is None or miou > best[0]:
                best = (miou, epoch, copy.deepcopy(state), result)
                _save_checkpoint(checkpoints / "best.pt", state, epoch)
            progress.advance(epochs)
    if best is None:  # epochs >= 1 always records one
        raise TrainingError("training ran no epoch")
    _, best_epoch, best_state, best_scores = best
    meta = BundleMeta(
        name=step.name or output.stem,
        network=step.network,
        bands=[
            BandStats(name=n, mean=m, std=s)
            for n, m, s in zip(source.band_names, mean, std, strict=True)
        ],
        units=source.ref.units,
        pixel_size=source.grid.pixel_size[0],
        crs_units=source.grid.crs_units,
        classes=[ClassInfo(code=c, name=names[c], color=class_info(c).color) for c in class_codes],
        tile_size=step.chip_size,
        overlap=step.overlap,
        training_data=[
            DataProvenance(
                source=source.name,
                description=source.ref.description,
                licence=source.ref.licence,
                labels=labels.ref.name,
                labels_licence=labels.ref.licence,
            )
        ],
        training=_training_summary(step, split, target, class_codes, names, best_epoch),
        metrics={
            "validation": best_scores.as_dict(names),
            "best_epoch": best_epoch,
            "history": [vars(r) for r in history],
        },
        weights_dtype="float16",
    )
    meta = save_bundle(meta, best_state, output, model_card(meta, step.card), overwrite)
    return TrainResult(output, meta, history)


def _training_summary(
    step: TrainStep,
    split: Split,
    target: NDArray[np.int64],
    class_codes: list[int],
    names: dict[int, str],
    best_epoch: int,
) -> dict[str, Any]:
    counts = np.bincount(target[target >= 0], minlength=len(class_codes))
    return {
        "config": step.model_dump(),
        "best_epoch": best_epoch,
        "validation_blocks": len(split.blocks),
        "validation_pixels": int(split.validation.sum()),
        "training_pixels": {names[c]: int(n) for c, n in zip(class_codes, counts, strict=True)},
        "torch": torch.__version__,
    }


def _save_checkpoint(path: Path, state: dict[str, torch.Tensor], epoch: int) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        torch.save({"epoch": epoch, "state_dict": state}, tmp)
