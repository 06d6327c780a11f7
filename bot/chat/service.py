"""Run a parsed `/tasks` command for an actor against the ledger; return neutral replies.

Adapters turn a platform event into (`Command`, `Actor`, `ChatPlace`), call
`ChatService.execute`, and render the `Reply` with their templates. Blocking ledger calls
run in a worker thread (`asyncio.to_thread`) so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.chat.board import Board, build_board
from bot.chat.commands import HELP_LINE, Command, CommandError, Verb
from bot.chat.permissions import Actor, Permissions
from ledger.address import Address, parse_address
from ledger.exceptions import LedgerError
from ledger.ledger import Ledger
from ledger.records import EventRecord, TaskRecord

log = logging.getLogger("bot.chat")


@dataclass(frozen=True, slots=True)
class ChatPlace:
    """Where a command was issued: the channel (and thread, when there is one)."""

    address: Address

    @property
    def channel_key(self) -> str:
        return self.address.channel_key


@dataclass(frozen=True, slots=True)
class BoardReply:
    board: Board


@dataclass(frozen=True, slots=True)
class TaskReply:
    task: TaskRecord
    events: tuple[EventRecord, ...] = ()
    #: Whether the actor may cancel / change notify / retry / dismiss this task.
    can_change: bool = False


@dataclass(frozen=True, slots=True)
class DoneReply:
    """A confirmation: `text` is trusted template-free prose built from ids and enums;
    `task` (when given) carries the untrusted label for the renderer to escape."""

    verb: Verb
    text: str
    task: TaskRecord | None = None


@dataclass(frozen=True, slots=True)
class AuditReply:
    summary: dict[str, Any]
    findings: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class HelpReply:
    text: str = HELP_LINE


@dataclass(frozen=True, slots=True)
class ErrorReply:
    message: str
    help: str | None = None
    #: `denied`, `not_found`, `invalid`, `refused`, `error`.
    kind: str = "error"


Reply = BoardReply | TaskReply | DoneReply | AuditReply | HelpReply | ErrorReply

#: Posts an anchor message for `/tasks follow` and returns the thread address to follow.
AnchorMaker = Callable[[TaskRecord], Awaitable[Address]]


@dataclass
class ChatService:
    ledger: Ledger
    permissions: Permissions = field(default_factory=Permissions)
    clock: Callable[[], datetime] | None = None
    board_rows: int = 10

    def _now(self) -> datetime:
        return self.clock() if self.clock is not None else self.ledger.clock()

    async def execute(
        self,
        command: Command,
        actor: Actor,
        place: ChatPlace | None = None,
        *,
        anchor: AnchorMaker | None = None,
    ) -> Reply:
        """Never raises: a LedgerError becomes an ErrorReply with a specific message, anything
        else a short "failed on our side" reply (and a log entry with the traceback)."""
        try:
            return await self._execute(command, actor, place, anchor)
        except CommandError as error:
            return ErrorReply(error.problem, error.help, "invalid")
        except LedgerError as error:
            return error_reply(error)
        except Exception:  # never a stack trace in chat, never silence
            log.exception("chat: %s failed", command.verb.value)
            return ErrorReply(
                f"`{command.verb.value}` failed on our side; the operator can find the "
                "details in the tasktrail log",
                None,
                "error",
            )

    async def _execute(
        self,
        command: Command,
        actor: Actor,
        place: ChatPlace | None,
        anchor: AnchorMaker | None,
    ) -> Reply:
        verb = command.verb
        if verb is Verb.HELP:
            return HelpReply()
        if verb is Verb.BOARD:
            return BoardReply(await self.board(actor, place, command.filter))
        if verb is Verb.AUDIT:
            self.permissions.check_admin("run the audit", actor)
            return await asyncio.to_thread(self._audit, actor)
        assert command.ref is not None
        task = await asyncio.to_thread(self.ledger.get, command.ref, tenant=actor.tenant)
        if verb is Verb.SHOW:
            return await asyncio.to_thread(self._show, task.task_id, actor)
        if verb is Verb.FOLLOW:
            return await self._follow(task, actor, place, anchor)
        if verb is Verb.UNFOLLOW:
            return await self._unfollow(task, actor, place)
        self.permissions.check_change(verb.value, actor, task)
        return await asyncio.to_thread(self._change, command, task, actor)

    async def board(self, actor: Actor, place: ChatPlace | None, filter: str | None) -> Board:
        return await asyncio.to_thread(
            build_board,
            self.ledger,
            tenant=actor.tenant,
            channel_key=place.channel_key if place is not None else None,
            filter=filter,
            actor=actor,
            now=self._now(),
            rows=self.board_rows,
        )

    def _show(self, task_id: str, actor: Actor) -> TaskReply:
        task = self.ledger.get(task_id, tenant=actor.tenant, details=True)
        events = tuple(self.ledger.events(task_id, tenant=actor.tenant))
        return TaskReply(task, events, self.permissions.can_change(actor, task))

    def _change(self, command: Command, task: TaskRecord, actor: Actor) -> DoneReply:
        now = self._now()
        who = actor.key
        verb = command.verb
        if verb is Verb.CANCEL:
            after = self.ledger.cancel(
                task.task_id, reason=command.reason, tenant=actor.tenant, now=now, actor=who
            )
            if after.status.value == "cancelled":
                text = f"Cancelled {after.short_id}."
            else:
                text = f"Cancel requested for {after.short_id}; waiting for its runner to stop."
            return DoneReply(verb, text, after)
        if verb is Verb.NOTIFY:
            assert command.policy is not None
            after = self.ledger.set_notify(
                task.task_id, command.policy.value, tenant=actor.tenant, now=now, actor=who
            )
            return DoneReply(
                verb, f"Notify policy of {after.short_id} is now {after.notify_policy}.", after
            )
        if verb is Verb.RETRY:
            after = self.ledger.retry(task.task_id, tenant=actor.tenant, now=now)
            return DoneReply(verb, f"Re-queued the failed deliveries of {after.short_id}.", after)
        assert verb is Verb.DISMISS
        after = self.ledger.dismiss(task.task_id, tenant=actor.tenant, now=now, actor=who)
        return DoneReply(verb, f"Dismissed {after.short_id}: marked as handled.", after)

    def _audit(self, actor: Actor) -> AuditReply:
        from ledger.audit import audit

        report = audit(
            self.ledger.engine, self.ledger.config, now=self._now(), tenant=actor.tenant, limit=20
        )
        doc = report.to_json()
        return AuditReply(dict(doc["summary"]), tuple(doc["findings"]))

    async def _follow(
        self,
        task: TaskRecord,
        actor: Actor,
        place: ChatPlace | None,
        anchor: AnchorMaker | None,
    ) -> Reply:
        if place is None:
            return ErrorReply("`follow` needs a channel to post into", None, "invalid")
        where = place.address
        if where.thread is None and anchor is not None:
            where = await anchor(task)
        if where.thread is None:
            return ErrorReply("`follow` needs a thread to post into", None, "invalid")
        await asyncio.to_thread(
            self.ledger.follow,
            task.task_id,
            str(where),
            tenant=actor.tenant,
            now=self._now(),
            actor=actor.key,
        )
        return DoneReply(Verb.FOLLOW, f"Following {task.short_id} in this thread.", task)

    async def _unfollow(self, task: TaskRecord, actor: Actor, place: ChatPlace | None) -> Reply:
        if place is None:
            return ErrorReply("`unfollow` needs the thread that follows", None, "invalid")
        removed = await asyncio.to_thread(self._unfollow_here, task, actor, place.address)
        if not removed:
            return ErrorReply(f"{task.short_id} is not followed here", None, "not_found")
        return DoneReply(Verb.UNFOLLOW, f"Stopped following {task.short_id} here.", task)

    def _unfollow_here(self, task: TaskRecord, actor: Actor, where: Address) -> int:
        """Remove the follower at `where`; from a channel (no thread), every follower thread
        of this task in that channel."""
        addresses = self.ledger.followers(task.task_id)
        if where.thread is not None:
            chosen = [
                a
                for a in addresses
                if parse_address(a).channel_key == where.channel_key
                and parse_address(a).thread == where.thread
            ]
        else:
            chosen = [a for a in addresses if parse_address(a).channel_key == where.channel_key]
        for address in chosen:
            self.ledger.unfollow(
                task.task_id, address, tenant=actor.tenant, now=self._now(), actor=actor.key
            )
        return len(chosen)


def error_reply(error: LedgerError) -> ErrorReply:
    """The one place chat turns a ledger error into a message."""
    from ledger.exceptions import (
        AmbiguousRef,
        IllegalTransition,
        InvalidInput,
        PermissionDenied,
        TaskNotFound,
    )

    if isinstance(error, PermissionDenied):
        return ErrorReply(str(error), None, "denied")
    if isinstance(error, TaskNotFound | AmbiguousRef):
        return ErrorReply(str(error), HELP_LINE, "not_found")
    if isinstance(error, InvalidInput):
        return ErrorReply(str(error), HELP_LINE, "invalid")
    if isinstance(error, IllegalTransition):
        return ErrorReply(str(error), None, "refused")
    return ErrorReply(str(error), None, "error")
