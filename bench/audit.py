"""Audit and prune speed at scale (issue 4).

    .venv/bin/python bench/audit.py [--tasks 1000000] [--active 10000] [--prune 500000]
        [--backends sqlite,postgres] [--postgres URL] [--batch-size 500] [--pause 0.01]

1. One reconcile pass and one audit pass over `--tasks` tasks of which `--active` are active
   (running or queued; a few hundred with expired leases, so the reconcile pass writes
   real `lost` verdicts), with events, deliveries, proof-required successes and `lost`
   records spread through. Target: the audit pass <= 2 s on SQLite and PostgreSQL.
2. Pruning `--prune` expired tasks (two events each) with `ledger.maintenance.prune` while a
   concurrent writer records one progress event every 10 ms, vs one raw DELETE of the same
   rows (in one transaction) on an identical copy, with the same writer running. Targets:
   batched prune time <= 2 x the raw DELETE's, and the writer's stall p99 <= 100 ms during
   the batched prune.

Rows are bulk-loaded with the raw driver (sqlite3 executemany, PostgreSQL COPY).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from ledger import Ledger, LedgerConfig
from ledger.db import ensure_schema, make_engine
from ledger.maintenance import PRUNE_PACING, prune
from ledger.schema import deliveries_table, events_table, tasks_table

NOW = datetime.now(UTC).replace(microsecond=0)
TASK_COLUMNS = [c.name for c in tasks_table.c]
EVENT_COLUMNS = [c.name for c in events_table.c if c.name != "id"]
DELIVERY_COLUMNS = [c.name for c in deliveries_table.c if c.name != "id"]
RUNTIMES = ("subagent", "acp", "cron", "cli", "media")
ENDED_MIX = ["succeeded"] * 94 + ["failed"] * 3 + ["timed_out", "cancelled", "lost"]
M = timedelta(minutes=1)


# -- synthetic ledgers ---------------------------------------------------------------------


def _task(task_id: str, i: int, status: str, created: datetime, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TASK_COLUMNS)
    row.update(
        task_id=task_id,
        tenant=f"slack:T{i % 5}",
        runtime=RUNTIMES[i % 5],
        label=f"synthetic task {i}: nightly build of service {i % 97}",
        status=status,
        version=1,
        run_id=f"run-{task_id}",
        child_session_key=f"agent:main:sub:{i}",
        requester_session_key=f"agent:main:req:{i % 5000}",
        notify_policy="done_only",
        delivery_status="not_applicable",
        created_at=created,
        started_at=created if status != "queued" else None,
        last_event_at=created,
        probe_kind="heartbeat",
        proof_required=False,
        follower_count=0,
    )
    row.update(values)
    return row


def audit_ledger(total: int, active: int, seed: int = 4) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) pairs: `active` running/queued tasks, the rest ended within 6 days."""
    rng = random.Random(seed)
    delivery_seq = 0
    for i in range(total):
        task_id = f"a{i:015d}"
        if i < active:
            if i % 10 == 0:  # queued; some of them stale
                created = NOW - timedelta(seconds=rng.randint(0, 1800))
                row = _task(task_id, i, "queued", created)
            else:
                kind = i % 300
                if kind == 1:  # silent for 20 min: lost verdict due
                    beat = NOW - 20 * M
                elif kind == 2:  # lease expired 2 min ago: in its grace window
                    beat = NOW - 7 * M
                else:
                    beat = NOW - timedelta(seconds=rng.randint(0, 240))
                created = beat - timedelta(seconds=rng.randint(0, 3600))
                row = _task(
                    task_id,
                    i,
                    "running",
                    created,
                    heartbeat_at=beat,
                    last_event_at=beat,
                    lease_expires_at=beat + 5 * M,
                )
            yield "tasks", row
            yield "task_events", _event(task_id, 1, "created", row["status"], created)
            continue
        status = ENDED_MIX[i % len(ENDED_MIX)]
        created = NOW - timedelta(seconds=rng.randint(3600, 6 * 86400))
        ended = created + timedelta(seconds=rng.randint(1, 900))
        proof = i % 100 == 7 and status == "succeeded"
        row = _task(
            task_id,
            i,
            status,
            created,
            version=2,
            ended_at=ended,
            last_event_at=ended,
            cleanup_after=ended + timedelta(days=7),
            terminal_summary="ok" if status == "succeeded" else None,
            error="exit 1" if status == "failed" else None,
            proof_required=proof,
            proof_status=("verified" if i % 200 == 7 else "unchecked") if proof else None,
            acknowledged_at=ended if status == "lost" and i % 10 else None,
        )
        if i % 50 == 0:
            row.update(reply_to="slack:T1/C1/1700000000.000100", delivery_status="delivered")
        yield "tasks", row
        yield "task_events", _event(task_id, 1, "created", "running", created)
        yield "task_events", _event(task_id, 2, "finished", status, ended, "running")
        if i % 50 == 0:
            delivery_seq += 1
            state = "delivered"
            if delivery_seq % 1000 == 1:
                state = "failed"
            elif delivery_seq % 1000 == 2:
                state = "pending"
            yield "deliveries", _delivery(task_id, delivery_seq, state, ended)


