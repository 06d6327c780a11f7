"""Task operations: create, start, heartbeat, progress, finish, cancel, set_notify, artifacts.

Each function runs one write transaction on the engine it is given and returns a frozen
`TaskRecord`. Per-event paths are Core statements: one read of the task, one compare-and-set
UPDATE, one event INSERT. A refused move commits its `late_update_ignored` event first and
then raises `IllegalTransition`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, insert, update

from ledger import db
from ledger.address import parse_address
from ledger.config import LedgerConfig
from ledger.exceptions import ConcurrentUpdate, IllegalTransition, InvalidInput, TaskNotFound
from ledger.ids import new_task_id
from ledger.lookup import fetch_row, resolve_row
from ledger.prepared import Prepared
from ledger.records import TaskRecord, task_from_row
from ledger.schema import artifacts_table, reply_columns, tasks_table
from ledger.status import (
    FINISH_STATUSES,
    ArtifactKind,
    EventKind,
    NotifyPolicy,
    Runtime,
    Status,
    parse_enum,
)
from ledger.text import BRIEF_MAX, KEY_MAX, LABEL_MAX, SUMMARY_MAX, VALUE_MAX, check_text
from ledger.transitions import Refused, bump, lease_expiry, record_refusal, transition, write_event

T = tasks_table.c
R = TypeVar("R")
_CAS_ATTEMPTS = 50

#: Which runners can act on a cancel request (see SPEC §4 "Cancel").
LIVE_RUNNERS = frozenset({"run", "track"})
LIVE_PROBES = frozenset({"pid", "http"})


def _with_row(
    engine: Engine,
    ref: str,
    tenant: str | None,
    step: Callable[[Connection, dict[str, Any]], dict[str, Any] | None],
    *,
    now: datetime,
    actor: str | None,
) -> TaskRecord:
    """Resolve `ref`, run `step` (which returns the new row, or None after losing a race),
    and retry with a fresh read until it wins. A `Refused` move is recorded, committed,
    and raised as `IllegalTransition`."""
    refusal: tuple[dict[str, Any], Refused] | None = None
    with db.write(engine) as conn:
        row = resolve_row(conn, ref, tenant)
        for _ in range(_CAS_ATTEMPTS):
            try:
                new_row = step(conn, row)
            except Refused as refused_move:
                record_refusal(
                    conn,
                    row,
                    refused_move.requested,
                    now=now,
                    actor=actor,
                    reason=refused_move.reason,
                )
                refusal = (row, refused_move)
                break
            if new_row is not None:
                return task_from_row(new_row)
            fresh = fetch_row(conn, row["task_id"])
            if fresh is None:
                raise TaskNotFound(ref)
            row = fresh
        else:
            raise ConcurrentUpdate(row["task_id"])
    assert refusal is not None
    row, refused = refusal
    raise IllegalTransition(
        row["task_id"], refused.current.value, refused.requested, refused.reason
    )


def create_task(
    engine: Engine,
    config: LedgerConfig,
    *,
    runtime: str,
    label: str,
    now: datetime,
    tenant: str = "default",
    task: str | None = None,
    task_kind: str | None = None,
    run_id: str | None = None,
    source_id: str | None = None,
    child_session_key: str | None = None,
    requester_session_key: str | None = None,
    parent: str | None = None,
    reply_to: str | None = None,
    notify: str | None = None,
    lease: float | timedelta | None = None,
    queued: bool = False,
    proof_required: bool = False,
    runner: str | None = None,
    probe: str = "heartbeat",
    probe_target: Mapping[str, Any] | None = None,
    origin: str | None = None,
    origin_ref: str | None = None,
    origin_detail: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Record a task (running with a lease, or queued). Idempotent on (tenant, run_id): a
    second create returns the existing task, filling in only fields it did not have."""
    runtime_value = parse_enum(Runtime, runtime, "runtime").value
    check_text(label, "label", LABEL_MAX, required=True)
    check_text(task, "task", BRIEF_MAX)
    check_text(tenant, "tenant", 200, required=True)
    for field, value in (
        ("task_kind", task_kind),
        ("run_id", run_id),
        ("source_id", source_id),
        ("child_session_key", child_session_key),
        ("requester_session_key", requester_session_key),
    ):
        check_text(
            value, field, 64 if field == "task_kind" else (255 if "id" in field else KEY_MAX)
        )
    address = str(parse_address(reply_to)) if reply_to else None
    if probe not in ("heartbeat", "pid", "http", "cron"):
        raise InvalidInput("probe", f"{probe!r} is not one of: heartbeat, pid, http, cron")
    lease_seconds: int | None = None
    if lease is not None:
        seconds = lease.total_seconds() if isinstance(lease, timedelta) else float(lease)
        if seconds <= 0:
            raise InvalidInput("lease", f"must be a positive number of seconds, not {lease}")
        lease_seconds = max(1, round(seconds))
    policy_text = notify

    with db.write(engine) as conn:
        parent_row = resolve_row(conn, parent, tenant) if parent else None
        if policy_text == "inherit":
            if parent_row is None:
                raise InvalidInput("notify", "'inherit' needs a parent task (--parent)")
            policy = parent_row["notify_policy"]
        elif policy_text:
            policy = parse_enum(NotifyPolicy, policy_text, "notify").value
        else:
            policy = config.notify_default(runtime_value).value
        status = Status.QUEUED if queued else Status.RUNNING
        values: dict[str, Any] = {
            "task_id": new_task_id(),
            "tenant": tenant,
            "runtime": runtime_value,
            "task_kind": task_kind,
            "label": label,
            "task": task,
            "status": status.value,
            "version": 1,
            "run_id": run_id,
            "source_id": source_id,
            "child_session_key": child_session_key,
            "requester_session_key": requester_session_key,
            "parent_task_id": parent_row["task_id"] if parent_row else None,
            "reply_to": address,
            **reply_columns(address),
            "notify_policy": policy,
            "delivery_status": "pending"
            if (address and policy != NotifyPolicy.SILENT)
            else "not_applicable",
            "created_at": now,
            "started_at": None,
            "ended_at": None,
            "last_event_at": now,
            "heartbeat_at": None,
            "lease_expires_at": None,
            "lease_seconds": lease_seconds,
            "grace_until": None,
            "cleanup_after": None,
            "progress_summary": None,
            "terminal_summary": None,
            "error": None,
            "cancel_requested_at": None,
            "cancel_reason": None,
            "runner": runner,
            "probe_kind": probe,
            "probe_target": json.dumps(dict(probe_target)) if probe_target else None,
            "proof_required": proof_required,
            "follower_count": 0,
            "proof_status": None,
            "acknowledged_at": None,
            "origin": origin,
            "origin_ref": origin_ref,
            "origin_detail": json.dumps(dict(origin_detail)) if origin_detail else None,
        }
        if status is Status.RUNNING:
            values["started_at"] = now
            values["heartbeat_at"] = now
            values["lease_expires_at"] = lease_expiry(values, config, now)
        if run_id is None:
            _INSERT_TASK.rowcount(conn, values)
        else:
            inserted = _insert_if_new(conn).first(conn, values)
            if inserted is None:
                return _merge_existing(conn, tenant, run_id, values, now=now, actor=actor)
        write_event(
            conn,
            values["task_id"],
            1,
            EventKind.CREATED,
            at=now,
            to_status=status.value,
            actor=actor,
            summary=None,
        )
        from ledger.notify import enqueue_for_transition

        before = dict(values, status=None)
        enqueue_for_transition(conn, before, values, kind=EventKind.CREATED, now=now, config=config)
        return task_from_row(values)


