"""The board read model (SPEC §10): which tasks a board shows and how many there are.

Every query is bounded: rows come from one `LIMIT`ed query per (group part, scope variant),
each an index range in `created_at` order (the board indexes in `ledger.schema`: tenant +
status, + reply_channel, + reply_user, + delivery_status, + proof), merged in Python; counts
stop at `count_cap`. A ledger with a million tasks costs a few dozen small index range scans
and never a table scan. Presentation (icons, titles, rendering) belongs to `bot.chat.board`.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, not_, or_, select, true

from ledger import db
from ledger.schema import followers_table, tasks_table
from ledger.status import Status

T = tasks_table.c

#: Group keys in the order a board shows them.
GROUP_KEYS: tuple[str, ...] = ("attention", "running", "queued", "finished")

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
class BoardTask:
    """One task as a board row needs it (plain values, no ORM row)."""

    task_id: str
    status: str
    label: str
    runtime: str
    created_at: datetime
    delivery_status: str
    proof_required: bool
    proof_status: str | None
    reply_to: str | None
    requester_session_key: str | None


@dataclass(frozen=True, slots=True)
class BoardPart:
    """One group of a board: the newest `rows` tasks and how many more there are."""

    key: str
    tasks: tuple[BoardTask, ...]
    #: Tasks in this group not in `tasks` (capped at the board's count cap).
    more: int
    #: True when the total reached the count cap.
    capped: bool = False


@dataclass(frozen=True, slots=True)
class Counts:
    running: int
    queued: int
    attention: int
    capped: bool = False


@dataclass(frozen=True, slots=True)
class BoardData:
    groups: tuple[BoardPart, ...]
    counts: Counts
    #: Counts for the rest of the tenant when scoped to a channel, else None.
    elsewhere: Counts | None


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


def mine_scope(actor_key: str) -> Scope:
    """Tasks whose reply_to names the actor, plus those with the actor's requester key."""
    return [
        [T.reply_user == actor_key],
        [
            T.requester_session_key == actor_key,
            or_(T.reply_user.is_(None), T.reply_user != actor_key),
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
    actor_key: str | None,
) -> Scope:
    base = [T.tenant == tenant]
    if filter is None and channel_key is not None:
        variants = channel_scope(channel_key, followers=_has_followers(conn, channel_key))
    elif filter == "mine":
        variants = mine_scope(actor_key) if actor_key is not None else []
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


def _task(row: Any) -> BoardTask:
    return BoardTask(
        task_id=row.task_id,
        status=row.status,
        label=row.label,
        runtime=row.runtime,
        created_at=row.created_at,
        delivery_status=row.delivery_status,
        proof_required=bool(row.proof_required),
        proof_status=row.proof_status,
        reply_to=row.reply_to,
        requester_session_key=row.requester_session_key,
    )


def _group(
    conn: Connection, key: str, parts: Sequence[_Part], scope: Scope, *, rows: int, cap: int
) -> BoardPart:
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
    shown = tuple(_task(r) for _, r in zip(range(rows), merged, strict=False))
    return BoardPart(key, shown, max(0, total - len(shown)), capped)


def board_data_conn(
    conn: Connection,
    *,
    tenant: str,
    channel_key: str | None,
    filter: str | None,
    actor_key: str | None,
    rows: int,
    count_cap: int,
) -> BoardData:
    """The board of `tenant`: this channel's tasks when `filter` is None and `channel_key`
    is given, else the whole tenant narrowed by `filter` (`mine`, `runtime:X`, `running`,
    `queued`, `failed`, `lost`, or anything else: everything)."""
    scope = _scope(conn, tenant, filter, channel_key, actor_key)
    keep = _STATUS_FILTERS.get(filter or "")
    groups: list[BoardPart] = []
    for key in GROUP_KEYS:
        if keep is None:
            parts = [p for p in _PARTS if p.group == key]
        else:
            # A status filter shows every task of those statuses, acknowledged or not.
            parts = [_Part(key, s) for s in sorted(keep) if _FILTER_GROUP[s] == key]
        if parts:
            cap = min(count_cap, FINISHED_COUNT_CAP) if key == "finished" else count_cap
            groups.append(_group(conn, key, parts, scope, rows=rows, cap=cap))
    known = {g.key: len(g.tasks) + g.more for g in groups if keep is None and g.key != "finished"}
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
    return BoardData(tuple(groups), counts, elsewhere)


def board_data(
    engine: Engine,
    *,
    tenant: str,
    channel_key: str | None,
    filter: str | None,
    actor_key: str | None,
    rows: int,
    count_cap: int,
) -> BoardData:
    with db.read(engine) as conn:
        return board_data_conn(
            conn,
            tenant=tenant,
            channel_key=channel_key,
            filter=filter,
            actor_key=actor_key,
            rows=rows,
            count_cap=count_cap,
        )
