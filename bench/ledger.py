"""Ledger speed: lifecycles/s through `Ledger` vs the raw driver, lookups at 1M tasks, and
the CLI's `show` / `list` as whole processes.

    .venv/bin/python bench/ledger.py [--tasks 1000000] [--lifecycles 2000]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Targets (issue 3, 2-core machine): Ledger/raw ratio >= 0.5 on both databases; get by id /
run id / session key p99 <= 5 ms and list(status=running, limit=50) p99 <= 20 ms at 1M tasks
on SQLite; `tasktrail show` and `tasktrail list --status running --limit 50` <= 0.5 s wall
and <= 100 MB peak RSS each on a 1M-task SQLite ledger.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._data import (
    build_postgres,
    build_sqlite,
    compile_bytecode,
    percentiles,
    synthetic_rows,
)
from ledger import Ledger
from ledger.ids import new_task_id

NOW = datetime.now(UTC)

INSERT_TASK = (
    "INSERT INTO tasks (task_id, tenant, runtime, task_kind, label, task, status, version, "
    "run_id, source_id, child_session_key, requester_session_key, parent_task_id, reply_to, "
    "notify_policy, delivery_status, created_at, started_at, ended_at, last_event_at, "
    "heartbeat_at, lease_expires_at, lease_seconds, grace_until, cleanup_after, "
    "progress_summary, terminal_summary, error, cancel_requested_at, cancel_reason, runner, "
    "probe_kind, probe_target, proof_required, follower_count, proof_status, acknowledged_at, "
    "origin, origin_ref, origin_detail) VALUES ({p}) "
    "ON CONFLICT (tenant, run_id) DO NOTHING RETURNING task_id"
)
INSERT_EVENT = (
    "INSERT INTO task_events (task_id, seq, at, kind, from_status, to_status, actor, summary) "
    "VALUES ({p})"
)
SELECT_TASK = "SELECT * FROM tasks WHERE task_id = {q}"
START = (
    "UPDATE tasks SET status = {q}, version = {q}, last_event_at = {q}, started_at = {q}, "
    "heartbeat_at = {q}, lease_expires_at = {q} WHERE task_id = {q} AND version = {q}"
)
FINISH = (
    "UPDATE tasks SET status = {q}, version = {q}, last_event_at = {q}, ended_at = {q}, "
    "lease_expires_at = NULL, grace_until = NULL, cleanup_after = {q}, terminal_summary = {q} "
    "WHERE task_id = {q} AND version = {q}"
)


def raw_lifecycles(kind: str, url: str, count: int) -> float:
    """The same statements the ledger issues, through sqlite3 / psycopg directly."""
    q = "?" if kind == "sqlite" else "%s"

    def sql(template: str, n: int = 0) -> str:
        return template.format(p=", ".join([q] * n), q=q)

    insert_task, insert_event = sql(INSERT_TASK, 40), sql(INSERT_EVENT, 8)
    select_task, start, finish = sql(SELECT_TASK), sql(START), sql(FINISH)
    if kind == "sqlite":
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")

        def ts(value: datetime) -> Any:
            return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

        def begin() -> None:
            conn.execute("BEGIN IMMEDIATE")

        def commit() -> None:
            conn.execute("COMMIT")

        cursor = conn
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))

        def ts(value: datetime) -> Any:
            return value

        def begin() -> None:
            pass

        def commit() -> None:
            conn.commit()

        cursor = conn.cursor()
    tag = uuid.uuid4().hex[:8]
    began = time.perf_counter()
    for i in range(count):
        now = datetime.now(UTC)
        task_id = new_task_id()
        begin()
        cursor.execute(
            insert_task,
            (task_id, "default", "cli", None, f"raw {i}", None, "queued", 1, f"raw-{tag}-{i}",
             None, None, None, None, None, "done_only", "not_applicable", ts(now), None, None,
             ts(now), None, None, None, None, None, None, None, None, None, None, None,
             "heartbeat", None, False, 0, None, None, None, None, None),
        )  # fmt: skip
        cursor.execute(insert_event, (task_id, 1, ts(now), "created", None, "queued", "b", None))
        commit()
        now = datetime.now(UTC)
        begin()
        cursor.execute(select_task, (task_id,)).fetchone()
        cursor.execute(
            start,
            ("running", 2, ts(now), ts(now), ts(now), ts(now + timedelta(minutes=5)), task_id, 1),
        )
        cursor.execute(
            insert_event, (task_id, 2, ts(now), "started", "queued", "running", "b", None)
        )
        commit()
        now = datetime.now(UTC)
        begin()
        cursor.execute(select_task, (task_id,)).fetchone()
        cursor.execute(
            finish,
            ("succeeded", 3, ts(now), ts(now), ts(now + timedelta(days=7)), "ok", task_id, 2),
        )
        cursor.execute(
            insert_event, (task_id, 3, ts(now), "finished", "running", "succeeded", "b", "ok")
        )
        commit()
    elapsed = time.perf_counter() - began
    conn.close()
    return count / elapsed


def ledger_lifecycles(url: str, count: int) -> float:
    ledger = Ledger.connect(url, actor="bench")
    tag = uuid.uuid4().hex[:8]
    began = time.perf_counter()
    for i in range(count):
        task = ledger.create(runtime="cli", label=f"sdk {i}", run_id=f"sdk-{tag}-{i}", queued=True)
        ledger.start(task.task_id)
        ledger.finish(task.task_id, status="succeeded", summary="ok")
    elapsed = time.perf_counter() - began
    ledger.close()
    return count / elapsed


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        samples.append((time.perf_counter() - began) * 1000)
    return percentiles(samples)


def lookups(
    url: str, rows: list[tuple[object, ...]], repeat: int
) -> dict[str, tuple[float, float]]:
    ledger = Ledger.connect(url)
    rng = random.Random(3)
    picks = [rows[rng.randrange(len(rows))] for _ in range(repeat)]
    it = iter(picks * 4)
    results = {
        "get by id": timed(lambda: ledger.get(str(next(it)[0])), repeat),
        "get by run id": timed(lambda: ledger.get(str(next(it)[6])), repeat),
        "get by session key": timed(lambda: ledger.get(str(next(it)[7])), repeat),
        "list(status=running, limit=50)": timed(
            lambda: ledger.list(status=["running"], limit=50), repeat
        ),
    }
    ledger.close()
    return results


def cli_process(url: str, args: list[str], repeat: int = 5) -> tuple[float, float]:
    """Median wall seconds and largest peak RSS (MB) of `tasktrail ARGS` as a whole process.

    Peak RSS comes from /usr/bin/time: a child forked from this (large) benchmark process
    would otherwise report the parent's pages as its own."""
    walls = []
    peak = 0.0
    exe = str(Path(sys.executable).with_name("tasktrail"))
    for _ in range(repeat):
        began = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", exe, "--db", url, *args],
            check=True,
            capture_output=True,
            text=True,
        )
        walls.append(time.perf_counter() - began)
        peak = max(peak, int(done.stderr.strip().splitlines()[-1]) / 1024)
    walls.sort()
    return walls[len(walls) // 2], peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--lifecycles", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=500)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "TASKTRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tasktrail-bench-"))
    backends = [("sqlite", f"sqlite:///{workdir / 'lifecycles.db'}")]
    pg_db = None
    if not args.skip_postgres:
        import psycopg

        pg_db = f"ttbench_{uuid.uuid4().hex[:8]}"
        admin = args.postgres.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{pg_db}"')
        backends.append(("postgres", f"{args.postgres.rsplit('/', 1)[0]}/{pg_db}"))
    try:
        print(f"== lifecycles (create+start+finish, 3 transactions), {args.lifecycles} each")
        for kind, url in backends:
            Ledger.connect(url).close()  # migrate outside the timing
            raw = raw_lifecycles(kind, url, args.lifecycles)
            through = ledger_lifecycles(url, args.lifecycles)
            print(
                f"{kind:9s} raw driver {raw:8.0f}/s   Ledger {through:8.0f}/s   "
                f"ratio {through / raw:.2f}  (target >= 0.5)"
            )
        print(f"\n== lookups with {args.tasks:,} tasks (1% running), {args.repeat} samples, ms")
        rows = synthetic_rows(args.tasks, active_fraction=0.01, now=NOW)
        big_sqlite = workdir / "big.db"
        loaded = build_sqlite(big_sqlite, rows)
        print(f"(loaded SQLite in {loaded:.1f} s)")
        targets = {"list(status=running, limit=50)": 20.0}
        sqlite_url = f"sqlite:///{big_sqlite}"
        for name, (p50, p99) in lookups(sqlite_url, rows, args.repeat).items():
            target = targets.get(name, 5.0)
            print(f"sqlite    {name:32s} p50 {p50:6.2f}  p99 {p99:6.2f}  (target p99 <= {target})")
        if len(backends) > 1:
            loaded = build_postgres(backends[1][1], rows)
            print(f"(loaded PostgreSQL in {loaded:.1f} s)")
            for name, (p50, p99) in lookups(backends[1][1], rows, args.repeat).items():
                print(f"postgres  {name:32s} p50 {p50:6.2f}  p99 {p99:6.2f}")
        compile_bytecode()
        print(f"\n== CLI as whole processes on the {args.tasks:,}-task SQLite ledger")
        some_id = str(rows[len(rows) // 2][0])
        for label, cli_args in (
            (f"tasktrail show {some_id}", ["show", some_id]),
            ("tasktrail list --status running --limit 50", ["list", "--status", "running",
                                                             "--limit", "50"]),
        ):  # fmt: skip
            wall, peak = cli_process(sqlite_url, cli_args)
            print(f"{label:48s} wall {wall:5.2f} s  peak RSS {peak:5.1f} MB  "
                  "(target <= 0.5 s, <= 100 MB)")  # fmt: skip
    finally:
        if pg_db:
            import psycopg

            admin = args.postgres.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
