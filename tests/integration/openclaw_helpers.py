"""Shared helpers for the OpenClaw mirror tests: copies of the sample databases and
queries on the source (read-only) and on the mirror."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ledger import Ledger
from ledger.schema import events_table, tasks_table


def _samples_dir() -> Path:
    """The shared OpenClaw samples: $TASKTRAIL_OPENCLAW_SAMPLES, else `shared/` beside the
    checkout (where CI puts it), else /work/shared."""
    if os.environ.get("TASKTRAIL_OPENCLAW_SAMPLES"):
        return Path(os.environ["TASKTRAIL_OPENCLAW_SAMPLES"])
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openclaw"
    return beside if beside.is_dir() else Path("/work/shared/data/openclaw")


SAMPLES = _samples_dir()
SAMPLE_1K = SAMPLES / "openclaw-2026.9.6-1k-tasks.sqlite"
SAMPLE_EMPTY = SAMPLES / "openclaw-2026.9.6-empty.sqlite"
T = tasks_table.c


def copy_sample(directory: Path, sample: Path = SAMPLE_1K) -> Path:
    """The sample in an OpenClaw state-dir layout under `directory` (writable copy)."""
    target = directory / "state" / "openclaw.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sample, target)
    os.chmod(target, 0o644)
    return target


def source_query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the source without writing to it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def source_write(path: Path, sql: str, params: tuple[Any, ...] = ()) -> int:
    """What OpenClaw's gateway would do: change the source (WAL mode, committed)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            changed = conn.execute(sql, params).rowcount
        return changed
    finally:
        conn.close()


def source_counts(path: Path, column: str) -> dict[str, int]:
    rows = source_query(path, f"SELECT {column}, count(*) FROM task_runs GROUP BY {column}")
    return {str(value): count for value, count in rows}


def mirror_counts(ledger: Ledger, column: str, tenant: str = "default") -> dict[str, int]:
    col = tasks_table.c[column]
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(col, func.count())
            .where(T.origin == "openclaw", T.tenant == tenant)
            .group_by(col)
        ).all()
    return {str(value): count for value, count in rows}


def mirror_snapshot(ledger: Ledger, tenant: str) -> dict[str, tuple[object, ...]]:
    """Each mirrored task of `tenant` by OpenClaw id: what an import decides (status, run
    id, parent link, times, origin detail), without tasktrail's own ids."""
    tasks = ledger.list(tenant=tenant, limit=10_000)
    refs = {t.task_id: t.origin_ref for t in tasks}
    return {
        str(t.origin_ref): (
            t.status,
            t.run_id,
            refs.get(t.parent_task_id) if t.parent_task_id else None,
            t.created_at,
            t.started_at,
            t.ended_at,
            t.last_event_at,
            t.cleanup_after,
            t.reply_to,
            t.label,
            t.origin_detail,
        )
        for t in tasks
    }


def mirror_versions(ledger: Ledger) -> dict[str, tuple[str, int]]:
    """origin_ref -> (task_id, version) of every mirrored task."""
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(T.origin_ref, T.task_id, T.version)).all()
    return {ref: (task_id, version) for ref, task_id, version in rows}


def event_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events_table)).scalar_one())


def one_source_row(path: Path, where: str) -> tuple[str, int]:
    """(task_id, last_event_at) of the first source row matching `where`."""
    rows = source_query(
        path, f"SELECT task_id, last_event_at FROM task_runs WHERE {where} ORDER BY task_id LIMIT 1"
    )
    assert rows, f"the sample has no row where {where}"
    task_id, last_event_at = rows[0]
    return str(task_id), int(last_event_at)


def next_event_ms(path: Path, step: int = 1000) -> int:
    """A `last_event_at` for a change made now: after every event the source holds (OpenClaw
    stamps changes with its clock)."""
    (latest,) = source_query(path, "SELECT max(last_event_at) FROM task_runs")[0]
    return int(latest) + step
