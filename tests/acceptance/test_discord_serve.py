"""Discord inside `serve`'s composition root: the adapter built by `build_app` holds the
gateway on the same event loop as the delivery workers, answers `/tasks`, and completions
reach the requester's thread through the adapter's transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.app import build_app, run_app
from ledger.ledger import Ledger
from tests.acceptance.discord_harness import answer, make_task, settings_for
from tests.fakes.discord_server import FakeDiscord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.mark.anyio
async def test_serve_runs_the_bot_and_delivers_completions_into_the_thread(
    fake: FakeDiscord, sqlite_url: str
) -> None:
    import discord.gateway
    import discord.http

    old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    ledger = Ledger.connect(sqlite_url)
    app = build_app(settings_for(fake), http=False, ledger=ledger)
    assert app.discord is not None
    assert "discord" in app.transports
    stop = asyncio.Event()
    runner = asyncio.create_task(run_app(app, host="127.0.0.1", port=0, stop=stop))
    try:
        await app.discord.wait_ready(15)
        task = make_task(ledger, fake, "served build")
        board = await answer(fake, await fake.send_command("tasks", subcommand="board"))
        assert task.short_id in board["embeds"][0]["description"]
        ledger.finish(task.task_id, status="succeeded", summary="green")
        await fake.wait_until(lambda: fake.channel_messages(fake.thread_id), timeout=15)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 20)
        ledger.close()
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old
    (message,) = fake.channel_messages(fake.thread_id)
    assert "served build" in message.payload["content"]
    assert message.allowed_mentions == {"parse": []}
    (row,) = [d for d in ledger.deliveries(task=task.task_id) if d.kind == "terminal"]
    assert (row.status, row.route) == ("delivered", "thread")
