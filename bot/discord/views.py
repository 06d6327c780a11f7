"""Board and task components as persistent views (SPEC §10).

Every component is a `discord.ui.DynamicItem`: its state lives in its custom id (action,
task id, board filter, page), and the classes are registered once at startup with
`Client.add_dynamic_items`, so a board posted before a restart still answers after it.
Custom ids stay far below Discord's 100 characters (`tt:task:cancelok:<16-char id>` is 33).

- board message: a select menu of the page's tasks (`tt:pick:<filter>:<page>`) and
  Previous / Next / Refresh buttons (`tt:page:<filter>:<page>:<p|n|r>`);
- task panel (shown to whoever picked a task, ephemeral): Details, Cancel (asks to confirm),
  Retry delivery, Follow, Dismiss buttons and a notify policy select.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot.chat.board import BoardRow
from bot.chat.commands import Command, Verb, parse_filter
from bot.discord.messages import PAGE_ROWS, BoardPage
from bot.render import shorten
from ledger.records import TaskRecord
from ledger.status import NotifyPolicy, Status

if TYPE_CHECKING:
    from bot.discord.client import InteractionHandler

Interaction = discord.Interaction[discord.Client]

_FILTER = r"(?P<filter>[a-z_]*(?::[a-z_]+)?)"
_TASK = r"(?P<task>[a-z2-7]{16})"
CUSTOM_ID_MAX = 100
ACTIVE = frozenset({Status.QUEUED.value, Status.RUNNING.value})


def handler_of(interaction: Interaction) -> InteractionHandler:
    handler: InteractionHandler = interaction.client.tasktrail  # type: ignore[attr-defined]
    return handler


def _filter_value(text: str) -> str | None:
    return parse_filter(text) if text else None


class BoardPageButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"tt:page:{_FILTER}:(?P<page>\d{{1,3}}):(?P<tag>[pnr])",
):
    """Previous / Next / Refresh on a board: redraw the board at `page` in place."""

    def __init__(
        self, filter: str | None, page: int, tag: str, *, label: str, disabled: bool = False
    ) -> None:
        self.filter = filter
        self.page = page
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"tt:page:{filter or ''}:{page}:{tag}",
                disabled=disabled,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BoardPageButton:
        return cls(_filter_value(match["filter"]), int(match["page"]), match["tag"], label="·")

    async def callback(self, interaction: Interaction) -> None:
        await handler_of(interaction).redraw_board(interaction, self.filter, self.page)


class BoardPick(
    discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
    template=rf"tt:pick:{_FILTER}:(?P<page>\d{{1,3}})",
):
    """The board's select menu: pick a task to see its details and actions."""

    def __init__(
        self, filter: str | None, page: int, rows: tuple[BoardRow, ...] | None = None
    ) -> None:
        options = [
            discord.SelectOption(
                label=shorten(f"{row.icon} {row.short_id} · {row.label}", 100),
                value=row.task_id,
                description=shorten(f"{row.status} · {row.runtime}", 100),
            )
            for row in (rows or ())[:25]
        ] or [discord.SelectOption(label="-", value="-")]
        super().__init__(
            discord.ui.Select(
                custom_id=f"tt:pick:{filter or ''}:{page}",
                placeholder="Pick a task for details and actions…",
                options=options,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> BoardPick:
        return cls(_filter_value(match["filter"]), int(match["page"]))

    async def callback(self, interaction: Interaction) -> None:
        values = self.item.values
        task_id = str(values[0]) if values else ""
        await handler_of(interaction).run_component(
            interaction, Command(Verb.SHOW, ref=task_id), update=False
        )


_ACTION_VERBS = {
    "details": Verb.SHOW,
    "cancelok": Verb.CANCEL,
    "retry": Verb.RETRY,
    "dismiss": Verb.DISMISS,
    "follow": Verb.FOLLOW,
}


class TaskButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"tt:task:(?P<action>details|cancel|cancelok|keep|retry|dismiss|follow):{_TASK}",
):
    """A task action. `cancel` asks for confirmation (`cancelok` / `keep`) before acting."""

    LABELS: ClassVar[dict[str, tuple[str, discord.ButtonStyle]]] = {
        "details": ("Details", discord.ButtonStyle.secondary),
        "cancel": ("Cancel", discord.ButtonStyle.danger),
        "cancelok": ("Yes, cancel it", discord.ButtonStyle.danger),
        "keep": ("Keep it running", discord.ButtonStyle.secondary),
        "retry": ("Retry delivery", discord.ButtonStyle.primary),
        "dismiss": ("Dismiss", discord.ButtonStyle.secondary),
        "follow": ("Follow here", discord.ButtonStyle.secondary),
    }

    def __init__(self, action: str, task_id: str, *, disabled: bool = False) -> None:
        self.action = action
        self.task_id = task_id
        label, style = self.LABELS[action]
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                custom_id=f"tt:task:{action}:{task_id}",
                disabled=disabled,
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> TaskButton:
        return cls(match["action"], match["task"])

    async def callback(self, interaction: Interaction) -> None:
        handler = handler_of(interaction)
        if self.action == "cancel":
            await handler.confirm_cancel(interaction, self.task_id)
            return
        if self.action == "keep":
            await handler.run_component(
                interaction, Command(Verb.SHOW, ref=self.task_id), update=True
            )
            return
        verb = _ACTION_VERBS[self.action]
        await handler.run_component(interaction, Command(verb, ref=self.task_id), update=True)


class NotifySelect(
    discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
    template=rf"tt:notify:{_TASK}",
):
    """Change a task's notify policy."""

    def __init__(self, task_id: str, current: str | None = None, *, disabled: bool = False) -> None:
        self.task_id = task_id
        super().__init__(
            discord.ui.Select(
                custom_id=f"tt:notify:{task_id}",
                placeholder="Notify policy…",
                disabled=disabled,
                options=[
                    discord.SelectOption(
                        label=policy.value, value=policy.value, default=policy.value == current
                    )
                    for policy in NotifyPolicy
                ],
            )
        )

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> NotifySelect:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:
        values = self.item.values
        try:
            policy = NotifyPolicy(str(values[0]))
        except (IndexError, ValueError):
            policy = NotifyPolicy.DONE_ONLY
        command = Command(Verb.NOTIFY, ref=self.task_id, policy=policy)
        await handler_of(interaction).run_component(interaction, command, update=True)


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    BoardPageButton,
    BoardPick,
    TaskButton,
    NotifySelect,
)


