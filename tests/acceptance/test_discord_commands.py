"""`/tasks` on Discord end to end: the real discord.py client against the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ledger.ledger import Ledger
from tests.acceptance.discord_harness import answer, make_task, running_adapter
from tests.fakes.discord_server import FakeDiscord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.mark.anyio
async def test_tasks_group_is_synced_to_the_configured_guild(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    async with running_adapter(fake, ledger):
        (command,) = fake.guild_commands[fake.guild_id]
    names = [o["name"] for o in command["options"]]
    assert command["name"] == "tasks"
    assert names == [
        "board", "show", "cancel", "notify", "retry", "dismiss", "follow", "unfollow", "audit",
        "help",
    ]
    assert not fake.global_commands


@pytest.mark.anyio
async def test_board_is_deferred_then_shows_the_channels_tasks(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake, "nightly build")
    async with running_adapter(fake, ledger):
        interaction_id = await fake.send_command("tasks", subcommand="board")
        body = await answer(fake, interaction_id)
    assert fake.interaction(interaction_id).response == {"type": 5, "data": {"flags": 0}} or (
        fake.interaction(interaction_id).response["type"] == 5
    )
    (embed,) = body["embeds"]
    assert "nightly build" in embed["description"]
    assert task.short_id in embed["description"]
    assert fake.violations == []
