"""Thin Slack handlers: turn a Slack event into a neutral command, run it, render the reply.

Every listener acknowledges first and does its work in a background task, so Slack's 3 s
deadline is met however slow the ledger or Slack itself is at the moment; the answer goes
out through `response_url`, `chat.postMessage` or `views.*`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.chat.commands import Command, CommandError, Verb, parse_command
from bot.chat.permissions import Actor
from bot.chat.service import (
    BoardReply,
    ChatPlace,
    ChatService,
    ErrorReply,
    Reply,
    TaskReply,
)
from bot.render import Renderer
from bot.slack import blocks
from ledger.address import Address
from ledger.exceptions import LedgerError
from ledger.records import TaskRecord

log = logging.getLogger("bot.slack")

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
GROUP_CACHE_SECONDS = 60.0

Body = dict[str, Any]


class SlackHandlers:
    """The listeners, with what they share: the chat service, renderer and Web API client."""

    def __init__(self, service: ChatService, renderer: Renderer, client: AsyncWebClient) -> None:
        self.service = service
        self.renderer = renderer
        self.client = client
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    # -- plumbing ----------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # one failed answer must not take the adapter down
            log.exception("slack: handling a request failed")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, seconds: float = 5.0) -> None:
        """Wait for answers in flight (shutdown), then cancel what is left."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=seconds)
        for task in pending:
            task.cancel()

    async def _members_of(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached is not None and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group)
            users = frozenset(str(u) for u in response.get("users") or [])
        except SlackApiError as error:
            log.warning("slack: cannot list user group %s: %s", group, error.response.get("error"))
            users = frozenset()
        self._groups[group] = (time.monotonic(), users)
        return users

    async def actor(self, team: str, user: str) -> Actor:
        admin_groups = self.service.permissions.admin_group_ids("slack")
        mine: set[str] = set()
        for group in sorted(admin_groups):
            if user in await self._members_of(group):
                mine.add(group)
        return Actor("slack", user, f"slack:{team}", frozenset(mine))

    async def respond(
        self,
        response_url: str | None,
        message: tuple[str, list[blocks.Block]],
        *,
        replace_original: bool | None = None,
    ) -> None:
        if not response_url:
            return
        text, body = message
        payload: dict[str, Any] = {"text": text, "blocks": body}
        if replace_original is not None:
            payload["replace_original"] = replace_original
        if not replace_original:
            payload["response_type"] = "ephemeral"
        response = await AsyncWebhookClient(response_url).send_dict(payload)
        if response.status_code != 200:
            log.warning("slack: response_url refused the answer: %s", response.body[:200])

    def render(self, reply: Reply) -> tuple[str, list[blocks.Block]]:
        now_age = 0.0
        if isinstance(reply, TaskReply):
            now_age = (self.service._now() - reply.task.created_at).total_seconds()
        return blocks.reply_message(self.renderer, reply, now_age=now_age)

    def _anchor(self, team: str, channel: str) -> Callable[[TaskRecord], Awaitable[Address]]:
        async def post_anchor(task: TaskRecord) -> Address:
            text = self.renderer.render("slack", "anchor.j2", task=task)
            try:
                response = await self.client.chat_postMessage(
                    channel=channel, text=text, blocks=[blocks.section(text)]
                )
            except SlackApiError as error:
                code = error.response.get("error")
                raise LedgerError(
                    f"cannot post in this channel ({code}); invite the bot with /invite"
                ) from None
            return Address("slack", team, channel, str(response["ts"]))

        return post_anchor

    # -- /tasks ----------------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, body: Body) -> None:
        await ack()
        self.spawn(self._command(body))

    async def _command(self, body: Body) -> None:
        team, user, channel = body["team_id"], body["user_id"], body["channel_id"]
        response_url = body.get("response_url")
        try:
            command = parse_command(body.get("text"))
        except CommandError as error:
            reply: Reply = ErrorReply(error.problem, error.help, "invalid")
        else:
            place = ChatPlace(Address("slack", team, channel))
            actor = await self.actor(team, user)
            reply = await self.service.execute(
                command, actor, place, anchor=self._anchor(team, channel)
            )
        await self.respond(response_url, self.render(reply))

    # -- @tasktrail in a thread -----------------------------------------------------------

    async def on_mention(self, ack: AsyncAck, body: Body) -> None:
        await ack()
        self.spawn(self._mention(body))

    async def _mention(self, body: Body) -> None:
        event = body["event"]
        team = body.get("team_id") or event.get("team")
        channel, user = event["channel"], event["user"]
        thread = event.get("thread_ts") or event["ts"]
        text = _MENTION.sub("", event.get("text") or "").strip()
        try:
            command = parse_command(text)
        except CommandError as error:
            reply: Reply = ErrorReply(error.problem, error.help, "invalid")
        else:
            place = ChatPlace(Address("slack", team, channel, thread))
            if command.verb is Verb.BOARD and command.filter is None:
                place = ChatPlace(Address("slack", team, channel))
            reply = await self.service.execute(command, await self.actor(team, user), place)
        out_text, out_blocks = self.render(reply)
        try:
            await self.client.chat_postMessage(
                channel=channel, thread_ts=thread, text=out_text, blocks=out_blocks
            )
        except SlackApiError as error:
            log.warning("slack: cannot answer a mention: %s", error.response.get("error"))

    # -- App Home --------------------------------------------------------------------

    async def on_home(self, ack: AsyncAck, body: Body) -> None:
        await ack()
        event = body["event"]
        if event.get("tab", "home") == "home":
            self.spawn(self.publish_home(body.get("team_id") or "", event["user"]))

    async def publish_home(self, team: str, user: str) -> None:
        actor = await self.actor(team, user)
        board = await self.service.board(actor, None, "all")
        _, body = blocks.board_message(self.renderer, board)
        await self.client.views_publish(user_id=user, view=blocks.home_view(body))

    # -- buttons and menus -----------------------------------------------------------

    async def on_action(self, ack: AsyncAck, body: Body) -> None:
        await ack()
        self.spawn(self._action(body))

    async def _action(self, body: Body) -> None:
        action = body["actions"][0]
        action_id = action["action_id"]
        value = action.get("value") or (action.get("selected_option") or {}).get("value") or ""
        team = (body.get("team") or {}).get("id") or body.get("user", {}).get("team_id") or ""
        user = body["user"]["id"]
        actor = await self.actor(team, user)
        container = body.get("container") or {}
        in_view = container.get("type") == "view"
        channel = (body.get("channel") or {}).get("id")
        place = ChatPlace(Address("slack", team, channel)) if channel else None
        message = body.get("message") or {}
        is_board, board_filter = blocks.filter_from_block_id(
            ((message.get("blocks") or [{}])[0]).get("block_id")
        )
        response_url = body.get("response_url")

        if action_id == blocks.REFRESH:
            await self._redraw(body, actor, place, value or None, in_view, team, user)
            return
        verb, ref = _verb_and_ref(action_id, value)
        if verb is None or not ref:
            return
        if verb in ("cancel?", "notify?", "show"):
            reply_msg = await self._prompt(verb, ref, actor)
            if in_view:
                await self._open_modal(body, reply_msg)
            else:
                await self.respond(response_url, reply_msg, replace_original=False)
            return
        command = _command_for(verb, ref, value)
        anchor = self._anchor(team, channel) if channel else None
        reply = await self.service.execute(command, actor, place, anchor=anchor)
        if in_view:
            await self.publish_home(team, user)
            if isinstance(reply, ErrorReply):
                await self._open_modal(body, self.render(reply))
            return
        if isinstance(reply, ErrorReply) or not is_board:
            # Errors go to the clicker alone; prompts and detail messages show the outcome.
            await self.respond(response_url, self.render(reply), replace_original=not is_board)
            return
        await self._redraw(body, actor, place, board_filter, in_view, team, user)

    async def _prompt(self, verb: str, ref: str, actor: Actor) -> tuple[str, list[blocks.Block]]:
        if verb == "show":
            reply = await self.service.execute(Command(Verb.SHOW, ref=ref), actor)
            return self.render(reply)
        try:
            task = await asyncio.to_thread(self.service.ledger.get, ref, tenant=actor.tenant)
        except LedgerError as error:
            return self.render(ErrorReply(str(error), None, "not_found"))
        if not self.service.permissions.can_change(actor, task):
            return self.render(
                ErrorReply(
                    f"not allowed to change {task.short_id}: only the requester and admins may",
                    None,
                    "denied",
                )
            )
        if verb == "cancel?":
            return blocks.cancel_confirm_message(self.renderer, task)
        return blocks.notify_choose_message(self.renderer, task)

    async def _redraw(
        self,
        body: Body,
        actor: Actor,
        place: ChatPlace | None,
        board_filter: str | None,
        in_view: bool,
        team: str,
        user: str,
    ) -> None:
        if in_view:
            await self.publish_home(team, user)
            return
        board = await self.service.board(actor, place, board_filter)
        await self.respond(
            body.get("response_url"),
            self.render(BoardReply(board)),
            replace_original=True,
        )

    async def _open_modal(self, body: Body, message: tuple[str, list[blocks.Block]]) -> None:
        trigger = body.get("trigger_id")
        if not trigger:
            return
        try:
            await self.client.views_open(
                trigger_id=trigger, view=blocks.modal_view("tasktrail", message[1])
            )
        except SlackApiError as error:
            log.warning("slack: cannot open a modal: %s", error.response.get("error"))


