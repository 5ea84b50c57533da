"""The training loop: chips from a labelled raster -> a validated model bundle.

Seeded and reproducible: chip windows, augmentations and weight initialisation all derive from
``step.seed``. Validation predicts the whole scene with the same stitched sliding-window inference
used in production and scores only the held-out blocks, so the reported IoUs are what a user gets.
After every epoch a checkpoint records the whole training state, so a killed run resumed from it
ends with the same weights as an uninterrupted one (:mod:`geoseg.training.checkpoint`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from geoseg.catalog import Catalog
from geoseg.classes import class_info
from geoseg.errors import TrainingError
from geoseg.evaluation.metrics import Scores, confusion_matrix, scores
from geoseg.executor import progress_bar
from geoseg.model.bundle import BundleMeta, ClassInfo
from geoseg.model.device import resolve_device
from geoseg.model.indices import missing_bands
from geoseg.model.network import build_network
from geoseg.model.predictor import Predictor
from geoseg.model.store import save_bundle
from geoseg.stitch.predict import InferenceSpec
from geoseg.stitch.reference import predict_in_memory
from geoseg.tiling.grid import TileGrid
from geoseg.training.card import model_card
from geoseg.training.checkpoint import EpochRecord, Kept, Progress, Stateful, checkpoint_folder
from geoseg.training.chips import augment, cut, sample_chip_windows
from geoseg.training.config import TrainConfig
from geoseg.training.scene import Scene, load_image_set, load_scene

log = logging.getLogger(__name__)


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
    scenes: Sequence[Scene],
    specs: Sequence[InferenceSpec],
) -> tuple[Scores, dict[str, Scores]]:
    """Stitched-scene prediction of every scene, scored on its hold-out pixels.

    Returns the scores of all scenes' hold-outs together and each source's own scores.
    """
    network.eval()
    codes = specs[0].codes
    matrix = np.zeros((len(codes), len(codes) + 1), dtype=np.int64)
    per_source: dict[str, NDArray[np.int64]] = {}
    for scene, spec in zip(scenes, specs, strict=True):
        held = scene.split.validation
        if not held.any():
            continue
        prediction = predict_in_memory(scene.image, Predictor(network, device), spec).classes
        own = confusion_matrix(scene.codes[held], prediction[held], codes)
        matrix += own
        per_source[scene.name] = per_source.get(scene.name, 0) + own
    network.train()
    return scores(matrix, codes), {name: scores(own, codes) for name, own in per_source.items()}


def _chip_counts(
    scenes: Sequence[Scene], targets: Sequence[NDArray[np.int64]], total: int
) -> list[int]:
    """Chips per scene: in proportion to the square root of its training pixels.

    The square root keeps a small, densely labelled scene from being drowned by a large one.
    """
    weights = np.sqrt([float((t >= 0).sum()) for t in targets])
    shares = weights / weights.sum()
    counts = np.floor(shares * total).astype(int)
    counts[int(np.argmax(shares))] += total - int(counts.sum())
    return [int(c) for c in counts]


def train(
    step: TrainConfig,
    catalog: Catalog,
    output: Path,
    show_progress: bool = True,
    checkpoints: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a network as ``step`` says and write its bundle to ``output`` (a new folder).

    Checkpoints (``last.pt``, ``best.pt``, see :mod:`geoseg.training.checkpoint`) are written
    after every epoch to ``checkpoints``, by default ``OUTPUT.checkpoints`` beside the bundle.
    With ``resume``, training continues after the epoch of ``checkpoints/last.pt`` and ends with
    the weights and history of an uninterrupted run; the caller vouches that the checkpoint was
    written for this ``step`` (a workflow's run record does). Whether an existing bundle may be
    replaced is the caller's decision (the workflow's step transaction trains into a fresh
    staging folder).
    """
    torch.manual_seed(step.seed)
    rng = np.random.default_rng(step.seed)
    torch.set_num_threads(step.thread_count)
    device = resolve_device(step.device)
    scenes = [
        scene
        for item in step.inputs
        for scene in load_scene(
            catalog, item.source, item.labels, step.bands, step.classes, step.validation, step.seed
        )
    ]
    if step.image_set:
        scenes += load_image_set(catalog, step.image_set, step.classes, step.validation, step.seed)
    band_names = scenes[0].band_names
    class_codes = step.classes or sorted(
        {int(c) for scene in scenes for c in np.unique(scene.codes) if c != 0}
    )
    if len(class_codes) < 2:
        raise TrainingError(f"the labels hold {len(class_codes)} class(es); need at least 2")
    missing = missing_bands(step.indices, band_names)
    if missing:
        raise TrainingError(
            f"indices {step.indices} need bands the training data lacks ({', '.join(missing)}); "
            f"its bands are {list(band_names)}"
        )
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[class_codes] = np.arange(len(class_codes))
    targets = [scene.target(lookup) for scene in scenes]
    specs = [
        InferenceSpec(
            TileGrid(step.chip_size, step.overlap),
            step.batch_size,
            tuple(scene.mean),
            tuple(scene.std),
            tuple(class_codes),
            bands=band_names,
            indices=tuple(step.indices),
        )
        for scene in scenes
    ]
    normalised = [spec.normalise(scene.image) for scene, spec in zip(scenes, specs, strict=True)]
    weights = _class_weights(
        np.concatenate([t.ravel() for t in targets]), len(class_codes), step.class_weighting
    )
    network = build_network(step.network, specs[0].channels, len(class_codes)).to(device)
    if step.channels_last:
        network = network.to(memory_format=torch.channels_last)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=step.learning_rate, weight_decay=step.weight_decay
    )
    steps_per_epoch = -(-step.chips_per_epoch // step.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=step.learning_rate, total_steps=step.epochs * steps_per_epoch
    )
    loss_fn = _loss(step, torch.from_numpy(weights).to(device))
    checkpoints = checkpoints or checkpoint_folder(output)
    checkpoints.mkdir(parents=True, exist_ok=True)
    crossval = None
    if step.cross_validation:  # the recipe's figures first, one model per fold
        from geoseg.training.crossval import cross_validate

        folder = checkpoints / "crossval"
        shutil.rmtree(folder, ignore_errors=True)  # fold models are always trained afresh
        recipe = step.model_copy(update={"cross_validation": None})
        crossval = cross_validate(recipe, catalog, folder, step.cross_validation, show_progress)
    chips = _chip_counts(scenes, targets, step.chips_per_epoch)

    stateful: dict[str, Stateful] = {"optimiser": optimiser, "schedule": schedule}
    done = Progress.resume(checkpoints, network, stateful, rng) if resume else Progress()
    if done.epoch:
        log.info("resuming training after epoch %d of %d", done.epoch, step.epochs)
    names = {c: scenes[0].classes.get(c, (class_info(c).name, ""))[0] for c in class_codes}
    colours = {c: scenes[0].classes.get(c, ("", class_info(c).color))[1] for c in class_codes}
    network.train()
    with progress_bar(show_progress) as progress:
        epochs = progress.add_task("train epochs", total=step.epochs, completed=done.epoch)
        for epoch in range(done.epoch + 1, step.epochs + 1):
            start = time.perf_counter()
            drawn = [
                (i, w)
                for i, (target, n) in enumerate(zip(targets, chips, strict=True))
                if n
                for w in sample_chip_windows(target, step.chip_size, n, rng)
            ]
            if len(scenes) > 1:
                drawn = [drawn[k] for k in rng.permutation(len(drawn))]
            batches = progress.add_task(f"epoch {epoch} batches", total=steps_per_epoch)
            losses = []

            for first in range(0, len(drawn), step.batch_size):
                pairs = [
                    augment(cut(normalised[i], w, 0.0), cut(targets[i], w, -1), rng)
                    for i, w in drawn[first : first + step.batch_size]
                ]
                x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
                y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
                if step.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast(device.type, torch.bfloat16, step.precision == "bfloat16"):
                    out = network(x)
                loss = loss_fn(out.float(), y)
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
                progress.advance(batches)
            progress.remove_task(batches)
            mean_loss = float(np.mean(losses))
            last = epoch == step.epochs
            validating = not epoch % step.validate_every or last
            saving = not epoch % step.checkpoint_every or last
            if not validating:
                log.info("epoch %d loss %.4f (not validated)", epoch, mean_loss)
            state = (
                {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
                if validating or saving
                else {}
            )
            if validating:
                result, per_source = _validate(network, device, scenes, specs)
                per_scene = {name: own.miou for name, own in per_source.items()}
                record = EpochRecord(
                    epoch,
                    mean_loss,
                    result.miou,
                    {names[c.code]: c.iou for c in result.classes},
                    time.perf_counter() - start,
                    per_scene,
                )
                done.history.append(record)
                log.info("epoch %d loss %.4f val mIoU %s", epoch, record.loss, record.miou)
                miou = result.miou if result.miou is not None else -1.0
                if done.kept is None or miou > done.kept.miou or step.keep == "last":
                    done.kept = Kept(
                        miou,
                        epoch,
                        state,
                        result.as_dict(names),
                        per_scene,
                        {name: own.as_dict(names) for name, own in per_source.items()},
                    )
            done.epoch = epoch
            if saving:
                done.save(checkpoints, state, stateful, rng)  # after validation: complete
            progress.advance(epochs)
    kept = done.kept
    if kept is None:  # epochs >= 1 always records one
        raise TrainingError("training ran no epoch")
    lead = scenes[0]
    sources = {scene.name: scene for scene in reversed(scenes)}  # first scene of each source
    firsts = [sources[name] for name in dict.fromkeys(scene.name for scene in scenes)]
    meta = BundleMeta(
        name=step.name or output.stem,
        network=step.network,
        bands=lead.profile().bands,
        correlation=lead.profile().correlation if len(firsts) == 1 else None,
        indices=step.indices,
        units=lead.units,
        pixel_size=lead.pixel_size,
        crs_units=lead.crs_units,
        classes=[ClassInfo(code=c, name=names[c], color=colours[c]) for c in class_codes],
        profiles=[scene.profile() for scene in firsts] if len(firsts) > 1 else [],
        tile_size=step.chip_size,
        overlap=step.overlap,
        training_data=[scene.provenance for scene in firsts],
        training=_training_summary(step, scenes, targets, class_codes, names, kept.epoch),
        metrics={
            **({"cross_validation": asdict(crossval)} if crossval is not None else {}),
            "validation": kept.validation,
            "validation_miou_per_source": kept.miou_per_source,
            "validation_per_source": kept.per_source,
            "best_epoch": kept.epoch,
            "history": [vars(r) for r in done.history],
        },
        weights_dtype="float16",
    )
    meta = save_bundle(meta, kept.state, output, model_card(meta, step.card))
    return TrainResult(output, meta, done.history)


def _loss(
    step: TrainConfig, weights: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy (class-weighted), plus smp's multiclass Dice loss when asked for.

    Dice scores overlap per class, so a class of 2 % of the pixels weighs as much as one of 90 %.
    Unlabelled pixels (-1) are ignored by both.
    """
    cross_entropy = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=-1)
    if step.loss == "cross_entropy":
        return cross_entropy
    import segmentation_models_pytorch as smp

    dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=-1)
    return lambda logits, target: cross_entropy(logits, target) + dice(logits, target)


def _training_summary(
    step: TrainConfig,
    scenes: Sequence[Scene],
    targets: Sequence[NDArray[np.int64]],
    class_codes: list[int],
    names: dict[int, str],
    best_epoch: int,
) -> dict[str, Any]:
    counts = np.sum([np.bincount(t[t >= 0], minlength=len(class_codes)) for t in targets], axis=0)
    return {
        "config": step.model_dump(),
        "best_epoch": best_epoch,
        "validation_blocks": sum(len(s.split.blocks) for s in scenes),
        "holdout_items": {
            name: [s.item for s in scenes if s.name == name and s.item and s.split.validation.any()]
            for name in dict.fromkeys(s.name for s in scenes if s.item)
        },
        "validation_pixels": int(sum(int(s.split.validation.sum()) for s in scenes)),
        "training_pixels": {names[c]: int(n) for c, n in zip(class_codes, counts, strict=True)},
        "torch": torch.__version__,
    }
