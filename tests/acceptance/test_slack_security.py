"""Request signatures, replay protection and the 3-second ack under load."""

from __future__ import annotations

import time

from tests.acceptance.slack_harness import CHANNEL, TENANT, SlackEnv, all_text, slack_env
from tests.fakes.slack_payloads import slash_command_body

__all__ = ["slack_env"]


def test_a_request_with_a_bad_signature_is_refused_with_401(slack_env: SlackEnv) -> None:
    body = slash_command_body(text="all", response_url=slack_env.fake.response_url())
    response = slack_env.post(body, signature="v0=" + "0" * 64)
    assert response.status_code == 401
    assert slack_env.fake.responses() == []


def test_a_request_signed_with_another_secret_is_refused_with_401(slack_env: SlackEnv) -> None:
    body = slash_command_body(text="all", response_url=slack_env.fake.response_url())
    assert slack_env.post(body, secret="not-the-secret").status_code == 401


def test_a_stale_timestamp_is_refused_with_401_even_when_correctly_signed(
    slack_env: SlackEnv,
) -> None:
    body = slash_command_body(text="all", response_url=slack_env.fake.response_url())
    response = slack_env.post(body, timestamp=int(time.time()) - 10 * 60)
    assert response.status_code == 401


def test_the_31st_command_is_acked_within_3_seconds_while_30_slow_ones_are_in_flight(
    slack_env: SlackEnv,
) -> None:
    task = slack_env.ledger.create(
        runtime="subagent",
        label="watched",
        tenant=TENANT,
        reply_to=f"slack:T0TASKTRL/{CHANNEL}/1700000000.000100@U0ALICE",
    )
    # Each `follow` posts an anchor message; Slack answers those slowly.
    slack_env.fake.inject("chat.postMessage", delay=4.0, times=30)
    for n in range(30):
        response = slack_env.command(f"follow {task.task_id}", name=f"slow{n}")
        assert response.status_code == 200
    assert slack_env.adapter.handlers.in_flight >= 25
    started = time.monotonic()
    response = slack_env.command("all", name="fast")
    acked = time.monotonic() - started
    assert response.status_code == 200
    assert acked < 3.0
    assert "watched" in all_text(slack_env.answer("fast"))
    assert slack_env.adapter.handlers.in_flight >= 25
    # The slow ones finish too, each answered once.
    for n in range(30):
        assert "Following" in all_text(slack_env.answer(f"slow{n}", seconds=20))
