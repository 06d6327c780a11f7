"""Reconciliation: "lost" is a verdict, not a vibe (SPEC §4).

One pass looks at running tasks whose lease has expired and asks each task's probe
(`ledger.probes`) before judging:

- the probe reports a terminal status → the task gets that status (a `lost` task that a
  cron run record later proves finished is recovered the same way, recorded `recovered`);
- the probe reports the work alive → the lease is extended (`lease_extended` event);
- gone or silent → nothing until the grace window (`config.lost_grace` after the lease
  expired, and any outage grace) has passed; then `lost`, with an error naming the probe
  and what it found.

Outage guard: every completed pass is recorded in `ledger_state`. When the previous pass is
older than 3 × `config.reconcile_interval` (the process was down, the database unreachable),
every running task whose lease has expired first gets one fresh grace window
(`grace_until`) — no burst of false "lost" after a restart.

Never touched: queued tasks (their remedy is the producer or `cancel`) and mirrored tasks
(`origin` set: their liveness belongs to the system they are mirrored from).
Probes run outside any write transaction; each verdict is written with compare-and-set, so a
heartbeat that lands while a probe runs wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from ledger import db
from ledger.config import LedgerConfig
from ledger.lookup import fetch_row
from ledger.probes import CRON_STATUS, PROBES, Probe, ProbeResult, Verdict
from ledger.schema import cron_runs_table, events_table, state_table, tasks_table
from ledger.status import EventKind, Status
from ledger.timeutil import humanize_age, isoformat, parse_iso
from ledger.transitions import Refused, bump, lease_expiry, transition

T = tasks_table.c
PASS_KEY = "reconcile:last_pass"  # noqa: S105 (a state key, not a secret)
ACTOR = "reconciler"
#: Verdicts are written in transactions of at most this many tasks.
WRITE_BATCH = 100


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one pass did (`applied`) or would do (preview). Task ids per action."""

    at: datetime
    applied: bool
    outage: bool
    previous_pass: datetime | None
    marked_lost: tuple[str, ...] = ()
    recovered: tuple[str, ...] = ()
    lease_extended: tuple[str, ...] = ()
    grace_granted: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    details: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": isoformat(self.at),
            "mode": "apply" if self.applied else "preview",
            "outage_guard": self.outage,
            "previous_pass": isoformat(self.previous_pass),
            "marked_lost": list(self.marked_lost),
            "recovered": list(self.recovered),
            "lease_extended": list(self.lease_extended),
            "grace_granted": list(self.grace_granted),
            "waiting": list(self.waiting),
        }


# -- small named state ---------------------------------------------------------------------


def read_state(conn: Connection, key: str) -> str | None:
    return conn.execute(
        select(state_table.c.value).where(state_table.c.key == key)
    ).scalar_one_or_none()


def write_state(conn: Connection, key: str, value: str, now: datetime) -> None:
    statement = db.dialect_insert(conn, state_table).values(key=key, value=value, updated_at=now)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"value": value, "updated_at": now}
        )
    )


def last_pass(engine: Engine) -> datetime | None:
    with db.read(engine) as conn:
        value = read_state(conn, PASS_KEY)
    return parse_iso(value) if value else None


# -- the pass ------------------------------------------------------------------------------


@dataclass
class _Plan:
    lost: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    ended: list[tuple[dict[str, Any], ProbeResult, str]] = field(default_factory=list)
    alive: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