def _event(
    task_id: str, seq: int, kind: str, to: str, at: datetime, frm: str | None = None
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "seq": seq,
        "at": at,
        "kind": kind,
        "from_status": frm,
        "to_status": to,
        "actor": "bench",
        "summary": None,
    }


def _delivery(task_id: str, n: int, status: str, at: datetime) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "tenant": "slack:T1",
        "kind": "terminal",
        "generation": 1,
        "idempotency_key": f"bench-{n}",
        "target": "slack:T1/C1/1700000000.000100",
        "channel_key": "slack:T1/C1",
        "route": "thread",
        "status": status,
        "attempts": 1,
        "next_attempt_at": at,
        "deadline_at": at + 30 * M,
        "claimed_by": None,
        "claim_expires_at": None,
        "last_error": "channel_not_found" if status == "failed" else None,
        "platform_message_id": None,
        "payload": "{}",
        "created_at": at,
        "updated_at": at,
        "delivered_at": at if status == "delivered" else None,
    }


def prune_ledger(expired: int, live: int = 20) -> Iterator[tuple[str, dict[str, Any]]]:
    """`expired` tasks past cleanup_after (two events each) plus `live` running tasks."""
    for i in range(expired):
        task_id = f"p{i:015d}"
        created = NOW - timedelta(days=10, seconds=i % 86400)
        ended = created + M
        yield (
            "tasks",
            _task(
                task_id,
                i,
                "succeeded",
                created,
                version=2,
                ended_at=ended,
                last_event_at=ended,
                cleanup_after=ended + timedelta(days=7),
            ),
        )
        yield "task_events", _event(task_id, 1, "created", "running", created)
        yield "task_events", _event(task_id, 2, "finished", "succeeded", ended, "running")
    for i in range(live):
        task_id = f"w{i:015d}"
        yield (
            "tasks",
            _task(
                task_id,
                i,
                "running",
                NOW,
                heartbeat_at=NOW,
                lease_expires_at=NOW + timedelta(days=1),
                lease_seconds=86400,
            ),
        )
        yield "task_events", _event(task_id, 1, "created", "running", NOW)


COLUMNS = {"tasks": TASK_COLUMNS, "task_events": EVENT_COLUMNS, "deliveries": DELIVERY_COLUMNS}


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
    return value


def load_sqlite(path: Path, rows: Iterator[tuple[str, dict[str, Any]]]) -> float:
    began = time.perf_counter()
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    # Build secondary indexes after the load (a sort) rather than row by row.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for index_name, _ in indexes:
        conn.execute(f'DROP INDEX "{index_name}"')
    sql = {
        table: f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        for table, cols in COLUMNS.items()
    }
    buffers: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}

    def flush(table: str) -> None:
        conn.executemany(sql[table], buffers[table])
        buffers[table].clear()

    with conn:
        for table, row in rows:
            buffers[table].append(tuple(_sqlite_value(row[c]) for c in COLUMNS[table]))
            if len(buffers[table]) >= 50_000:
                flush(table)
        for table in COLUMNS:
            flush(table)
    with conn:
        for _, ddl in indexes:
            conn.execute(ddl)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - began


