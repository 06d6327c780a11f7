"""Block Kit built in typed Python around Jinja-rendered mrkdwn, within Slack's limits.

Limits enforced here (Block Kit reference): at most 50 blocks per message, section text at
most 3,000 characters, context elements 10, overflow menus 2–5 options with option text at
most 75 and values at most 150 characters, button values at most 2,000. Long boards are
cut with "and N more" plus the filter that shows the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bot.chat.board import Board, BoardRow
from bot.chat.service import (
    AuditReply,
    BoardReply,
    DoneReply,
    ErrorReply,
    HelpReply,
    Reply,
    TaskReply,
)
from bot.render import Renderer
from ledger.records import TaskRecord
from ledger.status import NotifyPolicy
from ledger.transports import Notice

Block = dict[str, Any]

MAX_BLOCKS = 50
SECTION_TEXT = 3000
CONTEXT_TEXT = 2000
MESSAGE_TEXT = 3000
OPTION_TEXT = 75
OPTION_VALUE = 150
BUTTON_VALUE = 2000
BLOCK_ID = 255

#: action ids (the handlers dispatch on these)
ROW_MENU = "tt_row"
CANCEL = "tt_cancel"
NOTIFY = "tt_notify"
RETRY = "tt_retry"
DISMISS = "tt_dismiss"
FOLLOW = "tt_follow"
REFRESH = "tt_refresh"

#: block_id of the board header; carries the board's filter so actions can redraw it.
BOARD_BLOCK_PREFIX = "tt_board:"

_ENTITY_TAIL = re.compile(r"&[a-z]{0,5}$")


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    """Cut mrkdwn to `limit` characters without splitting an `&amp;`-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis)]
    cut = _ENTITY_TAIL.sub("", cut)
    return cut + ellipsis


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> Block:
    return {"type": "mrkdwn", "text": clip(text, limit) or " ", "verbatim": True}


def plain(text: str, limit: int = OPTION_TEXT) -> Block:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def section(text: str, *, accessory: Block | None = None, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id[:BLOCK_ID]
    return block


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, CONTEXT_TEXT) for t in texts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def option(text: str, value: str) -> Block:
    if len(value) > OPTION_VALUE:
        raise ValueError(f"overflow option value longer than {OPTION_VALUE}: {value[:40]}…")
    return {"text": plain(text), "value": value}


def overflow(action_id: str, options: Sequence[Block]) -> Block:
    if not 2 <= len(options) <= 5:
        raise ValueError(f"an overflow menu takes 2 to 5 options, not {len(options)}")
    return {"type": "overflow", "action_id": action_id, "options": list(options)}


def confirm_dialog(title: str, text: str, yes: str, no: str = "Keep it") -> Block:
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(yes, 30),
        "deny": plain(no, 30),
        "style": "danger",
    }


def button(
    text: str,
    action_id: str,
    value: str,
    *,
    style: str | None = None,
    confirm: Block | None = None,
) -> Block:
    if len(value) > BUTTON_VALUE:
        raise ValueError(f"button value longer than {BUTTON_VALUE}")
    element: Block = {
        "type": "button",
        "text": plain(text),
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(elements: Sequence[Block], block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:25])}
    if block_id:
        block["block_id"] = block_id
    return block


# -- board -------------------------------------------------------------------------------

_MORE_HINT = {"attention": "failed", "running": "running", "queued": "queued", "finished": "all"}


def row_menu(row: BoardRow) -> Block:
    tid = row.task_id
    options = [option("Details", f"show:{tid}")]
    if row.status in ("queued", "running"):
        options.append(option("Cancel…", f"cancel:{tid}"))
        options.append(option("Notify policy…", f"notify:{tid}"))
    if row.delivery_status == "failed":
        options.append(option("Retry delivery", f"retry:{tid}"))
    if row.status == "lost" or row.delivery_status == "failed":
        options.append(option("Dismiss", f"dismiss:{tid}"))
    options.append(option("Follow here", f"follow:{tid}"))
    return overflow(ROW_MENU, options[:5])