def reconcile(
    engine: Engine,
    config: LedgerConfig,
    *,
    now: datetime,
    apply: bool = True,
    probes: Mapping[str, Probe] | None = None,
    actor: str = ACTOR,
) -> ReconcileReport:
    """One reconciliation pass. `apply=False` decides everything (probes included) and
    writes nothing, not even the pass record."""
    probes = probes or PROBES
    with db.read(engine) as conn:
        previous_text = read_state(conn, PASS_KEY)
        candidates = _expired_running(conn, now)
        lost_cron = _lost_with_cron_run(conn)
    previous = parse_iso(previous_text) if previous_text else None
    outage = previous is not None and now - previous > 3 * config.reconcile_interval

    granted: list[str] = []
    if outage:
        assert previous is not None
        granted = _grant_grace(engine, config, candidates, previous, now, apply=apply)
        grace_until = now + config.lost_grace
        for row in candidates:
            if row["task_id"] in set(granted):
                row["grace_until"] = grace_until

    plan = _judge(engine, config, candidates, lost_cron, probes, now)
    report_ids: dict[str, list[str]] = {"lost": [], "ended": [], "alive": []}
    details: dict[str, str] = {}
    if apply:
        report_ids = _write(engine, config, plan, now=now, actor=actor, details=details)
        with db.write(engine) as conn:
            stored = read_state(conn, PASS_KEY)
            if stored is None or parse_iso(stored) < now:
                write_state(conn, PASS_KEY, isoformat(now) or "", now)
    else:
        report_ids = {
            "lost": [r["task_id"] for r, _ in plan.lost],
            "ended": [r["task_id"] for r, _, _ in plan.ended],
            "alive": [r["task_id"] for r, _ in plan.alive],
        }
        details.update({r["task_id"]: why for r, why in plan.lost})
    return ReconcileReport(
        at=now,
        applied=apply,
        outage=outage,
        previous_pass=previous,
        marked_lost=tuple(report_ids["lost"]),
        recovered=tuple(report_ids["ended"]),
        lease_extended=tuple(report_ids["alive"]),
        grace_granted=tuple(granted),
        waiting=tuple(plan.waiting),
        details=details,
    )


def _expired_running(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(tasks_table).where(
            T.status == Status.RUNNING.value,
            T.origin.is_(None),
            T.lease_expires_at.is_not(None),
            T.lease_expires_at <= now,
        )
    ).mappings()
    return [dict(r) for r in rows]


def _lost_with_cron_run(conn: Connection) -> list[dict[str, Any]]:
    """`lost` cron-probed tasks whose run has since been recorded (late truth)."""
    c = cron_runs_table.c
    rows = conn.execute(
        select(tasks_table)
        .join(cron_runs_table, and_(c.tenant == T.tenant, c.run_id == T.run_id))
        .where(
            T.status == Status.LOST.value,
            T.probe_kind == "cron",
            T.origin.is_(None),
            c.status.in_(list(CRON_STATUS)),
        )
    ).mappings()
    return [dict(r) for r in rows]


def _grant_grace(
    engine: Engine,
    config: LedgerConfig,
    candidates: Sequence[Mapping[str, Any]],
    previous: datetime,
    now: datetime,
    *,
    apply: bool,
) -> list[str]:
    """One fresh grace window for every running task at risk, unless it already got one
    for an outage after the last good pass."""
    grace_until = now + config.lost_grace
    eligible = [
        r["task_id"] for r in candidates if r["grace_until"] is None or r["grace_until"] < previous
    ]
    if not apply or not eligible:
        return sorted(eligible)
    summary = (
        f"outage guard: no reconcile pass since {isoformat(previous)} "
        f"({humanize_age((now - previous).total_seconds())}); "
        f"grace until {isoformat(grace_until)}"
    )
    granted: list[str] = []
    for chunk in _chunks(eligible, 500):
        with db.write(engine) as conn:
            returned = conn.execute(
                update(tasks_table)
                .where(
                    T.task_id.in_(chunk),
                    T.status == Status.RUNNING.value,
                    or_(T.grace_until.is_(None), T.grace_until < previous),
                )
                .values(grace_until=grace_until, version=T.version + 1)
                .returning(T.task_id, T.version)
            ).all()
            if returned:
                conn.execute(
                    insert(events_table),
                    [
                        {
                            "task_id": task_id,
                            "seq": version,
                            "at": now,
                            "kind": EventKind.GRACE_GRANTED.value,
                            "from_status": None,
                            "to_status": None,
                            "actor": ACTOR,
                            "summary": summary,
                        }
                        for task_id, version in returned
                    ],
                )
            granted.extend(task_id for task_id, _ in returned)
    return sorted(granted)


