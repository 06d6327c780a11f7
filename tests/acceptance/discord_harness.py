"""Shared setup for the Discord acceptance tests: a fake Discord on 127.0.0.1, a real ledger,
and the real `DiscordAdapter` (discord.py client + transport) pointed at the fake through
`TASKTRAIL_DISCORD_API_URL` / `TASKTRAIL_DISCORD_GATEWAY_URL`."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from typing import Any

from bot.discord import DiscordAdapter
from bot.settings import load_settings
from ledger.ledger import Ledger
from ledger.records import TaskRecord
from tests.fakes.discord_server import FakeDiscord


def settings_for(fake: FakeDiscord, **env: str) -> Any:
    return load_settings(
        {
            "DISCORD_BOT_TOKEN": fake.token,
            "TASKTRAIL_DISCORD_API_URL": fake.api_url,
            "TASKTRAIL_DISCORD_GATEWAY_URL": fake.gateway_url,
            "TASKTRAIL_DISCORD_GUILD_ID": str(fake.guild_id),
            **env,
        }
    )


@contextlib.asynccontextmanager
async def running_adapter(
    fake: FakeDiscord, ledger: Ledger, **env: str
) -> AsyncIterator[DiscordAdapter]:
    """The adapter started on this event loop, as `serve` starts it; stopped afterwards."""
    import discord.gateway
    import discord.http

    old = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    adapter = DiscordAdapter(settings_for(fake, **env), ledger, guild_ready_timeout=0.1)
    task = asyncio.create_task(adapter.start())
    try:
        await adapter.wait_ready(10)
        yield adapter
    finally:
        await adapter.stop()
        await asyncio.wait_for(task, 10)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old


def make_task(
    ledger: Ledger,
    fake: FakeDiscord,
    label: str = "deploy-check",
    *,
    thread: bool = True,
    user: int | None = None,
    **kw: Any,
) -> TaskRecord:
    where = f"discord:{fake.guild_id}/{fake.channel_id}"
    if thread:
        where += f"/{fake.thread_id}"
    where += f"@{user or fake.user_id}"
    return ledger.create(
        runtime=kw.pop("runtime", "subagent"),
        label=label,
        tenant=f"discord:{fake.guild_id}",
        reply_to=where,
        **kw,
    )


async def answer(fake: FakeDiscord, interaction_id: int) -> dict[str, Any]:
    """Wait for the interaction's final visible answer: the callback, then (for a deferred
    one) the first edit of the original response or a followup."""
    response = await fake.wait_interaction_response(interaction_id)
    record = fake.interaction(interaction_id)
    if response["type"] in (5, 6):
        await fake.wait_until(lambda: record.original_edits or record.followup_ids, timeout=10)
        if record.followup_ids:
            return copy.deepcopy(fake.message(record.followup_ids[-1]).payload)
        original = fake.original_response(interaction_id)
        return copy.deepcopy(
            original.payload if original is not None else record.original_edits[-1]
        )
    return dict(response.get("data") or {})
