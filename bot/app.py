"""The composition root: one function builds everything `serve` and `worker` run from a frozen
`Settings` (engine and ledger, renderer, transports, delivery workers, scheduler, the FastAPI
app, the Slack and Discord adapters), and one coroutine runs it all on one event loop.

Nothing connects, reads the environment or starts at import time. Each chat adapter is built
only when its credentials are configured; a component whose module is not installed in this
build is skipped with a log line, so pieces plug in by existing.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from bot.api.app import Services, build_api
from bot.api.auth import TokenAuth
from bot.api.metrics import Metrics
from bot.settings import Settings
from ledger import Ledger
from ledger.exceptions import DeliveryError
from ledger.transports import Notice, PostedMessage, Transport

log = logging.getLogger("tasktrail.serve")

#: Addresses the board may be read without a token from (serve bound to loopback only).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Seconds a SIGTERM drain may take before the process exits anyway (SPEC: within 10 s).
DRAIN_SECONDS = 8.0
#: PostgreSQL advisory lock key of the Discord gateway connection (one replica holds it).
GATEWAY_LOCK_KEY = 0x7A5C_D15C
GATEWAY_RETRY_SECONDS = 10.0


class MeteredTransport:
    """Wraps a transport to count attempts, failures and send latency in the metrics."""

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.platform = inner.platform
        self.channel_rate = inner.channel_rate
        self.can_edit = inner.can_edit

    async def _timed(self, call: Any) -> PostedMessage:
        started = time.perf_counter()
        try:
            posted: PostedMessage = await call
        except DeliveryError as error:
            outcome = "failed" if error.permanent else "retrying"
            self.metrics.record_delivery(
                self.platform, outcome, time.perf_counter() - started, permanent=error.permanent
            )
            raise
        self.metrics.record_delivery(self.platform, "delivered", time.perf_counter() - started)
        return posted

    async def send(self, notice: Notice) -> PostedMessage:
        return await self._timed(self.inner.send(notice))

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self._timed(self.inner.edit(notice, message_id))

    async def find_posted(self, idempotency_key: str, where: Any) -> PostedMessage | None:
        return await self.inner.find_posted(idempotency_key, where)

    async def send_digest(self, channel: Any, notices: list[Notice]) -> PostedMessage:
        return await self._timed(self.inner.send_digest(channel, notices))


@dataclass
class App:
    """Everything one process runs, built but not started."""

    settings: Settings
    ledger: Ledger
    metrics: Metrics
    renderer: Any
    transports: Mapping[str, Transport]
    workers: list[Any]
    services: Services
    api: FastAPI | None
    slack: Any = None
    discord: Any = None
    scheduler: Any = None
    #: Extra coroutines to run alongside (the demo's producers, the OpenClaw mirror).
    background: list[Callable[[asyncio.Event], Any]] = field(default_factory=list)
    worker_id: str = ""


def _optional(module: str, attr: str) -> Any:
    """`module.attr` when that module is part of this build, else None."""
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as error:
        log.info("%s is not available (%s); skipping it", module, error)
        return None
    except AttributeError:
        log.warning("%s has no %s; skipping it", module, attr)
        return None


def _audit_counts(ledger: Ledger) -> Callable[[], dict[str, int]] | None:
    if not hasattr(ledger, "audit"):
        return None

    def counts() -> dict[str, int]:
        summary = ledger.audit(limit=1).summary()
        return {str(k): int(v) for k, v in summary.get("by_code", {}).items()}

    return counts


def build_renderer() -> Any:
    make = _optional("bot.render", "Renderer")
    if make is None:
        return None
    try:
        return make()
    except Exception:
        log.exception("could not build the renderer")
        return None


def build_app(
    settings: Settings,
    *,
    http: bool = True,
    ledger: Ledger | None = None,
    extra_transports: Sequence[Transport] = (),
    console: bool = False,
) -> App:
    """Build (do not start) the process: `http=False` is `tasktrail worker`."""
    if ledger is None:
        ledger = Ledger.connect(settings.database_url, settings.ledger, actor="serve")
    metrics = Metrics(ledger, audit=_audit_counts(ledger))
    renderer = build_renderer()
    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    slack = discord = None
    if settings.slack_enabled:
        adapter = _optional("bot.slack", "SlackAdapter")
        slack = adapter(settings, ledger, renderer) if adapter else None
    if settings.discord_enabled:
        adapter = _optional("bot.discord", "DiscordAdapter")
        discord = adapter(settings, ledger, renderer) if adapter else None

    raw: list[Transport] = []
    for adapter in (slack, discord):
        transport = getattr(adapter, "transport", None) if adapter is not None else None
        if transport is not None:
            raw.append(transport)
    raw.extend(extra_transports)
    if console or not raw:
        console_cls = _optional("ledger.transports", "ConsoleTransport")
        if console_cls is not None:
            raw.append(console_cls("*"))
    transports = {t.platform: MeteredTransport(t, metrics) for t in raw}

    workers: list[Any] = []
    worker_cls = _optional("ledger.delivery", "DeliveryWorker")
    if worker_cls is not None:
        workers.append(worker_cls(ledger, settings.ledger, transports, worker_id=worker_id))

    services = Services(
        settings=settings,
        ledger=ledger,
        metrics=metrics,
        auth=TokenAuth(ledger, settings.api_tokens),
        open_board=settings.host in LOOPBACK_HOSTS,
    )
    api = None
    if http:
        api = build_api(services)
        from bot.web.routes import install_board

        install_board(api, services, renderer)
        if slack is not None and hasattr(slack, "mount"):
            slack.mount(api)

    scheduler = None
    make_scheduler = _optional("bot.scheduler", "build_scheduler")
    if make_scheduler is not None:
        scheduler = make_scheduler(
            settings, ledger, worker_id=worker_id, extra_jobs=_extra_jobs(settings, ledger)
        )

    app = App(
        settings=settings,
        ledger=ledger,
        metrics=metrics,
        renderer=renderer,
        transports=transports,
        workers=workers,
        services=services,
        api=api,
        slack=slack,
        discord=discord,
        scheduler=scheduler,
        worker_id=worker_id,
    )
    services.health_extras.append(lambda: _component_health(app))
    return app


def _extra_jobs(settings: Settings, ledger: Ledger) -> list[Any]:
    """Periodic work besides the auditor's core jobs: the OpenClaw mirror when configured."""
    jobs: list[Any] = []
    state_dir = settings.openclaw_state_dir
    if state_dir:
        watch = _optional("ledger.importers.openclaw", "openclaw_watch_job")
        job_cls = _optional("bot.scheduler", "ScheduledJob")
        if watch is not None and job_cls is not None:
            jobs.append(
                job_cls(
                    "openclaw_watch",
                    lambda: watch(ledger, state_dir),
                    settings.ledger.reconcile_interval,
                )
            )
    return jobs