def load_postgres(url: str, rows: Iterator[tuple[str, dict[str, Any]]]) -> float:
    import psycopg

    began = time.perf_counter()
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    buffers: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
    with psycopg.connect(dsn) as conn:
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i "
            "JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid "
            "WHERE i.schemaname = 'public' AND NOT x.indisunique AND NOT x.indisprimary"
        ).fetchall()
        for index_name, _ in indexes:
            conn.execute(f'DROP INDEX "{index_name}"')

        def flush(table: str) -> None:
            if table != "tasks" and buffers["tasks"]:
                flush("tasks")  # children after their tasks (foreign keys)
            with conn.cursor() as cur:
                copy_sql = f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN"
                with cur.copy(copy_sql) as copy:
                    for values in buffers[table]:
                        copy.write_row(values)
            buffers[table].clear()

        for table, row in rows:
            buffers[table].append(tuple(row[c] for c in COLUMNS[table]))
            if len(buffers[table]) >= 50_000:
                flush(table)
        for table in COLUMNS:
            flush(table)
        for _, ddl in indexes:
            conn.execute(ddl)
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


class PgDatabases:
    """Scratch databases on the PostgreSQL server, dropped at exit."""

    def __init__(self, url: str) -> None:
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.base = url.rsplit("/", 1)[0]
        self.names: list[str] = []

    def create(self, template: str | None = None) -> str:
        name = f"ttbench_{uuid.uuid4().hex[:10]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        self.names.append(name)
        return name

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