def board_view(filter: str | None, page: BoardPage) -> discord.ui.View:
    """Select menu for the page's tasks (row 0) and paging buttons (row 1): 2 of 5 rows."""
    view = discord.ui.View(timeout=None)
    if page.rows:
        view.add_item(BoardPick(filter, page.page, page.rows[:PAGE_ROWS]))
    if page.pages > 1:
        view.add_item(
            BoardPageButton(
                filter, max(0, page.page - 1), "p", label="◀ Previous", disabled=page.page == 0
            )
        )
        view.add_item(
            BoardPageButton(
                filter,
                min(page.pages - 1, page.page + 1),
                "n",
                label="Next ▶",
                disabled=page.page >= page.pages - 1,
            )
        )
    view.add_item(BoardPageButton(filter, page.page, "r", label="Refresh"))
    return view


def task_view(task: TaskRecord, can_change: bool) -> discord.ui.View:
    """Actions on one task: buttons (row 0) and the notify select (row 1)."""
    view = discord.ui.View(timeout=None)
    status = str(task.status)
    view.add_item(TaskButton("details", task.task_id))
    view.add_item(
        TaskButton("cancel", task.task_id, disabled=not can_change or status not in ACTIVE)
    )
    view.add_item(
        TaskButton(
            "retry", task.task_id, disabled=not can_change or task.delivery_status != "failed"
        )
    )
    view.add_item(
        TaskButton(
            "dismiss",
            task.task_id,
            disabled=not can_change
            or (task.delivery_status != "failed" and status != Status.LOST.value),
        )
    )
    view.add_item(TaskButton("follow", task.task_id))
    view.add_item(NotifySelect(task.task_id, task.notify_policy, disabled=not can_change))
    return view


def confirm_view(task_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(TaskButton("cancelok", task_id))
    view.add_item(TaskButton("keep", task_id))
    return view
