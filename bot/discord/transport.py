"""The Discord delivery transport (SPEC §5): notices into the requester's thread, with the
errors sorted into "try the next route" and "retry later".

It talks to Discord's REST API directly over aiohttp rather than through discord.py's
`HTTPClient`: discord.py sleeps through 429s and retries 5xx inside the call, while the
delivery worker must see each of them (to back off with the claim released, or to pace the
channel) — and `tasktrail worker` delivers without holding a gateway connection.

Routes: `thread` posts into `destination.thread` (a Discord thread is a channel), `channel`
and `ops` into `destination.channel` (or its thread for ops), `dm` opens a DM with
`destination.user`. Every message carries the delivery's idempotency key twice: as an
enforced nonce (Discord returns the first message for a repeated nonce) and in the embed
footer, where `find_posted` looks for it in the channel's recent history after a crash.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from bot.discord.messages import digest_body, footer_key, nonce_for, notice_body
from bot.render import Renderer
from ledger.address import Address
from ledger.exceptions import DeliveryError
from ledger.transports import Notice, PostedMessage

log = logging.getLogger("tasktrail.discord.transport")

#: Discord error codes meaning this destination will not take the message: try the next route.
PERMANENT_CODES = {
    10003: "unknown channel",
    10013: "unknown user",
    50001: "missing access",
    50007: "cannot send messages to this user",
    50013: "missing permissions",
    50083: "thread is archived or locked",
    160005: "thread is locked",
}
#: How far back `find_posted` looks (one page of history).
HISTORY_LIMIT = 50
USER_AGENT = "DiscordBot (https://github.com/tasktrail/tasktrail, 0.1) tasktrail"


class DiscordTransport:
    """`ledger.transports.Transport` for Discord."""

    platform = "discord"
    channel_rate = 1.0
    can_edit = True

    def __init__(
        self,
        token: str,
        *,
        api_url: str,
        renderer: Renderer,
        timeout: float = 10.0,
    ) -> None:
        self._token = token
        self.api_url = api_url.rstrip("/")
        self.renderer = renderer
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._dm_channels: dict[str, str] = {}
        self._bot_user_id: str | None = None

    # -- Transport -----------------------------------------------------------------------------

    async def send(self, notice: Notice) -> PostedMessage:
        channel_id = await self._channel_for(notice.route, notice.destination)
        body = notice_body(self.renderer, notice)
        body["nonce"] = nonce_for(notice.idempotency_key)
        body["enforce_nonce"] = True
        data = await self._request("POST", f"/channels/{channel_id}/messages", json=body)
        return self._posted(data, notice.destination)

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        channel_id = await self._channel_for(notice.route, notice.destination)
        body = notice_body(self.renderer, notice)
        try:
            data = await self._request(
                "PATCH", f"/channels/{channel_id}/messages/{message_id}", json=body
            )
        except DeliveryError as error:
            if error.code in ("10008", "50005"):  # the message is gone (or not ours): post anew
                return await self.send(notice)
            raise
        return self._posted(data, notice.destination)

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        """Look in the thread, its channel and (for an address with a user) the DM channel:
        the worker's `where` does not say which of the channel and dm routes was tried."""
        places: list[str] = [where.thread, where.channel] if where.thread else [where.channel]
        if where.user:
            try:
                places.append(await self._dm_channel(where.user))
            except DeliveryError as error:
                if not error.permanent:
                    raise
        for channel_id in places:
            try:
                history = await self._request(
                    "GET", f"/channels/{channel_id}/messages", params={"limit": HISTORY_LIMIT}
                )
            except DeliveryError as error:
                if error.permanent:
                    continue
                raise
            for message in history or []:
                for item in message.get("embeds") or []:
                    keys = footer_key((item.get("footer") or {}).get("text"))
                    if keys is not None and idempotency_key in keys.split(","):
                        return self._posted(message, where)
        return None

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        body = digest_body(self.renderer, notices)
        body["nonce"] = nonce_for(",".join(sorted(n.idempotency_key for n in notices)))
        body["enforce_nonce"] = True
        data = await self._request("POST", f"/channels/{channel.channel}/messages", json=body)
        return self._posted(data, channel.with_thread(None))

    # -- helpers -------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _channel_for(self, route: str, destination: Address) -> str:
        if route == "dm":
            if not destination.user:
                raise DeliveryError("no user to DM", permanent=True, code="no_user")
            return await self._dm_channel(destination.user)
        if route in ("thread", "ops") and destination.thread:
            return destination.thread
        return destination.channel

    async def _dm_channel(self, user_id: str) -> str:
        cached = self._dm_channels.get(user_id)
        if cached is not None:
            return cached
        data = await self._request("POST", "/users/@me/channels", json={"recipient_id": user_id})
        channel_id = str(data["id"])
        self._dm_channels[user_id] = channel_id
        return channel_id

    @staticmethod
    def _posted(data: Any, where: Address) -> PostedMessage:
        return PostedMessage(str(data["id"]), str(data.get("channel_id", where.channel)))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bot {self._token}", "User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        url = self.api_url + path
        try:
            async with self._http().request(method, url, json=json, params=params) as response:
                status = response.status
                text = await response.text()
                headers = response.headers
                data: Any = None
                if response.content_type == "application/json" and text:
                    data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(
                f"discord {method} {path}: {type(error).__name__}: {error}",
                permanent=False,
                code="network",
            ) from error
        if 200 <= status < 300:
            return data
        raise self._error(method, path, status, data, headers)

    @staticmethod
    def _error(method: str, path: str, status: int, data: Any, headers: Any) -> DeliveryError:
        code = int(data.get("code", 0)) if isinstance(data, dict) else 0
        message = str(data.get("message", "")) if isinstance(data, dict) else ""
        where = f"discord {method} {path}"
        if status == 429:
            retry_after: float | None = None
            if isinstance(data, dict) and data.get("retry_after") is not None:
                retry_after = float(data["retry_after"])
            elif headers.get("Retry-After"):
                retry_after = float(headers["Retry-After"])
            banned = headers.get("Via") is None and not isinstance(data, dict)
            kind = "temporarily banned by Cloudflare" if banned else "rate limited"
            return DeliveryError(
                f"{where}: 429 {kind}, retry after {retry_after}s",
                permanent=False,
                retry_after=retry_after if retry_after is not None else 60.0,
                code="429",
            )
        if status == 401:
            return DeliveryError(
                f"{where}: 401 unauthorized: the bot token was rejected "
                "(check DISCORD_BOT_TOKEN) [discord_unauthorized]",
                permanent=True,
                code="discord_unauthorized",
            )
        if status >= 500:
            detail = f"{where}: {status} server error"
            return DeliveryError(detail, permanent=False, code=str(status))
        reason = PERMANENT_CODES.get(code)
        if reason is not None:
            return DeliveryError(
                f"{where}: {status} {reason} (code {code})", permanent=True, code=str(code)
            )
        # Other 4xx (bad body, unknown message, ...): this message will not go through here.
        return DeliveryError(
            f"{where}: {status} {message or 'refused'} (code {code})",
            permanent=True,
            code=str(code),
        )
