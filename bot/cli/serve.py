"""`tasktrail serve` (HTTP API, web board, chat adapters, delivery workers, auditor) and
`tasktrail worker` (delivery workers and the scheduled auditor, no HTTP), one asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

import click

from bot.cli.main import Context

pass_ctx = click.make_pass_decorator(Context)
log = logging.getLogger("tasktrail.serve")


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("alembic", "apscheduler", "httpx", "uvicorn.error", "discord", "slack_bolt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run(app: Any, host: str, port: int, *, on_ready: Any) -> None:
    from bot.app import run_app

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_app(app, host=host, port=port, stop=stop, ready=on_ready)

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # not on this platform: the standard loop does the same, slower
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        # Unlike asyncio.run(), do not wait for worker threads still busy (a database pass
        # that outlived the drain): close() only asks idle ones to stop.
        loop.close()
    app.ledger.close()
    busy = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in busy:
        thread.join(timeout=1.0)
    if any(t.is_alive() for t in busy):
        log.warning("exiting with work still running in threads (drain deadline)")
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    log.info("stopped")


@click.command("serve")
@click.option("--host", help="Address to listen on (default TASKTRAIL_HOST or 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default 8000; 0 = any).")
@click.option("--demo", is_flag=True, help="Simulated producers and a console transport.")
@pass_ctx
def serve_cmd(obj: Context, host: str | None, port: int | None, demo: bool) -> None:
    """Run the HTTP API, web board, chat adapters, delivery workers and auditor."""
    from dataclasses import replace

    from bot.app import build_app

    _logging()
    settings = obj.settings
    settings = replace(
        settings,
        host=host or settings.host,
        port=settings.port if port is None else port,
    )
    if demo:
        from bot.demo import demo_settings

        settings = demo_settings(settings)
    obj._settings = settings  # the ledger below uses the (demo) settings
    extra: list[Any] = []
    if demo:
        from bot.demo import DeletedChannelTransport

        extra.append(DeletedChannelTransport())
    app = build_app(settings, ledger=obj.ledger, console=demo, extra_transports=extra)
    if demo:
        from bot.demo import install_demo

        install_demo(app)
    log.info(
        "database %s; slack %s; discord %s",
        app.ledger.engine.url.render_as_string(hide_password=True),
        "on" if app.slack else "off",
        "on" if app.discord else "off",
    )

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        click.echo(f"tasktrail serving on http://{shown}:{bound}/", err=True)
        if demo:
            click.echo(
                "demo: simulated producers are running; open the board above, or try "
                "`tasktrail list`, `tasktrail show REF`, `tasktrail audit`, "
                "`tasktrail cancel REF` in another terminal",
                err=True,
            )

    _run(app, settings.host, settings.port, on_ready=ready)


@click.command("worker")
@pass_ctx
def worker_cmd(obj: Context) -> None:
    """Delivery workers and the scheduled auditor, without the HTTP server."""
    from bot.app import build_app

    _logging()
    app = build_app(obj.settings, ledger=obj.ledger, http=False)
    _run(app, "", 0, on_ready=lambda _port: click.echo("tasktrail worker running", err=True))
