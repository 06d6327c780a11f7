"""Proof: whether the artifacts a task claims are really there ("succeeded" versus
"succeeded and proven", SPEC §2).

An artifact with expectations (`artifacts.proof`) is checked by `ledger.proof_checks`; this
module decides *when* (the scheduler's due list, or `proof check REF` now), records each
check's outcome on the artifact, and keeps the task's summary `proof_status` in step, in the
same transaction:

- `verified` when every check passed; `failed` when some check has failed for good (a
  permanent problem such as a denied host, or still failing at the proof deadline);
  `unchecked` otherwise (not checked yet, or failing but to be re-checked).
- A failing check is retried with backoff (`proof_recheck` doubling up to
  `proof_recheck_max`) until `proof_deadline` after the task ended (or after the artifact
  was added, whichever is later). While the task is still running there is no deadline.
- When a succeeded task becomes proven, or its proof fails, one `proof` notice goes to its
  thread(s) unless its policy is `silent`.

Checks never run inside a database transaction: due artifacts are claimed (their
`next_check_at` moved past the check's duration, compare-and-set), checked, then recorded.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, or_, select, update

from ledger import db
from ledger.config import LedgerConfig
from ledger.lookup import fetch_row, resolve_row
from ledger.proof_checks import CheckLimits, CheckRequest, CheckResult, run_checks
from ledger.queries import get_task
from ledger.records import TaskRecord
from ledger.schema import artifacts_table, tasks_table
from ledger.status import EventKind, ProofStatus, Status
from ledger.transitions import bump

A = artifacts_table.c
T = tasks_table.c
_CAS_ATTEMPTS = 50
#: Tasks whose outcomes are recorded per write transaction (short write-lock holds).
_RECORD_BATCH = 50
#: Statuses whose artifacts are no longer checked on a schedule (`proof check` still can).
_GIVEN_UP = (Status.FAILED.value, Status.TIMED_OUT.value, Status.CANCELLED.value)


@dataclass(frozen=True, slots=True)
class ProofPass:
    """What one scheduled pass did."""

    checked: int
    verified: int
    failed: int
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Due:
    artifact_id: int
    task_id: str
    created_at: datetime
    request: CheckRequest


def check_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Run every proof check of one task now (whatever its schedule) and return the task
    with its artifacts."""
    with db.read(engine) as conn:
        task_id = str(resolve_row(conn, ref, tenant)["task_id"])
        rows = conn.execute(
            select(*_COLUMNS).where(A.task_id == task_id, A.proof.is_not(None)).order_by(A.id)
        ).mappings()
        due = [_due(row) for row in rows]
    _check_and_record(engine, config, due, now=now, actor=actor)
    with db.read(engine) as conn:
        return get_task(conn, task_id, details=True)


def run_due_checks(
    engine: Engine,
    config: LedgerConfig,
    *,
    now: datetime,
    limit: int = 100,
    actor: str | None = "proof",
) -> ProofPass:
    """Check the artifacts that are due (and those whose task ended since their last
    check), at most `limit` of them. Called by the scheduler."""
    due = _claim_due(engine, config, now=now, limit=limit)
    results = _check_and_record(engine, config, due, now=now, actor=actor)
    return ProofPass(
        checked=len(results),
        verified=sum(1 for r in results if r.passed),
        failed=sum(1 for r in results if not r.passed),
        task_ids=tuple(dict.fromkeys(d.task_id for d in due)),
    )


_COLUMNS = (A.id, A.task_id, A.kind, A.value, A.proof, A.created_at)


def _due(row: Mapping[Any, Any]) -> _Due:
    proof = json.loads(row["proof"]) if row["proof"] else {}
    return _Due(
        row["id"],
        row["task_id"],
        row["created_at"],
        CheckRequest(row["kind"], row["value"], proof if isinstance(proof, dict) else {}),
    )


def _claim_lease(config: LedgerConfig) -> timedelta:
    """How long a claimed check may take before another pass may take it over."""
    return config.proof_timeout * 2 + timedelta(seconds=30)


