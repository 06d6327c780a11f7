"""Discord message bodies stay inside Discord's limits whatever the ledger holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.chat.board import Board, BoardGroup, BoardRow, Counts
from bot.discord import messages
from bot.discord.views import board_view, confirm_view
from bot.render import Renderer
from ledger.address import Address
from ledger.transports import Notice
from tests.fakes import discord_limits as limits

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
HOSTILE = "@everyone <@&123> **bold** ||spoiler|| `code` [link](https://x) "


def row(i: int, label: str) -> BoardRow:
    task_id = f"{i:04d}".translate(str.maketrans("0123456789", "abcdefghij")) + "a" * 12
    return BoardRow(
        task_id=task_id,
        short_id=task_id[:8],
        status="failed",
        icon="❌",
        label=label,
        runtime="subagent",
        age_seconds=3600,
        delivery_status="failed",
        proof="unproven",
        requester="discord:1",
    )


def big_board(per_group: int, label: str) -> Board:
    groups = tuple(
        BoardGroup(key, title, tuple(row(g * 1000 + i, label) for i in range(per_group)), 9999)
        for g, (key, title) in enumerate(
            [("attention", "Needs attention"), ("running", "Running"), ("queued", "Queued")]
        )
    )
    return Board("discord:1", "discord:1/2", None, Counts(10000, 5, 7, True), groups, None, NOW)


@pytest.mark.parametrize("page", [0, 3, 9])
def test_a_board_page_of_hostile_5000_character_labels_fits_discords_limits(page: int) -> None:
    board = big_board(100, (HOSTILE * 100)[:5000])
    shown = messages.render_board_page(Renderer(), board, page)
    view = board_view(None, shown)
    body = {"content": "", "embeds": [shown.embed], "components": view.to_components()}
    assert limits.check_message(body) == []
    assert len(shown.rows) == messages.PAGE_ROWS
    assert "@everyone" not in shown.embed["description"]
    assert "<@&123>" not in shown.embed["description"]


def test_the_last_page_counts_what_is_left_out() -> None:
    shown = messages.render_board_page(Renderer(), big_board(100, "job"), 99)
    assert shown.page == messages.MAX_PAGES - 1
    assert "and 30197 more" in shown.embed["description"]


def test_a_notice_with_huge_texts_fits_and_carries_its_key() -> None:
    key = "t" * 16 + ":terminal:v3:" + "f" * 10
    notice = Notice(
        delivery_id=1,
        idempotency_key=key,
        kind="terminal",
        tenant="discord:1",
        task_id="t" * 16,
        target=Address("discord", "1", "2", "3", "4"),
        route="thread",
        destination=Address("discord", "1", "2", "3", "4"),
        payload={
            "label": HOSTILE * 200,
            "short_id": "tttttttt",
            "status": "failed",
            "summary": HOSTILE * 500,
            "error": HOSTILE * 500,
            "runtime": "cli",
            "notify_policy": "done_only",
        },
    )
    body = messages.notice_body(Renderer(), notice)
    body["nonce"] = messages.nonce_for(key)
    body["enforce_nonce"] = True
    assert limits.check_message(body) == []
    assert messages.footer_key(body["embeds"][0]["footer"]["text"]) == key
    assert "@everyone" not in body["content"]


def test_nonces_are_short_stable_and_distinct() -> None:
    a = messages.nonce_for("task:terminal:v3:abc")
    assert len(a) <= 25
    assert a == messages.nonce_for("task:terminal:v3:abc")
    assert a != messages.nonce_for("task:terminal:v4:abc")


def test_component_custom_ids_are_short_and_unique() -> None:
    ids = [c["custom_id"] for r in confirm_view("a" * 16).to_components() for c in r["components"]]
    assert ids == ["tt:task:cancelok:" + "a" * 16, "tt:task:keep:" + "a" * 16]
    assert all(len(i) <= 100 for i in ids)
