"""`/tasks` boards over real HTTP through the real Bolt app against the fake Slack."""

from __future__ import annotations

from tests.acceptance.slack_harness import CHANNEL, TENANT, SlackEnv, all_text, slack_env

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
