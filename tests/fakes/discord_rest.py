"""REST plumbing and the non-interaction endpoints of the fake Discord (under ``/api/v10``).

Responses are shaped like Discord's: JSON with ``Content-Type: application/json`` exactly
(discord.py only decodes that exact value), ``X-RateLimit-*`` headers on every answer, errors as
``{"code": N, "message": "..."}`` (plus an ``errors`` tree for 50035).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes import discord_limits as limits
from tests.fakes.discord_model import DM, FakeChannel, StoredMessage

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

ERROR_MESSAGES: dict[int, str] = {
    0: "401: Unauthorized",
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10008: "Unknown Message",
    10013: "Unknown User",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    40060: "Interaction has already been acknowledged.",
    50001: "Missing Access",
    50005: "Cannot edit a message authored by another user",
    50006: "Cannot send an empty message",
    50007: "Cannot send messages to this user",
    50013: "Missing Permissions",
    50035: "Invalid Form Body",
    50083: "Thread is archived",
}

Handler = Callable[["FakeDiscord", "RestRequest"], Awaitable[Any]]


class ApiError(Exception):
    """An error answer, raised by a handler and rendered the way Discord renders it."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str | None = None,
        *,
        errors: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, f"{status}: error")
        self.errors = errors
        self.headers = dict(headers or {})
        super().__init__(f"{status} (code {code}): {self.message}")

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


@dataclass
class RestRequest:
    method: str
    path: str
    """Path below the API base, e.g. ``/channels/1/messages``; no query string."""
    params: dict[str, str]
    query: Mapping[str, str]
    json: Any
    headers: Mapping[str, str]
    response_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: bool
    template: str


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, auth: bool = True) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(regex), handler, auth, template))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def bucket_hash(template: str) -> str:
    return hashlib.sha1(template.encode()).hexdigest()[:32]


def ratelimit_headers(
    *, limit: int, remaining: int, reset_after: float, bucket: str, scope: str | None = None
) -> dict[str, str]:
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(remaining, 0)),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket,
    }
    if scope is not None:
        headers["X-RateLimit-Scope"] = scope
    return headers


def rate_limited(
    retry_after: float, *, bucket: str, global_: bool = False, scope: str | None = None
) -> web.Response:
    """A 429 as Discord's API sends it (through Google's front end, hence ``Via``)."""
    scope = scope or ("global" if global_ else "user")
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(max(1, math.ceil(retry_after))),
        "X-RateLimit-Scope": scope,
    }
    if global_:
        headers["X-RateLimit-Global"] = "true"
    else:
        headers.update(
            ratelimit_headers(
                limit=5, remaining=0, reset_after=retry_after, bucket=bucket, scope=scope
            )
        )
    body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
    if global_:
        body["code"] = 0
    return json_response(429, body, headers)


def cloudflare_ban(status: int = 429, retry_after: float | None = None) -> web.Response:
    """A Cloudflare block: HTML body, no ``Via``, no rate-limit headers."""
    headers = {"Content-Type": "text/html"}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    body = (
        "<!DOCTYPE html><html><head><title>Access denied | discord.com used Cloudflare to "
        "restrict access</title></head><body>error code: 1015</body></html>"
    )
    return web.Response(status=status, body=body.encode(), headers=headers)


def invalid_form(fake: FakeDiscord, req: RestRequest, errors: list[limits.LimitError]) -> None:
    """Record every broken limit as a violation and refuse the body with 400 / 50035."""
    if not errors:
        return
    fake.record_violations(req.method, req.path, errors)
    raise ApiError(400, 50035, errors=limits.error_tree(errors))


# -- channels and messages --------------------------------------------------------------------


def readable_channel(fake: FakeDiscord, channel_id: str) -> FakeChannel:
    channel = fake.channels.get(int(channel_id)) if channel_id.isdigit() else None
    if channel is None or channel.deleted:
        raise ApiError(404, 10003)
    if channel.missing_access:
        raise ApiError(403, 50001)
    return channel


def writable_channel(fake: FakeDiscord, channel_id: str) -> FakeChannel:
    channel = readable_channel(fake, channel_id)
    if channel.missing_permissions:
        raise ApiError(403, 50013)
    if channel.is_thread and (channel.archived or channel.locked):
        raise ApiError(400, 50083)
    if channel.type == DM and channel.recipient_id is not None:
        user = fake.users.get(channel.recipient_id)
        if user is not None and user.dms_closed:
            raise ApiError(403, 50007)
    return channel


