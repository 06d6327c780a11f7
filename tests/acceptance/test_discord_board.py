"""The Discord board: persistent components that outlive a restart, paging within Discord's
limits, and hostile labels rendered inert."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ledger.ledger import Ledger
from tests.acceptance.discord_harness import answer, make_task, running_adapter
from tests.fakes.discord_server import FakeDiscord

pytestmark = pytest.mark.timeout(60)

HOSTILE = "@everyone <@&{role}> **bold** <@{user}> @here "


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


def custom_ids(payload: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in payload.get("components", []) for c in row["components"]]


async def post_board(fake: FakeDiscord, **options: Any) -> tuple[int, dict[str, Any]]:
    interaction_id = await fake.send_command("tasks", options, subcommand="board")
    body = await answer(fake, interaction_id)
    original = fake.original_response(interaction_id)
    assert original is not None
    return original.id, body


@pytest.mark.anyio
async def test_board_buttons_posted_before_a_restart_still_work(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake, "long migration")
    async with running_adapter(fake, ledger):
        board_id, board = await post_board(fake)
    assert "tt:pick::0" in custom_ids(board)

    async with running_adapter(fake, ledger):  # a new process: nothing held in memory
        pick = await fake.click(board_id, "tt:pick::0", values=[task.task_id])
        panel = await answer(fake, pick)
        panel_message = fake.original_response(pick)
        assert panel_message is not None and panel_message.ephemeral
        assert f"tt:task:cancel:{task.task_id}" in custom_ids(panel)

        ask = await fake.click(panel_message.id, f"tt:task:cancel:{task.task_id}")
        confirm = await fake.wait_interaction_response(ask)
        assert confirm["type"] == 7
        assert f"tt:task:cancelok:{task.task_id}" in custom_ids(confirm["data"])
        assert ledger.get(task.task_id).status == "running"  # nothing happens before "yes"

        yes = await fake.click(panel_message.id, f"tt:task:cancelok:{task.task_id}")
        await fake.wait_interaction_response(yes)
        record = fake.interaction(yes)
        await fake.wait_until(lambda: record.original_edits)
    assert ledger.get(task.task_id).status == "cancelled"
    assert "Cancelled" in fake.message(panel_message.id).payload["content"]
    assert fake.violations == []


@pytest.mark.anyio
async def test_notify_select_and_refusal_on_the_panel(fake: FakeDiscord, ledger: Ledger) -> None:
    task = make_task(ledger, fake, "render")
    async with running_adapter(fake, ledger):
        board_id, _ = await post_board(fake)
        pick = await fake.click(board_id, "tt:pick::0", values=[task.task_id])
        await answer(fake, pick)
        panel = fake.original_response(pick)
        assert panel is not None
        changed = await fake.click(panel.id, f"tt:notify:{task.task_id}", values=["silent"])
        await fake.wait_interaction_response(changed)
        await fake.wait_until(lambda: fake.interaction(changed).original_edits)

        bystander_pick = await fake.click(
            board_id, "tt:pick::0", values=[task.task_id], user_id=fake.other_user_id
        )
        bystander_panel = await answer(fake, bystander_pick)
        theirs = fake.original_response(bystander_pick)
        assert theirs is not None
        # The button is disabled for them; a forged click is still refused by the ledger side.
        ask = await fake.click(
            theirs.id, f"tt:task:cancel:{task.task_id}", user_id=fake.other_user_id
        )
        await fake.wait_interaction_response(ask)
        refused = await fake.click(
            theirs.id, f"tt:task:cancelok:{task.task_id}", user_id=fake.other_user_id
        )
        await fake.wait_interaction_response(refused)
        await fake.wait_until(lambda: fake.interaction(refused).original_edits)
    assert ledger.get(task.task_id).notify_policy == "silent"
    disabled = {
        c["custom_id"]: c.get("disabled", False)
        for row in bystander_panel["components"]
        for c in row["components"]
    }
    assert disabled[f"tt:task:cancel:{task.task_id}"] is True
    assert disabled[f"tt:task:details:{task.task_id}"] is False
    assert "not allowed" in fake.interaction(refused).original_edits[-1]["content"]
    assert ledger.get(task.task_id).status == "running"


@pytest.mark.anyio
async def test_a_long_board_pages_within_discords_limits(fake: FakeDiscord, ledger: Ledger) -> None:
    for i in range(130):
        make_task(ledger, fake, f"job {i:03d} " + "é*_" * 1600)
    async with running_adapter(fake, ledger):
        board_id, first = await post_board(fake, filter="all")
        next_click = await fake.click(board_id, "tt:page:all:1:n")
        await fake.wait_interaction_response(next_click)
        await fake.wait_until(lambda: fake.interaction(next_click).original_edits)
    second = fake.message(board_id).payload
    assert fake.violations == []
    assert "page 1/10" in first["embeds"][0]["footer"]["text"]
    assert "page 2/10" in second["embeds"][0]["footer"]["text"]
    assert "tt:page:all:2:n" in custom_ids(second)
    assert all(len(cid) <= 100 for cid in custom_ids(first) + custom_ids(second))
    assert first["embeds"][0]["description"] != second["embeds"][0]["description"]


@pytest.mark.anyio
async def test_the_last_page_says_how_many_more_and_how_to_narrow(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    for i in range(105):
        make_task(ledger, fake, f"job {i}")
    async with running_adapter(fake, ledger):
        board_id, _ = await post_board(fake, filter="all")
        for _ in range(9):
            (forward,) = [c for c in custom_ids(fake.message(board_id).payload) if c.endswith(":n")]
            last = await fake.click(board_id, forward)
            await fake.wait_interaction_response(last)
            await fake.wait_until(lambda: fake.interaction(last).original_edits)  # noqa: B023
    assert "page 10/10" in fake.message(board_id).payload["embeds"][0]["footer"]["text"]
    description = fake.message(board_id).payload["embeds"][0]["description"]
    assert "and 5 more" in description
    assert "/tasks board running" in description


@pytest.mark.anyio
async def test_a_hostile_label_is_escaped_and_pings_nobody(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    prefix = HOSTILE.format(role=fake.ops_role_id, user=fake.other_user_id)
    label = prefix + "x" * (5000 - len(prefix))
    task = make_task(ledger, fake, label)
    async with running_adapter(fake, ledger):
        _, board = await post_board(fake)
        shown = await answer(
            fake, await fake.send_command("tasks", {"ref": task.short_id}, subcommand="show")
        )
        cancel_id = await fake.send_command("tasks", {"ref": task.short_id}, subcommand="cancel")
        cancelled = await answer(fake, cancel_id)
    texts = [
        board["embeds"][0]["description"],
        shown["embeds"][0]["title"],
        cancelled["content"],
    ]
    for text in texts:
        assert "@everyone" not in text
        assert "@here" not in text
        assert f"<@&{fake.ops_role_id}>" not in text
        assert f"<@{fake.other_user_id}>" not in text
        assert "**bold**" not in text
        assert "\\*\\*bold\\*\\*" in text
    messages = [
        m for m in fake.messages.values() if m.payload.get("content") or m.payload.get("embeds")
    ]
    assert messages
    for message in messages:
        assert message.allowed_mentions == {"parse": []}
        assert not message.pings.any
    assert fake.violations == []
