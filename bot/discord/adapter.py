"""`DiscordAdapter`: what `serve` builds when `DISCORD_BOT_TOKEN` is set (SPEC §10, §11).

`start()` logs in and holds the gateway connection on the current event loop (alongside
uvicorn and the delivery workers); `stop()` closes it. `.transport` delivers notices and
works without the gateway (REST only), so `tasktrail worker` can use it too.
"""

from __future__ import annotations

import asyncio
import logging

from bot.chat.permissions import Permissions
from bot.discord.client import InteractionHandler, TasksClient
from bot.discord.transport import DiscordTransport
from bot.render import Renderer
from bot.settings import Settings
from ledger.ledger import Ledger

log = logging.getLogger("tasktrail.discord")

DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/"


def point_discord_py(api_url: str, gateway_url: str | None) -> None:
    """Aim discord.py at `TASKTRAIL_DISCORD_API_URL` (includes `/api/v10`) and
    `TASKTRAIL_DISCORD_GATEWAY_URL`: the two class attributes every REST route and the gateway
    connection are built from. Process-wide; done before the client starts."""
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = api_url.rstrip("/")
    if gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


class DiscordAdapter:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        renderer: Renderer | None = None,
        *,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        if not settings.discord_bot_token:
            raise ValueError("DISCORD_BOT_TOKEN is not set")
        self.settings = settings
        self.ledger = ledger
        self.renderer = renderer or Renderer()
        self.token = settings.discord_bot_token
        self.transport = DiscordTransport(
            self.token, api_url=settings.discord_api_url, renderer=self.renderer
        )
        self.handler = InteractionHandler(ledger, self.renderer, Permissions(settings.admins))
        guild = settings.discord_guild_id
        self.guild_id = int(guild) if guild and guild.isdigit() else None
        self.guild_ready_timeout = guild_ready_timeout
        self.client: TasksClient | None = None
        self._created = asyncio.Event()

    def _new_client(self) -> TasksClient:
        point_discord_py(self.settings.discord_api_url, self.settings.discord_gateway_url)
        return TasksClient(
            self.handler, guild_id=self.guild_id, guild_ready_timeout=self.guild_ready_timeout
        )

    async def start(self) -> None:
        """Log in, sync `/tasks`, and hold the gateway until `stop()` (reconnects itself)."""
        self.client = self._new_client()
        self._created.set()
        async with self.client:
            await self.client.start(self.token)

    async def wait_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until the client is connected and the commands are synced (tests, demo)."""
        async with asyncio.timeout(timeout):
            await self._created.wait()
            assert self.client is not None
            await self.client.wait_until_ready()
            await self.client.synced.wait()

    async def stop(self) -> None:
        if self.client is not None and not self.client.is_closed():
            await self.client.close()
        await self.transport.close()
