"""What a delivery worker sends notices through. Slack and Discord adapters (in `bot/`)
implement `Transport`; the ledger ships a console transport and, in `ledger.testing`,
a recording one, so the whole pipeline runs with no chat platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ledger.address import Address

#: Routes, in the order a notice falls back through them (SPEC §5), plus `digest`.
ROUTES = ("thread", "channel", "dm", "ops")


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to send now, as the worker claimed it."""

    delivery_id: int
    idempotency_key: str
    #: started, progress, terminal, correction, proof, audit_digest
    kind: str
    tenant: str
    task_id: str | None
    #: Where the notice was meant to go (reply_to or a follower's thread).
    target: Address
    #: The route being tried: thread, channel, dm, ops.
    route: str
    #: Where to post for this route (for `dm`, `destination.user` is the person to DM).
    destination: Address
    #: Snapshot of what the notice says: status, label, short_id, runtime, summary, error,
    #: proof line, ... (JSON-able; untrusted text is escaped by the transport's renderer).
    payload: dict[str, Any] = field(default_factory=dict)
    #: For `state_changes` progress: the message to edit instead of posting a new one.
    edit_message_id: str | None = None


@dataclass(frozen=True, slots=True)
class PostedMessage:
    message_id: str
    channel: str
    thread: str | None = None


@runtime_checkable
class Transport(Protocol):
    """A platform that can show notices. Errors are `ledger.exceptions.DeliveryError` with
    `permanent` (try the next route) or not (retry later, honouring `retry_after`)."""

    #: `slack`, `discord`, `console`, ... — matched against `Address.platform`.
    platform: str
    #: Messages per second one channel accepts (pacing and digest coalescing).
    channel_rate: float
    #: Whether `edit` updates a posted message in place.
    can_edit: bool

    async def send(self, notice: Notice) -> PostedMessage: ...

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage: ...

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        """A message already posted for this key at `where` (crash recovery), or None."""
        ...

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        """One top-level message listing several notices (pacing, SPEC §5)."""
        ...
