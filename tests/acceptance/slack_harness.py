"""The real Bolt app served over real HTTP on 127.0.0.1 against the fake Slack.

`slack_env` starts the fake Slack (its own thread), a SQLite ledger, a `SlackAdapter` mounted
on a small FastAPI app, and uvicorn on a free port (another thread). Tests send correctly
signed slash commands, interactions and events with `SlackEnv.post`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bot.render import Renderer
from bot.settings import Settings
from bot.slack.app import SlackAdapter
from ledger import Ledger
from tests.fakes.slack_payloads import (
    DEFAULT_CHANNEL_ID,
    TEAM_ID,
    block_actions_body,
    sign_request,
    slash_command_body,
)
from tests.fakes.slack_server import FakeSlack, run_fake_slack_in_thread

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
TENANT = f"slack:{TEAM_ID}"
CHANNEL = DEFAULT_CHANNEL_ID
ADMIN = "U0ADMIN"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class SlackEnv:
    fake: FakeSlack
    ledger: Ledger
    adapter: SlackAdapter
    server: ServerThread
    http: httpx.Client

    def post(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        secret: str = SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        headers = sign_request(secret, body, timestamp)
        if signature is not None:
            headers["X-Slack-Signature"] = signature
        return self.http.post(f"{self.server.url}/slack/events", content=body, headers=headers)

    def command(
        self, text: str, *, user: str = "U0ALICE", name: str = "cmd", channel: str = CHANNEL
    ) -> httpx.Response:
        body = slash_command_body(
            text=text, user_id=user, channel_id=channel, response_url=self.fake.response_url(name)
        )
        return self.post(body)

    def answer(self, name: str = "cmd", count: int = 1, seconds: float = 10.0) -> dict[str, Any]:
        """The `count`-th body posted to response_url `name`."""

        def enough() -> list[dict[str, Any]] | None:
            found = self.fake.responses(name)
            return found if len(found) >= count else None

        return self.fake.wait_until_sync(enough, seconds)[count - 1]

    def action(self, action_id: str, *, name: str = "act", **kwargs: Any) -> httpx.Response:
        body = block_actions_body(action_id, response_url=self.fake.response_url(name), **kwargs)
        return self.post(body)


def bot_replies(
    fake: FakeSlack, channel: str, thread: str | None = None, count: int = 1
) -> list[dict[str, Any]]:
    """Wait for at least `count` bot messages in the channel (or thread) and return them."""

    def found() -> list[dict[str, Any]] | None:
        msgs = fake.messages(channel, thread) if thread else fake.all_messages(channel)
        mine = [m for m in msgs if m.get("bot_id")]
        return mine if len(mine) >= count else None

    return fake.wait_until_sync(found, 10)


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


@pytest.fixture
def slack_env(sqlite_url: str) -> Iterator[SlackEnv]:
    with run_fake_slack_in_thread(channels=[CHANNEL, "C0OTHER", "C0OPS"]) as fake:
        ledger = Ledger.connect(sqlite_url)
        settings = Settings(
            database_url=sqlite_url,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SECRET,
            slack_api_url=fake.api_url,
            admins=(f"slack:{ADMIN}", "slack-group:S0OPS"),
        )
        adapter = SlackAdapter(settings, ledger, Renderer())
        api = FastAPI()
        adapter.mount(api)
        try:
            with ServerThread(api) as server, httpx.Client(timeout=10) as http:
                yield SlackEnv(fake, ledger, adapter, server, http)
        finally:
            ledger.close()
