"""The fake Discord behaves like Discord for the real discord.py client, REST and gateway."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

with warnings.catch_warnings():
    # discord.py imports the stdlib audioop module, deprecated since Python 3.11.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.http import Route

from tests.fakes import discord_limits as limits
from tests.fakes.discord_server import (
    FakeDiscord,
    point_discord_py_at,
    run_fake_discord_in_thread,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        restore = point_discord_py_at(server.api_url, server.gateway_url)
        try:
            yield server
        finally:
            restore()


class Buttons(discord.ui.View):
    """A persistent view: custom ids are fixed and there is no timeout, as for the board."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Details", custom_id="tt:details:abc123")
    async def details(
        self, interaction: discord.Interaction, button: discord.ui.Button[Any]
    ) -> None:
        await interaction.response.edit_message(content="details of abc123", view=self)

    @discord.ui.select(
        custom_id="tt:notify:abc123",
        options=[discord.SelectOption(label=p) for p in ("done_only", "state_changes", "silent")],
    )
    async def notify(
        self, interaction: discord.Interaction, select: discord.ui.Select[Any]
    ) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content=f"notify {select.values[0]}")


class Bot(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.1)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[str] = []
        tasks = app_commands.Group(name="tasks", description="Background work ledger")

        @tasks.command(name="board", description="Show the board")
        async def board(interaction: discord.Interaction, filter: str = "channel") -> None:
            self.seen.append(f"board:{filter}")
            await interaction.response.defer(thinking=True)
            await interaction.edit_original_response(content=f"board for {filter}")

        @board.autocomplete("filter")
        async def filter_choices(
            interaction: discord.Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            self.seen.append(f"autocomplete:{current}")
            names = ["all", "mine", "running", "failed", "lost"]
            return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

        @tasks.command(name="show", description="Show one task")
        async def show(interaction: discord.Interaction, ref: str, limit: int = 3) -> None:
            self.seen.append(f"show:{ref}:{limit}")
            await interaction.response.send_message(f"task {ref}", ephemeral=True)
            await interaction.followup.send(f"history of {ref}")

        self.tree.add_command(tasks)

    async def setup_hook(self) -> None:
        self.add_view(Buttons())


@asynccontextmanager
async def running(fake: FakeDiscord, *, sync: bool = True) -> AsyncIterator[Bot]:
    bot = Bot()
    task = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        if sync:
            guild = discord.Object(fake.guild_id)
            bot.tree.copy_global_to(guild=guild)
            await bot.tree.sync(guild=guild)
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 10)