# -- measurements --------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Writer:
    """A separate process recording one progress event every 10 ms on a live task, timing
    each (the stall it saw). A process of its own, so the GIL is not part of the figure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dir = Path(tempfile.mkdtemp(prefix="tasktrail-writer-"))
        self.latencies: list[float] = []
        self.errors = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Writer:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--writer", self.url, str(self.dir)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 60
        while not (self.dir / "ready").exists():  # connected and warmed up
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the writer process did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        (self.dir / "stop").touch()
        assert self.proc is not None
        self.proc.wait(120)
        data = json.loads((self.dir / "latencies.json").read_text())
        self.latencies, self.errors = data["latencies"], data["errors"]
        shutil.rmtree(self.dir, ignore_errors=True)

    def report(self) -> str:
        ms = [x * 1000 for x in self.latencies]
        return (
            f"writer: {len(ms)} events, stall p50 {pct(ms, 0.5):.1f} ms, "
            f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms, default=0):.1f} ms"
            + (f", {self.errors} errors" if self.errors else "")
        )


def writer_process(url: str, directory: Path) -> None:
    ledger = Ledger.connect(url, LedgerConfig(), actor="bench-writer")
    tasks = [f"w{i:015d}" for i in range(20)]
    for n in range(20):  # warm up outside the measured window
        ledger.progress(tasks[n % len(tasks)], f"warm {n}")
    (directory / "ready").touch()
    stop = directory / "stop"
    latencies: list[float] = []
    errors = 0
    n = 0
    next_at = time.perf_counter()
    while not stop.exists():
        began = time.perf_counter()
        try:
            ledger.progress(tasks[n % len(tasks)], f"tick {n}")
        except Exception:
            errors += 1
        latencies.append(time.perf_counter() - began)
        n += 1
        next_at += 0.010
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.perf_counter()
    (directory / "latencies.json").write_text(
        json.dumps({"latencies": latencies, "errors": errors})
    )
    ledger.close()


def raw_delete(url: str) -> None:
    """The same rows in one statement per table, one transaction."""
    engine = make_engine(url)
    expired = (
        "SELECT task_id FROM tasks WHERE cleanup_after < :now "
        "AND status IN ('succeeded','failed','timed_out','cancelled','lost')"
    )
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(tasktrail_write=True)
            with conn.begin():
                for table in ("task_events", "artifacts", "deliveries", "followers"):
                    conn.execute(
                        text(f"DELETE FROM {table} WHERE task_id IN ({expired})"), {"now": NOW}
                    )
                conn.execute(text(f"DELETE FROM tasks WHERE task_id IN ({expired})"), {"now": NOW})
    finally:
        engine.dispose()


def count_tasks(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM tasks")).scalar_one())
    finally:
        engine.dispose()


def bench_pass(name: str, url: str) -> None:
    ledger = Ledger.connect(url, LedgerConfig())
    try:
        for attempt in (1, 2):
            began = time.perf_counter()
            passed = ledger.reconcile(now=NOW)
            reconciled = time.perf_counter() - began
            began = time.perf_counter()
            report = ledger.audit(now=NOW)
            audited = time.perf_counter() - began
            counts = ", ".join(f"{c} {n}" for c, n in report.counts.items() if n)
            print(
                f"  {name} pass {attempt}: reconcile {reconciled:.2f} s "
                f"({len(passed.marked_lost)} lost, {len(passed.waiting)} waiting), "
                f"audit {audited:.2f} s ({report.total} findings: {counts}); "
                f"together {reconciled + audited:.2f} s",
                flush=True,
            )
    finally:
        ledger.close()


def bench_prune(
    name: str, batched_url: str, raw_url: str, batch_size: int | None, pause: float | None
) -> None:
    engine = make_engine(batched_url)
    default_size, default_pause = PRUNE_PACING[engine.dialect.name]
    batch_size = batch_size or default_size
    pause = default_pause if pause is None else pause
    try:
        with Writer(batched_url) as writer:
            began = time.perf_counter()
            pruned = prune(engine, now=NOW, batch_size=batch_size, pause=pause)
            batched = time.perf_counter() - began
        print(
            f"  {name} batched prune: {len(pruned):,} tasks in {batched:.2f} s "
            f"(batch {batch_size}, pause {pause * 1000:.0f} ms); {writer.report()}",
            flush=True,
        )
    finally:
        engine.dispose()
    before = count_tasks(raw_url)
    with Writer(raw_url) as writer:
        began = time.perf_counter()
        raw_delete(raw_url)
        raw = time.perf_counter() - began
    after = count_tasks(raw_url)
    print(
        f"  {name} raw DELETE:    {before - after:,} tasks in {raw:.2f} s; {writer.report()}",
        flush=True,
    )
    print(f"  {name} batched / raw time: {batched / raw:.2f} (target <= 2.0)", flush=True)


def timed(label: str, func: Callable[[], float]) -> None:
    seconds = func()
    print(f"  {label}: {seconds:.1f} s", flush=True)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--writer":
        writer_process(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--prune", type=int, default=500_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    parser.add_argument("--batch-size", type=int, help="default: per database (PRUNE_PACING)")
    parser.add_argument("--pause", type=float, help="seconds; default: per database")
    parser.add_argument("--skip-pass", action="store_true")
    parser.add_argument("--skip-prune", action="store_true")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="tasktrail-bench-audit-"))
    print(
        f"audit bench: {args.tasks:,} tasks ({args.active:,} active), prune {args.prune:,}; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    pg = PgDatabases(args.postgres) if "postgres" in backends else None
    try:
        if "sqlite" in backends:
            print("SQLite", flush=True)
            if not args.skip_pass:
                path = workdir / "audit.db"
                timed("load", lambda: load_sqlite(path, audit_ledger(args.tasks, args.active)))
                bench_pass("SQLite", f"sqlite:///{path}")
                path.unlink()
            if not args.skip_prune:
                path = workdir / "prune.db"
                timed("load", lambda: load_sqlite(path, prune_ledger(args.prune)))
                copy = workdir / "prune-raw.db"
                shutil.copyfile(path, copy)
                bench_prune(
                    "SQLite",
                    f"sqlite:///{path}",
                    f"sqlite:///{copy}",
                    args.batch_size,
                    args.pause,
                )
        if pg is not None:
            print("PostgreSQL", flush=True)
            if not args.skip_pass:
                name = pg.create()
                url = pg.url(name)
                timed("load", lambda: load_postgres(url, audit_ledger(args.tasks, args.active)))
                bench_pass("PostgreSQL", url)
            if not args.skip_prune:
                name = pg.create()
                timed("load", lambda: load_postgres(pg.url(name), prune_ledger(args.prune)))
                copy_name = pg.create(template=name)
                bench_prune(
                    "PostgreSQL", pg.url(name), pg.url(copy_name), args.batch_size, args.pause
                )
    finally:
        if pg is not None:
            pg.drop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