def board_state(board: Board) -> str:
    return BOARD_BLOCK_PREFIX + (board.filter or "")


def filter_from_block_id(block_id: str | None) -> tuple[bool, str | None]:
    """(is a board, its filter) from the header block id."""
    if not block_id or not block_id.startswith(BOARD_BLOCK_PREFIX):
        return False, None
    return True, block_id[len(BOARD_BLOCK_PREFIX) :] or None


def board_message(
    renderer: Renderer, board: Board, *, max_blocks: int = MAX_BLOCKS
) -> tuple[str, list[Block]]:
    """The board as (fallback text, blocks); never more than `max_blocks` blocks."""
    header = renderer.render("slack", "board_header.j2", board=board)
    out: list[Block] = [
        section(
            header,
            block_id=board_state(board),
            accessory=button("Refresh", REFRESH, board.filter or ""),
        )
    ]
    footer: list[Block] = []
    if board.elsewhere is not None:
        footer.append(
            context(renderer.render("slack", "board_elsewhere.j2", counts=board.elsewhere))
        )
    groups = [g for g in board.groups if g.rows]
    if not groups:
        out.append(section(renderer.render("slack", "board_empty.j2", board=board)))
        return clip(header, MESSAGE_TEXT), out + footer
    # Every group needs a title and room for its "and N more" line.
    budget = max_blocks - len(out) - len(footer)
    fixed = sum(2 for _ in groups)
    row_budget = max(0, budget - fixed)
    for group in groups:
        out.append(section(renderer.render("slack", "board_group.j2", group=group)))
        shown = list(group.rows[:row_budget])
        row_budget -= len(shown)
        for row in shown:
            out.append(
                section(renderer.render("slack", "board_row.j2", row=row), accessory=row_menu(row))
            )
        more = group.more + (len(group.rows) - len(shown))
        if more:
            hint = _MORE_HINT[group.key]
            out.append(
                context(
                    renderer.render(
                        "slack",
                        "board_more.j2",
                        more=more,
                        capped=group.capped,
                        hint=hint if hint != board.filter else None,
                    )
                )
            )
    out += footer
    assert len(out) <= max_blocks
    return clip(header, MESSAGE_TEXT), out


# -- one task ----------------------------------------------------------------------------


def task_actions(task: TaskRecord, can_change: bool) -> list[Block]:
    tid = task.task_id
    elements: list[Block] = []
    if can_change and task.is_active:
        elements.append(
            button(
                "Cancel task",
                CANCEL,
                tid,
                style="danger",
                confirm=confirm_dialog(
                    "Cancel this task?", f"Cancel task {task.short_id}?", "Cancel task"
                ),
            )
        )
    if can_change:
        for policy in NotifyPolicy:
            if policy.value != task.notify_policy:
                elements.append(button(f"Notify: {policy.value}", NOTIFY, f"{policy.value}:{tid}"))
        if task.delivery_status == "failed":
            elements.append(button("Retry delivery", RETRY, tid))
        if task.delivery_status == "failed" or (
            task.status.value == "lost" and task.acknowledged_at is None
        ):
            elements.append(button("Dismiss", DISMISS, tid))
    elements.append(button("Follow here", FOLLOW, tid))
    return [actions(elements)]


