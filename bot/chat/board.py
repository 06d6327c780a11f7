"""Board data (SPEC §10), once for Slack, Discord and the web board.

Every query is bounded: rows come from one `LIMIT`ed query per (group part, scope variant),
each an index range in `created_at` order (the board indexes in `ledger.schema`: tenant +
status, + reply_channel, + reply_user, + delivery_status, + proof), merged in Python; counts
stop at `count_cap` (shown as "10000+"). A ledger with a million tasks costs a few dozen
small index range scans and never a table scan.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, not_, or_, select, true

from bot.chat.permissions import Actor
from ledger import db
from ledger.ids import short_id
from ledger.ledger import Ledger
from ledger.schema import followers_table, tasks_table
from ledger.status import Status

T = tasks_table.c

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

#: `= true` (not `IS true`) so PostgreSQL can use it in an index condition too.
_PROOF_REQUIRED = T.proof_required == true()
_UNPROVEN = and_(_PROOF_REQUIRED, or_(T.proof_status.is_(None), T.proof_status != "verified"))
_DELIVERY_FAILED = T.delivery_status == "failed"
_DELIVERY_OK = T.delivery_status != "failed"
_ACKED = T.acknowledged_at.is_not(None)


@dataclass(frozen=True, slots=True)
class _Part:
    group: str
    status: Status
    extra: tuple[ColumnElement[bool], ...] = ()


#: Which rows make up each group: one index range per part, and the parts are disjoint.
#: Every part's equality conditions match one of the board indexes (see ledger.schema).
_PARTS: tuple[_Part, ...] = (
    _Part("attention", Status.FAILED),
    _Part("attention", Status.TIMED_OUT),
    _Part("attention", Status.LOST, (T.acknowledged_at.is_(None),)),
    _Part("attention", Status.SUCCEEDED, (_PROOF_REQUIRED, T.proof_status.is_(None))),
    _Part("attention", Status.SUCCEEDED, (_PROOF_REQUIRED, T.proof_status == "unchecked")),
    _Part("attention", Status.SUCCEEDED, (_PROOF_REQUIRED, T.proof_status == "failed")),
    _Part("attention", Status.SUCCEEDED, (_DELIVERY_FAILED, not_(_UNPROVEN))),
    _Part("attention", Status.CANCELLED, (_DELIVERY_FAILED,)),
    _Part("attention", Status.LOST, (_DELIVERY_FAILED, _ACKED)),
    _Part("running", Status.RUNNING),
    _Part("queued", Status.QUEUED),
    _Part("finished", Status.SUCCEEDED, (_DELIVERY_OK, not_(_UNPROVEN))),
    _Part("finished", Status.CANCELLED, (_DELIVERY_OK,)),
    _Part("finished", Status.LOST, (_DELIVERY_OK, _ACKED)),
)

#: Status filters: which statuses a filtered board keeps.
_STATUS_FILTERS: dict[str, frozenset[Status]] = {
    "running": frozenset({Status.RUNNING}),
    "queued": frozenset({Status.QUEUED}),
    "failed": frozenset({Status.FAILED, Status.TIMED_OUT}),
    "lost": frozenset({Status.LOST}),
}
_FILTER_GROUP: dict[Status, str] = {
    Status.FAILED: "attention",
    Status.TIMED_OUT: "attention",
    Status.LOST: "attention",
    Status.RUNNING: "running",
    Status.QUEUED: "queued",
}
#: "Recently finished" is never counted exactly: "and 1000+ more" is enough there.
FINISHED_COUNT_CAP = 1000
#: The count line for the rest of the workspace stops at this ("1000+ need attention").
ELSEWHERE_COUNT_CAP = 1000

_ROW_COLUMNS = (
    T.task_id,
    T.status,
    T.label,
    T.runtime,
    T.created_at,
    T.delivery_status,
    T.proof_required,
    T.proof_status,
    T.reply_to,
    T.requester_session_key,
)


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
class Counts:
    running: int
    queued: int
    attention: int
    capped: bool = False


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


def _row(row: Any, now: datetime) -> BoardRow:
    status = row.status
    return BoardRow(
        task_id=row.task_id,
        short_id=short_id(row.task_id),
        status=status,
        icon=ICONS.get(status, "•"),
        label=row.label,
        runtime=row.runtime,
        age_seconds=max(0.0, (now - row.created_at).total_seconds()),
        delivery_status=row.delivery_status,
        proof=proof_label(status, bool(row.proof_required), row.proof_status),
        requester=requester_of(row.reply_to, row.requester_session_key),
    )


#: A scope is a list of disjoint variants, each a list of conditions; one query per variant.
Scope = list[list[ColumnElement[bool]]]


def channel_scope(channel_key: str, *, followers: bool = True) -> Scope:
    """Tasks whose reply_to is in the channel, plus tasks a thread in the channel follows
    (`followers=False`: the channel has no follower threads; skip that variant)."""
    if not followers:
        return [[T.reply_channel == channel_key]]
    followed = select(followers_table.c.task_id).where(followers_table.c.channel_key == channel_key)
    return [
        [T.reply_channel == channel_key],
        [
            T.task_id.in_(followed),
            or_(T.reply_channel.is_(None), T.reply_channel != channel_key),
        ],
    ]


def mine_scope(actor: Actor) -> Scope:
    """Tasks whose reply_to names the actor, plus those with the actor's requester key."""
    return [
        [T.reply_user == actor.key],
        [
            T.requester_session_key == actor.key,
            or_(T.reply_user.is_(None), T.reply_user != actor.key),
        ],
    ]


