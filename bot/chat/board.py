"""Board data (SPEC §10), once for Slack, Discord and the web board.

The queries live in the ledger (`ledger.boards`, via `Ledger.board`): bounded index range
scans and capped counts that stay cheap on a million tasks. Here the plain records become
the platform-neutral board: icons, group titles, rows and the "elsewhere" counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.chat.permissions import Actor
from ledger.boards import ELSEWHERE_COUNT_CAP, FINISHED_COUNT_CAP, BoardTask, Counts
from ledger.ids import short_id
from ledger.ledger import Ledger
from ledger.status import Status

__all__ = [
    "DEFAULT_COUNT_CAP",
    "DEFAULT_ROWS",
    "ELSEWHERE_COUNT_CAP",
    "FINISHED_COUNT_CAP",
    "GROUP_TITLES",
    "ICONS",
    "Board",
    "BoardGroup",
    "BoardRow",
    "Counts",
    "build_board",
    "proof_label",
    "requester_of",
]

ICONS: dict[str, str] = {
    "queued": "⏳",
    "running": "🔄",
    "succeeded": "✅",
    "failed": "❌",
    "timed_out": "⌛",
    "cancelled": "🚫",
    "lost": "👻",
}
GROUP_TITLES = {
    "attention": "Needs attention",
    "running": "Running",
    "queued": "Queued",
    "finished": "Recently finished",
}
DEFAULT_ROWS = 10
DEFAULT_COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class BoardRow:
    task_id: str
    short_id: str
    status: str
    icon: str
    #: The full label, untrusted: renderers escape and shorten it.
    label: str
    runtime: str
    age_seconds: float
    delivery_status: str
    #: "proven", "unproven", "proof failed", or None when no proof is involved.
    proof: str | None
    #: Who asked: the reply_to user (`slack:U1`) or the requester session key.
    requester: str | None


@dataclass(frozen=True, slots=True)
class BoardGroup:
    key: str
    title: str
    rows: tuple[BoardRow, ...]
    #: Rows in this group not shown (capped at the board's count cap).
    more: int
    #: True when the total reached the count cap (render "N+").
    capped: bool = False

    @property
    def total(self) -> int:
        return len(self.rows) + self.more


@dataclass(frozen=True, slots=True)
class Board:
    tenant: str
    #: `platform:workspace/channel` when scoped to a channel, else None.
    channel_key: str | None
    #: The filter as given (None: this channel's board).
    filter: str | None
    counts: Counts
    groups: tuple[BoardGroup, ...]
    #: Counts for the rest of the workspace when scoped to a channel, else None.
    elsewhere: Counts | None
    generated_at: datetime

    @property
    def is_empty(self) -> bool:
        return all(not g.rows for g in self.groups)

    @property
    def more(self) -> int:
        return sum(g.more for g in self.groups)


def proof_label(status: str, proof_required: bool, proof_status: str | None) -> str | None:
    if proof_status == "failed":
        return "proof failed"
    if status != Status.SUCCEEDED.value:
        return None
    if proof_status == "verified":
        return "proven"
    if proof_required or proof_status is not None:
        return "unproven"
    return None


def requester_of(reply_to: str | None, requester_session_key: str | None) -> str | None:
    if reply_to and "@" in reply_to:
        platform = reply_to.split(":", 1)[0]
        return f"{platform}:{reply_to.rsplit('@', 1)[1]}"
    return requester_session_key


def _row(task: BoardTask, now: datetime) -> BoardRow:
    status = task.status
    return BoardRow(
        task_id=task.task_id,
        short_id=short_id(task.task_id),
        status=status,
        icon=ICONS.get(status, "•"),
        label=task.label,
        runtime=task.runtime,
        age_seconds=max(0.0, (now - task.created_at).total_seconds()),
        delivery_status=task.delivery_status,
        proof=proof_label(status, task.proof_required, task.proof_status),
        requester=requester_of(task.reply_to, task.requester_session_key),
    )


def build_board(
    ledger: Ledger,
    *,
    tenant: str,
    channel_key: str | None,
    filter: str | None,
    actor: Actor | None,
    now: datetime,
    rows: int = DEFAULT_ROWS,
    count_cap: int = DEFAULT_COUNT_CAP,
) -> Board:
    """The board for `tenant`: this channel's tasks when `filter` is None and `channel_key`
    is given, else the whole tenant narrowed by `filter` (see `bot.chat.commands`)."""
    data = ledger.board(
        tenant=tenant,
        channel_key=channel_key,
        filter=filter,
        actor_key=actor.key if actor is not None else None,
        rows=rows,
        count_cap=count_cap,
    )
    groups = tuple(
        BoardGroup(
            g.key,
            GROUP_TITLES[g.key],
            tuple(_row(t, now) for t in g.tasks),
            g.more,
            g.capped,
        )
        for g in data.groups
    )
    return Board(tenant, channel_key, filter, data.counts, groups, data.elsewhere, now)
