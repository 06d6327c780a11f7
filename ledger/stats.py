"""Operational read model: counts for `/metrics`, figures for `/healthz`, the tenant list
for the operator's board, and small housekeeping queries the serving process needs. Each
function takes an `Engine` and returns plain values or frozen records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select, text, update

from ledger import db
from ledger.schema import deliveries_table, state_table, tasks_table

#: Prefix of the ledger_state keys where the scheduled auditor records each completed pass.
#: `ledger_state` keys of the scheduled auditor's pass records (written by ledger.audit).
AUDITOR_KEY_PREFIX = "auditor:"
#: Ids per `IN (...)` list when checking ownership of many tasks.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class TaskCount:
    status: str
    runtime: str
    count: int


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """Tasks by (status, runtime) and outbox rows by status."""

    tasks: tuple[TaskCount, ...]
    deliveries: tuple[DeliveryCount, ...]


@dataclass(frozen=True, slots=True)
class Health:
    #: The SQLAlchemy dialect name (`sqlite`, `postgresql`).
    backend: str
    #: Deliveries due now (pending or retrying with next_attempt_at <= now).
    delivery_backlog: int
    #: When the scheduled auditor last recorded a completed pass (None: never).
    last_auditor_pass_at: datetime | None

    def last_auditor_pass_age(self, now: datetime) -> float | None:
        if self.last_auditor_pass_at is None:
            return None
        return (now - self.last_auditor_pass_at).total_seconds()


def counts(engine: Engine) -> LedgerCounts:
    t = tasks_table.c
    d = deliveries_table.c
    with db.read(engine) as conn:
        tasks = tuple(
            TaskCount(status, runtime, int(count))
            for status, runtime, count in conn.execute(
                select(t.status, t.runtime, func.count()).group_by(t.status, t.runtime)
            )
        )
        deliveries = tuple(
            DeliveryCount(status, int(count))
            for status, count in conn.execute(select(d.status, func.count()).group_by(d.status))
        )
    return LedgerCounts(tasks, deliveries)


def health(engine: Engine, now: datetime) -> Health:
    """Raises whatever the driver raises when the database does not answer."""
    d = deliveries_table.c
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        backlog = conn.execute(
            select(func.count()).where(
                d.status.in_(("pending", "retrying")), d.next_attempt_at <= now
            )
        ).scalar_one()
        last_pass = conn.execute(
            select(func.max(state_table.c.updated_at)).where(
                state_table.c.key.startswith(AUDITOR_KEY_PREFIX, autoescape=True)
            )
        ).scalar()
        conn.rollback()
    return Health(engine.dialect.name, int(backlog), last_pass)


def tenants(engine: Engine) -> list[str]:
    """Every tenant that has a task, sorted."""
    with db.read(engine) as conn:
        return sorted(conn.execute(select(tasks_table.c.tenant).distinct()).scalars())


def owned_task_ids(engine: Engine, tenant: str, task_ids: Iterable[str]) -> set[str]:
    """The subset of `task_ids` that belongs to `tenant`."""
    owned: set[str] = set()
    pending = sorted(set(task_ids))
    with db.read(engine) as conn:
        for start in range(0, len(pending), _CHUNK):
            chunk = pending[start : start + _CHUNK]
            owned.update(
                conn.execute(
                    select(tasks_table.c.task_id).where(
                        tasks_table.c.task_id.in_(chunk), tasks_table.c.tenant == tenant
                    )
                ).scalars()
            )
    return owned


def release_claims(engine: Engine, worker_id: str) -> None:
    """Hand back every unfinished delivery `worker_id` holds, so another worker takes it
    now rather than when the claim lease runs out."""
    d = deliveries_table.c
    with db.write(engine) as conn:
        conn.execute(
            update(deliveries_table)
            .where(d.claimed_by == worker_id, d.status.in_(("pending", "retrying")))
            .values(claimed_by=None, claim_expires_at=None)
        )
