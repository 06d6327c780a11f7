"""Reading and mapping an OpenClaw database page by page, beside the import's writes.

`import_openclaw` writes pages on its own thread; a page source reads and maps the next page
meanwhile, in one of two ways:

- `ThreadPages` (every pass of ordinary size, e.g. the live mirror's): a second thread,
  given the next page to read only once the current page's inserts are done
  (`prefetch()`, called just before the commit). Beside the inserts, whose every row takes
  the GIL back, a busy Python thread would make the writer wait up to the 5 ms switch
  interval per row; during the commit (one long call that releases the GIL) it costs the
  writer nothing.
- `ProcessPages` (a bulk load, `ledger.deferred_indexes.DEFER_MIN_ROWS` rows or more): a
  child process that reads and maps every page while the parent writes, sending each page
  through a pipe (which holds about one page: the child runs at most a page or two ahead).
  Reading and mapping is pure Python, as much work as the writes: in one process they take
  turns on the GIL, in two they run side by side. The child is forked when the parent runs
  no other thread (the CLI), else spawned (`serve`). It opens the OpenClaw database itself,
  read-only, and touches nothing else of the parent's.

Both yield `MappedPage`s in the source's order. A page the reader cannot read raises
`OpenClawSourceError` in the parent, as reading on the parent's own thread would.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import operator
import threading
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any

from ledger.importers.bulk import sqlite_datetime_ms
from ledger.importers.openclaw_source import (
    MappedTask,
    OpenClawSource,
    OpenClawSourceError,
    Packed,
    RowRejected,
    dump_detail,
    map_row,
)
from ledger.importers.report import SkippedRow
from ledger.schema import reply_columns

#: The reading process's first page (rows).
FIRST_PAGE = 500


@dataclass(frozen=True, slots=True)
class MapOptions:
    """What mapping a row depends on besides the row."""

    tenant: str
    notify_from_tasktrail: bool
    tenant_platform: str | None
    tenant_space: str | None
    #: Render the times as SQLite's DATETIME text too (the ledger is SQLite).
    sqlite_times: bool = False


@dataclass(slots=True)
class MappedPage:
    tasks: list[MappedTask]
    rows_read: int
    skipped: list[SkippedRow] = field(default_factory=list)
    #: The page's highest `last_event_at` (epoch ms); None when no row has one.
    high_ms: int | None = None
    #: Columns NULL in every task of the page (known for a page from the reading process).
    null_columns: frozenset[str] = frozenset()


_reply_columns = functools.lru_cache(maxsize=1024)(reply_columns)


def map_page(rows: Sequence[Any], options: MapOptions) -> MappedPage:
    """Map one page of `task_runs` rows; rows OpenClaw's reader would reject are counted
    with their reason, not mapped."""
    tasks: list[MappedTask] = []
    skipped: list[SkippedRow] = []
    high: int | None = None
    for row in rows:
        at = row["last_event_at"]
        if type(at) is int and (high is None or at > high):
            high = at
        try:
            task = map_row(
                row,
                tenant=options.tenant,
                notify_from_tasktrail=options.notify_from_tasktrail,
                tenant_platform=options.tenant_platform,
                tenant_space=options.tenant_space,
                datetimes=False,  # filled where needed (the importer's _insert, write_page)
            )
        except RowRejected as rejected:
            ref = row["task_id"] if isinstance(row["task_id"], str) else None
            skipped.append(SkippedRow(ref, str(rejected)))
            continue
        # serialized here, off the writing thread; the importer redoes it if it moves a
        # run id into the detail
        values = task.values
        values["origin_detail"] = dump_detail(task.get_detail())
        # the columns the table derives from reply_to, given rather than left to the bulk
        # insert to compute per row (the same function computes them)
        values.update(_reply_columns(values["reply_to"]))
        if options.sqlite_times:
            task.sqlite_times = tuple(map(sqlite_datetime_ms, task.times_ms))
        tasks.append(task)
    return MappedPage(tasks, len(rows), skipped, high)


class ThreadPages:
    """Pages read and mapped on a second thread, one page ahead when asked (`prefetch`)."""

    def __init__(
        self, source: OpenClawSource, since_ms: int | None, page_size: int, options: MapOptions
    ) -> None:
        self._rows = source.pages(since_ms, page_size)
        self._options = options
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="openclaw-read")
        self._ahead: Future[MappedPage | None] | None = None

    def _read(self) -> MappedPage | None:
        rows = next(self._rows, None)
        return None if rows is None else map_page(rows, self._options)

    def prefetch(self) -> None:
        if self._ahead is None:
            self._ahead = self._thread.submit(self._read)

    def __iter__(self) -> Iterator[MappedPage]:
        while True:
            self.prefetch()
            assert self._ahead is not None
            page = self._ahead.result()
            self._ahead = None
            if page is None:
                return
            yield page

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)


def _serve_pages(
    path: str, since_ms: int | None, page_size: int, options: MapOptions, out: Pipe
) -> None:
    """The child process: every page, mapped, into `out`; then None (the end), or the
    failure as ("source", problem) or ("error", traceback text)."""
    gc.disable()  # this process only allocates and frees pages: reference counting does
    try:
        message: tuple[str, str] | None = None
        try:
            with OpenClawSource(path) as source:
                # a small first page: the parent waits for it with nothing else to do
                for rows in source.pages(since_ms, page_size, first_size=FIRST_PAGE):
                    out.send(_pack(map_page(rows, options)))
        except OpenClawSourceError as error:
            message = ("source", error.problem)
        except BaseException:  # reported to the parent, which raises it
            message = ("error", traceback.format_exc())
        out.send(message)
    except OSError:  # the parent stopped reading (it closed the pipe): nobody to tell
        pass
    finally:
        out.close()


#: A page as the pipe carries it: the column names once, then per task a tuple of its
#: values and the rest of the task; plain tuples pickle several times faster than dicts
#: and slotted dataclasses, and the detail travels once, as the JSON text in the values.
#: Last, the columns NULL in every task.
_Wire = tuple[
    tuple[str, ...], list[tuple[Any, ...]], int, list[SkippedRow], "int | None", list[str]
]


def _pack(page: MappedPage) -> _Wire:
    if not page.tasks:
        return (), [], page.rows_read, page.skipped, page.high_ms, []
    names = tuple(page.tasks[0].values)
    values_of = operator.itemgetter(*names)  # every task's values have these keys (map_row)
    tasks = [
        (
            t.origin_ref,
            values_of(t.values),
            t.parent_ref,
            t.source_status,
            t.source_runtime,
            t.last_event_ms,
            t.times_ms,
            t.sqlite_times,
        )
        for t in page.tasks
    ]
    first = tasks[0][1]
    nulls = [
        name
        for i, name in enumerate(names)
        if first[i] is None and all(task[1][i] is None for task in tasks)
    ]
    return names, tasks, page.rows_read, page.skipped, page.high_ms, nulls


def _unpack(wire: _Wire) -> MappedPage:
    names, tasks, rows_read, skipped, high, nulls = wire
    return MappedPage(
        [
            MappedTask(
                ref,
                None,  # built from `packed` when the importer needs it
                None,
                parent,
                status,
                runtime,
                last,
                times,
                rendered,
                Packed(names, values),
            )
            for ref, values, parent, status, runtime, last, times, rendered in tasks
        ],
        rows_read,
        skipped,
        high,
        frozenset(nulls),
    )


class ProcessPages:
    """Pages read and mapped by a child process, which keeps about a page ahead."""

    def __init__(
        self, source: OpenClawSource, since_ms: int | None, page_size: int, options: MapOptions
    ) -> None:
        self._path = str(source.path)
        # fork: instant, and safe while no other thread holds a lock the child could need
        context = (
            multiprocessing.get_context("fork")
            if threading.active_count() == 1
            else multiprocessing.get_context("spawn")
        )
        self._pipe, child_end = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve_pages,
            args=(self._path, since_ms, page_size, options, child_end),
            name="openclaw-read",
            daemon=True,
        )
        self._process.start()
        child_end.close()  # the parent's copy: the pipe reports EOF once the child's closes

    def prefetch(self) -> None:
        """Nothing to ask: the child reads ahead by itself."""

    def __iter__(self) -> Iterator[MappedPage]:
        while True:
            try:
                message = self._pipe.recv()
            except EOFError:
                code = self._process.exitcode
                raise OpenClawSourceError(
                    self._path, f"the reading process ended early (exit code {code})"
                ) from None
            if message is None:
                return
            if len(message) == 2:  # ("source" | "error", text)
                kind, text = message
                if kind == "source":
                    raise OpenClawSourceError(self._path, text)
                raise RuntimeError(f"the OpenClaw reading process failed:\n{text}")
            yield _unpack(message)

    def close(self) -> None:
        self._pipe.close()
        self._process.join(timeout=5)
        if self._process.is_alive():  # the parent stopped early: the child waits to send
            self._process.terminate()
            self._process.join()
        self._process.close()
