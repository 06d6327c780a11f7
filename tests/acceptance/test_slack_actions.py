"""show / cancel / notify / retry / dismiss / follow from Slack, with permission refusals:
slash commands, overflow menus and buttons, and @mentions in a thread."""

from __future__ import annotations

import json
from typing import Any

from ledger.status import Status
from tests.acceptance.slack_harness import (
    ADMIN,
    CHANNEL,
    TENANT,
    SlackEnv,
    all_text,
    bot_replies,
    slack_env,
)
from tests.fakes.slack_payloads import app_mention_event_body

__all__ = ["slack_env"]


def _make(env: SlackEnv, label: str = "deploy-check", *, user: str = "U0ALICE", **kw: Any) -> str:
    return env.ledger.create(
        runtime="subagent",
        label=label,
        tenant=TENANT,
        reply_to=f"slack:T0TASKTRL/{CHANNEL}/1700000000.000100@{user}",
        **kw,
    ).task_id


def _menu(
    env: SlackEnv,
    value: str,
    *,
    user: str = "U0ALICE",
    name: str = "act",
    board: dict[str, Any] | None = None,
) -> None:
    message = None
    if board is not None:
        message = {
            "type": "message",
            "ts": "1700000001.000100",
            "text": board["text"],
            "blocks": board["blocks"],
            "user": "U0TASKBOT",
        }
    env.action(
        "tt_row",
        selected_option={"text": {"type": "plain_text", "text": "x"}, "value": value},
        user_id=user,
        name=name,
        message=message,
    )


