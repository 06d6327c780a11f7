"""The fake Discord gateway: the WebSocket half of the fake, spoken the way discord.py expects.

Protocol (gateway v10, JSON encoding): on connect the server sends HELLO (op 10) with
``heartbeat_interval``; the client sends IDENTIFY (op 2) and receives READY then one
GUILD_CREATE per guild; HEARTBEAT (op 1) is answered with HEARTBEAT_ACK (op 11); RESUME (op 6)
of a known session replays the dispatches the client missed and sends RESUMED, an unknown
session gets INVALID_SESSION (op 9, ``d: false``). REQUEST_GUILD_MEMBERS (op 8) is answered
with one GUILD_MEMBERS_CHUNK. A bad token closes with 4004, a second IDENTIFY with 4005,
a payload before IDENTIFY with 4003.

Transport compression: discord.py asks for ``?v=10&encoding=json&compress=zlib-stream``
(``zstd-stream`` when the ``zstandard`` package is importable). ``zlib-stream`` is implemented:
one zlib stream per connection, each message flushed with ``Z_SYNC_FLUSH`` so it ends in
``00 00 ff ff``. For any other compression the fake sends plain text frames, which discord.py
also accepts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSMsgType, web

_log = logging.getLogger(__name__)

DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

CLOSE_UNKNOWN_OPCODE = 4001
CLOSE_DECODE_ERROR = 4002
CLOSE_NOT_AUTHENTICATED = 4003
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_ALREADY_AUTHENTICATED = 4005


class GatewayBackend(Protocol):
    """What the gateway needs from the rest of the fake."""

    def token_is_valid(self, token: str) -> bool: ...

    def ready_payload(self, session_id: str, resume_gateway_url: str) -> dict[str, Any]: ...

    def guild_create_payloads(self) -> list[dict[str, Any]]: ...

    def members_chunk(self, guild_id: int, request: dict[str, Any]) -> dict[str, Any]: ...

    def notify(self) -> None: ...


@dataclass
class GatewaySession:
    """One IDENTIFYed session; it outlives its connection so that RESUME can pick it up."""

    session_id: str
    identify: dict[str, Any]
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    compressor: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    invalidated: bool = False
    resumes: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.ws is not None and not self.ws.closed

    @property
    def intents(self) -> int:
        return int(self.identify.get("intents") or 0)


class FakeGateway:
    """Serves the gateway at ``/gateway`` on the fake's aiohttp app."""

    def __init__(self, backend: GatewayBackend, *, heartbeat_interval_ms: int = 41_250) -> None:
        self.backend = backend
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.url = ""
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[dict[str, str]] = []
        """The query of every WebSocket connection (``v``, ``encoding``, ``compress``)."""
        self.heartbeats = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._ready = asyncio.Event()

    # -- public -----------------------------------------------------------------------------

    @property
    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if not s.invalidated]

    async def wait_ready(self, timeout: float = 10.0) -> GatewaySession:  # noqa: ASYNC109
        """Wait until some session has been sent READY; return the newest live one."""
        async with asyncio.timeout(timeout):
            while True:
                live = [s for s in self.live_sessions if s.connected]
                if live:
                    return live[-1]
                self._ready.clear()
                await self._ready.wait()

    async def dispatch(self, event: str, data: dict[str, Any]) -> int:
        """Send a DISPATCH to every live session (buffered for resume if it is disconnected)."""
        sessions = self.live_sessions
        for session in sessions:
            await self._dispatch_to(session, event, data)
        return len(sessions)

    async def reconnect(self) -> None:
        """Send RECONNECT (op 7) to every connected session; discord.py resumes."""
        for session in self.live_sessions:
            if session.connected:
                await self._send(session, {"op": RECONNECT, "d": None})

    async def invalidate(self, *, resumable: bool = False) -> None:
        """Send INVALID_SESSION; with ``resumable=False`` the session is forgotten."""
        for session in self.live_sessions:
            if session.connected:
                await self._send(session, {"op": INVALID_SESSION, "d": resumable})
            if not resumable:
                session.invalidated = True

    async def drop(self, code: int = 4000) -> None:
        """Close every connection with ``code`` (4000 lets discord.py reconnect and resume).

        Sessions are detached first, so dispatches made before the client resumes are
        buffered and replayed on RESUME, as Discord does.
        """
        for session in self.sessions.values():
            session.ws = None
        for ws in list(self._sockets):
            await ws.close(code=code, message=b"fake gateway drop")

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake gateway stopping")

    # -- connection handling ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        query = dict(request.query)
        self.connections.append(query)
        self._sockets.add(ws)
        compressor = None
        if query.get("compress") == "zlib-stream":
            compressor = zlib.compressobj()
        conn = GatewaySession(session_id="", identify={}, ws=ws, compressor=compressor)
        session: GatewaySession | None = None
        try:
            if query.get("encoding", "json") != "json":
                await ws.close(code=CLOSE_DECODE_ERROR, message=b"only json encoding is faked")
                return ws
            await self._send(
                conn, {"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"expected text frames")
                    break
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    await ws.close(code=CLOSE_DECODE_ERROR, message=b"invalid payload")
                    break
                session = await self._on_payload(ws, conn, session, payload)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.backend.notify()
        return ws

    async def _on_payload(
        self,
        ws: web.WebSocketResponse,
        conn: GatewaySession,
        session: GatewaySession | None,
        payload: dict[str, Any],
    ) -> GatewaySession | None:
        op = payload.get("op")
        raw = payload.get("d")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if session is not None:
            session.received.append(payload)
        if op == HEARTBEAT:
            self.heartbeats += 1
            await self._send(session or conn, {"op": HEARTBEAT_ACK, "d": None})
            return session
        if op == IDENTIFY:
            if session is not None:
                await ws.close(code=CLOSE_ALREADY_AUTHENTICATED, message=b"Already authenticated.")
                return session
            return await self._identify(ws, conn, data)
        if op == RESUME:
            return await self._resume(ws, conn, data)
        if session is None:
            await ws.close(code=CLOSE_NOT_AUTHENTICATED, message=b"Not authenticated.")
            return None
        if op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            return session
        if op == REQUEST_GUILD_MEMBERS:
            chunk = self.backend.members_chunk(int(data["guild_id"]), data)
            await self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)
            return session
        await ws.close(code=CLOSE_UNKNOWN_OPCODE, message=b"Unknown opcode.")
        return session

    async def _identify(
        self, ws: web.WebSocketResponse, conn: GatewaySession, data: dict[str, Any]
    ) -> GatewaySession | None:
        if not self.backend.token_is_valid(str(data.get("token") or "")):
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        session = GatewaySession(
            session_id=secrets.token_hex(16),
            identify=data,
            ws=ws,
            compressor=conn.compressor,
            lock=conn.lock,
        )
        self.sessions[session.session_id] = session
        await self._dispatch_to(
            session, "READY", self.backend.ready_payload(session.session_id, self.url)
        )
        for guild in self.backend.guild_create_payloads():
            await self._dispatch_to(session, "GUILD_CREATE", guild)
        self._ready.set()
        self.backend.notify()
        return session

    async def _resume(
        self, ws: web.WebSocketResponse, conn: GatewaySession, data: dict[str, Any]
    ) -> GatewaySession | None:
        session = self.sessions.get(str(data.get("session_id")))
        token_ok = self.backend.token_is_valid(str(data.get("token") or ""))
        if session is None or session.invalidated or not token_ok:
            await self._send(conn, {"op": INVALID_SESSION, "d": False})
            return None
        if session.ws is not None and session.ws is not ws and not session.ws.closed:
            await session.ws.close(code=4000, message=b"session resumed elsewhere")
        session.ws = ws
        session.compressor = conn.compressor
        session.lock = conn.lock
        session.resumes += 1
        last_seen = int(data.get("seq") or 0)
        for missed in [p for p in session.sent if p["s"] > last_seen]:
            await self._send(session, missed)
        await self._dispatch_to(session, "RESUMED", {})
        self._ready.set()
        self.backend.notify()
        return session

    async def _dispatch_to(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.sent.append(payload)
        if session.connected:
            await self._send(session, payload)

    async def _send(self, session: GatewaySession, payload: dict[str, Any]) -> None:
        ws = session.ws
        if ws is None or ws.closed:
            return
        raw = json.dumps(payload, separators=(",", ":"))
        async with session.lock:
            try:
                if session.compressor is not None:
                    chunk = session.compressor.compress(raw.encode())
                    chunk += session.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await ws.send_bytes(chunk)
                else:
                    await ws.send_str(raw)
            except ConnectionError:
                _log.debug("fake gateway: send on a closing socket dropped")