def text_channel(bot: Bot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


@pytest.mark.anyio
async def test_client_connects_through_the_gateway_and_sees_the_guild(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        assert bot.user is not None
        assert bot.user.id == fake.bot_user.id
        assert bot.application_id == fake.application_id
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None
        assert guild.owner_id == fake.owner_user_id
        assert isinstance(guild.get_thread(fake.thread_id), discord.Thread)
        assert guild.get_role(fake.admin_role_id) is not None
        assert guild.me is not None
        assert guild.me.id == fake.bot_user.id
    assert fake.gateway.connections[0]["compress"] == "zlib-stream"
    assert fake.gateway.connections[0]["v"] == "10"
    assert fake.gateway.heartbeats >= 1
    assert ("GET", "/users/@me", None) in fake.calls


@pytest.mark.anyio
async def test_guild_command_sync_is_recorded(fake: FakeDiscord) -> None:
    async with running(fake):
        (command,) = fake.guild_commands[fake.guild_id]
    assert command["name"] == "tasks"
    assert [o["name"] for o in command["options"]] == ["board", "show"]
    assert fake.calls_to("PUT", rf"/applications/{fake.application_id}/guilds/\d+/commands")


@pytest.mark.anyio
async def test_slash_command_defers_then_edits_its_original_response(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        interaction_id = await fake.send_command("tasks", {"filter": "all"}, subcommand="board")
        response = await fake.wait_interaction_response(interaction_id)
        record = fake.interaction(interaction_id)
        await fake.wait_until(lambda: record.original_edits)
    assert response["type"] == 5
    assert bot.seen == ["board:all"]
    assert record.payload["data"]["guild_id"] == str(fake.guild_id)
    assert record.original_edits[0]["content"] == "board for all"
    original = fake.original_response(interaction_id)
    assert original is not None
    assert original.content == "board for all"
    assert original.payload["flags"] & 128 == 0  # no longer "thinking"
    assert fake.calls_to("PATCH", r"/webhooks/\d+/[^/]+/messages/@original")


@pytest.mark.anyio
async def test_message_reply_and_followup_are_recorded(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        interaction_id = await fake.send_command(
            "tasks", {"ref": "abc123", "limit": 5}, subcommand="show", channel_id=fake.thread_id
        )
        record = fake.interaction(interaction_id)
        await fake.wait_until(lambda: record.followup_ids)
    assert bot.seen == ["show:abc123:5"]
    assert record.response is not None
    assert record.response["type"] == 4
    assert record.response["data"]["flags"] == 64
    followup = fake.message(record.followup_ids[0])
    assert followup.content == "history of abc123"
    assert followup.channel_id == fake.thread_id
    assert [m.content for m in fake.channel_messages(fake.thread_id)] == ["history of abc123"]


@pytest.mark.anyio
async def test_slash_command_in_a_dm_carries_a_user_instead_of_a_member(
    fake: FakeDiscord,
) -> None:
    dm = fake.dm_channel_for(fake.user_id)
    async with running(fake) as bot:
        interaction_id = await fake.send_command(
            "tasks", {"ref": "abc123"}, subcommand="show", channel_id=dm.id
        )
        record = fake.interaction(interaction_id)
        await fake.wait_until(lambda: record.followup_ids)
    assert bot.seen == ["show:abc123:3"]
    assert "member" not in record.payload
    assert record.payload["user"]["id"] == str(fake.user_id)
    assert [m.content for m in fake.channel_messages(dm.id)] == ["history of abc123"]


@pytest.mark.anyio
async def test_autocomplete_gets_choices_for_the_focused_option(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        interaction_id = await fake.send_autocomplete(
            "tasks", {"filter": "r"}, subcommand="board", focused="filter"
        )
        response = await fake.wait_interaction_response(interaction_id)
    assert bot.seen == ["autocomplete:r"]
    assert response == {"type": 8, "data": {"choices": [{"name": "running", "value": "running"}]}}


@pytest.mark.anyio
async def test_button_click_reaches_a_persistent_view(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        sent = await text_channel(bot, fake.channel_id).send("board", view=Buttons())
        interaction_id = await fake.click(sent.id, "tt:details:abc123")
        response = await fake.wait_interaction_response(interaction_id)
    assert response["type"] == 7
    assert fake.message(sent.id).content == "details of abc123"
    assert fake.message(sent.id).components[0]["components"][0]["custom_id"] == "tt:details:abc123"


@pytest.mark.anyio
async def test_select_with_a_deferred_update_edits_the_clicked_message(fake: FakeDiscord) -> None:
    async with running(fake) as bot:
        sent = await text_channel(bot, fake.channel_id).send("board", view=Buttons())
        interaction_id = await fake.click(sent.id, "tt:notify:abc123", values=["silent"])
        response = await fake.wait_interaction_response(interaction_id)
        record = fake.interaction(interaction_id)
        await fake.wait_until(lambda: record.original_edits)
    assert response == {"type": 6}
    assert record.payload["data"] == {
        "custom_id": "tt:notify:abc123",
        "component_type": 3,
        "values": ["silent"],
    }
    assert fake.message(sent.id).content == "notify silent"


@pytest.mark.anyio
async def test_allowed_mentions_none_is_recorded_and_pings_nobody(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        channel = text_channel(bot, fake.channel_id)
        text = f"@everyone <@&{fake.ops_role_id}> <@{fake.user_id}> done"
        quiet = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        loud = await channel.send(text)
    assert fake.message(quiet.id).allowed_mentions == {"parse": []}
    assert not fake.message(quiet.id).pings.any
    assert fake.message(loud.id).allowed_mentions is None
    assert fake.message(loud.id).pings.everyone
    assert fake.message(loud.id).pings.roles == (fake.ops_role_id,)


@pytest.mark.anyio
async def test_over_long_content_is_refused_and_recorded(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        with pytest.raises(discord.HTTPException) as refused:
            await text_channel(bot, fake.channel_id).send("x" * 2001)
    assert refused.value.status == 400
    assert refused.value.code == 50035
    assert [(v.field, v.code) for v in fake.violations] == [("content", "BASE_TYPE_MAX_LENGTH")]
    assert fake.channel_messages(fake.channel_id) == []


@pytest.mark.anyio
async def test_six_action_rows_are_refused_and_recorded(fake: FakeDiscord) -> None:
    rows = [
        {"type": 1, "components": [{"type": 2, "style": 1, "label": "x", "custom_id": f"b{i}"}]}
        for i in range(6)
    ]
    async with running(fake, sync=False) as bot:
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=fake.channel_id)
        with pytest.raises(discord.HTTPException) as refused:
            await bot.http.request(route, json={"content": "board", "components": rows})
    assert refused.value.code == 50035
    assert [v.field for v in fake.violations] == ["components"]


@pytest.mark.anyio
@pytest.mark.parametrize("global_", [False, True], ids=["bucket", "global"])
async def test_api_rate_limit_is_retried_after_retry_after(
    fake: FakeDiscord, global_: bool
) -> None:
    limited = fake.inject(
        "POST", r"/channels/\d+/messages", status=429, retry_after=0.4, global_=global_
    )
    async with running(fake, sync=False) as bot:
        started = time.monotonic()
        await text_channel(bot, fake.channel_id).send("after the limit")
        elapsed = time.monotonic() - started
    assert limited.hits == 1
    assert elapsed >= 0.4
    posts = [c for c in fake.call_details if c.method == "POST" and c.path.endswith("/messages")]
    assert [c.status for c in posts] == [429, 200]
    assert [m.content for m in fake.channel_messages(fake.channel_id)] == ["after the limit"]


@pytest.mark.anyio
async def test_channel_send_limit_paces_the_client(fake: FakeDiscord) -> None:
    fake.message_rate_limit = (2, 0.5)
    async with running(fake, sync=False) as bot:
        channel = text_channel(bot, fake.channel_id)
        started = time.monotonic()
        for i in range(3):
            await channel.send(f"n{i}")
        elapsed = time.monotonic() - started
    assert elapsed >= 0.4
    assert [m.content for m in fake.channel_messages(fake.channel_id)] == ["n0", "n1", "n2"]


@pytest.mark.anyio
async def test_cloudflare_ban_is_not_retried(fake: FakeDiscord) -> None:
    fake.inject("POST", r"/channels/\d+/messages", status=429, cloudflare=True, retry_after=5)
    async with running(fake, sync=False) as bot:
        with pytest.raises(discord.HTTPException) as refused:
            await text_channel(bot, fake.channel_id).send("banned")
    assert refused.value.status == 429
    assert len(fake.calls_to("POST", r"/channels/\d+/messages")) == 1


@pytest.mark.anyio
async def test_server_error_is_retried(fake: FakeDiscord) -> None:
    fake.inject("POST", r"/channels/\d+/messages", status=502)
    async with running(fake, sync=False) as bot:
        await text_channel(bot, fake.channel_id).send("second try")
    assert [c.status for c in fake.call_details if c.method == "POST"] == [502, 200]


@pytest.mark.anyio
async def test_enforced_nonce_returns_the_first_message(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        channel = text_channel(bot, fake.channel_id)
        first = await channel.send("task done", nonce="dlv-1")
        again = await channel.send("task done", nonce="dlv-1")
        with pytest.raises(discord.HTTPException):
            await channel.send("too long a nonce", nonce="d" * 26)
    assert first.id == again.id
    assert [m.nonce for m in fake.channel_messages(fake.channel_id)] == ["dlv-1"]
    assert fake.calls_to("POST", r"/channels/\d+/messages")[0].json["enforce_nonce"] is True
    assert [v.field for v in fake.violations] == ["nonce"]


@pytest.mark.anyio
async def test_channel_errors_have_discords_codes(fake: FakeDiscord) -> None:
    fake.set_channel(fake.other_channel_id, missing_access=True)
    fake.set_channel(fake.ops_channel_id, missing_permissions=True)
    fake.set_channel(fake.thread_id, archived=True)
    async with running(fake, sync=False) as bot:

        async def post(channel_id: int) -> discord.HTTPException:
            partial = bot.get_partial_messageable(channel_id)
            with pytest.raises(discord.HTTPException) as refused:
                await partial.send("hello")
            return refused.value

        unknown = await post(1234567890123456789)
        no_access = await post(fake.other_channel_id)
        no_permission = await post(fake.ops_channel_id)
        archived = await post(fake.thread_id)
    assert (type(unknown), unknown.status, unknown.code) == (discord.NotFound, 404, 10003)
    assert (type(no_access), no_access.code) == (discord.Forbidden, 50001)
    assert (type(no_permission), no_permission.code) == (discord.Forbidden, 50013)
    assert (archived.status, archived.code) == (400, 50083)
    assert [c.path for c in fake.unhandled] == []


@pytest.mark.anyio
async def test_archived_thread_can_be_reopened_then_posted_to(fake: FakeDiscord) -> None:
    fake.set_channel(fake.thread_id, archived=True)
    async with running(fake, sync=False) as bot:
        thread = await bot.fetch_channel(fake.thread_id)
        assert isinstance(thread, discord.Thread)
        assert thread.archived
        reopened = await thread.edit(archived=False)
        await reopened.send("back again")
    assert [m.content for m in fake.channel_messages(fake.thread_id)] == ["back again"]


@pytest.mark.anyio
async def test_bad_token_fails_login(fake: FakeDiscord) -> None:
    bot = Bot()
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()
    assert fake.call_details[-1].status == 401


@pytest.mark.anyio
async def test_direct_messages_open_and_can_be_refused(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        dm = await bot.create_dm(discord.Object(fake.user_id))
        await dm.send("your task finished")
        fake.set_user(fake.other_user_id, dms_closed=True)
        closed = await bot.create_dm(discord.Object(fake.other_user_id))
        with pytest.raises(discord.Forbidden) as refused:
            await closed.send("nope")
    assert [m.content for m in fake.channel_messages(dm.id)] == ["your task finished"]
    assert refused.value.code == 50007


@pytest.mark.anyio
async def test_history_finds_already_posted_messages(fake: FakeDiscord) -> None:
    async with running(fake, sync=False) as bot:
        channel = text_channel(bot, fake.channel_id)
        sent = [await channel.send(f"m{i}") for i in range(5)]
        newest = [m.content async for m in channel.history(limit=2)]
        after = [m.content async for m in channel.history(after=sent[1], oldest_first=True)]
        before = [m.content async for m in channel.history(before=sent[2])]
        edited = await sent[0].edit(content="m0 (edited)")
    assert newest == ["m4", "m3"]
    assert after == ["m2", "m3", "m4"]
    assert before == ["m1", "m0"]
    assert edited.content == "m0 (edited)"
    assert [e["content"] for e in fake.message(sent[0].id).edits] == ["m0 (edited)"]


@pytest.mark.anyio
async def test_client_resumes_after_reconnect_and_still_gets_interactions(
    fake: FakeDiscord,
) -> None:
    async with running(fake) as bot:
        (session,) = fake.gateway.sessions.values()
        await fake.gateway.reconnect()
        await fake.wait_until(lambda: session.resumes == 1 and session.connected)
        interaction_id = await fake.send_command("tasks", subcommand="board")
        await fake.wait_interaction_response(interaction_id)
    assert bot.seen == ["board:channel"]
    assert len(fake.gateway.sessions) == 1


@pytest.mark.anyio
async def test_events_sent_while_disconnected_reach_the_client_after_resume(
    fake: FakeDiscord,
) -> None:
    role_id = 1300000000000000001
    role = {"id": str(role_id), "name": "late", "permissions": "0", "position": 9}
    async with running(fake, sync=False) as bot:
        (session,) = fake.gateway.sessions.values()
        await fake.gateway.drop()
        await fake.dispatch_event(
            "GUILD_ROLE_CREATE", {"guild_id": str(fake.guild_id), "role": role}
        )
        await fake.wait_until(lambda: session.resumes == 1 and session.connected)
        guild = bot.get_guild(fake.guild_id)
        assert guild is not None
        for _ in range(50):
            if guild.get_role(role_id) is not None:
                break
            await asyncio.sleep(0.02)
    assert guild.get_role(role_id) is not None


@pytest.mark.anyio
async def test_late_interaction_answer_is_refused_as_unknown(fake: FakeDiscord) -> None:
    fake.interaction_ack_deadline = 0.0
    async with running(fake):
        interaction_id = await fake.send_command("tasks", subcommand="board")
        record = fake.interaction(interaction_id)
        await fake.wait_until(lambda: record.refused_callbacks)
    assert record.refused_callbacks[0][1] == 10062
    assert not record.acknowledged


def test_fake_runs_in_a_thread_for_sync_tests() -> None:
    with run_fake_discord_in_thread() as server:
        restore = point_discord_py_at(server.api_url, server.gateway_url)
        try:
            asyncio.run(_post_once(server))
        finally:
            restore()
        server.run_coro(server.wait_until(lambda: server.channel_messages(server.channel_id)))
        assert [m.content for m in server.channel_messages(server.channel_id)] == ["from sync"]


async def _post_once(server: FakeDiscord) -> None:
    bot = Bot()
    try:
        await bot.login(server.token)
        await bot.get_partial_messageable(server.channel_id).send("from sync")
    finally:
        await bot.close()


def test_point_discord_py_at_can_be_undone() -> None:
    before = Route.BASE
    restore = point_discord_py_at("http://127.0.0.1:1/api/v10/", "ws://127.0.0.1:1/gateway")
    assert Route("GET", "/users/@me").url == "http://127.0.0.1:1/api/v10/users/@me"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:1/gateway"
    restore()
    assert before == Route.BASE


@pytest.fixture
def threaded() -> Iterator[FakeDiscord]:
    with run_fake_discord_in_thread(populate=False) as server:
        yield server


def test_empty_world_serves_the_gateway_url(threaded: FakeDiscord) -> None:
    assert threaded.guilds == {}
    assert threaded.gateway_url.startswith("ws://127.0.0.1:")


def _button(custom_id: str, label: str = "go") -> dict[str, Any]:
    return {"type": 2, "style": 1, "label": label, "custom_id": custom_id}


def _embed(**fields: Any) -> dict[str, Any]:
    return {"title": "t", **fields}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"embeds": [_embed()] * 11}, "embeds"),
        ({"embeds": [_embed(title="x" * 257)]}, "embeds.0.title"),
        ({"embeds": [_embed(description="x" * 4097)]}, "embeds.0.description"),
        ({"embeds": [_embed(fields=[{"name": "n", "value": "v"}] * 26)]}, "embeds.0.fields"),
        (
            {"embeds": [_embed(fields=[{"name": "x" * 257, "value": "v"}])]},
            "embeds.0.fields.0.name",
        ),
        (
            {"embeds": [_embed(fields=[{"name": "n", "value": "x" * 1025}])]},
            "embeds.0.fields.0.value",
        ),
        ({"embeds": [_embed(footer={"text": "x" * 2049})]}, "embeds.0.footer.text"),
        ({"embeds": [_embed(description="x" * 4000)] * 2}, "embeds"),
        (
            {"components": [{"type": 1, "components": [_button(f"b{i}") for i in range(6)]}]},
            "components.0.components",
        ),
        (
            {"components": [{"type": 1, "components": [_button("x" * 101)]}]},
            "components.0.components.0.custom_id",
        ),
        (
            {"components": [{"type": 1, "components": [_button("b", label="x" * 81)]}]},
            "components.0.components.0.label",
        ),
        (
            {"components": [{"type": 1, "components": [_button("b"), _button("b")]}]},
            "components.0.components.1.custom_id",
        ),
        (
            {
                "components": [
                    {
                        "type": 1,
                        "components": [
                            {
                                "type": 3,
                                "custom_id": "s",
                                "options": [{"label": str(i), "value": str(i)} for i in range(26)],
                            }
                        ],
                    }
                ]
            },
            "components.0.components.0.options",
        ),
        ({"allowed_mentions": {"parse": ["users"], "users": ["1"]}}, "allowed_mentions"),
    ],
)
def test_each_discord_limit_is_enforced(body: dict[str, Any], field: str) -> None:
    errors = limits.check_message({"content": "x", **body})
    assert [e.field for e in errors] == [field]


def test_a_message_at_every_limit_is_accepted() -> None:
    body = {
        "content": "x" * 2000,
        "embeds": [_embed(title="x" * 256, description="x" * 4096, footer={"text": "x" * 1000})],
        "components": [
            {"type": 1, "components": [_button(f"r{r}b{b}" + "x" * 90, "x" * 80) for b in range(5)]}
            for r in range(5)
        ],
        "allowed_mentions": {"parse": []},
        "nonce": "n" * 25,
        "enforce_nonce": True,
    }
    assert limits.check_message(body) == []
