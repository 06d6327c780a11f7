"""Slack wiring: the Bolt `AsyncApp`, its HTTP endpoint and Socket Mode connection.

`SlackAdapter(settings, ledger, renderer)` is built by the composition root (`bot.app`);
nothing connects until `start()`. In HTTP mode Bolt verifies every request's signature
(`SLACK_SIGNING_SECRET`) and timestamp; `POST /slack/events` is added to the FastAPI app by
`mount()`. With `SLACK_APP_TOKEN` set, `start()` also opens a Socket Mode connection.
The Web API client talks to `TASKTRAIL_SLACK_API_URL` (a proxy or a test double).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response

from bot.chat.permissions import Permissions
from bot.chat.service import ChatService
from bot.render import Renderer
from bot.settings import Settings
from bot.slack.handlers import SlackHandlers, register
from bot.slack.transport import SlackTransport
from ledger.ledger import Ledger

log = logging.getLogger("bot.slack")

EVENTS_PATH = "/slack/events"


class SlackAdapter:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        renderer: Renderer | None = None,
        *,
        service: ChatService | None = None,
    ) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer()
        self.client = AsyncWebClient(
            token=settings.slack_bot_token, base_url=settings.slack_api_url
        )
        self.service = service or ChatService(ledger, Permissions(settings.admins))
        self.app = AsyncApp(
            client=self.client,
            signing_secret=settings.slack_signing_secret or "",
            request_verification_enabled=True,
            process_before_response=False,
            logger=log,
        )
        self.handlers = SlackHandlers(self.service, self.renderer, self.client)
        register(self.app, self.handlers)
        self.transport = SlackTransport(self.client, self.renderer)
        self._http = AsyncSlackRequestHandler(self.app)
        self._socket: AsyncSocketModeHandler | None = None

    @property
    def http_enabled(self) -> bool:
        return bool(self.settings.slack_signing_secret)

    def mount(self, fastapi_app: Any) -> None:
        """Add `POST /slack/events` (only with a signing secret: unsigned HTTP is refused)."""
        if not self.http_enabled:
            log.info("slack: no SLACK_SIGNING_SECRET; %s is not served", EVENTS_PATH)
            return
        fastapi_app.add_api_route(
            EVENTS_PATH, self.handle, methods=["POST"], include_in_schema=False
        )

    async def handle(self, request: Request) -> Response:
        return await self._http.handle(request)

    async def start(self) -> None:
        """Open the Socket Mode connection when `SLACK_APP_TOKEN` is set; returns once
        connected (HTTP mode needs no start)."""
        if not self.settings.slack_app_token or self._socket is not None:
            return
        self._socket = AsyncSocketModeHandler(
            self.app, self.settings.slack_app_token, logger=log, web_client=self.client
        )
        await self._socket.connect_async()  # type: ignore[no-untyped-call]
        log.info("slack: Socket Mode connected")

    async def stop(self) -> None:
        if self._socket is not None:
            socket, self._socket = self._socket, None
            try:
                await socket.close_async()  # type: ignore[no-untyped-call]
            except Exception:  # closing a dead connection may fail; nothing to keep
                log.debug("slack: closing Socket Mode failed", exc_info=True)
        await self.handlers.drain()