def task_message(
    renderer: Renderer, reply: TaskReply, *, now_age: float
) -> tuple[str, list[Block]]:
    task = reply.task
    proof = (
        {True: "proven", False: "unproven"}.get(task.proven) if task.proven is not None else None
    )
    if task.proof_status == "failed":
        proof = "proof failed"
    head = renderer.render("slack", "task_head.j2", task=task, proof=proof)
    requester = None
    if task.reply_to is not None and task.reply_to.user:
        requester = f"{task.reply_to.platform}:{task.reply_to.user}"
    requester = requester or task.requester_session_key
    out: list[Block] = [
        section(head),
        context(
            renderer.render(
                "slack", "task_facts.j2", task=task, age_seconds=now_age, requester=requester
            )
        ),
    ]
    body = renderer.render("slack", "task_text.j2", task=task)
    if body:
        out.append(section(body))
    if task.artifacts:
        out.append(
            section(renderer.render("slack", "task_artifacts.j2", artifacts=task.artifacts[:15]))
        )
    if task.deliveries:
        out.append(
            section(
                renderer.render("slack", "task_deliveries.j2", deliveries=task.deliveries[-10:])
            )
        )
    if reply.events:
        out.append(section(renderer.render("slack", "task_events.j2", events=reply.events[-10:])))
    out += task_actions(task, reply.can_change)
    return clip(head, MESSAGE_TEXT), out


# -- everything else -----------------------------------------------------------------------


def text_message(text: str) -> tuple[str, list[Block]]:
    return clip(text, MESSAGE_TEXT), [section(text)]


def reply_message(
    renderer: Renderer, reply: Reply, *, now_age: float = 0.0
) -> tuple[str, list[Block]]:
    """Any chat reply as a Slack message."""
    if isinstance(reply, BoardReply):
        return board_message(renderer, reply.board)
    if isinstance(reply, TaskReply):
        return task_message(renderer, reply, now_age=now_age)
    if isinstance(reply, DoneReply):
        return text_message(renderer.render("slack", "done.j2", text=reply.text, task=reply.task))
    if isinstance(reply, AuditReply):
        return text_message(
            renderer.render(
                "slack", "audit.j2", summary=reply.summary, findings=list(reply.findings)
            )
        )
    if isinstance(reply, HelpReply):
        return text_message(renderer.render("slack", "help.j2", help=reply.text))
    assert isinstance(reply, ErrorReply)
    return text_message(
        renderer.render("slack", "error.j2", message=reply.message, help=reply.help)
    )


def cancel_confirm_message(renderer: Renderer, task: TaskRecord) -> tuple[str, list[Block]]:
    text = renderer.render("slack", "cancel_confirm.j2", task=task)
    confirm = confirm_dialog("Cancel this task?", f"Cancel task {task.short_id}?", "Cancel task")
    return clip(text, MESSAGE_TEXT), [
        section(text),
        actions([button("Cancel task", CANCEL, task.task_id, style="danger", confirm=confirm)]),
    ]


def notify_choose_message(renderer: Renderer, task: TaskRecord) -> tuple[str, list[Block]]:
    text = renderer.render("slack", "notify_choose.j2", task=task)
    buttons = [
        button(policy.value, NOTIFY, f"{policy.value}:{task.task_id}")
        for policy in NotifyPolicy
        if policy.value != task.notify_policy
    ]
    return clip(text, MESSAGE_TEXT), [section(text), actions(buttons)]


def notice_message(renderer: Renderer, notice: Notice) -> tuple[str, list[Block]]:
    text = renderer.render("slack", "notice.j2", kind=notice.kind, p=notice.payload)
    return clip(text, MESSAGE_TEXT), [section(text)]


def digest_message(renderer: Renderer, notices: Sequence[Notice]) -> tuple[str, list[Block]]:
    """One message listing several notices: split across sections, within the block limit."""
    shown = list(notices)
    lines = renderer.render("slack", "digest.j2", notices=shown).split("\n")
    out: list[Block] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > SECTION_TEXT - 10:
            out.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        out.append(section("\n".join(chunk)))
    if len(out) > MAX_BLOCKS:
        out = [*out[: MAX_BLOCKS - 1], context(f"and more ({len(out) - MAX_BLOCKS + 1} sections)")]
    return clip(lines[0], MESSAGE_TEXT), out


def home_view(blocks: list[Block]) -> Block:
    return {"type": "home", "blocks": blocks[:100]}


def modal_view(title: str, blocks: list[Block]) -> Block:
    return {
        "type": "modal",
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": blocks[:100],
    }