def check_channel_rate(fake: FakeDiscord, req: RestRequest, channel: FakeChannel) -> None:
    """Optional per-channel send limit (``fake.message_rate_limit``), as Discord's 5 per 5 s."""
    if fake.message_rate_limit is None:
        return
    limit, per = fake.message_rate_limit
    now = time.monotonic()
    sent = fake.channel_sends.setdefault(channel.id, [])
    sent[:] = [t for t in sent if t > now - per]
    bucket = bucket_hash("/channels/{channel_id}/messages")
    if len(sent) >= limit:
        retry_after = round(sent[0] + per - now, 3)
        raise RateLimitedError(retry_after, bucket)
    sent.append(now)
    req.response_headers.update(
        ratelimit_headers(
            limit=limit,
            remaining=limit - len(sent),
            reset_after=sent[0] + per - now,
            bucket=bucket,
        )
    )


class RateLimitedError(Exception):
    def __init__(self, retry_after: float, bucket: str) -> None:
        super().__init__(f"rate limited for {retry_after}s")
        self.retry_after = retry_after
        self.bucket = bucket


def stored_message(fake: FakeDiscord, channel: FakeChannel, message_id: str) -> StoredMessage:
    message = fake.messages.get(int(message_id)) if message_id.isdigit() else None
    if message is None or message.deleted or message.channel_id != channel.id:
        raise ApiError(404, 10008)
    return message


async def create_message(fake: FakeDiscord, req: RestRequest) -> Any:
    channel = writable_channel(fake, req.params["channel_id"])
    body = req.json or {}
    invalid_form(fake, req, limits.check_message(body))
    if limits.is_empty_message(body):
        raise ApiError(400, 50006)
    nonce = body.get("nonce")
    if nonce is not None and body.get("enforce_nonce"):
        existing = fake.find_by_nonce(channel.id, str(nonce))
        if existing is not None:
            return existing.payload
    check_channel_rate(fake, req, channel)
    message = fake.store_message(channel, body, author=fake.bot_user)
    return message.payload


async def edit_message(fake: FakeDiscord, req: RestRequest) -> Any:
    channel = writable_channel(fake, req.params["channel_id"])
    message = stored_message(fake, channel, req.params["message_id"])
    body = req.json or {}
    invalid_form(fake, req, limits.check_message({**message.request, **body}))
    if message.payload["author"]["id"] != str(fake.bot_user.id):
        raise ApiError(403, 50005)
    fake.edit_stored(message, body)
    return message.payload


async def get_message(fake: FakeDiscord, req: RestRequest) -> Any:
    channel = readable_channel(fake, req.params["channel_id"])
    return stored_message(fake, channel, req.params["message_id"]).payload


async def delete_message(fake: FakeDiscord, req: RestRequest) -> Any:
    channel = readable_channel(fake, req.params["channel_id"])
    stored_message(fake, channel, req.params["message_id"]).deleted = True
    return None