_INSERT_TASK = Prepared(insert(tasks_table))
#: INSERT .. ON CONFLICT (tenant, run_id) DO NOTHING RETURNING task_id, built once per dialect:
#: a returned row means we inserted (rowcount is not reliable for it on psycopg).
_INSERT_IF_NEW: dict[str, Prepared] = {}


def _insert_if_new(conn: Connection) -> Prepared:
    statement = _INSERT_IF_NEW.get(conn.dialect.name)
    if statement is None:
        statement = Prepared(
            db.dialect_insert(conn, tasks_table)
            .on_conflict_do_nothing(index_elements=["tenant", "run_id"])
            .returning(T.task_id)
        )
        _INSERT_IF_NEW[conn.dialect.name] = statement
    return statement


_INSERT_ARTIFACT = insert(artifacts_table)
_HEARTBEAT = Prepared(
    update(tasks_table).where(
        T.task_id == bindparam("_task_id"), T.version == bindparam("_version")
    )
)


#: Fields an idempotent re-create may fill in when the existing task lacks them.
_MERGEABLE = (
    "task",
    "task_kind",
    "source_id",
    "child_session_key",
    "requester_session_key",
    "parent_task_id",
    "reply_to",
)


def _merge_existing(
    conn: Connection,
    tenant: str,
    run_id: str,
    values: Mapping[str, Any],
    *,
    now: datetime,
    actor: str | None,
) -> TaskRecord:
    from sqlalchemy import select

    for _ in range(_CAS_ATTEMPTS):
        row = (
            conn.execute(select(tasks_table).where(T.tenant == tenant, T.run_id == run_id))
            .mappings()
            .first()
        )
        if row is None:  # pruned between our insert and read: nothing to merge into
            raise ConcurrentUpdate(run_id)
        missing = {f: values[f] for f in _MERGEABLE if row[f] is None and values[f] is not None}
        if not missing:
            return task_from_row(dict(row))
        merged = bump(
            conn,
            dict(row),
            missing,
            kind=EventKind.MERGED,
            now=now,
            actor=actor,
            summary="filled in " + ", ".join(sorted(missing)),
        )
        if merged is not None:
            return task_from_row(merged)
    raise ConcurrentUpdate(run_id)


