"""Audit: the records where work gets quietly dropped (SPEC §6).

Every check is one or two SQL statements over an index (status, cleanup_after, the
deliveries' status/due index, or `ix_tasks_status_proof_ended`); the task table is never
loaded, so one pass stays well under two seconds at a million tasks. Each check counts
every match (the summary) and fetches at most `limit` of them, oldest first; the report
sorts errors first, then oldest.

Each finding says what to do about it (`remedy`) and whether `maintenance --apply` fixes it
(`fixable`). Maintenance uses the same findings to report before/after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select, true

from ledger import db
from ledger.config import LedgerConfig
from ledger.ids import short_id
from ledger.reconcile import read_state, write_state
from ledger.schema import deliveries_table, events_table, state_table, tasks_table
from ledger.stats import AUDITOR_KEY_PREFIX as AUDITOR_KEY
from ledger.status import ACTIVE, ENDED, TERMINAL, EventKind, Status
from ledger.timeutil import humanize_age, isoformat, parse_iso

T = tasks_table.c
D = deliveries_table.c
E = events_table.c

ERROR = "error"
WARN = "warn"
SEVERITIES = (WARN, ERROR)

CODES: dict[str, str] = {
    "stale_queued": WARN,
    "stale_running": ERROR,
    "lost": ERROR,
    "delivery_failed": WARN,
    "delivery_stuck": WARN,
    "unproven_success": WARN,
    "cancel_stuck": WARN,
    "inconsistent": WARN,
    "missing_cleanup": WARN,
    "auditor_gap": ERROR,
}

#: ledger_state key prefix under which the scheduled auditor records its passes.
DIGEST_KEY = "audit:digest"

_ACTIVE = [s.value for s in ACTIVE]
_ENDED = [s.value for s in ENDED]
_TERMINAL = [s.value for s in TERMINAL]
_BOTH = [False, True]


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str
    task_id: str | None
    status: str | None
    age_seconds: int
    detail: str
    remedy: str
    tenant: str | None = None
    #: True when `maintenance --apply` fixes it.
    fixable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "task_id": self.task_id,
            "status": self.status,
            "age_seconds": self.age_seconds,
            "detail": self.detail,
            "remedy": self.remedy,
            "tenant": self.tenant,
            "fixable": self.fixable,
        }

    @property
    def sort_key(self) -> tuple[int, int, str, str]:
        return (
            0 if self.severity == ERROR else 1,
            -self.age_seconds,
            self.code,
            self.task_id or "",
        )


@dataclass(frozen=True, slots=True)
class AuditReport:
    at: datetime
    findings: tuple[Finding, ...]
    #: Every matching finding per code (not cut by `limit`).
    counts: Mapping[str, int]

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.counts.items() if CODES[code] == ERROR)

    @property
    def warnings(self) -> int:
        return sum(n for code, n in self.counts.items() if CODES[code] == WARN)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        return {
            "at": isoformat(self.at),
            "total": self.total,
            "errors": self.errors,
            "warnings": self.warnings,
            "shown": len(self.findings),
            "by_code": {code: self.counts.get(code, 0) for code in CODES},
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "findings": [f.to_json() for f in self.findings]}


def _age(now: datetime, at: datetime | None) -> int:
    return max(0, int((now - at).total_seconds())) if at is not None else 0


def _ago(seconds: float) -> str:
    return humanize_age(seconds) + " ago"


# -- the checks ----------------------------------------------------------------------------

Rows = list[Mapping[str, Any]]
Check = Callable[
    [Connection, LedgerConfig, datetime, "int | None", "str | None"], tuple[int, list[Finding]]
]


def _collect(
    conn: Connection, query: Select[Any], order: Sequence[Any], limit: int | None
) -> tuple[int, Rows]:
    ordered = query.order_by(*order)
    if limit is not None:
        ordered = ordered.limit(limit)
    # .all(): one fetch call; iterating a result fetches row by row
    rows: Rows = [dict(r) for r in conn.execute(ordered).mappings().all()]
    if limit is None or len(rows) < limit:
        return len(rows), rows  # all of them: no count to ask for (nor to compile)
    count = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    return int(count), rows


def _scope(query: Select[Any], tenant: str | None) -> Select[Any]:
    return query.where(T.tenant == tenant) if tenant is not None else query


def _task_columns() -> list[Any]:
    return [T.task_id, T.tenant, T.status, T.created_at, T.ended_at, T.last_event_at]


def check_stale_queued(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(*_task_columns()).where(
            T.status == Status.QUEUED.value, T.created_at < now - config.stale_queued
        ),
        tenant,
    )
    count, rows = _collect(conn, query, [T.created_at, T.task_id], limit)
    findings = [
        Finding(
            "stale_queued",
            WARN,
            r["task_id"],
            r["status"],
            _age(now, r["created_at"]),
            f"queued {_ago((now - r['created_at']).total_seconds())} and never started",
            f"the producer must start it, or `tasktrail cancel {short_id(r['task_id'])}`; "
            "maintenance never changes a queued task",
            r["tenant"],
        )
        for r in rows
    ]
    return count, findings


def check_stale_running(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(
            *_task_columns(),
            T.lease_expires_at,
            T.grace_until,
            T.origin,
            T.probe_kind,
        ).where(T.status == Status.RUNNING.value, T.last_event_at < now - config.stale_running),
        tenant,
    )
    count, rows = _collect(conn, query, [T.last_event_at, T.task_id], limit)
    findings = []
    for r in rows:
        ref = short_id(r["task_id"])
        lease = r["lease_expires_at"]
        deadline = lease + config.lost_grace if lease is not None else None
        if r["grace_until"] is not None and deadline is not None:
            deadline = max(deadline, r["grace_until"])
        fixable = r["origin"] is None and deadline is not None and now >= deadline
        if r["origin"] is not None:
            remedy = f"mirrored from {r['origin']}: its liveness is decided there"
        elif fixable:
            remedy = (
                f"maintenance --apply reconciles it: asks its {r['probe_kind']} probe, "
                "else marks it lost"
            )
        elif lease is not None and lease > now:
            remedy = (
                f"its lease runs until {isoformat(lease)}; `tasktrail cancel {ref}` if the "
                "work is gone"
            )
        else:
            remedy = f"in its grace window until {isoformat(deadline)}; the reconciler decides then"
        findings.append(
            Finding(
                "stale_running",
                ERROR,
                r["task_id"],
                r["status"],
                _age(now, r["last_event_at"]),
                f"running, no heartbeat or event for "
                f"{humanize_age((now - r['last_event_at']).total_seconds())}",
                remedy,
                r["tenant"],
                fixable,
            )
        )
    return count, findings


def check_lost(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(*_task_columns(), T.error).where(
            T.status == Status.LOST.value, T.acknowledged_at.is_(None)
        ),
        tenant,
    )
    count, rows = _collect(conn, query, [T.ended_at, T.task_id], limit)
    return count, [
        Finding(
            "lost",
            ERROR,
            r["task_id"],
            r["status"],
            _age(now, r["ended_at"] or r["last_event_at"]),
            r["error"] or "marked lost",
            f"`tasktrail dismiss {short_id(r['task_id'])}` acknowledges it; a late report "
            "from the producer recovers it",
            r["tenant"],
        )
        for r in rows
    ]


def _delivery_query(tenant: str | None) -> Select[Any]:
    query = select(
        D.id,
        D.task_id,
        D.tenant,
        D.kind,
        D.target,
        D.status.label("delivery_status"),
        D.attempts,
        D.last_error,
        D.next_attempt_at,
        D.updated_at,
        D.claimed_by,
        D.claim_expires_at,
        T.status,
        T.notify_policy,
    ).select_from(deliveries_table.outerjoin(tasks_table, T.task_id == D.task_id))
    return query.where(D.tenant == tenant) if tenant is not None else query


def check_delivery_failed(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _delivery_query(tenant).where(
        D.status == "failed", or_(T.notify_policy.is_(None), T.notify_policy != "silent")
    )
    count, rows = _collect(conn, query, [D.updated_at, D.id], limit)
    findings = []
    for r in rows:
        if r["task_id"]:
            ref = short_id(r["task_id"])
            remedy = (
                f"`tasktrail retry {ref}` re-queues it; `tasktrail dismiss {ref}` marks it handled"
            )
        else:
            remedy = "check TASKTRAIL_OPS_CHANNEL; this notice is not about one task"
        findings.append(
            Finding(
                "delivery_failed",
                WARN,
                r["task_id"],
                r["status"],
                _age(now, r["updated_at"]),
                f"{r['kind']} notice to {r['target']} failed after {r['attempts']} attempt(s)"
                + (f": {r['last_error']}" if r["last_error"] else ""),
                remedy,
                r["tenant"],
            )
        )
    return count, findings


def check_delivery_stuck(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _delivery_query(tenant).where(
        D.status.in_(("pending", "retrying")), D.next_attempt_at < now - config.delivery_stuck
    )
    count, rows = _collect(conn, query, [D.next_attempt_at, D.id], limit)
    findings = []
    for r in rows:
        dead_claim = r["claimed_by"] is not None and (
            r["claim_expires_at"] is None or r["claim_expires_at"] < now
        )
        if dead_claim:
            remedy = (
                "maintenance --apply hands it back from the dead worker; a running "
                "`tasktrail worker` or `serve` then sends it"
            )
        elif r["claimed_by"] is not None:
            remedy = f"worker {r['claimed_by']} holds it; wait for its claim to end"
        else:
            remedy = "no worker is sending it: run `tasktrail worker` or `tasktrail serve`"
        findings.append(
            Finding(
                "delivery_stuck",
                WARN,
                r["task_id"],
                r["status"],
                _age(now, r["next_attempt_at"]),
                f"{r['kind']} notice to {r['target']} due "
                f"{_ago((now - r['next_attempt_at']).total_seconds())}, not sent "
                f"({r['delivery_status']}, {r['attempts']} attempt(s))",
                remedy,
                r["tenant"],
                # Maintenance can only hand it back; sending is a delivery worker's job.
                False,
            )
        )
    return count, findings


def check_unproven_success(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(*_task_columns(), T.proof_status).where(
            T.status == Status.SUCCEEDED.value,
            T.proof_required.is_(true()),
            or_(T.proof_status.is_(None), T.proof_status != "verified"),
        ),
        tenant,
    )
    count, rows = _collect(conn, query, [T.ended_at, T.task_id], limit)
    return count, [
        Finding(
            "unproven_success",
            WARN,
            r["task_id"],
            r["status"],
            _age(now, r["ended_at"]),
            f"succeeded, proof required, proof {r['proof_status'] or 'missing'}",
            f"`tasktrail proof check {short_id(r['task_id'])}` runs its proof checks",
            r["tenant"],
        )
        for r in rows
    ]


def check_cancel_stuck(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(*_task_columns(), T.cancel_requested_at, T.origin).where(
            T.status.in_(_ACTIVE), T.cancel_requested_at < now - config.cancel_stuck
        ),
        tenant,
    )
    count, rows = _collect(conn, query, [T.cancel_requested_at, T.task_id], limit)
    findings = []
    for r in rows:
        fixable = r["status"] == Status.RUNNING.value and r["origin"] is None
        findings.append(
            Finding(
                "cancel_stuck",
                WARN,
                r["task_id"],
                r["status"],
                _age(now, r["cancel_requested_at"]),
                f"cancel requested {_ago((now - r['cancel_requested_at']).total_seconds())}; "
                "the runner has not confirmed",
                "maintenance --apply finalizes it as cancelled (runner did not confirm)"
                if fixable
                else f"`tasktrail finish {short_id(r['task_id'])} --status cancelled`",
                r["tenant"],
                fixable,
            )
        )
    return count, findings


def check_inconsistent(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    """Ended without `ended_at`, active with `ended_at` (any task, by index seek), and the
    newest status event disagreeing with the status (active and lost tasks, and tasks that
    ended within the last `stale_running` + audit interval)."""
    items: list[tuple[dict[str, Any], str, bool]] = []
    no_end = _scope(
        select(*_task_columns()).where(
            T.status.in_(_ENDED), T.proof_required.in_(_BOTH), T.ended_at.is_(None)
        ),
        tenant,
    )
    for r in map(dict, conn.execute(no_end).mappings()):
        items.append((r, f"{r['status']} without ended_at", True))
    has_end = _scope(
        select(*_task_columns()).where(T.status.in_(_ACTIVE), T.ended_at.is_not(None)), tenant
    )
    for r in map(dict, conn.execute(has_end).mappings()):
        items.append((r, f"{r['status']} but has ended_at {isoformat(r['ended_at'])}", True))

    recent = now - config.stale_running - config.audit_interval
    # The newest status-bearing event (refusals carry the refused status: skipped), found
    # by walking the (task_id, seq) index backwards: one probe per task in scope.
    outer_id = T.task_id
    event_status = (
        select(E.to_status)
        .where(
            E.task_id == outer_id,
            E.to_status.is_not(None),
            E.kind != EventKind.LATE_UPDATE_IGNORED.value,
        )
        .order_by(E.seq.desc())
        .limit(1)
        .correlate(tasks_table)
        .scalar_subquery()
    )
    scopes = (
        T.status.in_([*_ACTIVE, Status.LOST.value]),
        and_(T.status.in_(_TERMINAL), T.proof_required.in_(_BOTH), T.ended_at >= recent),
    )
    for in_scope in scopes:
        # only the disagreeing rows come back: the comparison runs in the database, which
        # otherwise sends every active task across to be compared here
        query = _scope(
            select(*_task_columns(), event_status.label("said")).where(
                in_scope, event_status.is_distinct_from(T.status)
            ),
            tenant,
        )
        for r in map(dict, conn.execute(query).mappings()):
            said = r["said"]
            detail = (
                f"status {r['status']} but its events say {said}"
                if said
                else f"status {r['status']} but no event records it"
            )
            items.append((r, detail, False))
    findings = []
    for row, detail, fixable in items:
        r = row
        ref = short_id(r["task_id"])
        findings.append(
            Finding(
                "inconsistent",
                WARN,
                r["task_id"],
                r["status"],
                _age(now, r["last_event_at"]),
                detail,
                "maintenance --apply corrects ended_at"
                if fixable
                else f"inspect `tasktrail show {ref} --events`; maintenance does not rewrite "
                "history",
                r["tenant"],
                fixable,
            )
        )
    findings.sort(key=lambda f: (-f.age_seconds, f.task_id or ""))
    return len(findings), findings[:limit] if limit is not None else findings


def check_missing_cleanup(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    query = _scope(
        select(*_task_columns()).where(T.cleanup_after.is_(None), T.status.in_(_ENDED)),
        tenant,
    )
    count, rows = _collect(conn, query, [T.last_event_at, T.task_id], limit)
    return count, [
        Finding(
            "missing_cleanup",
            WARN,
            r["task_id"],
            r["status"],
            _age(now, r["ended_at"] or r["last_event_at"]),
            f"{r['status']} without cleanup_after (never pruned)",
            "maintenance --apply stamps cleanup_after from its retention",
            r["tenant"],
            True,
        )
        for r in rows
    ]


def check_auditor_gap(
    conn: Connection, config: LedgerConfig, now: datetime, limit: int | None, tenant: str | None
) -> tuple[int, list[Finding]]:
    rows = conn.execute(
        select(state_table.c.key, state_table.c.value).where(
            state_table.c.key.like(AUDITOR_KEY + "%")
        )
    ).all()
    findings = []
    for key, value in rows:
        try:
            data = json.loads(value)
            at = parse_iso(data["at"])
            interval = timedelta(seconds=float(data["interval"]))
        except (ValueError, KeyError, TypeError):
            continue
        if now - at <= 3 * interval:
            continue
        job = key[len(AUDITOR_KEY) :]
        findings.append(
            Finding(
                "auditor_gap",
                ERROR,
                None,
                None,
                _age(now, at),
                f"the scheduled {job} pass last completed {_ago((now - at).total_seconds())} "
                f"(every {humanize_age(interval.total_seconds())})",
                "start the scheduled auditor: `tasktrail auditor`, `tasktrail worker` or "
                "`tasktrail serve`",
            )
        )
    findings.sort(key=lambda f: f.sort_key)
    return len(findings), findings[:limit] if limit is not None else findings


CHECKS: dict[str, Check] = {
    "stale_queued": check_stale_queued,
    "stale_running": check_stale_running,
    "lost": check_lost,
    "delivery_failed": check_delivery_failed,
    "delivery_stuck": check_delivery_stuck,
    "unproven_success": check_unproven_success,
    "cancel_stuck": check_cancel_stuck,
    "inconsistent": check_inconsistent,
    "missing_cleanup": check_missing_cleanup,
    "auditor_gap": check_auditor_gap,
}


def audit(
    engine: Engine,
    config: LedgerConfig,
    *,
    now: datetime,
    severity: str | None = None,
    code: str | Iterable[str] | None = None,
    limit: int | None = None,
    tenant: str | None = None,
) -> AuditReport:
    """Run the checks in one read snapshot. `severity="error"` keeps error-level findings
    only (`"warn"`: everything); `code` one code or several; `limit` cuts the finding list
    (the summary still counts every match)."""
    from ledger.exceptions import InvalidInput

    if severity is not None and severity not in SEVERITIES:
        raise InvalidInput("severity", f"{severity!r} is not warn or error")
    codes = [code] if isinstance(code, str) else list(code or CODES)
    for name in codes:
        if name not in CODES:
            raise InvalidInput("code", f"{name!r} is not one of: {', '.join(CODES)}")
    if severity == ERROR:
        codes = [c for c in codes if CODES[c] == ERROR]
    if limit is not None and limit < 0:
        raise InvalidInput("limit", "must not be negative")
    counts: dict[str, int] = {}
    findings: list[Finding] = []
    with db.read(engine) as conn:
        for name in codes:
            count, found = CHECKS[name](conn, config, now, limit, tenant)
            counts[name] = count
            findings.extend(found)
    findings.sort(key=lambda f: f.sort_key)
    if limit is not None:
        findings = findings[:limit]
    return AuditReport(at=now, findings=tuple(findings), counts=counts)


# -- the scheduled auditor's records -------------------------------------------------------


def record_scheduled_pass(engine: Engine, job: str, interval: timedelta, *, now: datetime) -> None:
    """The scheduler calls this after each completed pass (feeds `auditor_gap`)."""
    value = json.dumps({"at": isoformat(now), "interval": interval.total_seconds()})
    with db.write(engine) as conn:
        write_state(conn, AUDITOR_KEY + job, value, now)


def enqueue_digest(
    engine: Engine, config: LedgerConfig, report: AuditReport, *, now: datetime
) -> bool:
    """Queue one `audit_digest` notice to `config.ops_channel` when the set of error-level
    findings differs from the one the previous digest described. Returns True if queued."""
    from ledger.outbox import enqueue_notice

    errors = [f for f in report.findings if f.severity == ERROR]
    current = sorted({f"{f.code}:{f.task_id or ''}" for f in errors})
    fingerprint = hashlib.sha256("\n".join(current).encode()).hexdigest()
    with db.write(engine) as conn:
        stored = read_state(conn, DIGEST_KEY)
        previous: list[str] = json.loads(stored)["findings"] if stored else []
        if sorted(previous) == current:
            return False
        write_state(conn, DIGEST_KEY, json.dumps({"findings": current}), now)
        if config.ops_channel is None:
            return False
        new = [f for f in errors if f"{f.code}:{f.task_id or ''}" not in set(previous)]
        resolved = len(set(previous) - set(current))
        enqueue_notice(
            conn,
            tenant="ops",
            task_id=None,
            kind="audit_digest",
            target=config.ops_channel,
            payload={
                "findings": [f.to_json() for f in new],
                "text": digest_text(new, errors, resolved),
            },
            key=f"audit_digest:{isoformat(now)}:{fingerprint[:16]}",
            now=now,
            config=config,
            route="ops",
        )
        return True


def digest_text(new: Sequence[Finding], current: Sequence[Finding], resolved: int) -> str:
    head = (
        f"tasktrail audit: {len(current)} error-level finding(s)"
        f" ({len(new)} new, {resolved} resolved)"
    )
    lines = [head]
    for f in new[:20]:
        ref = short_id(f.task_id) if f.task_id else "-"
        lines.append(f"• {f.code} {ref}: {f.detail}")
    if len(new) > 20:
        lines.append(f"… and {len(new) - 20} more (`tasktrail audit --severity error`)")
    return "\n".join(lines)
