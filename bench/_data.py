"""Bulk-loading synthetic ledgers for benchmarks (raw driver speed; schema from migrations)."""

from __future__ import annotations

import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ledger.db import ensure_schema, make_engine
from ledger.ids import new_task_id

COLUMNS = (
    "task_id", "tenant", "runtime", "label", "status", "version", "run_id",
    "child_session_key", "requester_session_key", "notify_policy", "delivery_status",
    "created_at", "started_at", "ended_at", "last_event_at", "heartbeat_at",
    "lease_expires_at", "cleanup_after", "probe_kind", "proof_required", "follower_count",
)  # fmt: skip
RUNTIMES = ("subagent", "acp", "cron", "cli", "media")
FINISHED = ("succeeded", "succeeded", "succeeded", "failed", "timed_out", "cancelled")


def synthetic_rows(
    count: int, *, active_fraction: float = 0.01, now: datetime | None = None, seed: int = 7
) -> list[tuple[object, ...]]:
    """Rows for `tasks`: `active_fraction` running (the rest finished), oldest first."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=6)
    step = timedelta(days=6) / max(count, 1)
    active_every = max(1, round(1 / active_fraction)) if active_fraction else 0
    rows: list[tuple[object, ...]] = []
    for i in range(count):
        created = start + step * i
        running = active_every and i % active_every == 0
        status = "running" if running else rng.choice(FINISHED)
        ended = None if running else created + timedelta(seconds=rng.randint(1, 600))
        rows.append(
            (
                new_task_id(), f"slack:T{i % 5}", RUNTIMES[i % 5], f"synthetic task {i}",
                status, 3, f"run-{i}", f"agent:main:sub:{i}", f"agent:main:req:{i % 5000}",
                "done_only", "not_applicable" if running else "delivered",
                created, created, ended, ended or created, created,
                (now + timedelta(minutes=5)) if running else None,
                (ended + timedelta(days=7)) if ended else None,
                "heartbeat", False, 0,
            )
        )  # fmt: skip
    return rows


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):
        return (
            value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )
    return value


def build_sqlite(path: Path, rows: list[tuple[object, ...]]) -> float:
    """Create a migrated SQLite ledger at `path` holding `rows`; returns seconds taken."""
    began = time.perf_counter()
    if path.exists():
        path.unlink()
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    placeholders = ", ".join("?" for _ in COLUMNS)
    sql = f"INSERT INTO tasks ({', '.join(COLUMNS)}) VALUES ({placeholders})"
    with conn:
        conn.executemany(sql, ([_sqlite_value(v) for v in row] for row in rows))
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - began


def build_postgres(url: str, rows: list[tuple[object, ...]]) -> float:
    """Load `rows` into the (migrated) PostgreSQL ledger at `url` with COPY."""
    import psycopg

    began = time.perf_counter()
    engine = make_engine(url)
    ensure_schema(engine)
    engine.dispose()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE tasks CASCADE")
        with cur.copy(f"COPY tasks ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        cur.execute("ANALYZE tasks")
        conn.commit()
    return time.perf_counter() - began


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99


__all__ = [
    "COLUMNS",
    "build_postgres",
    "build_sqlite",
    "percentiles",
    "synthetic_rows",
]


def compile_bytecode() -> None:
    """Write the package's bytecode before timing CLI processes, as `pip install` does for
    an installed package. An editable checkout on a machine with PYTHONDONTWRITEBYTECODE
    set (this one) would otherwise recompile every imported module on every command."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in ("ledger", "bot", "templates"):
        compileall.compile_dir(root / package, quiet=1)
