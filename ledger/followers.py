"""Followers: extra destinations for a task's notices (`/tasks follow`, SPEC §5).

A task may have several follower addresses; each receives the same notices as `reply_to`
(see `ledger.notify.notice_targets`). `tasks.follower_count` is kept in step so notifying
a task without followers costs no query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, update

from ledger import db
from ledger.address import parse_address
from ledger.lookup import fetch_row, resolve_row
from ledger.records import TaskRecord, task_from_row
from ledger.schema import followers_table, tasks_table
from ledger.status import NotifyPolicy, Status

F = followers_table.c
T = tasks_table.c


def follow_task(
    engine: Engine,
    ref: str,
    address: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Route this task's notices to `address` too. Following twice is a no-op."""
    where = parse_address(address, "address")
    with db.write(engine) as conn:
        row = resolve_row(conn, ref, tenant)
        added = conn.execute(
            db.dialect_insert(conn, followers_table)
            .values(
                task_id=row["task_id"],
                address=str(where),
                channel_key=where.channel_key,
                created_by=actor,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["task_id", "address"])
            .returning(F.id)
        ).first()  # a returned row means inserted (psycopg's rowcount is -1 here)
        if added is not None:
            values: dict[str, Any] = {"follower_count": T.follower_count + 1}
            if (
                row["delivery_status"] == "not_applicable"
                and row["notify_policy"] != NotifyPolicy.SILENT
                and Status(row["status"]).is_active
            ):
                values["delivery_status"] = "pending"
            conn.execute(update(tasks_table).where(T.task_id == row["task_id"]).values(values))
        return _reread(conn, row["task_id"])


def unfollow_task(
    engine: Engine,
    ref: str,
    address: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Stop routing this task's notices to `address` (a no-op when it was not following)."""
    where = parse_address(address, "address")
    with db.write(engine) as conn:
        row = resolve_row(conn, ref, tenant)
        removed = conn.execute(
            delete(followers_table).where(F.task_id == row["task_id"], F.address == str(where))
        ).rowcount
        if removed:
            conn.execute(
                update(tasks_table)
                .where(T.task_id == row["task_id"])
                .values(follower_count=T.follower_count - removed)
            )
        return _reread(conn, row["task_id"])


def followers_of(conn: Connection, task_id: str) -> list[str]:
    return list(
        conn.execute(select(F.address).where(F.task_id == task_id).order_by(F.id)).scalars()
    )


def followed_in(conn: Connection, channel_key: str) -> list[str]:
    """Task ids followed from one channel (for channel boards)."""
    return list(
        conn.execute(select(F.task_id).where(F.channel_key == channel_key).distinct()).scalars()
    )


def _reread(conn: Connection, task_id: str) -> TaskRecord:
    fresh = fetch_row(conn, task_id)
    assert fresh is not None
    return task_from_row(fresh)
