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
        "board",
        "show",
        "cancel",
        "notify",
        "retry",
        "dismiss",
        "follow",
        "unfollow",
        "audit",
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
    response = fake.interaction(interaction_id).response
    assert response is not None and response["type"] == 5  # deferred first
    assert not response.get("data", {}).get("flags", 0) & 64  # the board is for the channel
    (embed,) = body["embeds"]
    assert "nightly build" in embed["description"]
    assert task.short_id in embed["description"]
    assert fake.violations == []


@pytest.mark.anyio
async def test_board_filter_and_bad_filter(fake: FakeDiscord, ledger: Ledger) -> None:
    running = make_task(ledger, fake, "still running")
    done = make_task(ledger, fake, "all done")
    ledger.finish(done.task_id, status="failed", error="boom")
    async with running_adapter(fake, ledger):
        failed_id = await fake.send_command("tasks", {"filter": "failed"}, subcommand="board")
        failed_board = await answer(fake, failed_id)
        bad_id = await fake.send_command("tasks", {"filter": "sideways"}, subcommand="board")
        bad = await answer(fake, bad_id)
    description = failed_board["embeds"][0]["description"]
    assert done.short_id in description
    assert running.short_id not in description
    assert "unknown subcommand 'sideways'" in bad["content"]
    assert bad["flags"] == 64


@pytest.mark.anyio
async def test_show_renders_one_task_with_its_action_buttons(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake, "render video", runtime="media")
    async with running_adapter(fake, ledger):
        body = await answer(
            fake, await fake.send_command("tasks", {"ref": task.short_id}, subcommand="show")
        )
    (embed,) = body["embeds"]
    assert embed["title"] == "render video"
    assert task.task_id in embed["description"]
    custom_ids = [c["custom_id"] for row in body["components"] for c in row["components"]]
    assert f"tt:task:cancel:{task.task_id}" in custom_ids
    assert f"tt:notify:{task.task_id}" in custom_ids


