"""A fake Slack for tests: Web API, ``response_url`` and Socket Mode on 127.0.0.1.

The real ``slack_sdk``/Bolt clients talk to it (``base_url=fake.api_url``). It keeps channels,
threads and messages (:class:`~tests.fakes.slack_workspace.SlackWorkspace`), records every call,
refuses what Slack refuses (Block Kit limits, archived channels, missing threads) and injects
faults (429, 5xx, permanent errors, delays). Run it on the test's loop
(``async with FakeSlack() as fake``) or in its own thread (``with run_fake_slack_in_thread() as
fake``); every accessor is thread-safe.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from .slack_blocks import find_pings, message_problem
from .slack_payloads import APP_ID
from .slack_workspace import JSON, Channel, SlackWorkspace, Violation, _err, _truthy

__all__ = ["Channel", "FakeSlack", "Injection", "Violation", "run_fake_slack_in_thread"]

T = TypeVar("T")
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")


@dataclass
class Injection:
    """A planned fault; ``times=None`` keeps it forever. ``hits`` counts how often it fired."""

    method: str
    error: str | None = None
    status: int = 200
    retry_after: int | None = None
    times: int | None = 1
    channel: str | None = None
    delay: float = 0.0
    hits: int = 0

    def applies(self, method: str, channel: Any) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.method in (method, "*") and self.channel in (None, channel)


async def _read_params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.content_type.startswith("multipart/"):
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    elif request.can_read_body:
        raw = await request.read()
        if request.content_type == "application/json" and raw.strip():
            body = json.loads(raw)  # ValueError -> invalid_json
            if not isinstance(body, dict):
                raise ValueError("JSON body is not an object")
            params.update(body)
        elif raw:
            params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    for key in _JSON_FIELDS:
        if isinstance(params.get(key), str) and params[key]:
            params[key] = json.loads(params[key])
    return params


class FakeSlack(SlackWorkspace):
    """The fake Slack platform: a :class:`SlackWorkspace` served over HTTP and WebSocket."""

    def __init__(self, *, host: str = "127.0.0.1", channels: Iterable[str] = ()) -> None:
        super().__init__(channels=channels)
        self.host = host
        self._calls: list[tuple[str, JSON]] = []
        self._outcomes: list[tuple[str, int, str | None]] = []
        self._injections: list[Injection] = []
        self._responses: dict[str, list[JSON]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_pending: list[JSON] = []
        self._socket_sent: list[JSON] = []
        self._socket_connects = 0
        self._acks: dict[str, JSON] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._methods["apps.connections.open"] = self._connections_open

    # Lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = list(self._sockets), []
        for ws in sockets:
            await ws.close(code=WSCloseCode.GOING_AWAY)
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_url(self) -> str:
        """Pass as ``base_url`` to ``WebClient``/``AsyncWebClient`` (ends in ``/api/``)."""
        return f"{self.base_url}/api/"

    def response_url(self, name: str = "default") -> str:
        return f"{self.base_url}/response/{name}"

    def inject(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
        times: int | None = 1,
        channel: str | None = None,
        delay: float = 0.0,
    ) -> Injection:
        """Make the next ``times`` calls of ``method`` (``"*"``: any) fail.

        ``status=429`` answers ``ratelimited`` with ``Retry-After`` (default 1 s); 5xx answers
        ``{"ok": false}``; ``error`` alone is a permanent Slack error with HTTP 200; ``delay``
        alone only slows the call down (for client timeouts).
        """
        injection = Injection(method, error, status, retry_after, times, channel, delay)
        with self._lock:
            self._injections.append(injection)
        return injection

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    # Records ----------------------------------------------------------------------------------
    @property
    def calls(self) -> list[tuple[str, JSON]]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def calls_to(self, method: str) -> list[JSON]:
        with self._lock:
            return [copy.deepcopy(p) for m, p in self._calls if m == method]

    @property
    def outcomes(self) -> list[tuple[str, int, str | None]]:
        """``(method, http_status, slack_error_or_None)`` for each call, in order."""
        with self._lock:
            return list(self._outcomes)

    def responses(self, name: str = "default") -> list[JSON]:
        """Bodies posted to :meth:`response_url` ``name``."""
        with self._lock:
            return copy.deepcopy(self._responses.get(name, []))

    def clear_records(self) -> None:
        with self._lock:
            self._calls.clear()
            self._outcomes.clear()
            self._violations.clear()
            self._pings.clear()
            self._responses.clear()

    # Waiting (async waiters poll, so they work from any loop; *_sync must not run on ours) ----
    async def wait_until(self, predicate: Callable[[], T | None], seconds: float = 5.0) -> T:
        deadline = time.monotonic() + seconds
        while True:
            with self._lock:
                result = predicate()
            if result is not None and result is not False:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"fake Slack: condition not met within {seconds}s")
            await asyncio.sleep(0.005)

    def wait_until_sync(self, predicate: Callable[[], T | None], seconds: float = 5.0) -> T:
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                result = predicate()
                if result is not None and result is not False:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake Slack: condition not met within {seconds}s")
                self._changed.wait(min(remaining, 0.05))

    def _calls_if(self, method: str, count: int) -> list[JSON] | None:
        found = self.calls_to(method)
        return found if len(found) >= count else None

    async def wait_for_calls(self, method: str, count: int = 1, seconds: float = 5.0) -> list[JSON]:
        return await self.wait_until(lambda: self._calls_if(method, count), seconds)

    def wait_for_calls_sync(self, method: str, count: int = 1, seconds: float = 5.0) -> list[JSON]:
        return self.wait_until_sync(lambda: self._calls_if(method, count), seconds)

    async def wait_socket_ack(self, envelope_id: str, seconds: float = 5.0) -> JSON:
        """The ack the client sent: ``{"envelope_id": ..., "payload"?: {...}}``."""
        return await self.wait_until(lambda: copy.deepcopy(self._acks.get(envelope_id)), seconds)

    def wait_socket_ack_sync(self, envelope_id: str, seconds: float = 5.0) -> JSON:
        return self.wait_until_sync(lambda: copy.deepcopy(self._acks.get(envelope_id)), seconds)

    async def wait_socket_connected(self, connections: int = 1, seconds: float = 5.0) -> None:
        await self.wait_until(lambda: self._socket_connects >= connections, seconds)

    def wait_socket_connected_sync(self, connections: int = 1, seconds: float = 5.0) -> None:
        self.wait_until_sync(lambda: self._socket_connects >= connections, seconds)

    # Socket Mode --------------------------------------------------------------------------
    def socket_send_envelope(
        self,
        type: str,
        payload: JSON,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
    ) -> str:
        """Push an envelope (``slash_commands``, ``interactive``, ``events_api``) to the app.

        Goes to the newest connection, or waits for the next one. Returns the envelope id.
        """
        if self._loop is None:
            raise RuntimeError("fake Slack is not running")
        if accepts_response_payload is None:
            kind = payload.get("type")
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and kind in ("view_submission", "block_suggestion")
            )
        envelope: JSON = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        with self._lock:
            self._socket_sent.append(copy.deepcopy(envelope))
        self._loop.call_soon_threadsafe(self._spawn, self._deliver(envelope))
        return str(envelope["envelope_id"])

    def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask connected clients to reconnect, as Slack does before recycling a connection."""
        if self._loop is None:
            raise RuntimeError("fake Slack is not running")
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-applink"}}
        self._loop.call_soon_threadsafe(self._spawn, self._deliver(message, everyone=True))

    @property
    def socket_envelopes_sent(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._socket_sent)

    @property
    def socket_connections(self) -> int:
        """Currently open Socket Mode connections."""
        with self._lock:
            return len(self._sockets)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: JSON, *, everyone: bool = False) -> None:
        with self._lock:
            sockets = list(self._sockets)
            if not sockets:
                if not everyone:
                    self._socket_pending.append(message)
                return
        for ws in sockets if everyone else sockets[-1:]:
            await ws.send_json(message)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with self._lock:
            count = len(self._sockets) + 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": count,
                "debug_info": {
                    "host": "fake-applink-1",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": APP_ID},
            }
        )
        with self._lock:
            self._sockets.append(ws)
            self._socket_connects += 1
            pending, self._socket_pending = self._socket_pending, []
            self._changed.notify_all()
        for message in pending:
            await ws.send_json(message)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and "envelope_id" in data:
                    with self._lock:
                        self._acks[str(data["envelope_id"])] = data
                        self._changed.notify_all()
        finally:
            with self._lock:
                if ws in self._sockets:
                    self._sockets.remove(ws)
                self._changed.notify_all()
        return ws

    # HTTP ----------------------------------------------------------------------------------
    def _reply(
        self, method: str, body: JSON, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        with self._lock:
            self._outcomes.append((method, status, None if body.get("ok") else body.get("error")))
            self._changed.notify_all()
        return web.json_response(body, status=status, headers=headers)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
        except ValueError:
            return self._reply(method, _err("invalid_json"))
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else str(params.get("token") or "")
        params.pop("token", None)
        with self._lock:
            self._calls.append((method, copy.deepcopy(params)))
            channel = params.get("channel")
            fault = next((i for i in self._injections if i.applies(method, channel)), None)
            if fault is not None:
                fault.hits += 1
            self._changed.notify_all()
        if fault is not None:
            await asyncio.sleep(fault.delay)
            if fault.status == 429:
                retry_after = str(fault.retry_after if fault.retry_after is not None else 1)
                body = _err(fault.error or "ratelimited")
                return self._reply(method, body, 429, {"Retry-After": retry_after})
            if fault.status != 200:
                return self._reply(method, _err(fault.error or "internal_error"), fault.status)
            if fault.error is not None:
                return self._reply(method, _err(fault.error))
        return self._reply(method, self.answer(method, params, token))

    async def _response(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            if raw.lstrip().startswith(b"{"):
                body = json.loads(raw)
            else:
                body = json.loads(dict(parse_qsl(raw.decode("utf-8")))["payload"])
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except (ValueError, KeyError):
            return web.Response(status=400, text="invalid_payload")
        name = request.match_info["name"]
        with self._lock:
            self._responses.setdefault(name, []).append(copy.deepcopy(body))
            problem = None if _truthy(body.get("delete_original")) else message_problem(body)
            if problem is not None:
                self._refuse("response_url", name, problem[0], problem[1])
            else:
                self._pings.extend(("response_url", name, p) for p in find_pings(body))
            self._changed.notify_all()
        return web.Response(status=400 if problem else 200, text=problem[0] if problem else "ok")

    def _connections_open(self, params: JSON) -> JSON:
        ticket = uuid.uuid4().hex
        return {"ok": True, "url": f"ws://{self.host}:{self._port}/socket?ticket={ticket}"}


@contextmanager
def run_fake_slack_in_thread(**kwargs: Any) -> Iterator[FakeSlack]:
    """Run a :class:`FakeSlack` on its own event loop in a daemon thread, for sync tests."""
    fake = FakeSlack(**kwargs)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(fake.start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=serve, name="fake-slack", daemon=True)
    thread.start()
    if not started.wait(10) or failure:
        raise RuntimeError("fake Slack did not start") from (failure[0] if failure else None)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