async def list_messages(fake: FakeDiscord, req: RestRequest) -> Any:
    """Channel history, newest first; ``before``/``after``/``around`` pick the closest ``limit``."""
    channel = readable_channel(fake, req.params["channel_id"])
    try:
        limit = int(req.query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        errors = [limits.LimitError(("limit",), "NUMBER_TYPE_MAX", "Must be between 1 and 100.")]
        invalid_form(fake, req, errors)
    history = sorted(
        (m for m in fake.messages.values() if m.channel_id == channel.id and not m.deleted),
        key=lambda m: m.id,
    )
    visible = [m for m in history if not m.ephemeral]
    if "before" in req.query:
        before = int(req.query["before"])
        picked = [m for m in visible if m.id < before][-limit:]
    elif "after" in req.query:
        after = int(req.query["after"])
        picked = [m for m in visible if m.id > after][:limit]
    elif "around" in req.query:
        around = int(req.query["around"])
        older = [m for m in visible if m.id <= around][-math.ceil(limit / 2) :]
        newer = [m for m in visible if m.id > around][: limit - len(older)]
        picked = older + newer
    else:
        picked = visible[-limit:]
    return [m.payload for m in reversed(picked)]


async def get_channel(fake: FakeDiscord, req: RestRequest) -> Any:
    return fake.channel_payload(readable_channel(fake, req.params["channel_id"]))


async def edit_channel(fake: FakeDiscord, req: RestRequest) -> Any:
    """Rename a channel or (un)archive and (un)lock a thread."""
    channel = readable_channel(fake, req.params["channel_id"])
    if channel.missing_permissions:
        raise ApiError(403, 50013)
    body = req.json or {}
    if "name" in body:
        channel.name = str(body["name"])
    if channel.is_thread:
        for key in ("archived", "locked"):
            if key in body:
                setattr(channel, key, bool(body[key]))
    fake.notify()
    return fake.channel_payload(channel)


async def open_dm(fake: FakeDiscord, req: RestRequest) -> Any:
    recipient = (req.json or {}).get("recipient_id")
    if recipient is None or not str(recipient).isdigit():
        invalid_form(fake, req, [limits.LimitError(("recipient_id",), "BASE_TYPE_REQUIRED", "")])
    channel = fake.dm_channel_for(int(str(recipient)))
    return fake.channel_payload(channel)


async def trigger_typing(fake: FakeDiscord, req: RestRequest) -> Any:
    writable_channel(fake, req.params["channel_id"])
    return None


# -- identity, gateway, commands --------------------------------------------------------------


async def get_gateway(fake: FakeDiscord, req: RestRequest) -> Any:
    return {"url": fake.gateway_url}


async def get_gateway_bot(fake: FakeDiscord, req: RestRequest) -> Any:
    return {
        "url": fake.gateway_url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 999,
            "reset_after": 14_400_000,
            "max_concurrency": 1,
        },
    }


async def get_me(fake: FakeDiscord, req: RestRequest) -> Any:
    return {**fake.bot_user.payload(), "mfa_enabled": False, "verified": True, "locale": "en-US"}


async def get_user(fake: FakeDiscord, req: RestRequest) -> Any:
    user_id = req.params["user_id"]
    user = fake.users.get(int(user_id)) if user_id.isdigit() else None
    if user is None:
        raise ApiError(404, 10013)
    return user.payload()


async def get_application(fake: FakeDiscord, req: RestRequest) -> Any:
    return fake.application_payload()


def _check_app(fake: FakeDiscord, req: RestRequest) -> None:
    if req.params["application_id"] != str(fake.application_id):
        raise ApiError(403, 50001)


async def put_commands(fake: FakeDiscord, req: RestRequest) -> Any:
    _check_app(fake, req)
    guild_id = int(req.params["guild_id"]) if "guild_id" in req.params else None
    if guild_id is not None and guild_id not in fake.guilds:
        raise ApiError(404, 10004)
    body = req.json if isinstance(req.json, list) else []
    invalid_form(fake, req, limits.check_commands(body))
    return fake.store_commands(guild_id, body)


async def get_commands(fake: FakeDiscord, req: RestRequest) -> Any:
    _check_app(fake, req)
    if "guild_id" in req.params:
        return fake.guild_commands.get(int(req.params["guild_id"]), [])
    return fake.global_commands


def register(router: Router) -> None:
    add = router.add
    add("GET", "/gateway", get_gateway, auth=False)
    add("GET", "/gateway/bot", get_gateway_bot)
    add("GET", "/users/@me", get_me)
    add("GET", "/users/{user_id}", get_user)
    add("POST", "/users/@me/channels", open_dm)
    add("GET", "/oauth2/applications/@me", get_application)
    add("GET", "/applications/@me", get_application)
    add("PUT", "/applications/{application_id}/commands", put_commands)
    add("GET", "/applications/{application_id}/commands", get_commands)
    add("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", put_commands)
    add("GET", "/applications/{application_id}/guilds/{guild_id}/commands", get_commands)
    add("GET", "/channels/{channel_id}", get_channel)
    add("PATCH", "/channels/{channel_id}", edit_channel)
    add("POST", "/channels/{channel_id}/typing", trigger_typing)
    add("GET", "/channels/{channel_id}/messages", list_messages)
    add("POST", "/channels/{channel_id}/messages", create_message)
    add("GET", "/channels/{channel_id}/messages/{message_id}", get_message)
    add("PATCH", "/channels/{channel_id}/messages/{message_id}", edit_message)
    add("DELETE", "/channels/{channel_id}/messages/{message_id}", delete_message)