@pytest.mark.anyio
async def test_show_of_an_unknown_task_is_told_only_to_the_asker(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    async with running_adapter(fake, ledger):
        interaction_id = await fake.send_command("tasks", {"ref": "zzzzzz"}, subcommand="show")
        body = await answer(fake, interaction_id)
    assert "zzzzzz" in body["content"]
    assert body["flags"] & 64
    assert (
        fake.original_response(interaction_id) is None
        or fake.original_response(interaction_id).deleted
    )


@pytest.mark.anyio
async def test_requester_cancels_their_task(fake: FakeDiscord, ledger: Ledger) -> None:
    task = make_task(ledger, fake)
    async with running_adapter(fake, ledger):
        body = await answer(
            fake,
            await fake.send_command(
                "tasks", {"ref": task.short_id, "reason": "wrong branch"}, subcommand="cancel"
            ),
        )
    assert f"Cancelled {task.short_id}" in body["content"]
    after = ledger.get(task.task_id)
    assert after.status == "cancelled"
    assert after.cancel_reason == "wrong branch"


@pytest.mark.anyio
async def test_a_bystander_may_not_cancel_notify_retry_or_dismiss(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake)
    async with running_adapter(fake, ledger):
        replies = []
        for verb, options in [
            ("cancel", {"ref": task.short_id}),
            ("notify", {"ref": task.short_id, "policy": "silent"}),
            ("retry", {"ref": task.short_id}),
            ("dismiss", {"ref": task.short_id}),
        ]:
            interaction_id = await fake.send_command(
                "tasks", options, subcommand=verb, user_id=fake.other_user_id
            )
            replies.append(await answer(fake, interaction_id))
    assert all("not allowed" in r["content"] for r in replies)
    assert all(r["flags"] & 64 for r in replies)
    after = ledger.get(task.task_id)
    assert (after.status, after.notify_policy) == ("running", "done_only")


@pytest.mark.anyio
async def test_a_configured_admin_role_may_cancel_anyones_task(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake)
    role = fake.add_role(fake.guild_id, "oncall")
    helper = fake.add_member(fake.guild_id, fake.add_user("oncall-helper").id, role_ids=[role.id])
    async with running_adapter(fake, ledger, TASKTRAIL_ADMINS=f"discord-role:{role.id}"):
        body = await answer(
            fake,
            await fake.send_command(
                "tasks", {"ref": task.short_id}, subcommand="cancel", user_id=helper.user.id
            ),
        )
    assert "Cancelled" in body["content"]
    assert ledger.get(task.task_id).status == "cancelled"


@pytest.mark.anyio
async def test_manage_server_members_are_admins(fake: FakeDiscord, ledger: Ledger) -> None:
    task = make_task(ledger, fake)
    async with running_adapter(fake, ledger):
        body = await answer(
            fake,
            await fake.send_command(
                "tasks",
                {"ref": task.short_id, "policy": "state_changes"},
                subcommand="notify",
                user_id=fake.admin_user_id,
            ),
        )
    assert "state_changes" in body["content"].replace("\\", "")
    assert ledger.get(task.task_id).notify_policy == "state_changes"


@pytest.mark.anyio
async def test_notify_offers_the_three_policies_as_choices(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    async with running_adapter(fake, ledger):
        (command,) = fake.guild_commands[fake.guild_id]
    notify = next(o for o in command["options"] if o["name"] == "notify")
    policy = next(o for o in notify["options"] if o["name"] == "policy")
    assert [c["value"] for c in policy["choices"]] == ["done_only", "state_changes", "silent"]


@pytest.mark.anyio
async def test_follow_and_unfollow_from_a_thread(fake: FakeDiscord, ledger: Ledger) -> None:
    task = make_task(ledger, fake, thread=False)
    other_thread = fake.add_thread(fake.other_channel_id, "watchers", owner_id=fake.other_user_id)
    async with running_adapter(fake, ledger):
        followed = await answer(
            fake,
            await fake.send_command(
                "tasks",
                {"ref": task.short_id},
                subcommand="follow",
                channel_id=other_thread.id,
                user_id=fake.other_user_id,
            ),
        )
        from ledger import db
        from ledger.followers import followers_of

        with db.read(ledger.engine) as conn:
            following = followers_of(conn, task.task_id)
        unfollowed = await answer(
            fake,
            await fake.send_command(
                "tasks",
                {"ref": task.short_id},
                subcommand="unfollow",
                channel_id=other_thread.id,
                user_id=fake.other_user_id,
            ),
        )
        with db.read(ledger.engine) as conn:
            after = followers_of(conn, task.task_id)
    assert "Following" in followed["content"]
    assert [a.split("@")[0] for a in following] == [
        f"discord:{fake.guild_id}/{fake.other_channel_id}/{other_thread.id}"
    ]
    assert "Stopped following" in unfollowed["content"]
    assert after == []


@pytest.mark.anyio
async def test_audit_is_for_admins(fake: FakeDiscord, ledger: Ledger) -> None:
    async with running_adapter(fake, ledger):
        refused = await answer(fake, await fake.send_command("tasks", subcommand="audit"))
        allowed = await answer(
            fake, await fake.send_command("tasks", subcommand="audit", user_id=fake.admin_user_id)
        )
    assert "admins only" in refused["content"]
    assert "admins only" not in str(allowed)


@pytest.mark.anyio
async def test_help_answers_at_once_and_only_to_the_asker(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    async with running_adapter(fake, ledger):
        interaction_id = await fake.send_command("tasks", subcommand="help")
        response = await fake.wait_interaction_response(interaction_id)
    assert response["type"] == 4
    assert response["data"]["flags"] == 64
    assert "/tasks board" in response["data"]["content"]


@pytest.mark.anyio
async def test_ref_autocomplete_offers_recent_tasks_of_this_guild_only(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    mine = make_task(ledger, fake, "deploy api")
    make_task(ledger, fake, "rebuild index")
    ledger.create(runtime="cli", label="deploy elsewhere", tenant="discord:1")
    async with running_adapter(fake, ledger):
        interaction_id = await fake.send_autocomplete(
            "tasks", {"ref": "deploy"}, subcommand="cancel", focused="ref"
        )
        response = await fake.wait_interaction_response(interaction_id)
    assert response["type"] == 8
    assert [c["value"] for c in response["data"]["choices"]] == [mine.task_id]
    assert mine.short_id in response["data"]["choices"][0]["name"]


@pytest.mark.anyio
async def test_a_slow_ledger_still_gets_a_deferred_answer_in_time(
    fake: FakeDiscord, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    task = make_task(ledger, fake, "slow lookup")
    fake.interaction_ack_deadline = 0.5
    real_get = ledger.get

    def slow_get(*args: object, **kwargs: object) -> object:
        time.sleep(1.0)  # a busy database; runs in a worker thread, not on the loop
        return real_get(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ledger, "get", slow_get)
    async with running_adapter(fake, ledger):
        interaction_id = await fake.send_command("tasks", {"ref": task.short_id}, subcommand="show")
        body = await answer(fake, interaction_id)
    record = fake.interaction(interaction_id)
    assert record.response is not None and record.response["type"] == 5
    assert record.refused_callbacks == []
    assert body["embeds"][0]["title"] == "slow lookup"


@pytest.mark.anyio
async def test_a_rate_limited_answer_is_retried_after_retry_after(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    task = make_task(ledger, fake, "rate limited board")
    edits = r"/webhooks/\d+/[^/]+/messages/@original"
    limited = fake.inject("PATCH", edits, status=429, retry_after=0.3)
    async with running_adapter(fake, ledger):
        body = await answer(fake, await fake.send_command("tasks", subcommand="board"))
    assert limited.hits == 1
    statuses = [c.status for c in fake.call_details if c.method == "PATCH"]
    assert statuses == [429, 200]
    assert task.short_id in body["embeds"][0]["description"]


@pytest.mark.anyio
async def test_a_server_error_on_the_answer_is_retried(fake: FakeDiscord, ledger: Ledger) -> None:
    make_task(ledger, fake)
    fake.inject("PATCH", r"/webhooks/\d+/[^/]+/messages/@original", status=502)
    async with running_adapter(fake, ledger):
        body = await answer(fake, await fake.send_command("tasks", subcommand="board"))
    assert [c.status for c in fake.call_details if c.method == "PATCH"] == [502, 200]
    assert body["embeds"]
