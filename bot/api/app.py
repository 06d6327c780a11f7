"""The FastAPI application: task API, `/healthz`, `/metrics`, error translation, body limit
and request timing. Built by `bot.app.build_app()`; nothing here connects at import time."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.api.auth import TokenAuth, Unauthorized
from bot.api.metrics import Metrics
from bot.api.routes import router
from bot.api.writer import Writer
from bot.settings import Settings
from ledger import Ledger
from ledger.exceptions import DatabaseError, LedgerError

#: Largest request body accepted (a 5,000-character label and a 100,000-character brief fit).
MAX_BODY = 1024 * 1024


@dataclass
class Services:
    """What the HTTP layer needs, built once by the composition root."""

    settings: Settings
    ledger: Ledger
    metrics: Metrics
    auth: TokenAuth
    #: True: the web board is readable without a token (serve bound to 127.0.0.1 only).
    open_board: bool = False
    #: Extra health details from running components (workers, adapters).
    health_extras: list[Callable[[], dict[str, Any]]] = field(default_factory=list)
    draining: bool = False
    #: Runs the API's writes (batched on SQLite; see `bot.api.writer`).
    writer: Writer = field(init=False)

    def __post_init__(self) -> None:
        self.writer = Writer(self.ledger)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


class BodyLimit:
    """Refuse request bodies over `limit` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.limit + 1
                if declared > self.limit:
                    await self._too_large(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"error": "body_too_large", "message": f"request body over {self.limit} bytes"},
            status_code=413,
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class Timing:
    """Observe request latency per route template into the metrics histogram."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(scope["method"], path, str(status)).observe(
                time.perf_counter() - started
            )


def build_api(services: Services) -> FastAPI:
    app = FastAPI(
        title="tasktrail",
        version="1",
        description="Ledger of detached work: tasks, events, audit (SPEC §9). "
        "Authenticate with `Authorization: Bearer <token>`.",
        openapi_url="/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.include_router(router)
    _install_error_handlers(app)
    _install_ops_routes(app, services)
    app.add_middleware(BodyLimit)
    app.add_middleware(Timing, metrics=services.metrics)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LedgerError)
    async def ledger_error(_request: Request, error: LedgerError) -> JSONResponse:
        body: dict[str, Any] = {"error": _snake(type(error).__name__), "message": str(error)}
        if hasattr(error, "field"):
            body["field"] = error.field
        return JSONResponse(body, status_code=error.http_status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        fields = []
        for item in error.errors():
            name = _field_of(item.get("loc", ()))
            fields.append(name)
            problems.append(f"{name}: {item.get('msg', 'invalid')}")
        return JSONResponse(
            {
                "error": "invalid_input",
                "message": "; ".join(problems),
                "field": fields[0] if fields else None,
                "fields": fields,
            },
            status_code=422,
        )

    @app.exception_handler(Unauthorized)
    async def unauthorized(_request: Request, error: Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"error": "unauthorized", "message": error.message},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(DatabaseError)
    async def database(_request: Request, error: DatabaseError) -> JSONResponse:
        first = str(error.orig).splitlines()[0] if error.orig else "database error"
        return JSONResponse(
            {"error": "database_unavailable", "message": first[:300]}, status_code=503
        )


def _install_ops_routes(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", include_in_schema=True, tags=["ops"])
    async def healthz() -> JSONResponse:
        """200 with details while the database answers, 503 when it does not."""
        try:
            details = await asyncio.wait_for(asyncio.to_thread(_health, services), timeout=5)
        except Exception as error:  # the database did not answer in time, or refused
            return JSONResponse(
                {"status": "unavailable", "database": f"error: {str(error)[:200]}"},
                status_code=503,
            )
        for extra in services.health_extras:
            try:
                details.update(extra())
            except Exception as error:
                details.setdefault("components", {})[getattr(extra, "__name__", "?")] = str(error)
        if services.draining:
            details["status"] = "draining"
            return JSONResponse(details, status_code=503)
        return JSONResponse(details)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        payload = await asyncio.to_thread(generate_latest, services.metrics.registry)
        return PlainTextResponse(payload.decode(), media_type=CONTENT_TYPE_LATEST)


def _health(services: Services) -> dict[str, Any]:
    now = services.ledger.clock()
    health = services.ledger.health(now=now)
    age = health.last_auditor_pass_age(now)
    return {
        "status": "ok",
        "database": "ok",
        "backend": health.backend,
        "last_auditor_pass_age_seconds": round(age, 1) if age is not None else None,
        "delivery_backlog": health.delivery_backlog,
    }