def _has_followers(conn: Connection, channel_key: str) -> bool:
    query = select(followers_table.c.id).where(followers_table.c.channel_key == channel_key)
    return conn.execute(query.limit(1)).first() is not None


def _scope(
    conn: Connection,
    tenant: str,
    filter: str | None,
    channel_key: str | None,
    actor: Actor | None,
) -> Scope:
    base = [T.tenant == tenant]
    if filter is None and channel_key is not None:
        variants = channel_scope(channel_key, followers=_has_followers(conn, channel_key))
    elif filter == "mine":
        variants = mine_scope(actor) if actor is not None else []
    elif filter is not None and filter.startswith("runtime:"):
        variants = [[T.runtime == filter.split(":", 1)[1]]]
    else:
        variants = [[]]
    return [[*base, *v] for v in variants]


def _where(variant: Sequence[ColumnElement[bool]], part: _Part) -> ColumnElement[bool]:
    return and_(*variant, T.status == part.status.value, *part.extra)


def _count(conn: Connection, where: ColumnElement[bool], cap: int) -> int:
    # `status` is in every board index, so the count reads the index alone.
    inner = select(T.status).where(where).limit(cap).subquery()
    return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def _part_total(conn: Connection, scope: Scope, part: _Part, cap: int) -> int:
    return sum(_count(conn, _where(v, part), cap) for v in scope)


def _counts(conn: Connection, scope: Scope, cap: int, known: dict[str, int]) -> Counts:
    totals = dict(known)
    for part in _PARTS:
        if part.group != "finished" and part.group not in known:
            totals[part.group] = totals.get(part.group, 0) + _part_total(conn, scope, part, cap)
    capped = any(totals.get(k, 0) >= cap for k in ("attention", "running", "queued"))
    return Counts(
        totals.get("running", 0), totals.get("queued", 0), totals.get("attention", 0), capped
    )


def _group(
    conn: Connection,
    key: str,
    parts: Sequence[_Part],
    scope: Scope,
    *,
    rows: int,
    cap: int,
    now: datetime,
) -> BoardGroup:
    found: list[list[Any]] = []
    total = 0
    capped = False
    for part in parts:
        for variant in scope:
            where = _where(variant, part)
            result = list(
                conn.execute(
                    select(*_ROW_COLUMNS)
                    .where(where)
                    # created_at alone, so each board index gives the order without a sort
                    .order_by(T.created_at.desc())
                    .limit(rows)
                ).all()
            )
            found.append(result)
            if len(result) < rows:
                total += len(result)
            else:
                n = _count(conn, where, cap)
                capped = capped or n >= cap
                total += n
    merged = heapq.merge(*found, key=lambda r: (r.created_at, r.task_id), reverse=True)
    shown = tuple(_row(r, now) for _, r in zip(range(rows), merged, strict=False))
    return BoardGroup(key, GROUP_TITLES[key], shown, max(0, total - len(shown)), capped)


def build_board_conn(
    conn: Connection,
    *,
    tenant: str,
    channel_key: str | None,
    filter: str | None,
    actor: Actor | None,
    now: datetime,
    rows: int = DEFAULT_ROWS,
    count_cap: int = DEFAULT_COUNT_CAP,
) -> Board:
    scope = _scope(conn, tenant, filter, channel_key, actor)
    keep = _STATUS_FILTERS.get(filter or "")
    groups: list[BoardGroup] = []
    for key in GROUP_TITLES:
        if keep is None:
            parts = [p for p in _PARTS if p.group == key]
        else:
            # A status filter shows every task of those statuses, acknowledged or not.
            parts = [_Part(key, s) for s in sorted(keep) if _FILTER_GROUP[s] == key]
        if parts:
            cap = min(count_cap, FINISHED_COUNT_CAP) if key == "finished" else count_cap
            groups.append(_group(conn, key, parts, scope, rows=rows, cap=cap, now=now))
    known = {g.key: g.total for g in groups if keep is None and g.key != "finished"}
    counts = _counts(conn, scope, count_cap, known)
    elsewhere = None
    if filter is None and channel_key is not None:
        everywhere = _counts(conn, [[T.tenant == tenant]], min(count_cap, ELSEWHERE_COUNT_CAP), {})
        elsewhere = Counts(
            max(0, everywhere.running - counts.running),
            max(0, everywhere.queued - counts.queued),
            max(0, everywhere.attention - counts.attention),
            everywhere.capped,
        )
    return Board(tenant, channel_key, filter, counts, tuple(groups), elsewhere, now)


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
    with db.read(ledger.engine) as conn:
        return build_board_conn(
            conn,
            tenant=tenant,
            channel_key=channel_key,
            filter=filter,
            actor=actor,
            now=now,
            rows=rows,
            count_cap=count_cap,
        )
