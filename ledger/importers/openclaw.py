"""Mirror an OpenClaw task ledger into tasktrail: a one-off import and the live mirror.

Each pass reads the `task_runs` rows whose `last_event_at` is at or after the watermark kept
in `ledger_state` (minus a small overlap, for rows a slow OpenClaw transaction committed
late), page by page; every page is one tasktrail write transaction:

- rows not yet mirrored are inserted with Core `insert()` executemany, each with its
  `created` event (a task and its event always commit together);
- mirrored rows that differ go through `ledger.transitions.transition()` when the status
  moved (so terminal stays sticky: a refused move is recorded as `late_update_ignored`, and a
  `lost` task that OpenClaw later finished is `recovered`), else through `bump()` with a
  `mirrored` event; rows that match are not written at all;
- rows OpenClaw's own reader would reject are skipped, each with a reason.

Pages are written in order by the calling thread while the next is read and mapped beside it
(`ledger.importers.openclaw_pages`: a second thread, or for a bulk load a child process).

Rows OpenClaw prunes stay in tasktrail until its own retention removes them.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import operator
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    select,
    text,
    update,
)

from ledger import db
from ledger.config import LedgerConfig
from ledger.deferred_indexes import (
    BUILD_CACHE_KIB,
    DEFER_MIN_ROWS,
    indexes_deferred,
    restore_indexes,
)
from ledger.ids import new_task_ids
from ledger.importers.bulk import (
    bulk_cache,
    insert_many,
    insert_tuples,
    sqlite_datetime,
    sqlite_datetime_ms,
)
from ledger.importers.openclaw_pages import MapOptions, ProcessPages, ThreadPages
from ledger.importers.openclaw_source import (
    DELIVERY_MAP,
    EPOCH,
    ORIGIN,
    TIME_COLUMNS,
    MappedTask,
    OpenClawSource,
    OpenClawSourceError,
    dump_detail,
    resolve_openclaw_db,
)
from ledger.importers.report import (
    ImportReport,
    Tally,
    load_watermark,
    store_watermark,
    watermark_key,
)
from ledger.lookup import fetch_row
from ledger.schema import events_table, state_table, tasks_table
from ledger.status import ENDED, EventKind, Status, is_allowed
from ledger.text import check_text
from ledger.transitions import bump, record_refusal, transition

if TYPE_CHECKING:
    from ledger.ledger import Ledger

log = logging.getLogger(__name__)
T = tasks_table.c
S = state_table.c

#: Rows whose `last_event_at` is this close below the watermark are read again (and
#: compared; unchanged ones are not written), so a row committed late by a slow OpenClaw
#: transaction, or changed without a new `last_event_at` (a delivery status settled a few
#: minutes after the task ended), is not missed.
OVERLAP_MS = 600_000
PAGE_SIZE = 5000
#: PostgreSQL advisory lock held by an import transaction, so two importers (the `serve`
#: mirror and a manual `tasktrail import`) never insert the same OpenClaw task twice.
IMPORT_LOCK_KEY = 0x7A5C_0C1A
ACTOR = "openclaw"
_CAS_ATTEMPTS = 20

#: Fields copied from OpenClaw on every change (None included).
_SYNCED = (
    "label",
    "task",
    "task_kind",
    "source_id",
    "child_session_key",
    "requester_session_key",
    "progress_summary",
    "terminal_summary",
    "error",
    "origin_detail",
)
#: Fields copied only when OpenClaw has a value (tasktrail may have stamped its own).
_SYNCED_WHEN_SET = ("started_at", "ended_at", "cleanup_after", "reply_to", "parent_task_id")


# These lookups filter on origin_ref / run_id alone in SQL (their indexes are the selective
# ones; given a tenant condition too, SQLite's and PostgreSQL's planners pick a tenant index
# on a freshly grown table and scan the whole tenant per page) and check the tenant here.


#: The indexes an import pass reads (the lookups above, and the parent links): a large
#: load keeps these and sets the rest aside.
IMPORT_READS = frozenset({"ix_tasks_origin_ref", "ix_tasks_run_id", "ix_tasks_parent"})


def _mirror_rows(conn: Connection, tenant: str, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if not refs:
        return found
    for row in conn.execute(
        select(tasks_table).where(db.one_of(conn, T.origin_ref, refs))
    ).mappings():
        if row["tenant"] == tenant and row["origin"] == ORIGIN:
            found[row["origin_ref"]] = dict(row)
    return found


def _mirror_ids(conn: Connection, tenant: str, refs: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if not refs:
        return found
    for task_id, ref, row_tenant, origin in conn.execute(
        select(T.task_id, T.origin_ref, T.tenant, T.origin).where(
            db.one_of(conn, T.origin_ref, refs)
        )
    ):
        if row_tenant == tenant and origin == ORIGIN:
            found[ref] = task_id
    return found


def _taken_run_ids(conn: Connection, tenant: str, run_ids: Sequence[str]) -> set[str]:
    taken: set[str] = set()
    if not run_ids:
        return taken
    for run_id, row_tenant in conn.execute(
        select(T.run_id, T.tenant).where(db.one_of(conn, T.run_id, run_ids))
    ):
        if row_tenant == tenant:
            taken.add(run_id)
    return taken


class _Importer:
    def __init__(
        self,
        engine: Engine,
        config: LedgerConfig,
        *,
        path: Path,
        tenant: str,
        notify_from_tasktrail: bool,
        now: datetime,
        since_ms: int | None,
        key: str,
        tally: Tally,
    ) -> None:
        self.engine = engine
        self.config = config
        self.path = path
        self.tenant = tenant
        self.notify = notify_from_tasktrail
        self.now = now
        self.since_ms = since_ms
        self.key = key
        self.tally = tally
        platform, _, space = tenant.partition(":")
        self.tenant_platform = platform if space else None
        self.tenant_space = space or None
        self.orphans = 0

    # -- one page ---------------------------------------------------------------------------

    def write_page(
        self,
        mapped: list[MappedTask],
        last_ms: int | None,
        *,
        before_commit: Callable[[], object] | None = None,
        held: Connection | None = None,
        null_columns: frozenset[str] = frozenset(),
    ) -> None:
        """Write one page in one transaction (on `held`, a writer connection outside a
        transaction, when given). `before_commit` runs once everything is written, just
        before the commit (see `import_openclaw`)."""
        with self._transaction(held) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": IMPORT_LOCK_KEY})
            existing = _mirror_rows(conn, self.tenant, [m.origin_ref for m in mapped])
            new = [m for m in mapped if m.origin_ref not in existing]
            if (
                new
                and conn.dialect.name == "sqlite"
                and not self.notify
                and all(m.fields is None and m.sqlite_times is not None for m in new)
            ):
                self._insert_packed(conn, new, null_columns)
            else:
                self._insert(conn, new)
            for task in mapped:
                row = existing.get(task.origin_ref)
                if row is not None:
                    task.fill_datetimes()
                    self._update(conn, row, task)
                self.tally.by_status[task.source_status] += 1
                self.tally.by_runtime[task.source_runtime] += 1
            if last_ms is not None:
                store_watermark(
                    conn, self.key, last_ms, path=self.path, tenant=self.tenant, now=self.now
                )
            if before_commit is not None:
                before_commit()

    @contextlib.contextmanager
    def _transaction(self, held: Connection | None) -> Iterator[Connection]:
        if held is None:
            with db.write(self.engine) as conn:
                yield conn
            return
        with held.begin():
            yield held

    # -- new rows ---------------------------------------------------------------------------

    @staticmethod
    def _move_run_id(task: MappedTask) -> None:
        """Another task in this tenant holds the task's run id (run ids are unique per tenant
        in tasktrail, not in OpenClaw): keep it in the origin detail instead."""
        detail = task.get_detail()
        detail["run_id"] = task.values["run_id"]
        task.values["run_id"] = None
        task.values["origin_detail"] = dump_detail(detail)

    def _insert(self, conn: Connection, new: list[MappedTask]) -> None:
        if not new:
            return
        for task, task_id in zip(new, new_task_ids(len(new)), strict=True):
            task.values["task_id"] = task_id
            task.values["version"] = 1
        ids = {m.origin_ref: m.values["task_id"] for m in new}
        wanted = sorted({m.parent_ref for m in new if m.parent_ref and m.parent_ref not in ids})
        parents = {**_mirror_ids(conn, self.tenant, wanted), **ids} if wanted else ids
        run_ids = sorted({m.values["run_id"] for m in new if m.values["run_id"]})
        taken = _taken_run_ids(conn, self.tenant, run_ids) if run_ids else set()
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for task in new:
            values = task.values
            run_id = values["run_id"]
            if run_id:
                if run_id in taken:
                    self._move_run_id(task)
                else:
                    taken.add(run_id)
            if task.parent_ref:
                values["parent_task_id"] = parents.get(task.parent_ref)
                if values["parent_task_id"] is None:
                    self.orphans += 1
            if self.notify and self.since_ms is None:
                # a first import announces nothing: show OpenClaw's delivery state instead
                values["delivery_status"] = DELIVERY_MAP[task.get_detail()["delivery_status"]]
            rows.append(values)
            events.append(
                {
                    "task_id": values["task_id"],
                    "seq": 1,
                    "at": self.now,
                    "kind": EventKind.CREATED.value,
                    "from_status": None,
                    "to_status": values["status"],
                    "actor": ACTOR,
                    "summary": f"mirrored from OpenClaw task {task.origin_ref}",
                }
            )
        rendered = None
        if conn.dialect.name == "sqlite":
            # SQLite's text for the times, straight from OpenClaw's epoch milliseconds
            # (rendered by the reader: map_page)
            times = [t.sqlite_times or tuple(map(sqlite_datetime_ms, t.times_ms)) for t in new]
            rendered = {name: [row[i] for row in times] for i, name in enumerate(TIME_COLUMNS)}
        if rendered is None or self.notify:
            # PostgreSQL is given datetimes, and the notices read them
            for task in new:
                task.fill_datetimes()
        with bulk_cache(conn, len(rows)):
            insert_many(conn, tasks_table, rows, rendered=rendered)
            insert_many(conn, events_table, events)
        self.tally.created += len(rows)
        if self.notify:
            self._announce_new(conn, rows)

    def _insert_packed(
        self, conn: Connection, new: list[MappedTask], null_columns: frozenset[str]
    ) -> None:
        """`_insert` for a page from the reading process on SQLite (no notices to queue):
        each row goes to the driver as the tuple it came in, times as the reader rendered
        them; only a task whose run id is taken or that has a parent gets its values built
        and changed, as `_insert` changes them."""
        first = new[0].packed
        assert first is not None
        names = first.names
        run_at, status_at = names.index("run_id"), names.index("status")
        ids = new_task_ids(len(new))
        in_page = {m.origin_ref: task_id for m, task_id in zip(new, ids, strict=True)}
        wanted = sorted({m.parent_ref for m in new if m.parent_ref and m.parent_ref not in in_page})
        parents = {**_mirror_ids(conn, self.tenant, wanted), **in_page} if wanted else in_page
        run_ids = sorted({v for m in new if m.packed and (v := m.packed.values[run_at])})
        taken = _taken_run_ids(conn, self.tenant, run_ids) if run_ids else set()
        values_of = operator.itemgetter(*names)
        nulls = set(null_columns)
        at, created = sqlite_datetime(self.now), EventKind.CREATED.value
        rows: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        for task, task_id in zip(new, ids, strict=True):
            assert task.packed is not None and task.sqlite_times is not None
            packed = task.packed.values
            run_id = packed[run_at]
            changed = False
            if run_id:
                if run_id in taken:
                    self._move_run_id(task)
                    changed = True
                else:
                    taken.add(run_id)
            if task.parent_ref:
                parent = task.values["parent_task_id"] = parents.get(task.parent_ref)
                if parent is None:
                    self.orphans += 1
                else:
                    nulls.discard("parent_task_id")
                changed = True
            row = values_of(task.values) if changed else packed
            rows.append((task_id, 1, *row, *task.sqlite_times))
            summary = f"mirrored from OpenClaw task {task.origin_ref}"
            events.append((task_id, 1, at, created, None, packed[status_at], ACTOR, summary))
        with bulk_cache(conn, len(rows)):
            insert_tuples(
                conn,
                tasks_table,
                ("task_id", "version", *names, *TIME_COLUMNS),
                rows,
                nulls=nulls,
                rendered=TIME_COLUMNS,
            )
            insert_tuples(
                conn,
                events_table,
                ("task_id", "seq", "at", "kind", "from_status", "to_status", "actor", "summary"),
                events,
                nulls=("from_status",),
                rendered=("at",),
            )
        self.tally.created += len(rows)

    def _announce_new(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """With --notify-from-tasktrail, tasks that appear after the first pass get their
        notices (started, or terminal when they also ended since the previous pass); what a
        first import finds is history and OpenClaw has announced it already."""
        from ledger.notify import enqueue_for_transition

        if self.since_ms is None:
            return
        since = _ms_to_dt(self.since_ms)
        for values in rows:
            status = Status(values["status"])
            if status.is_active:
                before = dict(values, status=None)
                kind = EventKind.CREATED.value
            elif values["ended_at"] and values["ended_at"] >= since:
                before = dict(values, status=Status.RUNNING.value)
                kind = EventKind.FINISHED.value
            else:
                continue
            enqueue_for_transition(
                conn, before, values, kind=kind, now=self.now, config=self.config
            )

    # -- mirrored rows ----------------------------------------------------------------------

    def _desired(
        self, conn: Connection, row: Mapping[str, Any], task: MappedTask
    ) -> dict[str, Any]:
        """The fields of the mirror that differ from what OpenClaw now says."""
        values = task.values
        detail = dict(task.get_detail())
        if values["run_id"] and row["run_id"] != values["run_id"]:
            detail["run_id"] = values["run_id"]  # held by another task here (see _insert)
        if task.parent_ref and row["parent_task_id"] is None:
            parent = _mirror_ids(conn, self.tenant, [task.parent_ref])
            values["parent_task_id"] = parent.get(task.parent_ref)
        desired: dict[str, Any] = {name: values[name] for name in _SYNCED}
        desired["origin_detail"] = dump_detail(detail)
        for name in _SYNCED_WHEN_SET:
            if values[name] is not None:
                desired[name] = values[name]
        if row["notify_policy"] == "silent":
            # OpenClaw delivers this task's notices: its delivery status is the one to show
            desired["delivery_status"] = DELIVERY_MAP[task.get_detail()["delivery_status"]]
        return {k: v for k, v in desired.items() if row[k] != v}

    def _update(self, conn: Connection, row: dict[str, Any], task: MappedTask) -> None:
        requested = Status(task.source_status)
        for _ in range(_CAS_ATTEMPTS):
            changes = self._desired(conn, row, task)
            current = Status(row["status"])
            if requested is current:
                if not changes:
                    self.tally.unchanged += 1
                    return
                changes["last_event_at"] = task.values["last_event_at"]
                fields = ", ".join(sorted(k for k in changes if k != "last_event_at"))
                new_row = bump(
                    conn,
                    row,
                    changes,
                    kind=EventKind.MIRRORED,
                    now=self.now,
                    actor=ACTOR,
                    summary=f"OpenClaw changed {fields}",
                )
            elif not is_allowed(current, requested):
                if self._already_refused(conn, row, requested):
                    self.tally.unchanged += 1
                    return
                record_refusal(
                    conn,
                    row,
                    requested.value,
                    now=self.now,
                    actor=ACTOR,
                    reason=f"OpenClaw reports {requested.value}; the mirror stays {current.value}",
                )
                self.tally.refused += 1
                return
            else:
                new_row = transition(
                    conn,
                    row,
                    requested,
                    now=self.now,
                    config=self.config,
                    actor=ACTOR,
                    summary=task.values["terminal_summary"] or task.values["error"],
                    extra=self._transition_extra(task, requested, changes),
                )
            if new_row is not None:
                self.tally.updated += 1
                return
            fresh = fetch_row(conn, row["task_id"])
            if fresh is None:
                return
            row = fresh
        log.warning("openclaw import: task %s kept changing; skipped this pass", row["task_id"])

    def _transition_extra(
        self, task: MappedTask, requested: Status, changes: dict[str, Any]
    ) -> dict[str, Any]:
        values = task.values
        extra = dict(changes)
        extra.update(
            heartbeat_at=None,
            lease_expires_at=None,
            grace_until=None,
            last_event_at=values["last_event_at"],
        )
        if requested in ENDED:
            floor = values["started_at"] or values["created_at"]
            ended = values["ended_at"] or max(self.now, floor)
            extra["ended_at"] = ended
            if requested.is_terminal:
                extra["cleanup_after"] = values["cleanup_after"] or (
                    ended + self.config.retention_for(requested)
                )
        if requested is Status.RUNNING and values["started_at"] is not None:
            extra["started_at"] = values["started_at"]
        return extra

    def _already_refused(self, conn: Connection, row: Mapping[str, Any], requested: Status) -> bool:
        """The same refused move was recorded already and OpenClaw has not moved since:
        recording it again on every pass would be noise."""
        last = conn.execute(
            select(events_table.c.kind, events_table.c.to_status)
            .where(events_table.c.task_id == row["task_id"])
            .order_by(events_table.c.seq.desc())
            .limit(1)
        ).first()
        return (
            last is not None
            and last.kind == EventKind.LATE_UPDATE_IGNORED
            and last.to_status == requested.value
        )

    # -- links whose parent arrived after the child -----------------------------------------

    def link_orphans(self) -> None:
        with db.write(self.engine) as conn:
            rows = conn.execute(
                select(T.task_id, T.origin_detail).where(
                    T.tenant == self.tenant,
                    T.origin == ORIGIN,
                    T.parent_task_id.is_(None),
                    T.origin_detail.like('%"parent_task_id"%'),
                )
            ).all()
            wanted: dict[str, str] = {}
            for task_id, detail in rows:
                parent_ref = json.loads(detail).get("parent_task_id")
                if isinstance(parent_ref, str):
                    wanted[task_id] = parent_ref
            found = _mirror_ids(conn, self.tenant, sorted(set(wanted.values())))
            for task_id, parent_ref in wanted.items():
                if parent_ref in found:
                    conn.execute(
                        update(tasks_table)
                        .where(T.task_id == task_id)
                        .values(parent_task_id=found[parent_ref])
                    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a bulk load runs.
    A load allocates a few hundred thousand dicts and tuples per 5,000-row page and frees
    them by reference counting; the collector, set off by the allocations alone, would
    rescan every live object a dozen times (about 8% of a 100k-task load, bench/openclaw.py).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _ms_to_dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def import_openclaw(
    engine: Engine,
    config: LedgerConfig,
    path: str | Path,
    *,
    now: datetime,
    tenant: str = "default",
    notify_from_tasktrail: bool = False,
    page_size: int = PAGE_SIZE,
    bulk_min_rows: int = DEFER_MIN_ROWS,
) -> ImportReport:
    """One import pass of the OpenClaw database at `path` into tenant `tenant`. A pass of
    `bulk_min_rows` rows or more is a bulk load: pages are read by a child process
    (`ledger.importers.openclaw_pages`) and, on SQLite, the indexes the import does not read
    are built once at the end (`ledger.deferred_indexes`)."""
    check_text(tenant, "tenant", 200, required=True)
    started = time.perf_counter()
    with OpenClawSource(path) as source:
        key = watermark_key(tenant, source.path)
        watermark = load_watermark(engine, key)
        since = None if watermark is None else watermark - OVERLAP_MS
        tally = Tally()
        importer = _Importer(
            engine,
            config,
            path=source.path,
            tenant=tenant,
            notify_from_tasktrail=notify_from_tasktrail,
            now=now,
            since_ms=watermark,
            key=key,
            tally=tally,
        )
        options = MapOptions(
            tenant,
            notify_from_tasktrail,
            importer.tenant_platform,
            importer.tenant_space,
            sqlite_times=engine.dialect.name == "sqlite",
        )
        expected = source.count(since)
        bulk = expected >= bulk_min_rows
        high = watermark
        # a large load builds the indexes it does not read once at the end (see
        # ledger.deferred_indexes); first, whatever a load that died half-way set aside
        restore_indexes(engine, now=now)
        # pages are read and mapped beside the writes (ledger.importers.openclaw_pages)
        pages = (ProcessPages if bulk else ThreadPages)(source, since, page_size, options)
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.closing(pages))
            held = None
            if bulk:
                # one connection and one page cache for every page and the index builds:
                # a cache given back after each page would be read in again by the next
                held = stack.enter_context(db.writer_connection(engine))
                stack.enter_context(db.sqlite_cache(held, BUILD_CACHE_KIB))
                stack.enter_context(_collector_paused())
            stack.enter_context(
                indexes_deferred(
                    engine,
                    tasks_table,
                    rows=expected,
                    keep=IMPORT_READS,
                    now=now,
                    min_rows=bulk_min_rows,
                    conn=held,
                )
            )
            for page in pages:
                tally.rows_read += page.rows_read
                tally.skipped.extend(page.skipped)
                if page.high_ms is not None:
                    high = page.high_ms if high is None else max(high, page.high_ms)
                importer.write_page(
                    page.tasks,
                    high,
                    before_commit=pages.prefetch,
                    held=held,
                    null_columns=page.null_columns,
                )
        if importer.orphans:
            importer.link_orphans()
        source_name = str(source.path)
    return ImportReport(
        source=source_name,
        tenant=tenant,
        notify_from_tasktrail=notify_from_tasktrail,
        rows_read=tally.rows_read,
        created=tally.created,
        updated=tally.updated,
        unchanged=tally.unchanged,
        refused=tally.refused,
        skipped=len(tally.skipped),
        by_status=dict(tally.by_status),
        by_runtime=dict(tally.by_runtime),
        skipped_rows=tuple(tally.skipped),
        watermark=None if high is None else _ms_to_dt(high),
        elapsed_seconds=time.perf_counter() - started,
    )


def openclaw_watch_job(
    ledger: Ledger,
    path: str | Path,
    tenant: str = "default",
    *,
    notify_from_tasktrail: bool = False,
) -> ImportReport | None:
    """One mirror pass for a scheduler (`serve` with `TASKTRAIL_OPENCLAW_STATE_DIR`): `path`
    is a state directory or the database file. Problems are logged, never raised, so the
    next pass simply tries again."""
    from ledger.exceptions import LedgerError

    try:
        report = ledger.import_openclaw(
            resolve_openclaw_db(state_dir=path),
            tenant=tenant,
            notify_from_tasktrail=notify_from_tasktrail,
        )
    except OpenClawSourceError as error:
        log.warning("openclaw mirror: %s", error)
        return None
    except LedgerError as error:  # the ledger was busy: the next pass catches up
        log.warning("openclaw mirror pass failed: %s", error)
        return None
    if report.created or report.updated or report.refused or report.skipped:
        log.info(
            "openclaw mirror: %d created, %d updated, %d refused, %d skipped",
            report.created,
            report.updated,
            report.refused,
            report.skipped,
        )
    return report
