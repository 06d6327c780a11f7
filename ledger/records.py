"""Frozen records: what the ledger hands out. Built from rows; never ORM objects."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.address import Address, parse_address
from ledger.ids import short_id
from ledger.status import Status
from ledger.timeutil import isoformat

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    id: int
    task_id: str
    kind: str
    value: str
    proof: dict[str, Any] | None
    proof_status: str
    checked_at: datetime | None
    detail: str | None
    created_at: datetime
    #: When the scheduler checks it again (None: verified, given up, or nothing to check).
    next_check_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "value": self.value,
            "proof": self.proof,
            "proof_status": self.proof_status,
            "checked_at": isoformat(self.checked_at),
            "detail": self.detail,
            "created_at": isoformat(self.created_at),
            "next_check_at": isoformat(self.next_check_at),
        }


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    task_id: str | None
    tenant: str
    kind: str
    generation: int
    idempotency_key: str
    target: str
    route: str
    status: str
    attempts: int
    next_attempt_at: datetime
    deadline_at: datetime
    last_error: str | None
    platform_message_id: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    channel_key: str = ""
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task_id": self.task_id,
            "tenant": self.tenant,
            "kind": self.kind,
            "generation": self.generation,
            "idempotency_key": self.idempotency_key,
            "target": self.target,
            "route": self.route,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": isoformat(self.next_attempt_at),
            "deadline_at": isoformat(self.deadline_at),
            "last_error": self.last_error,
            "platform_message_id": self.platform_message_id,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "delivered_at": isoformat(self.delivered_at),
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str | None
    summary: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": isoformat(self.at),
            "kind": self.kind,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "actor": self.actor,
            "summary": self.summary,
        }


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    tenant: str
    runtime: str
    task_kind: str | None
    label: str
    task: str | None
    status: Status
    version: int
    run_id: str | None
    source_id: str | None
    child_session_key: str | None
    requester_session_key: str | None
    parent_task_id: str | None
    reply_to: Address | None
    notify_policy: str
    delivery_status: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    last_event_at: datetime
    heartbeat_at: datetime | None
    lease_expires_at: datetime | None
    lease_seconds: int | None
    grace_until: datetime | None
    cleanup_after: datetime | None
    progress_summary: str | None
    terminal_summary: str | None
    error: str | None
    cancel_requested_at: datetime | None
    cancel_reason: str | None
    runner: str | None
    probe_kind: str
    probe_target: dict[str, Any] | None
    proof_required: bool
    proof_status: str | None
    acknowledged_at: datetime | None
    origin: str | None
    origin_ref: str | None
    origin_detail: dict[str, Any] | None
    artifacts: tuple[ArtifactRecord, ...] = field(default=())
    deliveries: tuple[DeliveryRecord, ...] = field(default=())

    @property
    def short_id(self) -> str:
        return short_id(self.task_id)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def proven(self) -> bool | None:
        """True: succeeded and every proof check verified; False: succeeded but not (yet)
        proven; None: not a success, or no proof asked for."""
        if self.status is not Status.SUCCEEDED:
            return None
        if not self.proof_required and self.proof_status is None:
            return None
        return self.proof_status == "verified"

    def to_json(self, *, with_details: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task_id": self.task_id,
            "tenant": self.tenant,
            "runtime": self.runtime,
            "task_kind": self.task_kind,
            "label": self.label,
            "task": self.task,
            "status": self.status.value,
            "version": self.version,
            "run_id": self.run_id,
            "source_id": self.source_id,
            "child_session_key": self.child_session_key,
            "requester_session_key": self.requester_session_key,
            "parent_task_id": self.parent_task_id,
            "reply_to": self.reply_to.as_dict() if self.reply_to else None,
            "notify_policy": self.notify_policy,
            "delivery_status": self.delivery_status,
            "created_at": isoformat(self.created_at),
            "started_at": isoformat(self.started_at),
            "ended_at": isoformat(self.ended_at),
            "last_event_at": isoformat(self.last_event_at),
            "heartbeat_at": isoformat(self.heartbeat_at),
            "lease_expires_at": isoformat(self.lease_expires_at),
            "cleanup_after": isoformat(self.cleanup_after),
            "progress_summary": self.progress_summary,
            "terminal_summary": self.terminal_summary,
            "error": self.error,
            "cancel_requested_at": isoformat(self.cancel_requested_at),
            "cancel_reason": self.cancel_reason,
            "probe": self.probe_kind,
            "proof_required": self.proof_required,
            "proof_status": self.proof_status,
            "acknowledged_at": isoformat(self.acknowledged_at),
            "origin": (
                {"source": self.origin, "ref": self.origin_ref, "detail": self.origin_detail}
                if self.origin
                else None
            ),
        }
        if with_details:
            doc["artifacts"] = [a.to_json() for a in self.artifacts]
            doc["deliveries"] = [d.to_json() for d in self.deliveries]
        return doc


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, with the cursor of the next page (None at the end)."""

    tasks: tuple[TaskRecord, ...]
    next_cursor: str | None


