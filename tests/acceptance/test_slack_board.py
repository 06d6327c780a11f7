"""`/tasks` boards over real HTTP through the real Bolt app against the fake Slack."""

from __future__ import annotations

import pytest

from tests.acceptance.slack_harness import CHANNEL, TENANT, SlackEnv, all_text, slack_env
from tests.fakes.slack_payloads import app_home_opened_event_body

__all__ = ["slack_env"]


def _make(
    env: SlackEnv, label: str, *, channel: str = CHANNEL, user: str = "U0ALICE", **kw: object
) -> str:
    return env.ledger.create(
        runtime=str(kw.pop("runtime", "subagent")),
        label=label,
        tenant=TENANT,
        reply_to=f"slack:T0TASKTRL/{channel}/1700000000.000100@{user}",
        **kw,  # type: ignore[arg-type]
    ).task_id


def test_the_channel_board_lists_this_channels_tasks(slack_env: SlackEnv) -> None:
    _make(slack_env, "deploy-check")
    _make(slack_env, "elsewhere-task", channel="C0OTHER")
    response = slack_env.command("")
    assert response.status_code == 200
    board = slack_env.answer()
    text = all_text(board)
    assert "deploy-check" in text
    assert "elsewhere-task" not in text
    assert "Elsewhere in this workspace: 1 running" in text
    assert board["response_type"] == "ephemeral"
    assert not slack_env.fake.violations


def test_all_shows_every_channel_of_the_workspace(slack_env: SlackEnv) -> None:
    _make(slack_env, "here-task")
    _make(slack_env, "there-task", channel="C0OTHER")
    slack_env.command("all")
    text = all_text(slack_env.answer())
    assert "here-task" in text
    assert "there-task" in text


def test_mine_shows_only_the_callers_tasks(slack_env: SlackEnv) -> None:
    _make(slack_env, "alice-task")
    _make(slack_env, "bob-task", user="U0BOB")
    slack_env.command("mine", user="U0BOB")
    text = all_text(slack_env.answer())
    assert "bob-task" in text
    assert "alice-task" not in text


@pytest.mark.parametrize(
    ("filter", "wanted", "unwanted"),
    [
        ("running", "runs-now", "broke-down"),
        ("failed", "broke-down", "runs-now"),
        ("queued", "waits-in-line", "runs-now"),
        ("runtime:cron", "nightly-cron", "runs-now"),
    ],
)
def test_status_and_runtime_filters_narrow_the_board(
    slack_env: SlackEnv, filter: str, wanted: str, unwanted: str
) -> None:
    _make(slack_env, "runs-now")
    failed = _make(slack_env, "broke-down")
    slack_env.ledger.finish(failed, status="failed", error="boom")
    _make(slack_env, "waits-in-line", queued=True)
    _make(slack_env, "nightly-cron", runtime="cron")
    slack_env.command(filter)
    text = all_text(slack_env.answer())
    assert wanted in text
    assert unwanted not in text


def test_rows_carry_an_overflow_menu_with_the_row_actions(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env, "menu-task")
    slack_env.command("")
    board = slack_env.answer()
    menus = [
        b["accessory"] for b in board["blocks"] if b.get("accessory", {}).get("type") == "overflow"
    ]
    assert len(menus) == 1
    values = [o["value"] for o in menus[0]["options"]]
    assert values[0] == f"show:{task_id}"
    assert f"cancel:{task_id}" in values
    assert f"follow:{task_id}" in values
    assert 2 <= len(values) <= 5


HOSTILE = "<!channel> <@U123> *bold* &amp; @here " + "x" * 5000


def test_a_hostile_label_is_escaped_and_the_board_stays_within_limits(
    slack_env: SlackEnv,
) -> None:
    slack_env.ledger.create(
        runtime="subagent",
        label=HOSTILE[:5000],
        tenant=TENANT,
        reply_to=f"slack:T0TASKTRL/{CHANNEL}/1700000000.000100@U0ALICE",
    )
    slack_env.command("")
    board = slack_env.answer()
    text = all_text(board)
    assert "<!channel>" not in text
    assert "<@U123>" not in text
    assert "&lt;!channel&gt;" in text
    assert "&amp;amp;" in text
    assert "@\u200bhere" in text
    assert not slack_env.fake.violations
    assert not slack_env.fake.pings
    for block in board["blocks"]:
        assert len(block.get("text", {}).get("text", "")) <= 3000


def test_the_task_detail_of_a_hostile_label_is_escaped_too(slack_env: SlackEnv) -> None:
    task = slack_env.ledger.create(runtime="subagent", label=HOSTILE[:5000], tenant=TENANT)
    slack_env.command(f"show {task.task_id}")
    text = all_text(slack_env.answer())
    assert "<!channel>" not in text
    assert "&lt;@U123&gt;" in text
    assert not slack_env.fake.violations
    assert not slack_env.fake.pings


def test_a_long_board_is_cut_with_and_n_more_and_a_filter_hint(slack_env: SlackEnv) -> None:
    for i in range(40):
        _make(slack_env, f"bulk-{i:02d}")
    for i in range(30):
        _make(slack_env, f"queue-{i:02d}", queued=True)
    slack_env.command("")
    board = slack_env.answer()
    assert len(board["blocks"]) <= 50
    text = all_text(board)
    assert "and 30 more" in text
    assert "/tasks running" in text
    assert "/tasks queued" in text
    assert not slack_env.fake.violations


def test_an_unknown_subcommand_answers_a_specific_error_and_the_help_line(
    slack_env: SlackEnv,
) -> None:
    slack_env.command("frobnicate")
    text = all_text(slack_env.answer())
    assert "unknown subcommand 'frobnicate'" in text
    assert "Usage: /tasks" in text


def test_a_bad_ref_answers_that_no_task_matches(slack_env: SlackEnv) -> None:
    slack_env.command("show zzzzzz")
    text = all_text(slack_env.answer())
    assert "no task matches 'zzzzzz'" in text


def test_help_answers_the_grammar(slack_env: SlackEnv) -> None:
    slack_env.command("help")
    assert "cancel REF [reason]" in all_text(slack_env.answer())


def test_opening_the_app_home_publishes_the_tenants_board(slack_env: SlackEnv) -> None:
    _make(slack_env, "home-task", channel="C0OTHER")
    body = app_home_opened_event_body(user_id="U0ALICE")
    assert slack_env.post(body).status_code == 200
    view = slack_env.fake.wait_until_sync(lambda: slack_env.fake.home_view("U0ALICE"))
    assert view["type"] == "home"
    assert "home-task" in all_text(view)
