"""Notify policies: which notices a change makes due (SPEC §5).

Called by `ledger.transitions.transition()` (and by create and progress) inside the change's
transaction, so a notice row is committed exactly when the change that made it due is.

- `silent`: nothing; the task's `delivery_status` is `not_applicable`.
- `done_only`: one `terminal` notice when the task ends (a `lost` verdict counts), and a
  `correction` when a `lost` task later reports its real end.
- `state_changes`: a `started` notice, `progress` notices coalesced to at most one per task
  per `config.progress_coalesce` (the worker edits the started message where it can), and
  the terminal notice as a new message.

Every notice goes to the task's `reply_to` and to each follower's address.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from ledger.config import LedgerConfig
from ledger.ids import short_id
from ledger.outbox import enqueue_notice
from ledger.prepared import Prepared
from ledger.schema import deliveries_table, followers_table, tasks_table
from ledger.status import ENDED, EventKind, NotifyPolicy, Status
from ledger.timeutil import isoformat

D = deliveries_table.c
#: Notice kinds that summarize how a task ended (the task's `delivery_status` follows them).
TERMINAL_KINDS = ("terminal", "correction")
_OPEN = ("pending", "retrying")


def enqueue_for_transition(
    conn: Connection,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    kind: str,
    now: datetime,
    config: LedgerConfig,
) -> None:
    """Write the outbox rows that this change makes due under the task's current policy."""
    policy = after["notify_policy"]
    if policy == NotifyPolicy.SILENT:
        return
    old = before.get("status")
    new = after["status"]
    notice: str | None = None
    if new in ENDED and old != new:
        notice = "correction" if old == Status.LOST else "terminal"
    elif policy == NotifyPolicy.STATE_CHANGES:
        if new == Status.RUNNING and old != Status.RUNNING:
            notice = "started"
        elif kind == EventKind.PROGRESS and new == Status.RUNNING:
            notice = "progress"
    if notice is None:
        return
    targets = notice_targets(conn, after)
    if not targets:
        if notice in TERMINAL_KINDS:
            _set_delivery_status(conn, after, "not_applicable")
        return
    payload = notice_payload(after, event=kind, now=now)
    if notice == "progress":
        for target in targets:
            _enqueue_progress(conn, after, target, payload, now=now, config=config)
        return
    if notice in TERMINAL_KINDS:
        # A pending progress update (or an unsent lost verdict) is stale once the task ended.
        stale = ("progress", "terminal") if notice == "correction" else ("progress",)
        _SUPERSEDE[stale].rowcount(conn, {"_task_id": after["task_id"], "updated_at": now})
    for target in targets:
        enqueue_notice(
            conn,
            tenant=after["tenant"],
            task_id=after["task_id"],
            kind=notice,
            target=target,
            payload=payload,
            key=notice_key(after["task_id"], notice, f"v{after['version']}", target),
            now=now,
            config=config,
            route=first_route(target),
        )
    if notice in TERMINAL_KINDS:
        _set_delivery_status(conn, after, "pending")


def enqueue_task_notice(
    conn: Connection,
    task_row: Mapping[str, Any],
    kind: str,
    now: datetime,
    config: LedgerConfig,
    key_suffix: str,
) -> int:
    """Queue a follow-up notice about one task (e.g. `proof` after a proof check) to its
    reply_to and followers, under the task's policy (`silent`: none). `key_suffix` makes the
    idempotency key: the same suffix twice queues nothing new. Returns rows added."""
    if task_row["notify_policy"] == NotifyPolicy.SILENT:
        return 0
    payload = notice_payload(task_row, event=kind, now=now)
    added = 0
    for target in notice_targets(conn, task_row):
        added += enqueue_notice(
            conn,
            tenant=task_row["tenant"],
            task_id=task_row["task_id"],
            kind=kind,
            target=target,
            payload=payload,
            key=notice_key(task_row["task_id"], kind, key_suffix, target),
            now=now,
            config=config,
            route=first_route(target),
        )
    return added


def notice_targets(conn: Connection, row: Mapping[str, Any]) -> list[str]:
    """The task's reply_to, then its followers' addresses (without repeats)."""
    targets: list[str] = []
    if row.get("reply_to"):
        targets.append(row["reply_to"])
    if row.get("follower_count"):
        for address in conn.execute(
            select(followers_table.c.address)
            .where(followers_table.c.task_id == row["task_id"])
            .order_by(followers_table.c.id)
        ).scalars():
            if address not in targets:
                targets.append(address)
    return targets


