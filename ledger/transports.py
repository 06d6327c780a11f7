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


def notice_text(notice: Notice) -> str:
    """One plain-text line for a notice (console output, digests, logs)."""
    p = notice.payload
    if notice.kind == "audit_digest":
        return str(p.get("text") or f"audit: {len(p.get('findings') or [])} finding(s)")
    status = str(p.get("status", ""))
    proof = f", {p['proof']}" if p.get("proof") else ""
    line = f"[{status}{proof}] {p.get('label', '')} ({p.get('short_id', '')})"
    if notice.kind == "correction":
        line = "correction: " + line
    detail = p.get("error") if status in ("failed", "timed_out", "lost") else None
    detail = detail or p.get("summary")
    if detail:
        line += f": {detail}"
    return " ".join(line.split())[:2000]


class ConsoleTransport:
    """Prints notices as plain text: the whole pipeline runs with no chat platform.
    `platform="*"` serves every address the worker has no other transport for."""

    can_edit = False

    def __init__(
        self, platform: str = "*", *, stream: Any = None, channel_rate: float = 100.0
    ) -> None:
        self.platform = platform
        self.channel_rate = channel_rate
        self._stream = stream
        self._count = 0

    def _print(self, text: str) -> None:
        import sys

        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def _posted(self, where: Address) -> PostedMessage:
        self._count += 1
        return PostedMessage(f"console-{self._count}", where.channel, where.thread)

    async def send(self, notice: Notice) -> PostedMessage:
        where = notice.destination
        self._print(f"{notice.route} {where}: {notice_text(notice)}")
        return self._posted(where)

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self.send(notice)

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        return None

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        lines = [f"digest {channel}: {len(notices)} notices"]
        lines += [f"  - {notice_text(n)}" for n in notices]
        self._print("\n".join(lines))
        return self._posted(channel)
