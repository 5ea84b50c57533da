"""Running independent chunk tasks on a pool or a Dask cluster, streaming results, with progress.

Every stage that works chunk by chunk (inference, vectorising) hands a picklable function and a
list of picklable items to :meth:`Executor.imap`, which yields results in item order while only a
bounded window of tasks is in flight, so results never pile up in the client. Executors:

- ``threads`` (default): a thread pool in this process;
- ``processes``: a pool of spawned processes;
- ``distributed``: a ``dask.distributed`` cluster, either at ``address`` or a local cluster of
  ``workers`` processes started for the run. Tasks lost with a dying worker are recomputed
  elsewhere; a task whose workers keep dying fails the run with a message naming it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

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


#: ``GEOSEG_PROGRESS=lines``: progress as plain lines on stderr instead of a live bar.
PROGRESS_ENV = "GEOSEG_PROGRESS"


class LineProgress(Progress):
    """Progress as lines on stderr, ``progress: DESCRIPTION: DONE/TOTAL``, one per percent.

    For programs that run geoseg and show its progress themselves (the QGIS plugin).
    """

    def __init__(self) -> None:
        super().__init__(disable=True)  # tasks are tracked; nothing is drawn
        self._shown: dict[TaskID, int] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        """Update a task, then print it if its percentage moved."""
        super().update(task_id, **kwargs)
        self._emit(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        """Advance a task, then print it if its percentage moved."""
        super().advance(task_id, advance)
        self._emit(task_id)

    def _emit(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        if not task.total:
            return
        percent = int(100 * task.completed / task.total)
        if self._shown.get(task_id) != percent:
            self._shown[task_id] = percent
            done, total = int(task.completed), int(task.total)
            print(f"progress: {task.description}: {done}/{total}", file=sys.stderr, flush=True)


def progress_bar(enabled: bool) -> Progress:
    """The progress bar style used for chunks, epochs and batches."""
    if enabled and os.environ.get(PROGRESS_ENV) == "lines":
        return LineProgress()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )


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
        """Yield ``fn(item)`` for every item, in item order, computing a bounded window ahead.

        The window slides: a new task starts whenever one is collected, so workers never wait
        for the slowest task of a batch.
        """
        if self.client is None and self.pool is None:  # no run-wide pool: one for this call
            with _pool(self.spec) as pool:
                yield from Executor(self.spec, self.show_progress, pool=pool).imap(
                    fn, items, label, describe
                )
            return
        submit: Callable[[ItemT], Any]
        died: tuple[type[BaseException], ...]
        if self.client is not None:
            from dask.distributed import KilledWorker

            def submit(item: ItemT) -> Any:
                return self.client.submit(fn, item, pure=False, retries=self.spec.retries)

            died = (KilledWorker,)
        else:

            def submit(item: ItemT) -> Any:
                return self.pool.submit(fn, item)

            died = (BrokenProcessPool,)
        with progress_bar(self.show_progress) as progress:
            task = progress.add_task(label, total=len(items))
            pending: deque[tuple[ItemT, Any]] = deque()
            queue = iter(items)

            def start_next() -> None:
                for item in queue:
                    future = submit(item)
                    future.add_done_callback(lambda _: progress.advance(task))
                    pending.append((item, future))
                    return

            for _ in range(self.window):
                start_next()
            try:
                while pending:
                    item, future = pending.popleft()
                    try:
                        result = future.result()
                    except died as exc:
                        raise ChunkFailedError(
                            f"{label}: a worker process died while running {describe(item)} "
                            f"({type(exc).__name__}: {exc}); check worker memory and logs, or "
                            "run with fewer workers or smaller chunks"
                        ) from exc
                    start_next()
                    yield result
            finally:
                for _, future in pending:
                    future.cancel()

    def map(
        self,
        fn: Callable[[ItemT], ResultT],
        items: Sequence[ItemT],
        label: str,
        describe: Callable[[ItemT], str] = str,
    ) -> list[ResultT]:
        """``list(imap(...))``: for results that are small (summaries, not pixels or polygons)."""
        return list(self.imap(fn, items, label, describe))


def _pool(spec: ExecutorSpec) -> ThreadPoolExecutor | ProcessPoolExecutor:
    """A thread or process pool for ``spec`` (processes 'spawn', clean of the parent's threads)."""
    workers = max(1, spec.workers)
    if spec.kind == "threads":
        return ThreadPoolExecutor(max_workers=workers)
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


@contextmanager
def open_executor(spec: ExecutorSpec, show_progress: bool = True) -> Iterator[Executor]:
    """An :class:`Executor` for a whole run (a distributed client is opened once, then closed)."""
    if spec.kind in ("threads", "processes"):
        # One pool for the whole run, shut down on the way out (also on an error or Ctrl-C):
        # tasks already running finish and the queued ones are cancelled before the caller
        # releases its locks, so no task of this run writes after it has ended. Processes
        # 'spawn' to stay clean of the parent's threads (torch's OpenMP pool, Dask's).
        pool = _pool(spec)
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