def notice_key(task_id: str, kind: str, suffix: str, target: str) -> str:
    digest = hashlib.sha1(target.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{task_id}:{kind}:{suffix}:{digest}"[:128]


def first_route(target: str) -> str:
    """`thread` when the address names a thread, else the channel's top level."""
    tail = target.split("@", 1)[0].split(":", 1)[-1]
    return "thread" if tail.count("/") >= 2 else "channel"


def proof_line(row: Mapping[str, Any]) -> str | None:
    """None, `unproven`, `proven` or `proof failed` (only a success carries one)."""
    if row["status"] != Status.SUCCEEDED:
        return None
    proof_status = row.get("proof_status")
    if proof_status == "verified":
        return "proven"
    if proof_status == "failed":
        return "proof failed"
    if row.get("proof_required") or proof_status == "unchecked":
        return "unproven"
    return None


def notice_payload(row: Mapping[str, Any], *, event: str, now: datetime) -> dict[str, Any]:
    """What a notice says, snapshotted when it became due (renderers read these keys)."""
    status = row["status"]
    ended = status in ENDED
    return {
        "task_id": row["task_id"],
        "short_id": short_id(row["task_id"]),
        "label": row["label"],
        "status": status,
        "runtime": row["runtime"],
        "task_kind": row.get("task_kind"),
        "summary": row.get("terminal_summary") if ended else row.get("progress_summary"),
        "error": row.get("error"),
        "proof": proof_line(row),
        "notify_policy": row["notify_policy"],
        "reply_to": row.get("reply_to"),
        "event": str(event),
        "at": isoformat(now),
    }


def _enqueue_progress(
    conn: Connection,
    row: Mapping[str, Any],
    target: str,
    payload: Mapping[str, Any],
    *,
    now: datetime,
    config: LedgerConfig,
) -> None:
    """Coalesce: refresh a progress notice that is still waiting, or queue one no sooner
    than `progress_coalesce` after the previous one."""
    latest = (
        conn.execute(
            select(D.id, D.status, D.claimed_by, D.next_attempt_at)
            .where(D.task_id == row["task_id"], D.kind == "progress", D.target == target)
            .order_by(D.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if latest is not None and latest["status"] in _OPEN and latest["claimed_by"] is None:
        conn.execute(
            update(deliveries_table)
            .where(D.id == latest["id"], D.claimed_by.is_(None), D.status.in_(_OPEN))
            .values(payload=json.dumps(dict(payload), default=str), updated_at=now)
        )
        return
    due = now
    if latest is not None and latest["status"] != "superseded":
        due = max(now, latest["next_attempt_at"] + config.progress_coalesce)
    enqueue_notice(
        conn,
        tenant=row["tenant"],
        task_id=row["task_id"],
        kind="progress",
        target=target,
        payload=payload,
        key=notice_key(row["task_id"], "progress", f"v{row['version']}", target),
        now=now,
        config=config,
        route=first_route(target),
        due_at=due,
    )


def _supersede(kinds: tuple[str, ...]) -> Prepared:
    """Mark the task's open, unclaimed notices of `kinds` superseded (equalities rather
    than IN lists: a prepared statement takes no expanding parameters)."""
    return Prepared(
        update(deliveries_table)
        .where(
            D.task_id == bindparam("_task_id"),
            or_(*(D.kind == kind for kind in kinds)),
            or_(*(D.status == status for status in _OPEN)),
            D.claimed_by.is_(None),
        )
        .values(status="superseded")
    )


_SUPERSEDE = {kinds: _supersede(kinds) for kinds in (("progress",), ("progress", "terminal"))}

_SET_DELIVERY_STATUS = Prepared(
    update(tasks_table)
    .where(tasks_table.c.task_id == bindparam("_task_id"))
    .values(delivery_status=bindparam("_value"))
)


def _set_delivery_status(conn: Connection, row: Mapping[str, Any], value: str) -> None:
    if row.get("delivery_status") == value:
        return  # most tasks have no destination: no write on every finish for nothing
    _SET_DELIVERY_STATUS.rowcount(conn, {"_task_id": row["task_id"], "_value": value})
    if isinstance(row, dict):  # the caller returns this row as the task's record
        row["delivery_status"] = value
