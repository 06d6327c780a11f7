"""Where the HTTP API's ledger writes run.

SQLite takes one writer at a time, so on SQLite the API hands its writes to one thread that
runs whatever has queued up as one batch: one transaction, each write in its own savepoint
(`Ledger.batch()`), one commit for all. A write that fails undoes only its own changes and
answers only its own request; if the commit fails, every request of the batch gets that
error and none of their changes is kept. A request is answered only after the commit that
made its change durable. With several producers posting at once this saves a commit, a
BEGIN and a connection checkout per event, and the thread hop is to one thread instead of
a pool whose threads would only queue for the lock (bench/api.py measures it).

On PostgreSQL, writes run in parallel on the thread pool, each in its own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import to_thread

from ledger import Ledger

T = TypeVar("T")
log = logging.getLogger("tasktrail.api")

#: Most writes committed together; a batch also ends when the queue is empty.
MAX_BATCH = 64


class _Job:
    __slots__ = ("args", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
    ) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future


class Writer:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.batching = ledger.engine.dialect.name == "sqlite"
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` with the ledger's write rules; its result, or its exception."""
        if not self.batching:
            return await to_thread.run_sync(fn, *args)
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, args, loop, future))
        return await future

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued writes, then stop the thread."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._loop, name="api-writer", daemon=True)
                thread.start()
                self._thread = thread

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._run_batch(jobs)
            if stop:
                return

    def _run_batch(self, jobs: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.ledger.batch():
                for job in jobs:
                    try:
                        outcomes.append((True, job.fn(*job.args)))
                    except Exception as error:  # answered to its own request
                        outcomes.append((False, error))
        except Exception as error:  # BEGIN or COMMIT failed: nothing of the batch was kept
            log.warning("API write batch of %d failed: %s", len(jobs), error)
            outcomes = [(False, error)] * len(jobs)
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            with contextlib.suppress(RuntimeError):  # the loop has closed (shutdown)
                job.loop.call_soon_threadsafe(_settle, job.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the request was cancelled (client went away)
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