def _judge(
    engine: Engine,
    config: LedgerConfig,
    candidates: Iterable[dict[str, Any]],
    lost_cron: Iterable[dict[str, Any]],
    probes: Mapping[str, Probe],
    now: datetime,
) -> _Plan:
    plan = _Plan()
    for row in candidates:
        kind = row["probe_kind"] or "heartbeat"
        deadline = row["lease_expires_at"] + config.lost_grace
        if row["grace_until"] is not None:
            deadline = max(deadline, row["grace_until"])
        past_grace = now >= deadline
        if kind == "heartbeat" and not past_grace:
            plan.waiting.append(row["task_id"])
            continue
        probe = probes.get(kind, probes["heartbeat"])
        try:
            result = probe.check(engine, row, now)
        except Exception as error:  # a broken probe must not stop the pass
            result = ProbeResult(Verdict.SILENT, f"probe failed: {error}")
        if result.verdict is Verdict.ENDED and result.status is not None:
            plan.ended.append((row, result, kind))
        elif result.verdict is Verdict.ALIVE:
            plan.alive.append((row, f"{kind} probe: {result.detail}"))
        elif past_grace:
            expired = isoformat(row["lease_expires_at"])
            grace = humanize_age(config.lost_grace.total_seconds())
            why = (
                f"lost: no backing after the lease expired at {expired} and a {grace} grace "
                f"window ({kind} probe: {result.detail})"
            )
            plan.lost.append((row, why))
        else:
            plan.waiting.append(row["task_id"])
    for row in lost_cron:
        result = probes.get("cron", PROBES["cron"]).check(engine, row, now)
        if result.verdict is Verdict.ENDED and result.status is not None:
            plan.ended.append((row, result, "cron"))
    return plan


def _write(
    engine: Engine,
    config: LedgerConfig,
    plan: _Plan,
    *,
    now: datetime,
    actor: str,
    details: dict[str, str],
) -> dict[str, list[str]]:
    done: dict[str, list[str]] = {"lost": [], "ended": [], "alive": []}
    work: list[tuple[str, dict[str, Any], Any]] = (
        [("ended", r, (res, kind)) for r, res, kind in plan.ended]
        + [("alive", r, why) for r, why in plan.alive]
        + [("lost", r, why) for r, why in plan.lost]
    )
    for chunk in _chunks(work, WRITE_BATCH):
        with db.write(engine) as conn:
            for action, probed, info in chunk:
                row = fetch_row(conn, probed["task_id"])
                if row is None or not _unchanged(row, probed):
                    continue  # the task moved on while we probed: it decides for itself
                if _apply_one(conn, config, action, row, info, now=now, actor=actor):
                    done[action].append(row["task_id"])
                    if action == "lost":
                        details[row["task_id"]] = info
    return done


def _unchanged(row: Mapping[str, Any], probed: Mapping[str, Any]) -> bool:
    if row["status"] != probed["status"]:
        return False
    if row["status"] == Status.RUNNING.value:
        lease = row["lease_expires_at"]
        return lease is not None and lease <= probed["lease_expires_at"]
    return True


def _apply_one(
    conn: Connection,
    config: LedgerConfig,
    action: str,
    row: dict[str, Any],
    info: Any,
    *,
    now: datetime,
    actor: str,
) -> bool:
    try:
        if action == "alive":
            return (
                bump(
                    conn,
                    row,
                    {"lease_expires_at": lease_expiry(row, config, now)},
                    kind=EventKind.LEASE_EXTENDED,
                    now=now,
                    actor=actor,
                    summary=str(info),
                )
                is not None
            )
        if action == "ended":
            result, kind = info
            extra: dict[str, Any] = {}
            if result.summary:
                extra["terminal_summary"] = result.summary
            if result.error:
                extra["error"] = result.error
            return (
                transition(
                    conn,
                    row,
                    result.status,
                    now=now,
                    config=config,
                    actor=actor,
                    summary=f"{kind} probe: {result.detail}",
                    extra=extra,
                )
                is not None
            )
        ended = max(now, row["started_at"] or row["created_at"])
        return (
            transition(
                conn,
                row,
                Status.LOST,
                now=now,
                config=config,
                actor=actor,
                summary=str(info),
                extra={
                    "error": str(info),
                    "cleanup_after": ended + config.retention_for(Status.LOST),
                },
            )
            is not None
        )
    except Refused:
        return False


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def outage_threshold(config: LedgerConfig) -> timedelta:
    return 3 * config.reconcile_interval
