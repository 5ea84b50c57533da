"""Running independent chunk tasks on Dask, streaming their results, with a progress bar.

Every stage that works chunk by chunk (inference, vectorising) hands a picklable function and a
list of picklable items to :meth:`Executor.imap`, which yields results in item order while only a
bounded window of tasks is in flight, so results never pile up in the client. Executors:

- ``threads`` (default): Dask's threaded scheduler in this process;
- ``processes``: Dask's process-pool scheduler;
- ``distributed``: a ``dask.distributed`` cluster, either at ``address`` or a local cluster of
  ``workers`` processes started for the run. Tasks lost with a dying worker are recomputed
  elsewhere; a task whose workers keep dying fails the run with a message naming it.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from dask.base import compute
from dask.callbacks import Callback
from dask.delayed import delayed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from geoseg.errors import ChunkFailedError

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

ExecutorKind = Literal["threads", "processes", "distributed"]

#: Tasks in flight per worker: enough to keep workers busy, few enough to bound memory.
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """Which scheduler runs chunk tasks, with how many workers, and how often to retry."""

    kind: ExecutorKind = "threads"
    workers: int = 2
    address: str | None = None
    retries: int = 2


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


class Executor:
    """Runs ``fn`` over items on the configured Dask scheduler (see the module docstring)."""

    def __init__(
        self, spec: ExecutorSpec, show_progress: bool, client: Any = None, pool: Any = None
    ) -> None:
        self.spec = spec
        self.show_progress = show_progress
        self.client = client
        self.pool = pool

    @property
    def window(self) -> int:
        """How many tasks may be in flight at once."""
        return max(1, self.spec.workers) * IN_FLIGHT_PER_WORKER

    def imap(
        self,
        fn: Callable[[ItemT], ResultT],
        items: Sequence[ItemT],
        label: str,
        describe: Callable[[ItemT], str] = str,
    ) -> Iterator[ResultT]:
        """Yield ``fn(item)`` for every item, in item order, computing a bounded window ahead."""
        with progress_bar(self.show_progress) as progress:
            task = progress.add_task(label, total=len(items))
            if self.client is not None:
                yield from self._imap_distributed(fn, items, label, describe, progress, task)
                return
            prefix = f"geoseg-{label.replace(' ', '-')}-"
            for start in range(0, len(items), self.window):
                window = items[start : start + self.window]
                batch = [
                    delayed(fn, pure=False)(item, dask_key_name=f"{prefix}{start + i}")
                    for i, item in enumerate(window)
                ]
                try:
                    with _Ticker(progress, task, prefix):
                        results = compute(
                            *batch,
                            scheduler=self.spec.kind,
                            num_workers=max(1, self.spec.workers),
                            pool=self.pool,
                        )
                except BrokenProcessPool as exc:
                    names = ", ".join(describe(item) for item in window)
                    raise ChunkFailedError(
                        f"{label}: a worker process died while running one of: {names}. "
                        "Check memory (or run with fewer workers / smaller chunks)"
                    ) from exc
                yield from results

    def map(
        self,
        fn: Callable[[ItemT], ResultT],
        items: Sequence[ItemT],
        label: str,
        describe: Callable[[ItemT], str] = str,
    ) -> list[ResultT]:
        """``list(imap(...))``: for results that are small (summaries, not pixels or polygons)."""
        return list(self.imap(fn, items, label, describe))

    def _imap_distributed(
        self,
        fn: Callable[[ItemT], ResultT],
        items: Sequence[ItemT],
        label: str,
        describe: Callable[[ItemT], str],
        progress: Progress,
        task: Any,
    ) -> Iterator[ResultT]:
        from dask.distributed import KilledWorker

        pending: deque[tuple[ItemT, Any]] = deque()
        queue = iter(items)

        def submit() -> None:
            for item in queue:
                future = self.client.submit(fn, item, pure=False, retries=self.spec.retries)
                pending.append((item, future))
                return

        for _ in range(self.window):
            submit()
        try:
            while pending:
                item, future = pending.popleft()
                try:
                    result = future.result()
                except KilledWorker as exc:
                    raise ChunkFailedError(
                        f"{label}: {describe(item)} failed: the workers running it died "
                        f"repeatedly ({exc}); check worker memory and logs"
                    ) from exc
                progress.advance(task)
                submit()
                yield result
        finally:
            for _, future in pending:
                future.cancel()


@contextmanager
def open_executor(spec: ExecutorSpec, show_progress: bool = True) -> Iterator[Executor]:
    """An :class:`Executor` for a whole run (a distributed client is opened once, then closed)."""
    if spec.kind in ("threads", "processes"):
        # One pool for the whole run, shut down on the way out (also on an error or Ctrl-C):
        # tasks already running finish and the queued ones are cancelled before the caller
        # releases its locks, so no task of this run writes after it has ended. Processes
        # 'spawn' to stay clean of the parent's threads (torch's OpenMP pool, Dask's).
        workers = max(1, spec.workers)
        pool: ThreadPoolExecutor | ProcessPoolExecutor = (
            ThreadPoolExecutor(max_workers=workers)
            if spec.kind == "threads"
            else ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )
        )
        try:
            yield Executor(spec, show_progress, pool=pool)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    from dask.distributed import Client, LocalCluster

    cluster = None
    if spec.address:
        client = Client(spec.address)
    else:
        cluster = LocalCluster(
            n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    log.info("dask.distributed: %s", client)
    try:
        yield Executor(spec, show_progress, client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