def _claim_due(engine: Engine, config: LedgerConfig, *, now: datetime, limit: int) -> list[_Due]:
    """Claim up to `limit` due artifacts: their `next_check_at` moves past the time a check
    can take, so no other pass takes them meanwhile (rows are locked while claiming:
    `FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite)."""
    lease = _claim_lease(config)
    with db.write(engine) as conn:
        query = (
            select(*_COLUMNS, T.status)
            .join(tasks_table, T.task_id == A.task_id)
            .where(
                A.next_check_at.is_not(None),
                or_(
                    A.next_check_at <= now,
                    # The task ended since the last check: check at once rather than at the
                    # end of a long backoff (a claimed row is never further out than `lease`).
                    T.ended_at.is_not(None)
                    & (A.checked_at.is_(None) | (A.checked_at < T.ended_at))
                    & (A.next_check_at > now + lease),
                ),
            )
            .order_by(A.next_check_at, A.id)
            .limit(max(1, limit))
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=artifacts_table, skip_locked=True)
        rows = conn.execute(query).mappings().all()
        stop = [r["id"] for r in rows if r["status"] in _GIVEN_UP or not r["proof"]]
        take = [r for r in rows if r["status"] not in _GIVEN_UP and r["proof"]]
        if stop:
            conn.execute(update(artifacts_table).where(A.id.in_(stop)).values(next_check_at=None))
        if take:
            conn.execute(
                update(artifacts_table)
                .where(A.id.in_([r["id"] for r in take]))
                .values(next_check_at=now + lease)
            )
    return [_due(row) for row in take]


def _check_and_record(
    engine: Engine,
    config: LedgerConfig,
    due: Sequence[_Due],
    *,
    now: datetime,
    actor: str | None,
) -> list[CheckResult]:
    """Run the checks (no transaction open), then record them a batch of tasks per write
    transaction."""
    if not due:
        return []
    results = run_checks([d.request for d in due], CheckLimits.from_config(config), now)
    by_task: dict[str, list[tuple[_Due, CheckResult]]] = defaultdict(list)
    for item, result in zip(due, results, strict=True):
        by_task[item.task_id].append((item, result))
    task_ids = list(by_task)
    for start in range(0, len(task_ids), _RECORD_BATCH):
        batch = task_ids[start : start + _RECORD_BATCH]
        with db.write(engine) as conn:
            record_outcomes(conn, config, {t: by_task[t] for t in batch}, now=now, actor=actor)
    return results


def record_outcomes(
    conn: Connection,
    config: LedgerConfig,
    outcomes: Mapping[str, Sequence[tuple[_Due, CheckResult]]],
    *,
    now: datetime,
    actor: str | None,
) -> None:
    """Store each check's outcome on its artifact and settle each task's proof status, in
    the caller's write transaction: one read of the tasks, one batched artifact update, one
    read of their artifacts, then a compare-and-set per task whose summary changed."""
    tasks = {
        row["task_id"]: dict(row)
        for row in conn.execute(select(tasks_table).where(T.task_id.in_(list(outcomes)))).mappings()
    }  # a task pruned while we checked is simply missing
    params: list[dict[str, Any]] = []
    for task_id, items in outcomes.items():
        task = tasks.get(task_id)
        if task is None:
            continue
        for due, result in items:
            status, next_check_at = verdict(result, due.created_at, task, config, now)
            params.append(
                {
                    "b_id": due.artifact_id,
                    "b_status": status,
                    "b_checked": now,
                    "b_detail": result.detail,
                    "b_next": next_check_at,
                }
            )
    if not params:
        return
    conn.execute(
        update(artifacts_table)
        .where(A.id == bindparam("b_id"))
        .values(
            proof_status=bindparam("b_status"),
            checked_at=bindparam("b_checked"),
            detail=bindparam("b_detail"),
            next_check_at=bindparam("b_next"),
        ),
        params,
    )
    checks: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(
        select(A.task_id, A.kind, A.value, A.proof_status, A.next_check_at, A.detail)
        .where(A.task_id.in_(list(tasks)), A.proof.is_not(None))
        .order_by(A.id)
    ):
        checks[row.task_id].append(row)
    for task_id, task in tasks.items():
        settle(conn, config, task, now=now, actor=actor, checks=checks[task_id])


def verdict(
    result: CheckResult,
    artifact_created_at: datetime,
    task: Mapping[str, Any],
    config: LedgerConfig,
    now: datetime,
) -> tuple[str, datetime | None]:
    """The artifact's proof status after a check, and when to check it again (None: never
    on a schedule)."""
    if result.passed:
        return ProofStatus.VERIFIED.value, None
    if result.permanent:
        return ProofStatus.FAILED.value, None
    ended_at: datetime | None = task["ended_at"]
    if ended_at is None or Status(task["status"]).is_active:
        return ProofStatus.FAILED.value, now + _backoff(now - artifact_created_at, config)
    start = max(artifact_created_at, ended_at)
    deadline = start + config.proof_deadline
    if now >= deadline:
        return ProofStatus.FAILED.value, None
    return ProofStatus.FAILED.value, min(now + _backoff(now - start, config), deadline)