def _json_or_none(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def task_from_row(
    row: Mapping[Any, Any],
    artifacts: tuple[ArtifactRecord, ...] = (),
    deliveries: tuple[DeliveryRecord, ...] = (),
) -> TaskRecord:
    reply_to = row["reply_to"]
    return TaskRecord(
        task_id=row["task_id"],
        tenant=row["tenant"],
        runtime=row["runtime"],
        task_kind=row["task_kind"],
        label=row["label"],
        task=row["task"],
        status=Status(row["status"]),
        version=row["version"],
        run_id=row["run_id"],
        source_id=row["source_id"],
        child_session_key=row["child_session_key"],
        requester_session_key=row["requester_session_key"],
        parent_task_id=row["parent_task_id"],
        reply_to=parse_address(reply_to) if reply_to else None,
        notify_policy=row["notify_policy"],
        delivery_status=row["delivery_status"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        last_event_at=row["last_event_at"],
        heartbeat_at=row["heartbeat_at"],
        lease_expires_at=row["lease_expires_at"],
        lease_seconds=row["lease_seconds"],
        grace_until=row["grace_until"],
        cleanup_after=row["cleanup_after"],
        progress_summary=row["progress_summary"],
        terminal_summary=row["terminal_summary"],
        error=row["error"],
        cancel_requested_at=row["cancel_requested_at"],
        cancel_reason=row["cancel_reason"],
        runner=row["runner"],
        probe_kind=row["probe_kind"],
        probe_target=_json_or_none(row["probe_target"]),
        proof_required=bool(row["proof_required"]),
        proof_status=row["proof_status"],
        acknowledged_at=row["acknowledged_at"],
        origin=row["origin"],
        origin_ref=row["origin_ref"],
        origin_detail=_json_or_none(row["origin_detail"]),
        artifacts=artifacts,
        deliveries=deliveries,
    )


def event_from_row(row: Mapping[Any, Any]) -> EventRecord:
    return EventRecord(
        seq=row["seq"],
        at=row["at"],
        kind=row["kind"],
        from_status=row["from_status"],
        to_status=row["to_status"],
        actor=row["actor"],
        summary=row["summary"],
    )


def artifact_from_row(row: Mapping[Any, Any]) -> ArtifactRecord:
    return ArtifactRecord(
        id=row["id"],
        task_id=row["task_id"],
        kind=row["kind"],
        value=row["value"],
        proof=_json_or_none(row["proof"]),
        proof_status=row["proof_status"],
        checked_at=row["checked_at"],
        detail=row["detail"],
        created_at=row["created_at"],
        next_check_at=row.get("next_check_at"),
    )


def delivery_from_row(row: Mapping[Any, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        task_id=row["task_id"],
        tenant=row["tenant"],
        kind=row["kind"],
        generation=row["generation"],
        idempotency_key=row["idempotency_key"],
        target=row["target"],
        route=row["route"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        deadline_at=row["deadline_at"],
        last_error=row["last_error"],
        platform_message_id=row["platform_message_id"],
        payload=_json_or_none(row["payload"]) or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivered_at=row["delivered_at"],
        channel_key=row["channel_key"],
        claimed_by=row["claimed_by"],
        claim_expires_at=row["claim_expires_at"],
    )
