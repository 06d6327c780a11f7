"""Operator controls over the delivery outbox (SPEC §5, §8): list notices, `retry` a task's
failed ones as a new generation under a new key, `dismiss` them (and acknowledge a `lost`
verdict)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from ledger import db
from ledger.address import parse_address
from ledger.config import LedgerConfig
from ledger.lookup import fetch_row, resolve_row
from ledger.outbox import enqueue_notice, refresh_delivery_status
from ledger.schema import deliveries_table
from ledger.status import EventKind, Status
from ledger.transitions import bump

D = deliveries_table.c


def list_deliveries(
    conn: Connection,
    *,
    status: str | None = None,
    task_id: str | None = None,
    tenant: str | None = None,
    limit: int | None = 100,
) -> list[dict[str, Any]]:
    """Outbox rows, newest first."""
    query = select(deliveries_table).order_by(D.id.desc())
    if status is not None:
        query = query.where(D.status == status)
    if task_id is not None:
        query = query.where(D.task_id == task_id)
    if tenant is not None:
        query = query.where(D.tenant == tenant)
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def requeue_failed(conn: Connection, task_id: str, now: datetime, config: LedgerConfig) -> int:
    """Queue each failed notice of the task again as a new generation with a new key (its
    first route, a fresh deadline); the failed row is marked `superseded`. Returns count."""
    failed = [
        dict(r)
        for r in conn.execute(
            select(deliveries_table)
            .where(D.task_id == task_id, D.status == "failed")
            .order_by(D.id)
        ).mappings()
    ]
    for row in failed:
        generation = int(row["generation"]) + 1
        base = row["idempotency_key"].split("#g", 1)[0]
        target = row["target"]
        route = "thread" if parse_address(target, "target").thread else "channel"
        conn.execute(
            update(deliveries_table)
            .where(D.id == row["id"], D.status == "failed")
            .values(status="superseded", updated_at=now)
        )
        enqueue_notice(
            conn,
            tenant=row["tenant"],
            task_id=task_id,
            kind=row["kind"],
            target=target,
            payload=json.loads(row["payload"]),
            key=f"{base[: 128 - 8]}#g{generation}",
            now=now,
            config=config,
            route=route,
            generation=generation,
        )
    if failed:
        refresh_delivery_status(conn, task_id)
    return len(failed)


def dismiss_failed(conn: Connection, task_id: str, now: datetime) -> int:
    """Mark the task's failed notices handled (`dismissed`). Returns how many."""
    result = conn.execute(
        update(deliveries_table)
        .where(D.task_id == task_id, D.status == "failed")
        .values(status="dismissed", updated_at=now)
    )
    if result.rowcount:
        refresh_delivery_status(conn, task_id)
    return int(result.rowcount)


def retry_deliveries(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    now: datetime,
    tenant: str | None = None,
) -> int:
    """`tasktrail retry REF`: re-queue the task's failed notices. Returns how many."""

    with db.write(engine) as conn:
        row = resolve_row(conn, ref, tenant)
        return requeue_failed(conn, row["task_id"], now, config)


def dismiss_deliveries(
    engine: Engine,
    ref: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> tuple[int, bool]:
    """`tasktrail dismiss REF`: mark the task's failed notices handled; on a `lost` task also
    acknowledge the verdict (its `lost` finding goes away, the task stays lost). Returns
    (notices dismissed, whether a lost verdict was acknowledged now)."""

    with db.write(engine) as conn:
        row = resolve_row(conn, ref, tenant)
        dismissed = dismiss_failed(conn, row["task_id"], now)
        acknowledged = False
        for _ in range(50):
            fresh = fetch_row(conn, row["task_id"])
            if fresh is None or fresh["status"] != Status.LOST or fresh["acknowledged_at"]:
                break
            if bump(
                conn,
                fresh,
                {"acknowledged_at": now, "last_event_at": fresh["last_event_at"]},
                kind=EventKind.ACKNOWLEDGED,
                now=now,
                actor=actor,
                summary="lost verdict acknowledged",
            ):
                acknowledged = True
                break
        return dismissed, acknowledged
