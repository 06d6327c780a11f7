"""`Ledger.track()`: a context manager that runs a block of work as a task."""

from __future__ import annotations

import ctypes
import logging
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ledger.exceptions import CancelRequested, IllegalTransition, LedgerError
from ledger.records import TaskRecord
from ledger.status import Status

if TYPE_CHECKING:
    from ledger.ledger import Ledger

log = logging.getLogger(__name__)


class TrackedTask:
    """The handle `with ledger.track(...) as task:` yields.

    A daemon thread heartbeats every `heartbeat_every` seconds (a third of the lease by
    default). When an operator cancels the task, the next heartbeat notices: with
    `interrupt=True` it raises `CancelRequested` inside the thread that entered the block;
    the block's own calls to `heartbeat()`/`progress()`/`check_cancel()` raise it too.
    On exit the task is finished: succeeded, failed with the exception text, or cancelled.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        runtime: str,
        label: str,
        heartbeat_every: float | None,
        interrupt: bool,
        create_options: dict[str, Any],
    ) -> None:
        self._ledger = ledger
        self._runtime = runtime
        self._label = label
        self._create_options = create_options
        self._interrupt = interrupt
        self._every = heartbeat_every
        self._stop = threading.Event()
        self._cancel: CancelRequested | None = None
        self._owner: int | None = None
        self._thread: threading.Thread | None = None
        self._interrupted = False
        self.summary: str | None = None
        self.record: TaskRecord | None = None

    @property
    def task_id(self) -> str:
        assert self.record is not None, "the task exists once the with-block is entered"
        return self.record.task_id

    # -- inside the block -------------------------------------------------------------------

    def check_cancel(self) -> None:
        if self._cancel is not None:
            raise self._cancel

    def heartbeat(self) -> TaskRecord:
        self.check_cancel()
        self.record = self._ledger.heartbeat(self.task_id)
        self._note_cancel(self.record)
        self.check_cancel()
        return self.record

    def progress(self, text: str) -> TaskRecord:
        self.check_cancel()
        self.record = self._ledger.progress(self.task_id, text)
        self._note_cancel(self.record)
        self.check_cancel()
        return self.record

    def add_artifact(self, **kwargs: Any) -> TaskRecord:
        self.record = self._ledger.add_artifact(self.task_id, **kwargs)
        return self.record

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> TrackedTask:
        options = dict(self._create_options)
        queued = options.pop("queued", False)
        record = self._ledger.create(
            runtime=self._runtime, label=self._label, runner="track", queued=True, **options
        )
        if record.status is Status.QUEUED and not queued:
            record = self._ledger.start(record.task_id, runner="track")
        self.record = record
        self._owner = threading.get_ident()
        every = self._every
        if every is None:
            lease = (
                record.lease_seconds
                or self._ledger.config.lease_for(record.runtime).total_seconds()
            )
            every = max(0.05, lease / 3)
        self._thread = threading.Thread(
            target=self._beat, args=(every,), name=f"tasktrail-track-{record.task_id}", daemon=True
        )
        self._thread.start()
        return self

    def _note_cancel(self, record: TaskRecord) -> None:
        if record.cancel_requested_at is not None and self._cancel is None:
            self._cancel = CancelRequested(record.task_id, record.cancel_reason)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                record = self._ledger.heartbeat(self.task_id)
            except IllegalTransition:
                return  # ended elsewhere (cancelled at once, marked lost): nothing to renew
            except LedgerError as error:
                log.warning("heartbeat for %s failed: %s", self.task_id, error)
                continue
            self._note_cancel(record)
            if self._cancel is not None:
                if self._interrupt and self._owner is not None and not self._stop.is_set():
                    self._interrupted = True
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(
                        ctypes.c_ulong(self._owner), ctypes.py_object(CancelRequested)
                    )
                return

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._interrupted and exc_type is None:
            # The async exception may still be pending for this thread: clear it.
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner or 0), None)
        try:
            if exc_type is not None and issubclass(exc_type, CancelRequested):
                reason = self._cancel.reason if self._cancel else None
                self._finish(
                    Status.CANCELLED,
                    summary="stopped after a cancel request" + (f": {reason}" if reason else ""),
                )
                return True  # the cancel was honoured; the caller's block simply stops
            if exc is not None:
                text = f"{type(exc).__name__}: {exc}"[:20_000]
                self._finish(Status.FAILED, error=text)
                return False
            self._finish(Status.SUCCEEDED, summary=self.summary)
            return False
        except IllegalTransition as error:
            log.warning("could not finish tracked task: %s", error)
            return False

    def _finish(
        self, status: Status, *, summary: str | None = None, error: str | None = None
    ) -> None:
        self.record = self._ledger.finish(
            self.task_id, status=status.value, summary=summary, error=error
        )
