"""Running independent chunk tasks on Dask, with a progress bar.

Every stage that works chunk by chunk (inference, vectorising) hands a picklable function and a
list of picklable items to :func:`map_tasks`. The executor is Dask's threaded scheduler by
default, or its process pool, or a ``dask.distributed`` cluster (an address, or a local one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from dask.base import compute
from dask.callbacks import Callback
from dask.delayed import delayed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

ExecutorKind = Literal["threads", "processes", "distributed"]


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """Which scheduler runs chunk tasks, and with how many workers."""

    kind: ExecutorKind = "threads"
    workers: int = 2
    address: str | None = None


def progress_bar(enabled: bool) -> Progress:
    """The progress bar style used for chunks, epochs and batches."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


class _Ticker(Callback):
    """Advances a progress task whenever one of our named tasks finishes."""

    def __init__(self, progress: Progress, task: Any, prefix: str) -> None:
        super().__init__()
        self.progress, self.task, self.prefix = progress, task, prefix

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith(self.prefix):
            self.progress.advance(self.task)


def map_tasks(
    fn: Callable[[ItemT], ResultT],
    items: Sequence[ItemT],
    executor: ExecutorSpec,
    label: str,
    show_progress: bool = True,
) -> list[ResultT]:
    """``[fn(item) for item in items]`` computed on Dask; results in item order."""
    prefix = f"geoseg-{label.replace(' ', '-')}-"
    tasks = [
        delayed(fn, pure=False)(item, dask_key_name=f"{prefix}{i}") for i, item in enumerate(items)
    ]
    with progress_bar(show_progress) as progress:
        task = progress.add_task(label, total=len(items))
        if executor.kind == "distributed":
            return _run_distributed(tasks, executor, progress, task)
        with _Ticker(progress, task, prefix):
            results = compute(*tasks, scheduler=executor.kind, num_workers=max(1, executor.workers))
    return list(results)


def _run_distributed(
    tasks: list[Any], executor: ExecutorSpec, progress: Progress, task: Any
) -> list[Any]:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if executor.address:
        client = Client(executor.address)
    else:
        cluster = LocalCluster(n_workers=executor.workers, threads_per_worker=1, processes=True)
        client = Client(cluster)
    try:
        futures = client.compute(tasks)
        for _ in as_completed(futures):
            progress.advance(task)
        return list(client.gather(futures))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
