"""Maintenance and retention (SPEC §7): preview by default, `apply=True` writes.

One run, in order:

1. `reconcile` — lost verdicts, recoveries by probe, lease extensions, outage grace;
2. `cancel_finalized` — running tasks whose cancel the runner did not confirm within
   `config.cancel_stuck` become `cancelled` ("runner did not confirm");
3. `deliveries_requeued` — deliveries held by a worker whose claim expired are handed back;
4. `ended_at_fixed` — ended records without `ended_at` get one, active ones lose theirs;
5. `cleanup_stamped` — ended tasks without `cleanup_after` get `ended_at` + retention for
   their status;
6. `pruned` — ended tasks past `cleanup_after` are deleted with their events, artifacts,
   deliveries and followers, in small batches found through `ix_tasks_cleanup_after`, each
   its own short transaction, with a pause between batches so waiting writers get the lock.

Queued tasks are never changed. The report names the task ids per action, the audit
summary before and after (in preview, `audit_after` is the projection: the findings
maintenance would not fix), and the findings left for an operator with their remedies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    select,
    update,
)

from ledger import db
from ledger.audit import CODES, AuditReport, Finding, audit
from ledger.config import LedgerConfig
from ledger.ids import short_id
from ledger.lookup import fetch_row
from ledger.probes import Probe
from ledger.reconcile import reconcile
from ledger.schema import (
    artifacts_table,
    deliveries_table,
    events_table,
    followers_table,
    tasks_table,
)
from ledger.status import ACTIVE, ENDED, Status
from ledger.timeutil import humanize_age, isoformat
from ledger.transitions import Refused, transition

T = tasks_table.c
D = deliveries_table.c
ACTOR = "maintenance"
_ENDED = [s.value for s in ENDED]
_ACTIVE = [s.value for s in ACTIVE]
#: How many findings a report keeps for the before/after projection and the remainder.
FINDINGS_CAP = 10_000
REMAINING_SHOWN = 200

ACTIONS = (
    "marked_lost",
    "recovered",
    "lease_extended",
    "grace_granted",
    "cancel_finalized",
    "deliveries_requeued",
    "ended_at_fixed",
    "cleanup_stamped",
    "pruned",
)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    mode: str
    at: datetime
    actions: Mapping[str, tuple[str, ...]]
    audit_before: Mapping[str, Any]
    audit_after: Mapping[str, Any]
    #: Findings maintenance does not fix, each with the command that would.
    remaining: tuple[Finding, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "at": isoformat(self.at),
            "actions": {name: list(ids) for name, ids in self.actions.items()},
            "audit_before": dict(self.audit_before),
            "audit_after": dict(self.audit_after),
            "remaining": [f.to_json() for f in self.remaining[:REMAINING_SHOWN]],
        }


def run_maintenance(
    engine: Engine,
    config: LedgerConfig,
    *,
    now: datetime,
    apply: bool = False,
    batch_size: int | None = None,
    pause: float | None = None,
    probes: Mapping[str, Probe] | None = None,
) -> MaintenanceReport:
    if apply:
        from ledger.deferred_indexes import restore_indexes

        # indexes a bulk load that died half-way set aside (ledger.deferred_indexes)
        restore_indexes(engine, now=now)
    before = audit(engine, config, now=now, limit=FINDINGS_CAP)
    actions: dict[str, list[str]] = {name: [] for name in ACTIONS}

    passed = reconcile(engine, config, now=now, apply=apply, probes=probes, actor=ACTOR)
    actions["marked_lost"] = list(passed.marked_lost)
    actions["recovered"] = list(passed.recovered)
    actions["lease_extended"] = list(passed.lease_extended)
    actions["grace_granted"] = list(passed.grace_granted)
    actions["cancel_finalized"] = finalize_stuck_cancels(engine, config, now=now, apply=apply)
    actions["deliveries_requeued"] = requeue_stuck_deliveries(engine, now=now, apply=apply)
    actions["ended_at_fixed"] = fix_ended_at(engine, now=now, apply=apply)
    stamped, stamped_expired = stamp_cleanup(engine, config, now=now, apply=apply)
    actions["cleanup_stamped"] = stamped
    if apply:
        actions["pruned"] = prune(engine, now=now, batch_size=batch_size, pause=pause)
    else:
        actions["pruned"] = sorted({*expired_ids(engine, now=now), *stamped_expired})

    if apply:
        after = audit(engine, config, now=now, limit=FINDINGS_CAP)
        after_summary = after.summary()
        remaining = tuple(f for f in after.findings if not f.fixable)
    else:
        remaining, after_summary = _projection(before, actions, passed.details, now)
    return MaintenanceReport(
        mode="apply" if apply else "preview",
        at=now,
        actions={name: tuple(ids) for name, ids in actions.items()},
        audit_before=before.summary(),
        audit_after=after_summary,
        remaining=remaining,
    )


def _projection(
    before: AuditReport,
    actions: Mapping[str, list[str]],
    lost_why: Mapping[str, str],
    now: datetime,
) -> tuple[tuple[Finding, ...], dict[str, Any]]:
    """What audit would say after `--apply`: fixable findings and pruned tasks gone, new
    `lost` findings for the tasks the reconciler would mark lost."""
    pruned = set(actions["pruned"])
    touched = set(actions["recovered"]) | set(actions["cancel_finalized"])
    kept = [
        f
        for f in before.findings
        if not f.fixable and f.task_id not in pruned and f.task_id not in touched
    ]
    for task_id in actions["marked_lost"]:
        kept.append(
            Finding(
                "lost",
                "error",
                task_id,
                Status.LOST.value,
                0,
                lost_why.get(task_id, "would be marked lost"),
                f"`tasktrail dismiss {short_id(task_id)}` acknowledges it; a late report "
                "from the producer recovers it",
            )
        )
    kept.sort(key=lambda f: f.sort_key)
    counts = {code: 0 for code in CODES}
    for f in kept:
        counts[f.code] += 1
    # Findings beyond the cap were not fetched: carry their counts over unchanged.
    for code, n in before.counts.items():
        shown = sum(1 for f in before.findings if f.code == code)
        counts[code] += max(0, n - shown)
    projected = AuditReport(at=now, findings=tuple(kept), counts=counts)
    summary = projected.summary()
    summary["projected"] = True
    return tuple(kept), summary


def finalize_stuck_cancels(
    engine: Engine, config: LedgerConfig, *, now: datetime, apply: bool
) -> list[str]:
    cutoff = now - config.cancel_stuck
    query = select(T.task_id).where(
        T.status == Status.RUNNING.value,
        T.origin.is_(None),
        T.cancel_requested_at.is_not(None),
        T.cancel_requested_at < cutoff,
    )
    with db.read(engine) as conn:
        ids = list(conn.execute(query).scalars())
    if not apply:
        return sorted(ids)
    done: list[str] = []
    waited = humanize_age(config.cancel_stuck.total_seconds())
    for task_id in ids:
        with db.write(engine) as conn:
            row = fetch_row(conn, task_id)
            if (
                row is None
                or row["status"] != Status.RUNNING.value
                or row["cancel_requested_at"] is None
                or row["cancel_requested_at"] >= cutoff
            ):
                continue
            note = f"cancelled: runner did not confirm the cancel within {waited}"
            if row["cancel_reason"]:
                note += f" ({row['cancel_reason']})"
            try:
                moved = transition(
                    conn,
                    row,
                    Status.CANCELLED,
                    now=now,
                    config=config,
                    actor=ACTOR,
                    summary="runner did not confirm",
                    extra={"terminal_summary": note},
                )
            except Refused:
                continue
            if moved is not None:
                done.append(task_id)
    return sorted(done)


def requeue_stuck_deliveries(engine: Engine, *, now: datetime, apply: bool) -> list[str]:
    if apply:
        from ledger.outbox import release_expired_claims

        with db.write(engine) as conn:
            return release_expired_claims(conn, now)
    with db.read(engine) as conn:
        ids = conn.execute(
            select(D.task_id).where(
                D.status.in_(("pending", "retrying")),
                D.claimed_by.is_not(None),
                D.claim_expires_at < now,
            )
        ).scalars()
        return sorted({i for i in ids if i})


def fix_ended_at(engine: Engine, *, now: datetime, apply: bool) -> list[str]:
    """Ended records without `ended_at` get the time of their last event; active records
    lose a stray `ended_at`. No status changes."""
    with db.read(engine) as conn:
        no_end = conn.execute(
            select(T.task_id, T.created_at, T.started_at, T.last_event_at).where(
                T.status.in_(_ENDED), T.proof_required.in_([False, True]), T.ended_at.is_(None)
            )
        ).all()
        stray = list(
            conn.execute(
                select(T.task_id).where(T.status.in_(_ACTIVE), T.ended_at.is_not(None))
            ).scalars()
        )
    ids = sorted([r.task_id for r in no_end] + stray)
    if not apply or not ids:
        return ids
    with db.write(engine) as conn:
        for r in no_end:
            ended = max(r.last_event_at, r.started_at or r.created_at, r.created_at)
            conn.execute(
                update(tasks_table)
                .where(T.task_id == r.task_id, T.ended_at.is_(None), T.status.in_(_ENDED))
                .values(ended_at=ended)
            )
        if stray:
            conn.execute(
                update(tasks_table)
                .where(T.task_id.in_(stray), T.status.in_(_ACTIVE))
                .values(ended_at=None)
            )
    return ids


def stamp_cleanup(
    engine: Engine, config: LedgerConfig, *, now: datetime, apply: bool
) -> tuple[list[str], list[str]]:
    """Ended tasks without `cleanup_after` get `ended_at` + their status's retention.
    Returns (stamped ids, ids whose new cleanup time has already passed)."""
    with db.read(engine) as conn:
        rows = conn.execute(
            select(T.task_id, T.status, T.ended_at, T.last_event_at).where(
                T.cleanup_after.is_(None), T.status.in_(_ENDED)
            )
        ).all()
    stamps = {
        r.task_id: (r.ended_at or r.last_event_at) + config.retention_for(r.status) for r in rows
    }
    expired = sorted(task_id for task_id, at in stamps.items() if at < now)
    if apply and stamps:
        items = list(stamps.items())
        for start in range(0, len(items), 500):
            with db.write(engine) as conn:
                for task_id, at in items[start : start + 500]:
                    conn.execute(
                        update(tasks_table)
                        .where(T.task_id == task_id, T.cleanup_after.is_(None))
                        .values(cleanup_after=at)
                    )
    return sorted(stamps), expired


def _expired_query(now: datetime, limit: int | None = None, after: datetime | None = None) -> Any:
    query = (
        select(T.task_id, T.cleanup_after)
        .where(T.cleanup_after < now, T.status.in_(_ENDED))
        .order_by(T.cleanup_after)
    )
    if after is not None:
        # Resume where the previous batch stopped: on PostgreSQL the index still holds the
        # entries of rows just deleted (dead until vacuumed); rescanning them from the
        # start every batch would make the prune quadratic.
        query = query.where(T.cleanup_after >= after)
    return query.limit(limit) if limit is not None else query


def expired_ids(engine: Engine, *, now: datetime) -> list[str]:
    """The ids `prune` would delete now (unordered: the preview sorts them). Only the id
    is read: a mirror can have most of its tasks past retention, and converting each one's
    `cleanup_after` back to a datetime cost more than the query."""
    # `status || ''`: the status condition must not use an index, so that SQLite (which
    # has no statistics and takes any status as selective) ranges over the cleanup_after
    # index and reads only the expired rows, not every ended one (half the time here)
    query = select(T.task_id).where(T.cleanup_after < now, T.status.concat("").in_(_ENDED))
    with db.read(engine) as conn:
        # .all() fetches in one call: iterating a result fetches row by row
        return list(conn.execute(query).scalars().all())


#: (batch size, pause in seconds) per database. SQLite has one writer at a time: batches
#: that hold the lock for tens of milliseconds, and a short pause in which a waiting writer
#: (polling for the lock every few ms, see ledger.db) takes it. bench/audit.py, 500k tasks:
#: 1.64x the time of one raw DELETE, writer stall p99 52 ms. PostgreSQL locks rows, not the
#: database: writers never queue behind the prune.
PRUNE_PACING = {"sqlite": (1000, 0.003), "postgresql": (10_000, 0.0)}


def prune(
    engine: Engine,
    *,
    now: datetime,
    batch_size: int | None = None,
    pause: float | None = None,
    limit: int | None = None,
) -> list[str]:
    """Delete ended tasks past `cleanup_after` (with their child rows), `batch_size` per
    transaction, sleeping `pause` seconds between batches (defaults per database:
    `PRUNE_PACING`). Returns the deleted task ids."""
    default_size, default_pause = PRUNE_PACING.get(engine.dialect.name, (500, 0.01))
    batch_size = batch_size or default_size
    pause = default_pause if pause is None else pause
    sqlite = engine.dialect.name == "sqlite"
    pruned: list[str] = []
    after: datetime | None = None
    while limit is None or len(pruned) < limit:
        size = batch_size if limit is None else min(batch_size, limit - len(pruned))
        with db.write(engine) as conn:
            if sqlite:
                # Other writers' commits empty this connection's page cache before every
                # batch; reading the file through mmap makes re-reading it cheap.
                conn.exec_driver_sql(f"PRAGMA mmap_size = {_SQLITE_MMAP}")
            rows = conn.execute(_expired_query(now, size, after)).all()
            if not rows:
                break
            ids = [row.task_id for row in rows]
            after = rows[-1].cleanup_after
            delete_tasks(conn, ids)
        pruned.extend(ids)
        if sqlite:
            _checkpoint(engine)
        if len(ids) < size:
            break
        if pause:
            time.sleep(pause)
    return pruned


_SQLITE_MMAP = 1 << 30


def _checkpoint(engine: Engine) -> None:
    """Copy the batch's WAL pages into the database now, on the pruner's time: otherwise the
    commit of whichever writer crosses the auto-checkpoint threshold does it (and stalls).
    PASSIVE: never waits for a lock, never blocks writers."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def delete_tasks(conn: Connection, ids: list[str]) -> None:
    """Delete the tasks and their child rows. The ids travel as ONE parameter (a PostgreSQL
    array, a JSON array read by SQLite's json_each), not one bound value per id."""
    for table in (events_table, artifacts_table, deliveries_table, followers_table, tasks_table):
        conn.execute(delete(table).where(db.one_of(conn, table.c.task_id, ids)))
