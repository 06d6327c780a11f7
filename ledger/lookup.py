"""Finding tasks: one ref resolved by the SPEC §8 order, and filtered, paged listings."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, or_, select, tuple_

from ledger.exceptions import AmbiguousRef, InvalidInput, TaskNotFound
from ledger.ids import ALPHABET, MIN_PREFIX
from ledger.prepared import Prepared
from ledger.records import Page, task_from_row
from ledger.schema import tasks_table
from ledger.status import Runtime, Status, parse_enum
from ledger.timeutil import parse_iso

T = tasks_table.c
_MAX_CANDIDATES = 11


_BY_ID = select(tasks_table).where(T.task_id == bindparam("task_id"))
_FETCH = Prepared(_BY_ID)
_FETCH_IN_TENANT = Prepared(_BY_ID.where(T.tenant == bindparam("tenant")))


def fetch_row(conn: Connection, task_id: str, tenant: str | None = None) -> dict[str, Any] | None:
    if tenant is None:
        return _FETCH.first(conn, {"task_id": task_id})
    return _FETCH_IN_TENANT.first(conn, {"task_id": task_id, "tenant": tenant})


def _scoped(query: Select[Any], tenant: str | None) -> Select[Any]:
    """Add the tenant as a filter, not as an access path: `tenant || ''` keeps SQLite from
    scanning a whole tenant on `ix_tasks_tenant_*` instead of using the ref's own index
    (run id, session key, origin, id range), which is far more selective."""
    if tenant is None:
        return query
    return query.where(T.tenant.op("||")("") == tenant)


def resolve_row(conn: Connection, ref: str, tenant: str | None = None) -> dict[str, Any]:
    """Exact id, run id, session key (newest), origin id, then unique id prefix (4+ chars)."""
    ref = ref.strip()
    if not ref:
        raise InvalidInput("ref", "is empty; give a task id, id prefix, run id or session key")
    if len(ref) > 512:
        raise TaskNotFound(ref[:60] + "…")
    row = fetch_row(conn, ref, tenant)
    if row is not None:
        return row
    by_run = (
        conn.execute(
            _scoped(select(tasks_table).where(T.run_id == ref), tenant).limit(_MAX_CANDIDATES)
        )
        .mappings()
        .all()
    )
    if len(by_run) == 1:
        return dict(by_run[0])
    if len(by_run) > 1:  # the same run id in several tenants, seen by an operator
        raise AmbiguousRef(ref, [f"{r['task_id']} ({r['tenant']})" for r in by_run])
    newest: dict[str, Any] | None = None
    for column in (T.child_session_key, T.requester_session_key):
        found = (
            conn.execute(
                _scoped(select(tasks_table).where(column == ref), tenant)
                .order_by(T.created_at.desc(), T.task_id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if found is not None and (newest is None or found["created_at"] > newest["created_at"]):
            newest = dict(found)
    if newest is not None:
        return newest
    by_origin = (
        conn.execute(_scoped(select(tasks_table).where(T.origin_ref == ref), tenant).limit(2))
        .mappings()
        .all()
    )
    if len(by_origin) == 1:
        return dict(by_origin[0])
    prefix = ref.lower()
    if len(prefix) >= MIN_PREFIX and all(c in ALPHABET for c in prefix):
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        matches = (
            conn.execute(
                _scoped(
                    select(tasks_table).where(T.task_id >= prefix, T.task_id < upper), tenant
                ).limit(_MAX_CANDIDATES)
            )
            .mappings()
            .all()
        )
        if len(matches) == 1:
            return dict(matches[0])
        if len(matches) > 1:
            raise AmbiguousRef(ref, [m["task_id"] for m in matches])
    raise TaskNotFound(ref)


def encode_cursor(row: Mapping[Any, Any]) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['task_id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, task_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|", 1)
        return parse_iso(created), task_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor", f"{cursor[:80]!r} is not a cursor from a previous page"
        ) from None


def list_page(
    conn: Connection,
    *,
    status: Sequence[str] = (),
    runtime: Sequence[str] = (),
    tenant: str | None = None,
    requester: str | None = None,
    label: str | None = None,
    limit: int | None = 50,
    cursor: str | None = None,
) -> Page:
    """Newest first; `limit=None` means everything (streamed in SQL pages by the caller)."""
    statuses = [parse_enum(Status, s, "status").value for s in status]
    runtimes = [parse_enum(Runtime, r, "runtime").value for r in runtime]
    if limit is not None and limit < 1:
        raise InvalidInput("limit", f"must be at least 1, not {limit}")
    query = select(tasks_table)
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(T.status.in_(statuses))
    if runtimes:
        conditions.append(T.runtime.in_(runtimes))
    if tenant is not None:
        conditions.append(T.tenant == tenant)
    if requester is not None:
        conditions.append(T.requester_session_key == requester)
    if label:
        escaped = label.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(T.label.ilike(f"%{escaped}%", escape="\\"))
    if cursor:
        created, task_id = decode_cursor(cursor)
        conditions.append(tuple_(T.created_at, T.task_id) < tuple_(created, task_id))
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(T.created_at.desc(), T.task_id.desc())
    if limit is not None:
        query = query.limit(limit + 1)
    rows = conn.execute(query).mappings().all()
    next_cursor = None
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1])
    return Page(tuple(task_from_row(r) for r in rows), next_cursor)


def session_filter(key: str) -> Any:
    return or_(T.child_session_key == key, T.requester_session_key == key)
