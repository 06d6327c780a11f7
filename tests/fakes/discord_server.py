"""A fake Discord on 127.0.0.1 that the real discord.py client talks to, REST and gateway.

Start it from async code (``async with FakeDiscord() as fake``) or from sync code
(``with run_fake_discord_in_thread() as fake``), point discord.py at it with
:func:`point_discord_py_at` and drive it from the test:

- the world: one guild with channels, a thread, roles and members is there by default
  (``fake.guild_id``, ``fake.channel_id``, ``fake.thread_id``, ``fake.user_id``, ...); shape it
  with ``add_guild``/``add_channel``/``add_thread``/``add_role``/``add_user``/``add_member`` and
  break it with ``set_channel(id, missing_access=True | missing_permissions=True |
  archived=True | locked=True | deleted=True)`` and ``set_user(id, dms_closed=True)``;
- interactions: ``await fake.send_command("tasks", {"filter": "all"}, subcommand="board")``,
  ``send_autocomplete``, ``click``, or ``dispatch_interaction(payload)``; then
  ``await fake.wait_interaction_response(interaction_id)`` and ``fake.interaction(id)``;
- faults: ``fake.inject("POST", r"/channels/\\d+/messages", status=429, retry_after=0.5)``;
- records: ``fake.calls`` (``(method, path, json)``), ``fake.call_details``,
  ``fake.violations``, ``fake.messages``, ``fake.channel_messages(id)``,
  ``fake.guild_commands``/``fake.global_commands``, ``fake.interactions``, ``fake.gateway``.

Module split: ``discord_model`` (plain objects and wire shapes), ``discord_world`` (the state
they live in, READY/GUILD_CREATE), ``discord_limits`` (Discord's limits),
``discord_rest`` (REST plumbing and channel/message/command endpoints),
``discord_interactions`` (interaction payloads, callback and webhook endpoints),
``discord_gateway`` (the WebSocket).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from aiohttp import web

from tests.fakes import discord_interactions, discord_rest
from tests.fakes import discord_limits as limits
from tests.fakes.discord_gateway import FakeGateway
from tests.fakes.discord_interactions import InteractionRecord
from tests.fakes.discord_model import StoredMessage
from tests.fakes.discord_rest import (
    ApiError,
    RateLimitedError,
    RestRequest,
    Router,
    bucket_hash,
    cloudflare_ban,
    json_response,
    rate_limited,
    ratelimit_headers,
)
from tests.fakes.discord_world import DiscordWorld

T = TypeVar("T")
API_PREFIX = "/api/v10"


class RestCall(NamedTuple):
    method: str
    path: str
    """Below the API base, without query: ``/channels/123/messages``."""
    json: Any


@dataclass(frozen=True)
class CallDetail:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int
    injected: bool


@dataclass(frozen=True)
class Violation:
    """A platform limit a request broke (the request was refused with 400 / 50035)."""

    method: str
    path: str
    field: str
    code: str
    message: str


@dataclass
class Injection:
    """A scripted answer for matching requests; ``times=None`` means every time."""

    method: str
    pattern: re.Pattern[str]
    status: int | None
    code: int
    message: str | None
    retry_after: float
    global_: bool
    cloudflare: bool
    scope: str | None
    times: int | None
    delay: float
    body: Any
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.method in ("*", method) and self.pattern.fullmatch(path) is not None


class FakeDiscord(DiscordWorld):
    """The fake platform: :class:`DiscordWorld` served over HTTP and the gateway."""

    def __init__(
        self,
        *,
        token: str = "fake-discord-bot-token",
        bot_username: str = "tasktrail",
        populate: bool = True,
        interaction_ack_deadline: float | None = 3.0,
        message_rate_limit: tuple[int, float] | None = None,
        nonce_window: float = 300.0,
        heartbeat_interval_ms: int = 41_250,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(bot_username=bot_username, populate=populate, nonce_window=nonce_window)
        self.token = token
        self.interaction_ack_deadline = interaction_ack_deadline
        """Seconds a bot has to answer an interaction (Discord: 3); ``None`` disables."""
        self.message_rate_limit = message_rate_limit
        """Per-channel ``(limit, per_seconds)`` for posting, e.g. ``(5, 5.0)``; None is off."""
        self.host = host
        self.port = port
        self.interactions: dict[int, InteractionRecord] = {}
        self.calls: list[RestCall] = []
        self.call_details: list[CallDetail] = []
        self.violations: list[Violation] = []
        self.unhandled: list[RestCall] = []
        """Calls to endpoints the fake does not implement (answered 404, code 0)."""
        self.injections: list[Injection] = []
        self.channel_sends: dict[int, list[float]] = {}
        self.gateway = FakeGateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._by_token: dict[str, InteractionRecord] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._router = Router()
        discord_rest.register(self._router)
        discord_interactions.register(self._router)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The value for ``discord.http.Route.BASE`` (``TASKTRAIL_DISCORD_API_URL``)."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """The gateway (``TASKTRAIL_DISCORD_GATEWAY_URL``); discord.py appends its query."""
        return f"ws://{self.host}:{self.port}/gateway"

    async def start(self) -> FakeDiscord:
        self.loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._handle_rest)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.gateway.url = self.gateway_url
        return self

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def run_coro(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the fake's loop from another thread (sync tests)."""
        if self.loop is None:
            coro.close()
            raise RuntimeError("the fake is not running")
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("already on the fake's loop: await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def notify(self) -> None:
        """Wake ``wait_until`` waiters (safe from any thread)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._changed.set()
        else:
            loop.call_soon_threadsafe(self._changed.set)

    async def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``predicate()`` is true; it is re-checked after every call and event."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # -- records ------------------------------------------------------------------------------

    def calls_to(self, method: str, path_regex: str) -> list[RestCall]:
        pattern = re.compile(path_regex)
        return [c for c in self.calls if method in ("*", c.method) and pattern.fullmatch(c.path)]

    def record_violations(
        self, method: str, path: str, errors: Sequence[limits.LimitError]
    ) -> None:
        for error in errors:
            self.violations.append(Violation(method, path, error.field, error.code, error.message))

    def clear_records(self) -> None:
        self.calls.clear()
        self.call_details.clear()
        self.violations.clear()
        self.unhandled.clear()

    # -- faults -------------------------------------------------------------------------------

    def inject(
        self,
        method: str,
        path_regex: str | re.Pattern[str],
        *,
        status: int | None = 500,
        code: int = 0,
        message: str | None = None,
        retry_after: float = 1.0,
        global_: bool = False,
        cloudflare: bool = False,
        scope: str | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        body: Any = None,
    ) -> Injection:
        """Answer the next ``times`` matching requests (``re.fullmatch`` on the path below
        ``/api/v10``; method ``"*"`` matches any) with ``status``:

        - 429: a Discord API rate limit (JSON ``retry_after``/``global``, ``Via`` and the
          ``X-RateLimit-*`` headers, so discord.py sleeps and retries); with
          ``cloudflare=True`` a Cloudflare ban instead (HTML, no ``Via``, no rate-limit
          headers, so discord.py raises ``HTTPException`` at once);
        - other statuses: ``{"code": code, "message": ...}`` (or ``body`` verbatim);
        - ``status=None``: only wait ``delay`` seconds, then answer normally.
        """
        pattern = re.compile(path_regex) if isinstance(path_regex, str) else path_regex
        injection = Injection(
            method.upper(),
            pattern,
            status,
            code,
            message,
            retry_after,
            global_,
            cloudflare,
            scope,
            times,
            delay,
            body,
        )
        self.injections.append(injection)
        return injection

    def clear_injections(self) -> None:
        self.injections.clear()

    # -- interactions ---------------------------------------------------------------------

    def command_interaction(
        self, name: str, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Build (not send) a slash-command payload (``discord_interactions.command_payload``)."""
        return discord_interactions.command_payload(self, name, options, **kw)

    def component_interaction(self, message_id: int, custom_id: str, **kw: Any) -> dict[str, Any]:
        return discord_interactions.component_payload(self, message_id, custom_id, **kw)

    async def dispatch_interaction(
        self, payload: dict[str, Any], *, wait_connected: float = 10.0
    ) -> int:
        """Send INTERACTION_CREATE over the gateway; returns the interaction id."""
        await self.gateway.wait_ready(wait_connected)
        record = InteractionRecord(int(payload["id"]), str(payload["token"]), payload)
        self.interactions[record.id] = record
        self._by_token[record.token] = record
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return record.id

    async def send_command(
        self, name: str, options: Mapping[str, Any] | None = None, **kw: Any
    ) -> int:
        """``/name [group] [subcommand] options...`` from ``user_id`` in ``channel_id``."""
        return await self.dispatch_interaction(self.command_interaction(name, options, **kw))

    async def send_autocomplete(
        self, name: str, options: Mapping[str, Any] | None = None, *, focused: str, **kw: Any
    ) -> int:
        payload = self.command_interaction(name, options, focused=focused, **kw)
        return await self.dispatch_interaction(payload)

    async def click(
        self,
        message_id: int,
        custom_id: str,
        *,
        values: Sequence[str] | None = None,
        **kw: Any,
    ) -> int:
        """Click a button (or choose ``values`` in a select) on a message the fake holds."""
        payload = self.component_interaction(message_id, custom_id, values=values, **kw)
        return await self.dispatch_interaction(payload)

    async def wait_interaction_response(
        self,
        interaction_id: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - the API the tests use
    ) -> dict[str, Any]:
        """The accepted callback body, e.g. ``{"type": 5, "data": {...}}``."""
        return await discord_interactions.wait_response(self, interaction_id, timeout)

    def interaction(self, interaction_id: int) -> InteractionRecord:
        return self.interactions[interaction_id]

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return self._by_token.get(token)

    def original_response(self, interaction_id: int) -> StoredMessage | None:
        record = self.interactions[interaction_id]
        if record.original_message_id is None:
            return None
        return self.messages[record.original_message_id]

    async def dispatch_event(self, event: str, data: dict[str, Any]) -> int:
        """Send any DISPATCH (``THREAD_UPDATE``, ``CHANNEL_DELETE``, ...) to live sessions."""
        return await self.gateway.dispatch(event, data)

    def token_is_valid(self, token: str) -> bool:
        return token.removeprefix("Bot ") == self.token

    # -- REST dispatch --------------------------------------------------------------------

    async def _handle_rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        body = await self._read_body(request)
        self.calls.append(RestCall(method, path, body))
        injected = False
        try:
            response = await self._answer(request, method, path, body)
            injected = bool(response.headers.get("X-Fake-Injected"))
        except Exception:
            response = json_response(500, {"message": "500: fake crashed", "code": 0})
            raise
        finally:
            self.call_details.append(
                CallDetail(method, path, dict(request.query), body, response.status, injected)
            )
            self.notify()
        return response

    async def _read_body(self, request: web.Request) -> Any:
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            raw = form.get("payload_json")
            return json.loads(raw) if isinstance(raw, str) else None
        text = await request.text()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    async def _answer(
        self, request: web.Request, method: str, path: str, body: Any
    ) -> web.Response:
        matched = self._router.match(method, path)
        template = matched[0].template if matched else path
        injection = next((i for i in self.injections if i.matches(method, path)), None)
        if injection is not None:
            injection.hits += 1
            if injection.delay:
                await asyncio.sleep(injection.delay)
            if injection.status is not None:
                response = self._injected(injection, bucket_hash(template))
                response.headers["X-Fake-Injected"] = "1"
                return response
        if matched is None:
            self.unhandled.append(RestCall(method, path, body))
            return json_response(404, {"message": "404: Not Found", "code": 0})
        route, params = matched
        if route.auth and not self.token_is_valid(request.headers.get("Authorization", "-")):
            return json_response(401, {"message": "401: Unauthorized", "code": 0})
        req = RestRequest(method, path, params, request.query, body, request.headers)
        default_headers = ratelimit_headers(
            limit=50, remaining=49, reset_after=1.0, bucket=bucket_hash(route.template)
        )
        try:
            result = await route.handler(self, req)
        except ApiError as exc:
            return json_response(exc.status, exc.body(), {**default_headers, **exc.headers})
        except RateLimitedError as exc:
            return rate_limited(exc.retry_after, bucket=exc.bucket)
        headers = {**default_headers, **req.response_headers}
        if result is None:
            return web.Response(status=204, headers=headers)
        return json_response(200, result, headers)

    def _injected(self, injection: Injection, bucket: str) -> web.Response:
        if injection.status == 429 and not injection.cloudflare:
            return rate_limited(
                injection.retry_after,
                bucket=bucket,
                global_=injection.global_,
                scope=injection.scope,
            )
        if injection.cloudflare:
            return cloudflare_ban(injection.status or 429, injection.retry_after)
        status = injection.status or 500
        if injection.body is not None:
            return json_response(status, injection.body)
        known = discord_rest.ERROR_MESSAGES.get(injection.code) if injection.code else None
        message = injection.message or known or _status_text(status)
        return json_response(status, {"message": message, "code": injection.code})


def _status_text(status: int) -> str:
    try:
        return f"{status}: {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status}: Error"


@contextmanager
def run_fake_discord_in_thread(**options: Any) -> Iterator[FakeDiscord]:
    """Run a :class:`FakeDiscord` on its own event loop in a daemon thread (sync tests).

    Use ``fake.run_coro(fake.send_command(...))`` to drive it from the test thread.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-discord", daemon=True)
    thread.start()
    fake = FakeDiscord(**options)
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(10)
        yield fake
    finally:
        try:
            asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


def point_discord_py_at(api_url: str, gateway_url: str) -> Callable[[], None]:
    """Make discord.py use ``api_url`` for REST and ``gateway_url`` for the gateway.

    Patches two class attributes, process-wide: ``discord.http.Route.BASE`` (every REST and
    webhook/interaction URL is built from it when a ``Route`` is created) and
    ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (``Client.connect`` opens it;
    discord.py 2.7 does not ask ``GET /gateway/bot`` unless sharded automatically). Returns a
    function that puts the previous values back.
    """
    import yarl

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
        import discord.gateway
        import discord.http

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    def restore() -> None:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway

    return restore