def _component_health(app: App) -> dict[str, Any]:
    return {
        "components": {
            "delivery_workers": len(app.workers),
            "transports": sorted(app.transports),
            "slack": app.slack is not None,
            "discord": app.discord is not None,
            "scheduler": app.scheduler is not None,
        }
    }


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        await value


async def run_app(
    app: App,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Run everything until `stop` is set, then drain: stop taking requests, let delivery
    workers finish the pass in flight (their claims are then released), stop adapters and
    the scheduler."""
    tasks: list[asyncio.Task[Any]] = []
    worker_stop = asyncio.Event()
    for worker in app.workers:
        tasks.append(asyncio.create_task(worker.run(worker_stop), name="delivery-worker"))
    for job in app.background:
        tasks.append(asyncio.create_task(job(worker_stop), name="background"))
    if app.scheduler is not None:
        await _maybe_await(app.scheduler.start())
    if app.slack is not None:
        tasks.append(asyncio.create_task(_start_adapter(app.slack), name="slack"))
    if app.discord is not None:
        tasks.append(
            asyncio.create_task(_hold_gateway(app, app.discord, worker_stop), name="discord")
        )

    server = None
    server_task: asyncio.Task[Any] | None = None
    if app.api is not None:
        import uvicorn

        from bot.api.fastpath import ProducerFastPath

        config = uvicorn.Config(
            ProducerFastPath(app.api, app.services.metrics),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = _server_class()(config)
        server_task = asyncio.create_task(server.serve(), name="http")
        while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.02)
        if server_task.done():
            await server_task  # raises the bind error
            raise RuntimeError(f"the HTTP server on {host}:{port} stopped at start")
        bound = port
        for srv in server.servers:
            for sock in srv.sockets:
                bound = sock.getsockname()[1]
        if ready is not None:
            ready(bound)
    elif ready is not None:
        ready(0)

    stop_wait = asyncio.create_task(stop.wait())
    watch = [stop_wait, *([server_task] if server_task else [])]
    await asyncio.wait(watch, return_when=asyncio.FIRST_COMPLETED)
    log.info("draining")
    app.services.draining = True
    try:
        await asyncio.wait_for(_drain(app, server, server_task, worker_stop, tasks), DRAIN_SECONDS)
    except TimeoutError:
        log.warning("drain took longer than %.0f s; exiting anyway", DRAIN_SECONDS)
    stop_wait.cancel()


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server without its signal handlers: `serve` owns SIGTERM/SIGINT."""

        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return Server


async def _hold_gateway(app: App, adapter: Any, stop: asyncio.Event) -> None:
    """Run the Discord client on one replica only: on PostgreSQL the replica holding an
    advisory lock (on a connection of its own; the lock goes with the connection if this
    process dies) connects to the gateway, the others wait and take over. Every replica
    still sends notices over REST through the adapter's transport."""
    from ledger.locks import HeldLock

    engine = app.ledger.engine
    if engine.dialect.name != "postgresql":
        await _start_adapter(adapter)
        return
    lock = await asyncio.to_thread(HeldLock, engine, GATEWAY_LOCK_KEY)
    try:
        while not stop.is_set():
            if await asyncio.to_thread(lock.try_acquire):
                log.info("this replica holds the Discord gateway connection")
                await _start_adapter(adapter)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=GATEWAY_RETRY_SECONDS)
    finally:
        await asyncio.to_thread(lock.close)