def _verb_and_ref(action_id: str, value: str) -> tuple[str | None, str]:
    """Map an action to (verb, task ref). Overflow values are `verb:task_id`."""
    if action_id == blocks.ROW_MENU:
        verb, _, ref = value.partition(":")
        verb = {"cancel": "cancel?", "notify": "notify?"}.get(verb, verb)
        return (verb if verb in _ROW_VERBS else None), ref
    if action_id == blocks.NOTIFY:
        _, _, ref = value.partition(":")
        return "notify", ref
    button_verb = {
        blocks.CANCEL: "cancel",
        blocks.RETRY: "retry",
        blocks.DISMISS: "dismiss",
        blocks.FOLLOW: "follow",
    }.get(action_id)
    return button_verb, value


_ROW_VERBS = frozenset({"show", "cancel?", "notify?", "retry", "dismiss", "follow"})


def _command_for(verb: str, ref: str, value: str) -> Command:
    if verb == "notify":
        policy = value.partition(":")[0]
        return parse_command(f"notify {ref} {policy}")
    return Command(Verb(verb), ref=ref)


def register(app: AsyncApp, handlers: SlackHandlers, command: str = "/tasks") -> None:
    app.command(command)(handlers.on_command)
    app.event("app_mention")(handlers.on_mention)
    app.event("app_home_opened")(handlers.on_home)
    app.action(re.compile(r"^tt_"))(handlers.on_action)
