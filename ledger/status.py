"""Statuses, runtimes, policies and the one table of allowed status moves (SPEC §3)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

E = TypeVar("E", bound="StrEnum")


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_active(self) -> bool:
        return self in ACTIVE


class Runtime(StrEnum):
    SUBAGENT = "subagent"
    ACP = "acp"
    CRON = "cron"
    CLI = "cli"
    MEDIA = "media"


class NotifyPolicy(StrEnum):
    DONE_ONLY = "done_only"
    STATE_CHANGES = "state_changes"
    SILENT = "silent"


class DeliveryStatus(StrEnum):
    NOT_APPLICABLE = "not_applicable"
    PENDING = "pending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    FAILED = "failed"
    DISMISSED = "dismissed"


class ArtifactKind(StrEnum):
    COMMIT = "commit"
    URL = "url"
    FILE = "file"
    BUILD = "build"
    DEPLOY = "deploy"
    OTHER = "other"


class ProofStatus(StrEnum):
    UNCHECKED = "unchecked"
    VERIFIED = "verified"
    FAILED = "failed"


class EventKind(StrEnum):
    CREATED = "created"
    STARTED = "started"
    PROGRESS = "progress"
    FINISHED = "finished"
    RECOVERED = "recovered"
    MARKED_LOST = "marked_lost"
    CANCEL_REQUESTED = "cancel_requested"
    CANCELLED = "cancelled"
    LATE_UPDATE_IGNORED = "late_update_ignored"
    NOTIFY_CHANGED = "notify_changed"
    ARTIFACT_ADDED = "artifact_added"
    PROOF_CHECKED = "proof_checked"
    ACKNOWLEDGED = "acknowledged"
    MERGED = "merged"
    GRACE_GRANTED = "grace_granted"
    LEASE_EXTENDED = "lease_extended"
    #: A mirrored task's source (OpenClaw) changed fields other than the status.
    MIRRORED = "mirrored"


ACTIVE: frozenset[Status] = frozenset({Status.QUEUED, Status.RUNNING})
TERMINAL: frozenset[Status] = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED}
)
#: Statuses that carry an `ended_at` (terminal ones and the `lost` verdict).
ENDED: frozenset[Status] = TERMINAL | {Status.LOST}

#: The one table of allowed moves. Anything not listed is refused.
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset(
        {
            Status.RUNNING,
            Status.SUCCEEDED,
            Status.FAILED,
            Status.TIMED_OUT,
            Status.CANCELLED,
            Status.LOST,
        }
    ),
    Status.RUNNING: frozenset(
        {Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED, Status.LOST}
    ),
    Status.LOST: frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.CANCELLED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.TIMED_OUT: frozenset(),
    Status.CANCELLED: frozenset(),
}


def is_allowed(current: Status, requested: Status) -> bool:
    return requested in ALLOWED[current]


#: Statuses a producer may finish a task with.
FINISH_STATUSES: frozenset[Status] = TERMINAL


def parse_enum(enum: type[E], value: str, field: str) -> E:
    """Turn user text into an enum member, or raise InvalidInput naming the choices."""
    from ledger.exceptions import InvalidInput

    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise InvalidInput(field, f"{value!r} is not one of: {choices}") from None
