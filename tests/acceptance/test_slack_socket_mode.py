"""Socket Mode: the same Bolt app over the fake Slack's Socket Mode endpoint."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.render import Renderer
from bot.settings import Settings
from bot.slack.app import SlackAdapter
from ledger import Ledger
from tests.acceptance.slack_harness import APP_TOKEN, BOT_TOKEN, CHANNEL, TENANT, all_text
from tests.fakes.slack_payloads import app_home_opened_event_payload, slash_command_payload
from tests.fakes.slack_server import run_fake_slack_in_thread


def test_socket_mode_acks_a_slash_command_and_answers_with_the_board(sqlite_url: str) -> None:
    with run_fake_slack_in_thread(channels=[CHANNEL]) as fake:
        ledger = Ledger.connect(sqlite_url)
        ledger.create(
            runtime="cron",
            label="socket-task",
            tenant=TENANT,
            reply_to=f"slack:T0TASKTRL/{CHANNEL}",
        )
        settings = Settings(
            database_url=sqlite_url,
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN,
            slack_api_url=fake.api_url,
        )

        async def scenario() -> tuple[dict[str, Any], float, dict[str, Any], dict[str, Any]]:
            adapter = SlackAdapter(settings, ledger, Renderer())
            assert not adapter.http_enabled
            await adapter.start()
            try:
                await fake.wait_socket_connected()
                started = time.monotonic()
                envelope = fake.socket_send_envelope(
                    "slash_commands",
                    slash_command_payload(text="all", response_url=fake.response_url("sock")),
                )
                ack = await fake.wait_socket_ack(envelope)
                acked = time.monotonic() - started
                answers = await fake.wait_until(lambda: fake.responses("sock") or None)
                fake.socket_send_envelope(
                    "events_api", app_home_opened_event_payload(user_id="U0ALICE")
                )
                home = await fake.wait_until(lambda: fake.home_view("U0ALICE"))
            finally:
                await adapter.stop()
            return ack, acked, answers[0], home

        try:
            ack, acked, answer, home = asyncio.run(scenario())
        finally:
            ledger.close()
        assert acked < 3.0
        assert "envelope_id" in ack
        assert "socket-task" in all_text(answer)
        assert "socket-task" in all_text(home)
        assert fake.calls_to("apps.connections.open")