async def _start_adapter(adapter: Any) -> None:
    try:
        await _maybe_await(adapter.start())
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s stopped with an error", type(adapter).__name__)


async def _drain(
    app: App,
    server: Any,
    server_task: asyncio.Task[Any] | None,
    worker_stop: asyncio.Event,
    tasks: list[asyncio.Task[Any]],
) -> None:
    if server is not None and server_task is not None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await server_task
    # Requests still waiting on the writer were answered before uvicorn let go of them;
    # stop its thread so nothing writes after the drain.
    await asyncio.to_thread(app.services.writer.close)
    worker_stop.set()
    if app.scheduler is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(app.scheduler.shutdown)
    for adapter in (app.slack, app.discord):
        if adapter is not None:
            with contextlib.suppress(Exception):
                await _maybe_await(adapter.stop())
    pending = [t for t in tasks if not t.done()]
    if pending:
        _done, still = await asyncio.wait(pending, timeout=DRAIN_SECONDS - 1)
        for task in still:
            task.cancel()
    _release_own_claims(app)


def _release_own_claims(app: App) -> None:
    """Hand back any delivery this process still holds, so another worker takes it now
    rather than when the claim lease runs out."""
    try:
        app.ledger.release_claims(app.worker_id)
    except Exception:
        log.exception("could not release delivery claims")