def _backoff(elapsed: timedelta, config: LedgerConfig) -> timedelta:
    """About half the time already spent waiting, within [proof_recheck, proof_recheck_max]:
    a doubling schedule that needs no attempt counter."""
    return min(config.proof_recheck_max, max(config.proof_recheck, elapsed / 2))


def summarize(conn: Connection, task_id: str) -> str | None:
    """The task's proof status from its artifacts' checks (None: nothing to check)."""
    return summary_of(_checks(conn, task_id))


def summary_of(checks: Sequence[Any]) -> str | None:
    if not checks:
        return None
    if all(r.proof_status == ProofStatus.VERIFIED for r in checks):
        return ProofStatus.VERIFIED.value
    if any(r.proof_status == ProofStatus.FAILED and r.next_check_at is None for r in checks):
        return ProofStatus.FAILED.value
    return ProofStatus.UNCHECKED.value


def _checks(conn: Connection, task_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(A.task_id, A.kind, A.value, A.proof_status, A.next_check_at, A.detail)
            .where(A.task_id == task_id, A.proof.is_not(None))
            .order_by(A.id)
        )
    )


def settle(
    conn: Connection,
    config: LedgerConfig,
    task: Mapping[str, Any],
    *,
    now: datetime,
    actor: str | None,
    checks: Sequence[Any] | None = None,
) -> dict[str, Any] | None:
    """Bring the task's `proof_status` in line with its artifacts' checks (compare-and-set,
    with a `proof_checked` event), and queue the follow-up notice when a success became
    proven or its proof failed. Returns the new row, or None when nothing changed."""
    if checks is None:
        checks = _checks(conn, task["task_id"])
    new = summary_of(checks)
    row: dict[str, Any] | None = dict(task)
    for _ in range(_CAS_ATTEMPTS):
        if row is None or new is None or new == row["proof_status"]:
            return None
        detail = proof_detail(checks, new)
        changed = bump(
            conn,
            row,
            {"proof_status": new},
            kind=EventKind.PROOF_CHECKED,
            now=now,
            actor=actor,
            summary=f"proof {new}" + (f": {detail}" if detail else ""),
        )
        if changed is not None:
            if changed["status"] == Status.SUCCEEDED and new != ProofStatus.UNCHECKED:
                enqueue_proof_notice(conn, config, changed, detail, now=now)
            return changed
        row = fetch_row(conn, task["task_id"])
    return None


def proof_detail(checks: Sequence[Any], status: str, limit: int = 300) -> str:
    """One line about the checks: every check when proven, the failing ones otherwise."""
    rows = list(checks)
    if status != ProofStatus.VERIFIED:
        rows = [r for r in rows if r.proof_status != ProofStatus.VERIFIED] or rows
    text = "; ".join(f"{r.kind} {_short(r.value, 60)}: {r.detail or r.proof_status}" for r in rows)
    return _short(text, limit)


def enqueue_proof_notice(
    conn: Connection,
    config: LedgerConfig,
    row: Mapping[str, Any],
    detail: str,
    *,
    now: datetime,
) -> int:
    """One `proof` notice per destination (reply_to and followers), idempotent per task and
    proof status; none under `silent`. Returns the rows added."""
    from ledger.notify import first_route, notice_key, notice_payload, notice_targets
    from ledger.outbox import enqueue_notice
    from ledger.status import NotifyPolicy

    if row["notify_policy"] == NotifyPolicy.SILENT:
        return 0
    payload = notice_payload(row, event="proof", now=now)
    payload["proof_detail"] = detail
    added = 0
    for target in notice_targets(conn, row):
        added += enqueue_notice(
            conn,
            tenant=row["tenant"],
            task_id=row["task_id"],
            kind="proof",
            target=target,
            payload=payload,
            key=notice_key(row["task_id"], "proof", str(row["proof_status"]), target),
            now=now,
            config=config,
            route=first_route(target),
        )
    return added


def _short(text: str, limit: int) -> str:
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
