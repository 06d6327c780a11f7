"""The delivery outbox: notice rows written in the same transaction as the change that
made them due, claimed and sent by delivery workers (SPEC §5)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, or_, select, update

from ledger import db
from ledger.address import parse_address
from ledger.config import LedgerConfig
from ledger.prepared import Prepared
from ledger.schema import deliveries_table, tasks_table


def enqueue_notice(
    conn: Connection,
    *,
    tenant: str,
    task_id: str | None,
    kind: str,
    target: str,
    payload: Mapping[str, Any],
    key: str,
    now: datetime,
    config: LedgerConfig,
    route: str = "thread",
    due_at: datetime | None = None,
    generation: int = 1,
) -> bool:
    """Insert one notice for `target` (an address string). `key` is its idempotency key:
    a notice whose key already exists is not added again (returns False)."""
    address = parse_address(target, "target")
    values = {
        "task_id": task_id,
        "tenant": tenant,
        "kind": kind,
        "generation": generation,
        "idempotency_key": key,
        "target": target,
        "channel_key": address.channel_key,
        "route": route,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": due_at or now,
        "deadline_at": (due_at or now) + config.delivery_deadline,
        "claimed_by": None,
        "claim_expires_at": None,
        "last_error": None,
        "platform_message_id": None,
        "payload": json.dumps(dict(payload), ensure_ascii=False, default=str),
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }
    # A returned row means it was inserted (rowcount is unreliable here on psycopg).
    return _insert_notice(conn).first(conn, values) is not None


#: INSERT .. ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, built once per dialect.
_INSERT_NOTICE: dict[str, Prepared] = {}


def _insert_notice(conn: Connection) -> Prepared:
    statement = _INSERT_NOTICE.get(conn.dialect.name)
    if statement is None:
        statement = _INSERT_NOTICE[conn.dialect.name] = Prepared(
            db.dialect_insert(conn, deliveries_table)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(deliveries_table.c.id)
        )
    return statement


def release_expired_claims(conn: Connection, now: datetime) -> list[str]:
    """Hand back deliveries whose worker died holding the claim; returns their task ids.
    The next worker asks the transport `find_posted` before sending again."""
    d = deliveries_table.c
    expired = conn.execute(
        select(d.id, d.task_id).where(
            d.status.in_(("pending", "retrying")),
            d.claimed_by.is_not(None),
            d.claim_expires_at < now,
        )
    ).all()
    if not expired:
        return []
    conn.execute(
        update(deliveries_table)
        .where(d.id.in_([row.id for row in expired]), d.claim_expires_at < now)
        .values(claimed_by=None, claim_expires_at=None, updated_at=now)
    )
    return sorted({row.task_id for row in expired if row.task_id})


# -- claiming and recording (the delivery worker's side) -----------------------------------

D = deliveries_table.c
OPEN = ("pending", "retrying")
#: Notice kinds whose outcome the task's `delivery_status` summarizes.
TERMINAL_KINDS = ("terminal", "correction")


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        D.status.in_(OPEN),
        D.next_attempt_at <= now,
        or_(D.claimed_by.is_(None), D.claim_expires_at < now),
    )


def due_counts(conn: Connection, now: datetime) -> dict[str, int]:
    """How many unclaimed notices are due now, per destination channel."""
    rows = conn.execute(
        select(D.channel_key, func.count()).where(_due(now)).group_by(D.channel_key)
    ).all()
    return {row[0]: int(row[1]) for row in rows}


def claim(
    conn: Connection,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    wants: Mapping[str, int],
) -> list[dict[str, Any]]:
    """Claim up to `wants[channel_key]` due notices per channel, oldest first, by
    compare-and-set (rows locked with SKIP LOCKED on PostgreSQL). Each claimed row counts
    one attempt; `prior_attempts` in the result tells whether it was tried before."""
    claimed: list[dict[str, Any]] = []
    skip_locked = conn.dialect.name == "postgresql"
    for channel_key, limit in wants.items():
        if limit <= 0:
            continue
        query = (
            select(deliveries_table)
            .where(D.channel_key == channel_key, _due(now))
            .order_by(D.next_attempt_at, D.id)
            .limit(limit)
        )
        if skip_locked:
            query = query.with_for_update(skip_locked=True)
        rows = {r["id"]: dict(r) for r in conn.execute(query).mappings()}
        if not rows:
            continue
        won = conn.execute(
            update(deliveries_table)
            .where(D.id.in_(list(rows)), _due(now))
            .values(
                claimed_by=worker_id,
                claim_expires_at=now + lease,
                attempts=D.attempts + 1,
                updated_at=now,
            )
            .returning(D.id)
        ).scalars()
        for row_id in sorted(won):
            row = rows[row_id]
            row["prior_attempts"] = row["attempts"]
            row["attempts"] += 1
            row["claimed_by"] = worker_id
            claimed.append(row)
    return claimed


def renew_claims(conn: Connection, ids: list[int], worker_id: str, until: datetime) -> int:
    if not ids:
        return 0
    result = conn.execute(
        update(deliveries_table)
        .where(D.id.in_(ids), D.claimed_by == worker_id, D.status.in_(OPEN))
        .values(claim_expires_at=until)
    )
    return int(result.rowcount)


def defer(conn: Connection, ids: list[int], worker_id: str, until: datetime) -> None:
    """Put claimed notices back, due again at `until` (waiting for an earlier notice)."""
    if ids:
        conn.execute(
            update(deliveries_table)
            .where(D.id.in_(ids), D.claimed_by == worker_id, D.status.in_(OPEN))
            .values(claimed_by=None, claim_expires_at=None, next_attempt_at=until)
        )


def message_to_edit(conn: Connection, task_id: str, target: str) -> str | None:
    """The platform message of the latest delivered started/progress notice for this task
    at this destination (what a `state_changes` progress update edits)."""
    value: str | None = conn.execute(
        select(D.platform_message_id)
        .where(
            D.task_id == task_id,
            D.target == target,
            D.kind.in_(("started", "progress")),
            D.status == "delivered",
            D.route != "digest",
            D.platform_message_id.is_not(None),
        )
        .order_by(D.id.desc())
        .limit(1)
    ).scalar()
    return value


def earlier_open(conn: Connection, row: Mapping[str, Any]) -> bool:
    """Whether an earlier started/progress notice for this task and destination is still
    unsent (a progress update waits for the message it edits)."""
    found = conn.execute(
        select(D.id)
        .where(
            D.task_id == row["task_id"],
            D.target == row["target"],
            D.kind.in_(("started", "progress")),
            D.status.in_(OPEN),
            D.id < row["id"],
        )
        .limit(1)
    ).first()
    return found is not None


def _settle(
    conn: Connection, row: Mapping[str, Any], worker_id: str, values: Mapping[str, Any]
) -> bool:
    """Write an outcome on a row we still hold; False when our claim was lost."""
    result = conn.execute(
        update(deliveries_table)
        .where(D.id == row["id"], D.claimed_by == worker_id, D.status.in_(OPEN))
        .values(claimed_by=None, claim_expires_at=None, **values)
    )
    won = result.rowcount == 1
    if won and row["task_id"] and row["kind"] in TERMINAL_KINDS:
        refresh_delivery_status(conn, row["task_id"])
    return won


def record_delivered(
    conn: Connection,
    row: Mapping[str, Any],
    worker_id: str,
    now: datetime,
    *,
    route: str,
    channel_key: str,
    message_id: str | None,
) -> bool:
    return _settle(
        conn,
        row,
        worker_id,
        {
            "status": "delivered",
            "route": route,
            "channel_key": channel_key,
            "platform_message_id": message_id,
            "delivered_at": now,
            "updated_at": now,
        },
    )


def record_delivered_many(
    conn: Connection,
    rows: Sequence[Mapping[str, Any]],
    worker_id: str,
    now: datetime,
    *,
    route: str,
    channel_key: str,
    message_id: str | None,
) -> int:
    """Record several notices shown by one message (a digest). Returns how many we held."""
    if not rows:
        return 0
    won = conn.execute(
        update(deliveries_table)
        .where(D.id.in_([r["id"] for r in rows]), D.claimed_by == worker_id, D.status.in_(OPEN))
        .values(
            claimed_by=None,
            claim_expires_at=None,
            status="delivered",
            route=route,
            channel_key=channel_key,
            platform_message_id=message_id,
            delivered_at=now,
            updated_at=now,
        )
        .returning(D.id)
    ).scalars()
    ids = set(won)
    for task_id in sorted(
        {
            r["task_id"]
            for r in rows
            if r["id"] in ids and r["task_id"] and r["kind"] in TERMINAL_KINDS
        }
    ):
        refresh_delivery_status(conn, task_id)
    return len(ids)


def record_retry(
    conn: Connection,
    row: Mapping[str, Any],
    worker_id: str,
    now: datetime,
    *,
    error: str,
    next_attempt_at: datetime,
    route: str | None = None,
    channel_key: str | None = None,
) -> bool:
    """A transient failure: try again at `next_attempt_at` (on `route`, when an earlier
    route failed for good), or `failed` past the deadline."""
    if now >= row["deadline_at"]:
        return record_failed(conn, row, worker_id, now, error=f"deadline passed: {error}")
    return _settle(
        conn,
        row,
        worker_id,
        {
            "status": "retrying",
            "route": route or row["route"],
            "channel_key": channel_key or row["channel_key"],
            "last_error": error[:2000],
            "next_attempt_at": min(next_attempt_at, row["deadline_at"]),
            "updated_at": now,
        },
    )


def record_next_route(
    conn: Connection,
    row: Mapping[str, Any],
    worker_id: str,
    now: datetime,
    *,
    route: str,
    channel_key: str,
    error: str,
) -> bool:
    """A permanent failure on one route: the next route is due at once."""
    return _settle(
        conn,
        row,
        worker_id,
        {
            "status": "pending",
            "route": route,
            "channel_key": channel_key,
            "last_error": error[:2000],
            "next_attempt_at": now,
            "updated_at": now,
        },
    )


def record_failed(
    conn: Connection, row: Mapping[str, Any], worker_id: str, now: datetime, *, error: str
) -> bool:
    return _settle(
        conn, row, worker_id, {"status": "failed", "last_error": error[:2000], "updated_at": now}
    )


def refresh_delivery_status(conn: Connection, task_id: str) -> str | None:
    """Set the task's `delivery_status` from its terminal notices: failed, retrying,
    pending, delivered or dismissed. Returns the value (None: no terminal notice yet)."""
    statuses = [
        row.status
        for row in conn.execute(
            select(D.status, D.attempts).where(
                D.task_id == task_id, D.kind.in_(TERMINAL_KINDS), D.status != "superseded"
            )
        )
    ]
    if not statuses:
        return None
    for value in ("failed", "retrying", "pending"):
        if value in statuses:
            break
    else:
        value = "delivered" if all(s == "delivered" for s in statuses) else "dismissed"
    conn.execute(
        update(tasks_table).where(tasks_table.c.task_id == task_id).values(delivery_status=value)
    )
    return value
