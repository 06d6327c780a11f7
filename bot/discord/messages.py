"""Discord message bodies (content + embeds) built from templates, within Discord's limits.

Jinja2 renders the text with the `discord` surface (every interpolation escaped for Discord
markdown, mentions broken); this module puts that text into embeds and cuts every piece to
Discord's limits, so no message the bot sends can be refused for size. Bodies are plain
dicts in the REST shape: the transport posts them as JSON, the client turns the embeds into
`discord.Embed` objects.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from bot.chat.board import DEFAULT_COUNT_CAP, Board, BoardGroup, BoardRow
from bot.render import Renderer
from ledger.notify import proof_line
from ledger.records import EventRecord, TaskRecord
from ledger.transports import Notice

CONTENT_MAX = 2000
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
NONCE_MAX = 25
#: Rows on one board page (one select option each; a select holds at most 25).
PAGE_ROWS = 10
#: Pages a board offers before "and N more" plus a filter hint.
MAX_PAGES = 10
FOOTER_PREFIX = "tasktrail · "

COLOURS = {
    "attention": 0xE74C3C,
    "running": 0x3498DB,
    "queued": 0x95A5A6,
    "succeeded": 0x2ECC71,
    "failed": 0xE74C3C,
    "timed_out": 0xE67E22,
    "cancelled": 0x95A5A6,
    "lost": 0x8E44AD,
}


def fit(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in `…` when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nonce_for(idempotency_key: str) -> str:
    """A Discord nonce (at most 25 characters) derived from a delivery's idempotency key."""
    return "tt" + hashlib.sha256(idempotency_key.encode()).hexdigest()[: NONCE_MAX - 2]


def key_footer(key: str) -> str:
    return fit(FOOTER_PREFIX + key, FOOTER_MAX)


def footer_key(footer: str | None) -> str | None:
    """The idempotency key a message footer carries, if any."""
    if footer and footer.startswith(FOOTER_PREFIX):
        return footer[len(FOOTER_PREFIX) :]
    return None


def embed_size(embed: dict[str, Any]) -> int:
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    size += len((embed.get("footer") or {}).get("text") or "")
    size += len((embed.get("author") or {}).get("name") or "")
    for item in embed.get("fields") or []:
        size += len(item.get("name") or "") + len(item.get("value") or "")
    return size


def embed(
    title: str | None, description: str, *, colour: int | None = None, footer: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"description": fit(description, DESCRIPTION_MAX)}
    if title:
        body["title"] = fit(title, TITLE_MAX)
    if colour is not None:
        body["color"] = colour
    if footer:
        body["footer"] = {"text": fit(footer, FOOTER_MAX)}
    overflow = embed_size(body) - EMBED_TOTAL_MAX
    if overflow > 0:
        body["description"] = fit(body["description"], len(body["description"]) - overflow)
    return body


@dataclass(frozen=True, slots=True)
class BoardPage:
    """One page of a board: the embed and the rows it shows (for the select menu)."""

    embed: dict[str, Any]
    rows: tuple[BoardRow, ...]
    page: int
    pages: int


def board_total(board: Board) -> int:
    return sum(g.total for g in board.groups)


def board_pages(board: Board) -> int:
    """Pages the board offers (from the groups' true totals, at most MAX_PAGES). Page `p` needs
    the board built with `rows=(p + 1) * PAGE_ROWS`."""
    return max(1, min(MAX_PAGES, math.ceil(board_total(board) / PAGE_ROWS)))


def page_segments(board: Board, page: int) -> list[tuple[BoardGroup, tuple[BoardRow, ...]]]:
    """The (group, rows) pieces that make up rows `[page*PAGE_ROWS, (page+1)*PAGE_ROWS)` of the
    board's groups laid end to end."""
    start, stop = page * PAGE_ROWS, (page + 1) * PAGE_ROWS
    offset = 0
    segments: list[tuple[BoardGroup, tuple[BoardRow, ...]]] = []
    for group in board.groups:
        n = len(group.rows)
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            segments.append((group, group.rows[lo - offset : hi - offset]))
        offset += n
    return segments


def board_title(board: Board) -> str:
    if board.filter:
        return f"Tasks · {board.filter}"
    return "Tasks · this channel" if board.channel_key else "Tasks"


def render_board_page(renderer: Renderer, board: Board, page: int) -> BoardPage:
    pages = board_pages(board)
    page = max(0, min(page, pages - 1))
    segments = page_segments(board, page)
    more = max(0, board_total(board) - pages * PAGE_ROWS) if page == pages - 1 else 0
    description = ""
    for width in (60, 40, 24, 12):  # narrower labels until the page fits one description
        description = renderer.render(
            "discord",
            "board.j2",
            board=board,
            segments=segments,
            more=more,
            width=width,
            cap=DEFAULT_COUNT_CAP,
        )
        if len(description) <= DESCRIPTION_MAX:
            break
    counts = board.counts
    colour = COLOURS["attention"] if counts.attention else COLOURS["running"]
    footer = f"page {page + 1}/{pages}" if pages > 1 else None
    body = embed(board_title(board), description, colour=colour, footer=footer)
    rows = tuple(row for _, chunk in segments for row in chunk)
    return BoardPage(body, rows, page, pages)


def render_task(
    renderer: Renderer, task: TaskRecord, events: tuple[EventRecord, ...] = ()
) -> dict[str, Any]:
    description = renderer.render(
        "discord",
        "task.j2",
        task=task,
        proof=_task_proof(task),
        artifacts=task.artifacts,
        deliveries=task.deliveries,
        events=events,
    )
    title = renderer.render_string("discord", "{{ label | shorten(200) }}", label=task.label)
    return embed(title, description, colour=COLOURS.get(str(task.status)))


def _task_proof(task: TaskRecord) -> str | None:
    row = {
        "status": str(task.status),
        "proof_status": task.proof_status,
        "proof_required": task.proof_required,
    }
    return proof_line(row)


def notice_body(renderer: Renderer, notice: Notice) -> dict[str, Any]:
    """The message for one delivery notice: a content line, one embed with the details and
    the idempotency key in the footer, the nonce, and no pings."""
    p = notice.payload
    if notice.kind == "audit_digest":
        content = renderer.render("discord", "audit_digest.j2", p=p)
        detail = None
    else:
        content = renderer.render("discord", "notice.j2", p=p, kind=notice.kind)
        detail = renderer.render("discord", "notice_detail.j2", p=p)
    body: dict[str, Any] = {
        "content": fit(content, CONTENT_MAX),
        "embeds": [
            embed(
                None,
                detail or "audit digest",
                colour=COLOURS.get(str(p.get("status", ""))),
                footer=key_footer(notice.idempotency_key),
            )
        ],
        "allowed_mentions": {"parse": []},
    }
    return body


def digest_body(renderer: Renderer, notices: list[Notice]) -> dict[str, Any]:
    content = renderer.render("discord", "digest.j2", notices=notices)
    keys = ",".join(n.idempotency_key for n in notices)
    return {
        "content": fit(content, CONTENT_MAX),
        "embeds": [embed(None, f"{len(notices)} updates", footer=key_footer(keys))],
        "allowed_mentions": {"parse": []},
    }
