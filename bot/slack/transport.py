"""The Slack delivery transport (`ledger.transports.Transport`) over the Web API.

Each notice carries its idempotency key in message metadata
(`{"event_type": "tasktrail_notice", "event_payload": {"key": ...}}`), so after a crash
`find_posted` finds an already-posted message in the thread instead of posting twice.
Untrusted text is rendered by the escaping `Renderer`; `link_names` and `parse=full` are
never sent, so nothing the bot posts can ping a channel or a user group.
"""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import Renderer
from bot.slack import blocks
from ledger.address import Address
from ledger.exceptions import DeliveryError
from ledger.transports import Notice, PostedMessage

EVENT_TYPE = "tasktrail_notice"

#: Slack errors meaning "this destination will never work": try the next route.
ROUTE_ERRORS = frozenset(
    {
        "thread_not_found",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "message_not_found",
        "cant_update_message",
        "user_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
    }
)
#: Slack errors meaning the bot's credentials are bad: permanent, and an ops-level alert.
AUTH_ERRORS = frozenset(
    {"invalid_auth", "token_revoked", "not_authed", "account_inactive", "token_expired"}
)
#: Slack errors that are worth another try later.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)


def delivery_error(error: SlackApiError, method: str) -> DeliveryError:
    """Classify a Web API refusal for the delivery worker."""
    response = error.response
    status = int(getattr(response, "status_code", 200) or 200)
    code = str(response.get("error") or "") if hasattr(response, "get") else ""
    if status == 429 or code in ("ratelimited", "rate_limited"):
        headers = getattr(response, "headers", {}) or {}
        raw = headers.get("Retry-After") or headers.get("retry-after")
        try:
            retry_after = float(raw) if raw is not None else 1.0
        except ValueError:
            retry_after = 1.0
        return DeliveryError(
            f"slack {method}: ratelimited (retry after {retry_after:g}s)",
            permanent=False,
            retry_after=retry_after,
            code="ratelimited",
        )
    if status >= 500 or code in TRANSIENT_ERRORS:
        return DeliveryError(
            f"slack {method}: HTTP {status} {code or 'server error'}",
            permanent=False,
            code=code or f"http_{status}",
        )
    if code in AUTH_ERRORS:
        return DeliveryError(
            f"slack {method}: {code}: the bot token is not accepted; reinstall the app or "
            "update SLACK_BOT_TOKEN",
            permanent=True,
            code=f"slack_auth:{code}",
        )
    # Route errors and anything else Slack refuses on purpose (invalid_blocks, ...) will not
    # succeed by retrying the same request.
    return DeliveryError(f"slack {method}: {code or 'refused'}", permanent=True, code=code)


class SlackTransport:
    """Sends notices to Slack. `client` is an `AsyncWebClient` with the bot token."""

    platform = "slack"
    #: Slack allows about one message per second per channel.
    channel_rate = 1.0
    can_edit = True

    def __init__(
        self, client: AsyncWebClient, renderer: Renderer, *, history_limit: int = 200
    ) -> None:
        self.client = client
        self.renderer = renderer
        self.history_limit = history_limit
        self._dm_channels: dict[str, str] = {}

    async def _call(self, method: str, **params: Any) -> Any:
        try:
            return await self.client.api_call(method, json=params)
        except SlackApiError as error:
            raise delivery_error(error, method) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            raise DeliveryError(
                f"slack {method}: {type(error).__name__}: {error}", permanent=False, code="network"
            ) from None

    async def _channel_for(self, where: Address, route: str) -> str:
        if route == "dm":
            if not where.user:
                raise DeliveryError("no requester to DM", permanent=True, code="no_user")
            return await self._dm_channel(where.user)
        return where.channel

    async def _dm_channel(self, user: str) -> str:
        cached = self._dm_channels.get(user)
        if cached is not None:
            return cached
        response = await self._call("conversations.open", users=user)
        channel = str(response["channel"]["id"])
        self._dm_channels[user] = channel
        return channel

    @staticmethod
    def _metadata(key: str, **extra: Any) -> dict[str, Any]:
        return {"event_type": EVENT_TYPE, "event_payload": {"key": key, **extra}}

    async def send(self, notice: Notice) -> PostedMessage:
        where = notice.destination
        channel = await self._channel_for(where, notice.route)
        thread = where.thread if notice.route in ("thread", "ops") else None
        text, body = blocks.notice_message(self.renderer, notice)
        params: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "blocks": body,
            "metadata": self._metadata(notice.idempotency_key),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if thread:
            params["thread_ts"] = thread
        response = await self._call("chat.postMessage", **params)
        return PostedMessage(str(response["ts"]), str(response["channel"]), thread)

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        where = notice.destination
        channel = await self._channel_for(where, notice.route)
        text, body = blocks.notice_message(self.renderer, notice)
        response = await self._call(
            "chat.update",
            channel=channel,
            ts=message_id,
            text=text,
            blocks=body,
            metadata=self._metadata(notice.idempotency_key),
        )
        return PostedMessage(str(response["ts"]), str(response["channel"]), where.thread)

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        """Look for the key in the thread; without a thread, in the channel's recent history
        and then in the DM with `where.user` (the channel and dm routes share an address)."""
        places: list[tuple[str, dict[str, Any]]] = []
        if where.thread:
            places.append(("conversations.replies", {"channel": where.channel, "ts": where.thread}))
        else:
            places.append(("conversations.history", {"channel": where.channel}))
        for method, params in places:
            found = await self._find_in(method, params, idempotency_key)
            if found is not None:
                return found
        if not where.thread and where.user:
            try:
                dm = await self._dm_channel(where.user)
            except DeliveryError as error:
                if error.permanent:
                    return None
                raise
            return await self._find_in("conversations.history", {"channel": dm}, idempotency_key)
        return None

    async def _find_in(self, method: str, params: dict[str, Any], key: str) -> PostedMessage | None:
        channel = str(params["channel"])
        try:
            async for message in self._pages(method, **params):
                payload = (message.get("metadata") or {}).get("event_payload") or {}
                keys = payload.get("keys") or []
                if payload.get("key") == key or key in keys:
                    return PostedMessage(str(message["ts"]), channel, message.get("thread_ts"))
        except DeliveryError as error:
            if error.permanent:
                return None  # the place is gone or unreadable: nothing there we can find
            raise
        return None

    async def _pages(self, method: str, **params: Any) -> Any:
        cursor: str | None = None
        seen = 0
        while True:
            query: dict[str, Any] = {**params, "include_all_metadata": True, "limit": 200}
            if cursor:
                query["cursor"] = cursor
            response = await self._call(method, **query)
            for message in response.get("messages") or []:
                seen += 1
                yield message
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or not response.get("has_more") or seen >= self.history_limit * 10:
                return

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        keys = [n.idempotency_key for n in notices]
        digest_key = "digest:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:32]
        text, body = blocks.digest_message(self.renderer, notices)
        response = await self._call(
            "chat.postMessage",
            channel=channel.channel,
            text=text,
            blocks=body,
            metadata=self._metadata(digest_key, keys=keys[:100]),
            unfurl_links=False,
            unfurl_media=False,
        )
        return PostedMessage(str(response["ts"]), str(response["channel"]), None)