def test_show_answers_the_task_detail(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.command(f"show {task_id[:6]}")
    text = all_text(slack_env.answer())
    assert task_id in text
    assert "deploy-check" in text
    assert "Recent events" in text


def test_the_requester_cancels_by_slash_command(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.command(f"cancel {task_id} not needed any more")
    assert "Cancelled" in all_text(slack_env.answer())
    task = slack_env.ledger.get(task_id)
    assert task.status is Status.CANCELLED
    assert task.cancel_reason == "not needed any more"


def test_a_bystander_may_not_cancel_notify_retry_or_dismiss(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    for n, text in enumerate(
        [f"cancel {task_id}", f"notify {task_id} silent", f"retry {task_id}", f"dismiss {task_id}"]
    ):
        slack_env.command(text, user="U0MALLORY", name=f"deny{n}")
        assert "not allowed" in all_text(slack_env.answer(f"deny{n}"))
    task = slack_env.ledger.get(task_id)
    assert task.status is Status.RUNNING
    assert task.notify_policy == "done_only"


def test_audit_is_refused_to_a_non_admin_and_answered_to_an_admin(slack_env: SlackEnv) -> None:
    slack_env.command("audit", user="U0ALICE", name="a1")
    assert "admins only" in all_text(slack_env.answer("a1"))
    slack_env.command("audit", user=ADMIN, name="a2")
    assert "*Audit*" in all_text(slack_env.answer("a2"))


def test_a_member_of_an_admin_user_group_may_change_anyones_task(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.fake.add_usergroup("S0OPS", ["U0CAROL"])
    slack_env.command(f"notify {task_id} state_changes", user="U0CAROL")
    assert "now state_changes" in all_text(slack_env.answer())
    assert slack_env.ledger.get(task_id).notify_policy == "state_changes"


def test_an_admin_retries_and_dismisses_a_failed_delivery(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.ledger.finish(task_id, status="failed", error="boom")
    slack_env.command(f"retry {task_id}", user=ADMIN, name="r")
    assert "Re-queued" in all_text(slack_env.answer("r"))
    slack_env.command(f"dismiss {task_id}", user=ADMIN, name="d")
    assert "Dismissed" in all_text(slack_env.answer("d"))


def test_follow_posts_an_anchor_and_routes_notices_into_its_thread(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env, user="U0BOB")
    slack_env.command(f"follow {task_id}", channel="C0OTHER")
    assert "Following" in all_text(slack_env.answer())
    anchor = slack_env.fake.messages("C0OTHER")[0]
    assert "deploy-check" in anchor["text"]
    task = slack_env.ledger.get(task_id)
    board = slack_env.ledger.list(tenant=TENANT)
    assert board[0].task_id == task.task_id
    from ledger import db
    from ledger.followers import followers_of

    with db.read(slack_env.ledger.engine) as conn:
        assert followers_of(conn, task_id) == [f"slack:T0TASKTRL/C0OTHER/{anchor['ts']}"]
    slack_env.command(f"unfollow {task_id}", channel="C0OTHER", name="u")
    assert "Stopped following" in all_text(slack_env.answer("u"))


def test_a_mention_in_a_thread_subscribes_that_thread(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    parent = slack_env.fake.add_user_message("C0OTHER", "watching this")
    body = app_mention_event_body(f"follow {task_id[:8]}", channel_id="C0OTHER", thread_ts=parent)
    assert slack_env.post(body).status_code == 200
    replies = bot_replies(slack_env.fake, "C0OTHER", parent)
    assert "Following" in replies[0]["text"]
    from ledger import db
    from ledger.followers import followers_of

    with db.read(slack_env.ledger.engine) as conn:
        assert followers_of(conn, task_id) == [f"slack:T0TASKTRL/C0OTHER/{parent}"]


def test_a_mention_with_a_bad_command_answers_the_help_line_in_the_thread(
    slack_env: SlackEnv,
) -> None:
    parent = slack_env.fake.add_user_message("C0OTHER", "hm")
    slack_env.post(app_mention_event_body("dance", channel_id="C0OTHER", thread_ts=parent))
    replies = bot_replies(slack_env.fake, "C0OTHER", parent)
    assert "unknown subcommand 'dance'" in replies[0]["text"]


# -- the board's overflow menu and buttons ---------------------------------------------------


def test_details_from_the_menu_answers_the_clicker_alone(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    _menu(slack_env, f"show:{task_id}", user="U0BOB")
    answer = slack_env.answer("act")
    assert answer["response_type"] == "ephemeral"
    assert answer.get("replace_original") is False
    assert task_id in all_text(answer)


def test_cancel_from_the_menu_asks_with_a_confirm_dialog_then_cancels(
    slack_env: SlackEnv,
) -> None:
    task_id = _make(slack_env)
    _menu(slack_env, f"cancel:{task_id}")
    prompt = slack_env.answer("act")
    button = prompt["blocks"][1]["elements"][0]
    assert button["action_id"] == "tt_cancel"
    assert button["confirm"]["confirm"]["text"] == "Cancel task"
    assert slack_env.ledger.get(task_id).status is Status.RUNNING
    slack_env.action("tt_cancel", value=button["value"], name="confirm")
    done = slack_env.answer("confirm")
    assert "Cancelled" in all_text(done)
    assert done["replace_original"] is True
    assert slack_env.ledger.get(task_id).status is Status.CANCELLED


def test_cancel_from_the_menu_is_refused_to_a_bystander(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    _menu(slack_env, f"cancel:{task_id}", user="U0MALLORY")
    assert "not allowed" in all_text(slack_env.answer("act"))
    slack_env.action("tt_cancel", value=task_id, user_id="U0MALLORY", name="forced")
    assert "not allowed" in all_text(slack_env.answer("forced"))
    assert slack_env.ledger.get(task_id).status is Status.RUNNING


def test_a_notify_choice_updates_the_board_in_place(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.command("", name="board")
    board = slack_env.answer("board")
    message = {
        "type": "message",
        "ts": "1700000001.000100",
        "text": board["text"],
        "blocks": board["blocks"],
        "user": "U0TASKBOT",
    }
    slack_env.action("tt_notify", value=f"silent:{task_id}", message=message, name="n")
    redrawn = slack_env.answer("n")
    assert redrawn["replace_original"] is True
    assert redrawn["blocks"][0]["block_id"] == board["blocks"][0]["block_id"]
    assert slack_env.ledger.get(task_id).notify_policy == "silent"


def test_follow_from_the_menu_posts_an_anchor_and_redraws_the_board(slack_env: SlackEnv) -> None:
    task_id = _make(slack_env)
    slack_env.command("", name="board")
    board = slack_env.answer("board")
    _menu(slack_env, f"follow:{task_id}", user="U0BOB", board=board)
    redrawn = slack_env.answer("act")
    assert redrawn["replace_original"] is True
    anchors = [m for m in slack_env.fake.messages(CHANNEL) if m.get("bot_id")]
    assert len(anchors) == 1


def test_refresh_redraws_the_board_with_its_filter(slack_env: SlackEnv) -> None:
    _make(slack_env, "fresh-task")
    slack_env.command("running", name="board")
    board = slack_env.answer("board")
    refresh = board["blocks"][0]["accessory"]
    assert refresh["action_id"] == "tt_refresh"
    slack_env.action("tt_refresh", value=refresh["value"], name="r")
    again = slack_env.answer("r")
    assert "fresh-task" in all_text(again)
    assert again["blocks"][0]["block_id"] == "tt_board:running"
    assert json.loads(json.dumps(again))["replace_original"] is True


def test_menu_actions_on_the_app_home_open_a_modal_and_republish_the_home(
    slack_env: SlackEnv,
) -> None:
    from tests.fakes.slack_payloads import app_home_opened_event_body

    task_id = _make(slack_env, "home-row")
    slack_env.post(app_home_opened_event_body(user_id="U0ALICE"))
    home = slack_env.fake.wait_until_sync(lambda: slack_env.fake.home_view("U0ALICE"))
    slack_env.action(
        "tt_row",
        selected_option={"text": {"type": "plain_text", "text": "x"}, "value": f"show:{task_id}"},
        view=home,
    )
    modal = slack_env.fake.wait_until_sync(lambda: slack_env.fake.opened_views or None)
    assert task_id in all_text(modal[0])
    slack_env.action("tt_notify", value=f"silent:{task_id}", view=home)
    slack_env.fake.wait_for_calls_sync("views.publish", 2)
    assert slack_env.ledger.get(task_id).notify_policy == "silent"
    assert not slack_env.fake.violations
