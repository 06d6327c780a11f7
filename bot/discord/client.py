"""The discord.py client: the `/tasks` app command group and the handlers behind it.

Thin by design: a slash command or a component click becomes a neutral `Command` for an
`Actor` at a `ChatPlace`; `bot.chat.service.ChatService` runs it (ledger calls in a worker
thread, never on the event loop) and the `Reply` is rendered with the `discord` templates.

Interactions must be answered within 3 s, so every handler that touches the ledger defers
first and then edits the original response. Refusals and errors are shown only to the person
who asked. The client is built with `AllowedMentions.none()`: nothing it sends can ping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
from discord import app_commands

from bot.chat.board import build_board
from bot.chat.commands import (
    BOARD_FILTERS,
    MAX_REASON,
    Command,
    CommandError,
    Verb,
    parse_filter,
)
from bot.chat.permissions import Actor, Permissions
from bot.chat.service import (
    AuditReply,
    BoardReply,
    ChatPlace,
    ChatService,
    DoneReply,
    ErrorReply,
    HelpReply,
    Reply,
    TaskReply,
)
from bot.discord import messages
from bot.discord.views import DYNAMIC_ITEMS, board_view, confirm_view, task_view
from bot.render import Renderer, shorten
from ledger.address import Address
from ledger.ledger import Ledger
from ledger.status import NotifyPolicy, Runtime

log = logging.getLogger("tasktrail.discord")

Interaction = discord.Interaction[discord.Client]
#: Recent tasks autocomplete looks through (newest first) and how many choices it offers.
AUTOCOMPLETE_SCAN = 100
AUTOCOMPLETE_CHOICES = 25

_FILTER_CHOICES = [*BOARD_FILTERS, *(f"runtime:{r.value}" for r in Runtime)]


class InteractionHandler:
    """Turns interactions into commands and replies into messages."""

    def __init__(
        self, ledger: Ledger, renderer: Renderer, permissions: Permissions | None = None
    ) -> None:
        self.ledger = ledger
        self.renderer = renderer
        self.permissions = permissions or Permissions()
        self.service = ChatService(ledger, self.permissions)

    # -- who and where ---------------------------------------------------------------------

    @staticmethod
    def actor(interaction: Interaction) -> Actor | None:
        if interaction.guild_id is None:
            return None
        user = interaction.user
        roles = getattr(user, "roles", None) or []
        return Actor(
            platform="discord",
            user_id=str(user.id),
            tenant=f"discord:{interaction.guild_id}",
            group_ids=frozenset(str(r.id) for r in roles),
            is_guild_admin=bool(interaction.permissions.manage_guild),
        )

    @staticmethod
    def place(interaction: Interaction) -> ChatPlace | None:
        channel = interaction.channel
        guild_id = interaction.guild_id
        if guild_id is None or channel is None:
            return None
        user = str(interaction.user.id)
        parent_id = getattr(channel, "parent_id", None)
        if isinstance(channel, discord.Thread) and parent_id is not None:
            thread = str(channel.id)
            return ChatPlace(Address("discord", str(guild_id), str(parent_id), thread, user))
        return ChatPlace(Address("discord", str(guild_id), str(channel.id), None, user))

    # -- slash commands ----------------------------------------------------------------------

    async def run_command(
        self, interaction: Interaction, command: Command, *, public: bool = False
    ) -> None:
        """Defer (within the 3 s), run the command, then edit the original response."""
        actor = self.actor(interaction)
        if actor is None:
            await interaction.response.send_message(
                "Use `/tasks` in a server channel or thread.", ephemeral=True
            )
            return
        if command.verb is Verb.HELP:
            await interaction.response.send_message(
                self.renderer.render("discord", "help.j2"), ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=not public, thinking=True)
        try:
            reply = await self.service.execute(command, actor, self.place(interaction))
        except Exception:  # never leave the asker looking at "thinking…"
            log.exception("/tasks %s failed", command.verb.value)
            reply = ErrorReply("Something went wrong on our side; the operator's log has it.")
        if isinstance(reply, ErrorReply) and public:
            # Refusals are for the person who asked, not the channel.
            await interaction.delete_original_response()
            await interaction.followup.send(**sendable(self.message(reply)), ephemeral=True)
            return
        await interaction.edit_original_response(**self.message(reply))

    async def refuse(self, interaction: Interaction, error: CommandError) -> None:
        reply = ErrorReply(error.problem, error.help, "invalid")
        await interaction.response.send_message(**sendable(self.message(reply)), ephemeral=True)

    async def autocomplete_ref(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Recent tasks of this guild whose id starts with, or label contains, `current`."""
        if interaction.guild_id is None:
            return []
        tenant = f"discord:{interaction.guild_id}"
        page = await asyncio.to_thread(
            self.ledger.list_page, tenant=tenant, limit=AUTOCOMPLETE_SCAN
        )
        needle = current.strip().lower()
        choices: list[app_commands.Choice[str]] = []
        for task in page.tasks:
            if needle and not (
                task.task_id.startswith(needle)
                or (task.run_id or "").lower().startswith(needle)
                or needle in task.label.lower()
            ):
                continue
            name = shorten(f"{task.short_id} · {task.status} · {task.label}", 100)
            choices.append(app_commands.Choice(name=name, value=task.task_id))
            if len(choices) >= AUTOCOMPLETE_CHOICES:
                break
        return choices

    # -- components --------------------------------------------------------------------------

    async def redraw_board(self, interaction: Interaction, filter: str | None, page: int) -> None:
        actor = self.actor(interaction)
        if actor is None:
            return
        await interaction.response.defer()
        place = self.place(interaction)
        board = await asyncio.to_thread(
            build_board,
            self.ledger,
            tenant=actor.tenant,
            channel_key=place.channel_key if place is not None else None,
            filter=filter,
            actor=actor,
            now=self.ledger.clock(),
            rows=(page + 1) * messages.PAGE_ROWS,
        )
        await interaction.edit_original_response(
            **self.message(BoardReply(board), page=page, filter=filter)
        )

    async def run_component(
        self, interaction: Interaction, command: Command, *, update: bool
    ) -> None:
        """A click: `update=True` edits the clicked (panel) message, else a new panel is shown
        only to the person who clicked."""
        actor = self.actor(interaction)
        if actor is None:
            return
        if update:
            await interaction.response.defer()
        else:
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            reply = await self.service.execute(command, actor, self.place(interaction))
        except Exception:
            log.exception("component %s failed", command.verb.value)
            reply = ErrorReply("Something went wrong on our side; the operator's log has it.")
        if isinstance(reply, DoneReply) and reply.task is not None and update:
            shown = await self.service.execute(
                Command(Verb.SHOW, ref=reply.task.task_id), actor, self.place(interaction)
            )
            body = self.message(shown)
            body["content"] = self.message(reply)["content"]
            await interaction.edit_original_response(**body)
            return
        await interaction.edit_original_response(**self.message(reply))

    async def confirm_cancel(self, interaction: Interaction, task_id: str) -> None:
        source = "Cancel `{{ short }}`? Its runner is asked to stop."
        text = self.renderer.render_string("discord", source, short=task_id[:8])
        await interaction.response.edit_message(content=text, view=confirm_view(task_id))

    # -- rendering ---------------------------------------------------------------------------

    def message(self, reply: Reply, *, page: int = 0, filter: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `edit_original_response` / `send` (content, embeds, view)."""
        render = self.renderer.render
        body: dict[str, Any] = {
            "content": None,
            "embeds": [],
            "view": None,
            "allowed_mentions": discord.AllowedMentions.none(),
        }
        if isinstance(reply, BoardReply):
            shown = messages.render_board_page(self.renderer, reply.board, page)
            body["embeds"] = [discord.Embed.from_dict(shown.embed)]
            body["view"] = board_view(reply.board.filter if filter is None else filter, shown)
        elif isinstance(reply, TaskReply):
            card = messages.render_task(self.renderer, reply.task, reply.events)
            body["embeds"] = [discord.Embed.from_dict(card)]
            body["view"] = task_view(reply.task, reply.can_change)
        elif isinstance(reply, DoneReply):
            body["content"] = render("discord", "done.j2", text=reply.text, task=reply.task)
        elif isinstance(reply, AuditReply):
            text = render(
                "discord", "audit.j2", summary=reply.summary, findings=list(reply.findings)
            )
            body["embeds"] = [discord.Embed.from_dict(messages.embed("Audit", text))]
        elif isinstance(reply, HelpReply):
            body["content"] = render("discord", "help.j2")
        else:
            body["content"] = render("discord", "error.j2", message=reply.message, help=reply.help)
        if body["content"] is not None:
            body["content"] = messages.fit(body["content"], messages.CONTENT_MAX)
        return body


def sendable(body: dict[str, Any]) -> dict[str, Any]:
    """`message()` output for `send` (which takes no `view=None`)."""
    return {k: v for k, v in body.items() if not (k == "view" and v is None)}


class TasksGroup(app_commands.Group):
    """`/tasks <subcommand>` (SPEC §10; Discord cannot invoke a group's root)."""

    def __init__(self, handler: InteractionHandler) -> None:
        super().__init__(name="tasks", description="The background work ledger", guild_only=True)
        self.handler = handler

    async def _run(self, interaction: Interaction, command: Command, public: bool = False) -> None:
        await self.handler.run_command(interaction, command, public=public)

    @app_commands.command(name="board", description="This channel's board, or a filtered one")
    @app_commands.describe(filter="all, mine, running, failed, lost, queued or runtime:R")
    async def board(self, interaction: Interaction, filter: str | None = None) -> None:
        try:
            parsed = parse_filter(filter)
        except CommandError as error:
            await self.handler.refuse(interaction, error)
            return
        await self._run(interaction, Command(Verb.BOARD, filter=parsed), public=True)

    @board.autocomplete("filter")
    async def _filter_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        words = [w for w in _FILTER_CHOICES if w.startswith(current.strip().lower())]
        return [app_commands.Choice(name=w, value=w) for w in words[:25]]

    @app_commands.command(name="show", description="One task in detail")
    @app_commands.describe(ref="Task id, id prefix or run id")
    async def show(self, interaction: Interaction, ref: str) -> None:
        await self._run(interaction, Command(Verb.SHOW, ref=ref), public=True)

    @app_commands.command(name="cancel", description="Cancel a task (requester or admins)")
    @app_commands.describe(ref="Task id, id prefix or run id", reason="Why (recorded)")
    async def cancel(self, interaction: Interaction, ref: str, reason: str | None = None) -> None:
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > MAX_REASON:
            problem = f"cancel reason is too long ({len(reason)} > {MAX_REASON})"
            await self.handler.refuse(interaction, CommandError(problem))
            return
        await self._run(interaction, Command(Verb.CANCEL, ref=ref, reason=reason))

    @app_commands.command(name="notify", description="Change a task's notify policy")
    @app_commands.choices(
        policy=[app_commands.Choice(name=p.value, value=p.value) for p in NotifyPolicy]
    )
    async def notify(
        self, interaction: Interaction, ref: str, policy: app_commands.Choice[str]
    ) -> None:
        command = Command(Verb.NOTIFY, ref=ref, policy=NotifyPolicy(policy.value))
        await self._run(interaction, command)

    @app_commands.command(name="retry", description="Re-queue a task's failed deliveries")
    async def retry(self, interaction: Interaction, ref: str) -> None:
        await self._run(interaction, Command(Verb.RETRY, ref=ref))

    @app_commands.command(name="dismiss", description="Mark a failed delivery or lost task handled")
    async def dismiss(self, interaction: Interaction, ref: str) -> None:
        await self._run(interaction, Command(Verb.DISMISS, ref=ref))

    @app_commands.command(name="follow", description="Post this task's notices in this thread too")
    async def follow(self, interaction: Interaction, ref: str) -> None:
        await self._run(interaction, Command(Verb.FOLLOW, ref=ref))

    @app_commands.command(name="unfollow", description="Stop posting this task's notices here")
    async def unfollow(self, interaction: Interaction, ref: str) -> None:
        await self._run(interaction, Command(Verb.UNFOLLOW, ref=ref))

    @app_commands.command(name="audit", description="Audit findings (admins)")
    async def audit(self, interaction: Interaction) -> None:
        await self._run(interaction, Command(Verb.AUDIT))

    @app_commands.command(name="help", description="How to use /tasks")
    async def help(self, interaction: Interaction) -> None:
        await self._run(interaction, Command(Verb.HELP))

    @show.autocomplete("ref")
    @cancel.autocomplete("ref")
    @notify.autocomplete("ref")
    @retry.autocomplete("ref")
    @dismiss.autocomplete("ref")
    @follow.autocomplete("ref")
    @unfollow.autocomplete("ref")
    async def _ref_choices(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self.handler.autocomplete_ref(interaction, current)


class TasksClient(discord.Client):
    """The bot: `/tasks`, persistent components, nothing that can ping."""

    def __init__(
        self,
        handler: InteractionHandler,
        *,
        guild_id: int | None = None,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        super().__init__(
            intents=discord.Intents(guilds=True),
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=guild_ready_timeout,
        )
        self.tasktrail = handler
        self.guild_id = guild_id
        self.tree: app_commands.CommandTree[TasksClient] = app_commands.CommandTree(self)
        self.tree.add_command(TasksGroup(handler))
        self.synced = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self.guild_id is not None:
            guild = discord.Object(self.guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()
        self.synced.set()