def start_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
    runner: str | None = None,
) -> TaskRecord:
    """queued -> running; a no-op on a task that is already running."""

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["status"] == Status.RUNNING:
            return row
        extra = {"runner": runner} if runner else None
        return transition(
            conn, row, Status.RUNNING, now=now, config=config, actor=actor, extra=extra
        )

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def heartbeat_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Renew a running task's lease. No event row (heartbeats are frequent); refused, with a
    `late_update_ignored` event, on a task that is not running."""

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["status"] != Status.RUNNING:
            raise Refused(
                Status(row["status"]), "heartbeat", "only a running task takes heartbeats"
            )
        values = {
            "heartbeat_at": max(now, row["started_at"] or row["created_at"]),
            "lease_expires_at": lease_expiry(row, config, now),
            "last_event_at": max(now, row["last_event_at"]),
        }
        changed = _HEARTBEAT.rowcount(
            conn, {**values, "_task_id": row["task_id"], "_version": row["version"]}
        )
        if changed != 1:
            return None
        return {**row, **values}

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def progress_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    text: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Record progress on an active task (renews the lease of a running one)."""
    check_text(text, "text", SUMMARY_MAX, required=True)

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        status = Status(row["status"])
        if not status.is_active:
            raise Refused(status, "progress", "the task has ended")
        values: dict[str, Any] = {"progress_summary": text}
        if status is Status.RUNNING:
            values["heartbeat_at"] = max(now, row["started_at"] or row["created_at"])
            values["lease_expires_at"] = lease_expiry(row, config, now)
        new_row = bump(
            conn, row, values, kind=EventKind.PROGRESS, now=now, actor=actor, summary=text
        )
        if new_row is not None:
            from ledger.notify import enqueue_for_transition

            enqueue_for_transition(
                conn, row, new_row, kind=EventKind.PROGRESS, now=now, config=config
            )
        return new_row

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def finish_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    status: str,
    *,
    now: datetime,
    summary: str | None = None,
    error: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Move a task to a terminal status (from queued, running, or `lost` as late truth)."""
    requested = parse_enum(Status, status, "status")
    if requested not in FINISH_STATUSES:
        allowed = ", ".join(s.value for s in Status if s in FINISH_STATUSES)
        raise InvalidInput("status", f"{status!r} is not a finishing status ({allowed})")
    check_text(summary, "summary", SUMMARY_MAX)
    check_text(error, "error", SUMMARY_MAX)

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        extra: dict[str, Any] = {}
        if summary is not None:
            extra["terminal_summary"] = summary
        if error is not None:
            extra["error"] = error
        return transition(
            conn,
            row,
            requested,
            now=now,
            config=config,
            actor=actor,
            summary=summary or error,
            extra=extra,
        )

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def has_live_runner(row: Mapping[str, Any], now: datetime) -> bool:
    """A runner that can stop the work: `tasktrail run`, `track()`, or a pid/http probe,
    on a running task whose lease has not expired."""
    if row["status"] != Status.RUNNING:
        return False
    if row["runner"] not in LIVE_RUNNERS and row["probe_kind"] not in LIVE_PROBES:
        return False
    lease_expires_at = row["lease_expires_at"]
    return lease_expires_at is not None and lease_expires_at > now


def cancel_task(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    now: datetime,
    reason: str | None = None,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Record the intent to cancel. With a live runner the task stays running until the
    runner confirms; without one it is cancelled at once, with a note saying so."""
    check_text(reason, "reason", SUMMARY_MAX)

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        status = Status(row["status"])
        if status.is_terminal:
            raise Refused(status, Status.CANCELLED.value, "the task has already ended")
        intent = {"cancel_requested_at": row["cancel_requested_at"] or now, "cancel_reason": reason}
        if has_live_runner(row, now):
            if row["cancel_requested_at"] is not None:
                return row  # already asked; the runner has not confirmed yet
            return bump(
                conn,
                row,
                intent,
                kind=EventKind.CANCEL_REQUESTED,
                now=now,
                actor=actor,
                summary=reason or "cancel requested; waiting for the runner to stop",
            )
        note = "cancelled at once: no runner was reachable"
        if reason:
            note += f" ({reason})"
        return transition(
            conn,
            row,
            Status.CANCELLED,
            now=now,
            config=config,
            actor=actor,
            summary=note,
            extra={**intent, "terminal_summary": note},
        )

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def set_notify_policy(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    policy: str,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    value = parse_enum(NotifyPolicy, policy, "notify").value

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["notify_policy"] == value:
            return row
        values: dict[str, Any] = {"notify_policy": value}
        if value == NotifyPolicy.SILENT and row["delivery_status"] == "pending":
            values["delivery_status"] = "not_applicable"
        elif (
            value != NotifyPolicy.SILENT
            and row["delivery_status"] == "not_applicable"
            and (row["reply_to"] or row["follower_count"])
            and Status(row["status"]).is_active
        ):
            values["delivery_status"] = "pending"
        return bump(
            conn,
            row,
            values,
            kind=EventKind.NOTIFY_CHANGED,
            now=now,
            actor=actor,
            summary=f"{row['notify_policy']} -> {value}",
        )

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)


