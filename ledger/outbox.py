"""The delivery outbox: notice rows written in the same transaction as the change that
made them due, claimed and sent by delivery workers (SPEC §5)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from ledger.address import parse_address
from ledger.config import LedgerConfig
from ledger.schema import deliveries_table


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
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(deliveries_table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    return bool(conn.execute(statement).rowcount == 1)


def release_expired_claims(conn: Connection, now: datetime) -> list[str]:
    """Hand back deliveries whose worker died holding the claim; returns their task ids.
    The next worker asks the transport `find_posted` before sending again."""
    from sqlalchemy import select, update

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
