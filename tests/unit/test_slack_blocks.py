"""Block Kit builders keep within Slack's limits; transport errors are classified."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.chat.board import Board, BoardGroup, BoardRow, Counts
from bot.cli.slack import slack_group
from bot.render import Renderer
from bot.slack import blocks
from bot.slack.manifest import BOT_SCOPES, build_manifest
from bot.slack.transport import delivery_error
from tests.fakes.slack_blocks import message_problem

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _row(i: int, label: str = "task") -> BoardRow:
    return BoardRow(
        task_id=f"{i:016d}",
        short_id=f"{i:08d}",
        status="running",
        icon="🔄",
        label=label,
        runtime="subagent",
        age_seconds=60.0,
        delivery_status="failed",
        proof=None,
        requester="slack:U1",
    )


def _board(groups: int, rows: int, more: int = 0, label: str = "task") -> Board:
    keys = ["attention", "running", "queued", "finished"][:groups]
    return Board(
        tenant="slack:T1",
        channel_key="slack:T1/C1",
        filter=None,
        counts=Counts(rows, rows, rows),
        groups=tuple(
            BoardGroup(k, k.title(), tuple(_row(i, label) for i in range(rows)), more) for k in keys
        ),
        elsewhere=Counts(1, 2, 3),
        generated_at=NOW,
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_a_full_board_never_exceeds_50_blocks_and_counts_what_it_cut(renderer: Renderer) -> None:
    text, body = blocks.board_message(renderer, _board(groups=4, rows=25, more=7))
    assert len(body) <= 50
    assert message_problem({"text": text, "blocks": body}) is None
    dump = json.dumps(body)
    assert "and" in dump and "more" in dump


def test_every_row_menu_has_two_to_five_options_with_short_values(renderer: Renderer) -> None:
    _, body = blocks.board_message(renderer, _board(groups=1, rows=3))
    menus = [b["accessory"] for b in body if b.get("accessory", {}).get("type") == "overflow"]
    assert menus
    for menu in menus:
        assert 2 <= len(menu["options"]) <= 5
        assert all(len(o["value"]) <= 150 for o in menu["options"])


def test_a_5000_character_hostile_label_stays_within_section_limits(renderer: Renderer) -> None:
    label = "<!channel>&" * 500
    text, body = blocks.board_message(renderer, _board(groups=1, rows=10, label=label))
    assert message_problem({"text": text, "blocks": body}) is None
    assert "<!channel>" not in json.dumps(body)


def test_clip_never_cuts_an_entity_in_half() -> None:
    assert blocks.clip("&amp;&amp;&amp;", 9) == "&amp;…"
    assert blocks.clip("short", 10) == "short"


def test_an_overflow_menu_outside_2_to_5_options_is_refused() -> None:
    with pytest.raises(ValueError, match="2 to 5"):
        blocks.overflow("x", [blocks.option("a", "a")])


def _error(
    status: int, body: dict[str, object], headers: dict[str, str] | None = None
) -> SlackApiError:
    response = AsyncSlackResponse(
        client=AsyncWebClient(),
        http_verb="POST",
        api_url="https://slack.test/api/chat.postMessage",
        req_args={},
        data=body,
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError("refused", response)  # type: ignore[no-untyped-call]


def test_a_429_is_transient_and_carries_retry_after() -> None:
    error = delivery_error(
        _error(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "12"}),
        "chat.postMessage",
    )
    assert not error.permanent
    assert error.retry_after == 12.0


@pytest.mark.parametrize(
    "code", ["thread_not_found", "channel_not_found", "is_archived", "not_in_channel"]
)
def test_route_errors_are_permanent(code: str) -> None:
    error = delivery_error(_error(200, {"ok": False, "error": code}), "chat.postMessage")
    assert error.permanent
    assert error.code == code


def test_server_errors_are_transient() -> None:
    assert not delivery_error(_error(502, {"ok": False}), "chat.postMessage").permanent


def test_the_manifest_names_the_events_url_and_only_the_needed_scopes() -> None:
    manifest = build_manifest("https://tasks.example.com/")
    url = "https://tasks.example.com/slack/events"
    assert manifest["features"]["slash_commands"][0]["url"] == url
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert manifest["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert manifest["settings"]["socket_mode_enabled"] is False


def test_the_socket_mode_manifest_needs_no_url() -> None:
    manifest = build_manifest(None, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in manifest["settings"]["interactivity"]


def test_the_cli_prints_the_manifest_and_refuses_a_missing_url() -> None:
    runner = CliRunner()
    ok = runner.invoke(slack_group, ["manifest", "--url", "https://h.example", "--format", "json"])
    assert ok.exit_code == 0
    assert json.loads(ok.output)["features"]["slash_commands"][0]["command"] == "/tasks"
    yaml_out = runner.invoke(slack_group, ["manifest", "--socket-mode"])
    assert "socket_mode_enabled: true" in yaml_out.output
    bad = runner.invoke(slack_group, ["manifest"])
    assert bad.exit_code == 2
    assert "--url is required" in bad.output