def add_artifact(
    engine: Engine,
    config: LedgerConfig,
    ref: str,
    *,
    kind: str,
    value: str,
    now: datetime,
    proof: Mapping[str, Any] | None = None,
    tenant: str | None = None,
    actor: str | None = None,
) -> TaskRecord:
    """Attach an artifact (commit, url, file, build, deploy, other), with optional proof
    expectations that the proof checker verifies later. Allowed at any time."""
    kind_value = parse_enum(ArtifactKind, kind, "kind").value
    check_text(value, "value", VALUE_MAX, required=True)
    expectations = {k: v for k, v in (proof or {}).items() if v is not None}
    if expectations:
        from ledger.proof_checks import validate_expectations

        expectations = validate_expectations(kind_value, value, expectations)

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        if expectations and row["proof_status"] in (None, "verified"):
            values["proof_status"] = "unchecked"
        new_row = bump(
            conn,
            row,
            values,
            kind=EventKind.ARTIFACT_ADDED,
            now=now,
            actor=actor,
            summary=f"{kind_value}: {value[:200]}",
        )
        if new_row is None:
            return None
        conn.execute(
            _INSERT_ARTIFACT,
            {
                "task_id": row["task_id"],
                "kind": kind_value,
                "value": value,
                "proof": json.dumps(expectations) if expectations else None,
                "proof_status": "unchecked",
                "checked_at": None,
                "detail": None,
                "created_at": now,
                "next_check_at": now if expectations else None,
            },
        )
        return new_row

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)
