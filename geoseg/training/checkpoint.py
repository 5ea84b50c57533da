"""Training checkpoints: the state after each complete epoch, written atomically, read to resume.

``last.pt`` holds everything a killed run needs to go on as if it had never stopped: the
network's weights, the optimiser's and the learning-rate schedule's states, the random
generators (torch's, CUDA's on a GPU, and the numpy generator that draws chips and
augmentations), the epoch history and the epoch the bundle will keep (its weights and hold-out
figures). ``best.pt`` holds that epoch's weights alone. Each file is written under a temporary
name beside its final one, fsynced and renamed, so a kill at any moment leaves the previous
complete checkpoint. Training uses no other random source (Python's ``random`` is not used).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from geoseg.errors import TrainingError
from geoseg.export.atomic import atomic_path

#: The state after the last complete epoch (enough to resume).
LAST = "last.pt"
#: The weights of the epoch the bundle keeps.
BEST = "best.pt"

StateDict = dict[str, torch.Tensor]

#: What loading a damaged or foreign checkpoint raises (torch, pickle, json, a missing key).
_UNREADABLE = (OSError, EOFError, RuntimeError, KeyError, TypeError, ValueError, pickle.PickleError)


class Stateful(Protocol):
    """What torch's optimisers and schedules share: a state to save and to load back."""

    def state_dict(self) -> dict[str, Any]:
        """The state to save."""

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any:
        """Restore a saved state."""


def checkpoint_folder(bundle: Path) -> Path:
    """Where a bundle's checkpoints are kept: ``NAME.geoseg.checkpoints`` beside it."""
    return bundle.with_name(bundle.name + ".checkpoints")


@dataclass
class EpochRecord:
    """Loss and validation scores after one epoch."""

    epoch: int
    loss: float
    miou: float | None
    per_class_iou: dict[str, float | None]
    seconds: float
    miou_per_source: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Kept:
    """The epoch whose weights the bundle keeps: its weights and its hold-out figures."""

    miou: float
    epoch: int
    state: StateDict
    validation: dict[str, Any]
    miou_per_source: dict[str, float | None]
    # Each source's own hold-out figures (per-class IoU...), as ``validation`` holds them.
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Progress:
    """How far a training run got: complete epochs, their records and the epoch kept so far."""

    epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    kept: Kept | None = None
    saved: int = 0  # the epoch of the last checkpoint written or resumed from

    def save(
        self,
        folder: Path,
        weights: StateDict,
        stateful: Mapping[str, Stateful],
        rng: np.random.Generator,
    ) -> None:
        """Write ``last.pt`` (and ``best.pt`` when this epoch is the one kept) into ``folder``.

        ``weights`` are the network's (a copy on the CPU), ``stateful`` the optimiser and
        schedule by name, ``rng`` the generator of chips and augmentations.
        """
        kept = self.kept
        if kept is not None and kept.epoch > self.saved:  # kept since the last checkpoint
            save_checkpoint(folder / BEST, {"epoch": kept.epoch, "state_dict": kept.state})
        record = {
            "history": [vars(r) for r in self.history],
            "kept": None if kept is None else {k: v for k, v in vars(kept).items() if k != "state"},
            "numpy_random": rng.bit_generator.state,
        }
        content: dict[str, Any] = {
            "epoch": self.epoch,
            "state_dict": weights,  # shared with ``kept.state`` when this epoch is kept
            "kept_state_dict": None if kept is None else kept.state,
            "record": json.dumps(record),
            "torch_random": torch.get_rng_state(),
            "cuda_random": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            **{name: item.state_dict() for name, item in stateful.items()},
        }
        save_checkpoint(folder / LAST, content)
        self.saved = self.epoch

    @classmethod
    def resume(
        cls,
        folder: Path,
        network: torch.nn.Module,
        stateful: Mapping[str, Stateful],
        rng: np.random.Generator,
    ) -> Progress:
        """Load ``folder``'s ``last.pt`` into the network, ``stateful`` and the generators.

        Without a ``last.pt`` (the run was killed during its first epoch) nothing is loaded and
        training starts at epoch 1. Raises :class:`TrainingError` for an unreadable checkpoint.
        """
        path = folder / LAST
        if not path.exists():
            return cls()
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            network.load_state_dict(content["state_dict"])
            for name, item in stateful.items():
                item.load_state_dict(content[name])
            record = json.loads(content["record"])
            rng.bit_generator.state = record["numpy_random"]
            torch.set_rng_state(content["torch_random"])
            if content["cuda_random"]:
                torch.cuda.set_rng_state_all(content["cuda_random"])
            kept = record["kept"]
            return cls(
                epoch=int(content["epoch"]),
                saved=int(content["epoch"]),
                history=[EpochRecord(**r) for r in record["history"]],
                kept=None if kept is None else Kept(state=content["kept_state_dict"], **kept),
            )
        except _UNREADABLE as exc:
            raise TrainingError(
                f"cannot resume training from {path}: it is not a checkpoint this geoseg reads "
                f"({type(exc).__name__}). Run without --resume to start again"
            ) from exc


def completed_epochs(folder: Path) -> int:
    """The epochs ``folder``'s ``last.pt`` has completed (0 without a readable one)."""
    try:
        content = torch.load(folder / LAST, map_location="cpu", weights_only=True, mmap=True)
        return int(content["epoch"])
    except (FileNotFoundError, *_UNREADABLE):
        return 0


def save_checkpoint(path: Path, content: Mapping[str, Any]) -> None:
    """``torch.save`` ``content`` to ``path`` atomically: a temporary sibling, fsynced, renamed.

    A failure or a kill at any moment leaves ``path`` as it was (no partial file at that name).
    """
    with atomic_path(path, overwrite=True) as tmp, tmp.open("wb") as handle:
        torch.save(dict(content), handle)
        handle.flush()
        os.fsync(handle.fileno())
