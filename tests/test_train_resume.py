"""A killed training step resumes from its last checkpoint to the weights of an uninterrupted run.

docs/DESIGN.md §8 and §10: the checkpoints live in the step's work folder
(``.NAME.geoseg.work/parts/``), which ``--resume`` keeps when the run record matches and a fresh
run discards; ``last.pt`` carries the model, optimiser, schedule, random generators, history
and the kept epoch, and is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from geoseg.errors import ResumeError, TrainingError
from geoseg.model.bundle import CARD_FILE, bundle_paths, load_meta
from geoseg.training import loop
from geoseg.training.checkpoint import LAST, Progress, checkpoint_folder, save_checkpoint
from geoseg.training.chips import sample_chip_windows
from geoseg.types import Window
from geoseg.workflow.run import run_workflow
from tests.conftest import DATA, NC_BANDS, REPO, needs_data


class Killed(Exception):
    """Stands for the process dying (the hook raises it where a kill would strike)."""


class Epochs:
    """Counts the epochs a run trains (one scene draws its chips once an epoch); can kill one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = 0
        self.kill_at: int | None = None
        monkeypatch.setattr(loop, "sample_chip_windows", self)

    def next_run(self, kill_at: int | None = None) -> None:
        """Count afresh; kill the run when its ``kill_at``-th epoch starts."""
        self.started, self.kill_at = 0, kill_at

    def __call__(self, *args: Any) -> list[Window]:
        self.started += 1
        if self.started == self.kill_at:
            raise Killed(f"killed at the start of the run's epoch {self.started}")
        return sample_chip_windows(*args)


def tiny_training(path: Path, bundle: Path, epochs: int, extra: str = "") -> Path:
    """A workflow training a tiny U-Net on the NC scene for a few seconds (one batch an epoch);
    ``extra``: more train-step lines."""
    path.write_text(
        f"version: 1\ncatalog: {REPO / 'data_catalog.yaml'}\nsteps:\n  - train:\n"
        f"      source: nc-landsat7\n      bands: [{', '.join(NC_BANDS)}]\n"
        f"      output: {bundle}\n      epochs: {epochs}\n      chips_per_epoch: 8\n"
        "      batch_size: 8\n      chip_size: 32\n      overlap: 8\n      threads: 1\n"
        "      device: cpu\n      network: {architecture: Unet, encoder: resnet18, "
        "encoder_depth: 2, decoder_channels: [16, 8]}\n"
        "      validation: {block_size: 48, fraction: 0.2, buffer: 4}\n" + extra,
        encoding="utf-8",
    )
    return path


def checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint or bundle weights file, loaded as geoseg loads them (tensors only)."""
    loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return loaded


def assert_same_tensors(a: Any, b: Any, where: str) -> None:
    """Equal nested dicts/lists whose tensors are bit-identical."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    """Bundle metrics less the seconds each epoch took (the only figures a resume changes)."""
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in metrics["history"]]
    return metrics | {"history": history}


@needs_data()
def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epochs = Epochs(monkeypatch)
    reference = tmp_path / "reference" / "tiny.geoseg"
    run_workflow(tiny_training(tmp_path / "reference.yaml", reference, 3), show_progress=False)
    assert epochs.started == 3

    bundle = tmp_path / "resumed" / "tiny.geoseg"
    workflow = tiny_training(tmp_path / "resumed.yaml", bundle, 3)
    parts = bundle.parent / ".tiny.geoseg.work" / "parts"
    epochs.next_run(kill_at=3)
    with pytest.raises(Killed):
        run_workflow(workflow, show_progress=False)
    assert checkpoint(parts / LAST)["epoch"] == 2
    assert not bundle.exists() and not checkpoint_folder(bundle).exists(), "nothing final yet"

    # Killed again after the last epoch, while the bundle is written: nothing is left to train.
    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed("killed while writing the bundle")

    epochs.next_run()
    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_bundle", killed)
        with pytest.raises(Killed):
            run_workflow(workflow, show_progress=False, resume=True)
    assert epochs.started == 1, "only epoch 3 was trained: epochs 1-2 came from the checkpoint"
    assert checkpoint(parts / LAST)["epoch"] == 3

    epochs.next_run()
    run_workflow(workflow, show_progress=False, resume=True)
    assert epochs.started == 0
    assert not parts.parent.exists(), "the work folder goes at the commit"

    # The bundle keeps the best epoch's weights (possibly restored from the checkpoint as they
    # were kept), the final checkpoint the last epoch's with the optimiser and schedule.
    weights = [checkpoint(bundle_paths(b)[1]) for b in (reference, bundle)]
    assert_same_tensors(weights[0], weights[1], "bundle weights")
    final = [checkpoint(checkpoint_folder(b) / LAST) for b in (reference, bundle)]
    for key in ("state_dict", "optimiser", "schedule", "torch_random", "kept_state_dict"):
        assert_same_tensors(final[0][key], final[1][key], key)
    records = [json.loads(c["record"]) for c in final]
    assert records[0]["numpy_random"] == records[1]["numpy_random"]
    metas = [load_meta(b) for b in (reference, bundle)]
    assert metas[0].weights_sha256 == metas[1].weights_sha256
    assert [r["epoch"] for r in metas[1].metrics["history"]] == [1, 2, 3]
    assert without_timings(metas[0].metrics) == without_timings(metas[1].metrics)
    cards = [(b / CARD_FILE).read_text(encoding="utf-8") for b in (reference, bundle)]
    assert cards[0] == cards[1]


@needs_data()
def test_with_a_checkpoint_every_two_epochs_a_resume_redoes_the_epochs_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    epochs = Epochs(monkeypatch)
    every = "      checkpoint_every: 2\n      validate_every: 3\n"
    reference = tmp_path / "reference" / "tiny.geoseg"
    run_workflow(tiny_training(tmp_path / "ref.yaml", reference, 4, every), show_progress=False)
    bundle = tmp_path / "resumed" / "tiny.geoseg"
    workflow = tiny_training(tmp_path / "resumed.yaml", bundle, 4, every)
    parts = bundle.parent / ".tiny.geoseg.work" / "parts"
    epochs.next_run(kill_at=4)
    with pytest.raises(Killed):
        run_workflow(workflow, show_progress=False)
    assert checkpoint(parts / LAST)["epoch"] == 2, "epoch 3 left no checkpoint"
    epochs.next_run()
    run_workflow(workflow, show_progress=False, resume=True)
    assert epochs.started == 2, "epochs 3 and 4 trained again"
    metas = [load_meta(b) for b in (reference, bundle)]
    assert metas[0].weights_sha256 == metas[1].weights_sha256
    assert [r["epoch"] for r in metas[1].metrics["history"]] == [3, 4], "validated epochs"
    assert without_timings(metas[0].metrics) == without_timings(metas[1].metrics)
    best = checkpoint(checkpoint_folder(bundle) / "best.pt")
    assert best["epoch"] == metas[1].metrics["best_epoch"], "best.pt: the kept epoch"


@needs_data()
def test_resume_refuses_a_changed_config_and_a_fresh_run_discards_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    epochs = Epochs(monkeypatch)
    bundle = tmp_path / "tiny.geoseg"
    workflow = tiny_training(tmp_path / "train.yaml", bundle, 2)
    last = tmp_path / ".tiny.geoseg.work" / "parts" / LAST
    epochs.next_run(kill_at=2)
    with pytest.raises(Killed):
        run_workflow(workflow, show_progress=False)
    assert checkpoint(last)["epoch"] == 1

    changed = {"steps.0.train.learning_rate": "0.001"}
    with pytest.raises(ResumeError, match=r"configuration changed since it started"):
        run_workflow(workflow, show_progress=False, resume=True, overrides=changed)
    assert checkpoint(last)["epoch"] == 1, "a refused resume touches nothing"

    epochs.next_run(kill_at=1)
    with caplog.at_level(logging.WARNING), pytest.raises(Killed):
        run_workflow(workflow, show_progress=False)  # no --resume: starts again from epoch 1
    assert "discarding the unfinished run" in caplog.text
    assert not last.exists(), "the stale checkpoint went with the work folder"


def test_a_failed_checkpoint_write_leaves_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / LAST
    synced: list[int] = []
    fsync = os.fsync

    def recorded_fsync(fd: int) -> None:
        synced.append(fd)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    save_checkpoint(path, {"epoch": 1, "state_dict": {"w": torch.ones(3)}})
    assert synced, "the data reaches the disk before the rename"

    def disk_full(content: Any, handle: Any) -> None:
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"epoch": 2, "state_dict": {"w": torch.zeros(3)}})
    assert list(tmp_path.iterdir()) == [path], "no partial file, at the final name or beside it"
    assert checkpoint(path)["epoch"] == 1


def test_an_unreadable_checkpoint_is_a_training_error(tmp_path: Path) -> None:
    (tmp_path / LAST).write_bytes(b"not a checkpoint")
    network = torch.nn.Linear(2, 2)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    with pytest.raises(TrainingError, match=r"cannot resume training from .*last\.pt.*without"):
        Progress.resume(tmp_path, network, {"optimiser": optimiser}, rng)
    assert Progress.resume(tmp_path / "none", network, {}, rng) == Progress(), "none: epoch 1"


@pytest.mark.slow
@needs_data()
def test_a_training_stopped_by_sigterm_says_so_and_its_resume_command_finishes_it(
    tmp_path: Path,
) -> None:
    import shlex
    import signal
    import subprocess
    import sys
    import time

    epochs = 40
    reference = tmp_path / "reference" / "tiny.geoseg"
    run_workflow(tiny_training(tmp_path / "reference.yaml", reference, epochs), show_progress=False)
    bundle = tmp_path / "resumed" / "tiny.geoseg"
    workflow = tiny_training(tmp_path / "resumed.yaml", bundle, epochs)
    geoseg = [sys.executable, "-m", "geoseg.cli.main"]
    process = subprocess.Popen(
        [*geoseg, "-q", "run", str(workflow)], stderr=subprocess.PIPE, text=True
    )
    last = bundle.parent / ".tiny.geoseg.work" / "parts" / LAST
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not last.exists():
        time.sleep(0.05)
    assert process.poll() is None, "the training finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    message = " ".join(stderr.split())
    assert process.returncode == 143 and "Traceback" not in stderr, stderr
    assert "steps.0.train was interrupted; the checkpoint after epoch" in message
    assert f"of {epochs} is kept in" in message
    assert not bundle.exists(), "nothing at the final path"
    command = shlex.split(message.split("Continue with: ")[1])
    resumed = subprocess.run([*geoseg, *command[1:]], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    weights = [checkpoint(bundle_paths(b)[1]) for b in (reference, bundle)]
    assert_same_tensors(weights[0], weights[1], "bundle weights")
    metas = [load_meta(b) for b in (reference, bundle)]
    assert without_timings(metas[0].metrics) == without_timings(metas[1].metrics)


@needs_data()
def test_a_train_fingerprint_names_a_changed_nodata_and_ignores_prose(tmp_path: Path) -> None:
    from geoseg.executor import ExecutorSpec
    from geoseg.workflow.plan import plan_workflow

    catalog_text = (REPO / "data_catalog.yaml").read_text(encoding="utf-8")
    original = catalog_text.replace("${GEOSEG_DATA}", str(DATA)).replace(
        "file: samples/", f"file: {REPO / 'samples'}/"
    )

    def fingerprint(catalog_text: str) -> Any:
        catalog = tmp_path / "catalog.yaml"
        catalog.write_text(catalog_text, encoding="utf-8")
        path = tiny_training(tmp_path / "wf.yaml", tmp_path / "tiny.geoseg", 2)
        path.write_text(path.read_text().replace(str(REPO / "data_catalog.yaml"), str(catalog)))
        return plan_workflow(path).steps[0].fingerprint(ExecutorSpec())

    before = fingerprint(original)
    prose = original.replace("Raleigh NC", "Raleigh, North Carolina").replace(
        "licence: CC BY-SA 3.0 (GRASS GIS North Carolina sample data)\n",
        "licence: CC BY-SA 3.0\n",
    )
    assert prose != original and fingerprint(prose) == before
    nodata = original.replace('{name: red,   file: "', '{name: red, nodata: 0, file: "', 1)
    assert before.differences(fingerprint(nodata)) == ["the training sources' catalog definitions"]
