"""OpenClaw's task ledger as a read-only source, and the mapping of its rows onto tasktrail.

OpenClaw (2026.9.x) keeps its background tasks in `$OPENCLAW_STATE_DIR/state/openclaw.sqlite`,
tables `task_runs` and `task_delivery_state`, written by a live gateway in WAL mode. This module
opens that file strictly read-only (a `mode=ro` URI connection with `query_only` on: no write
lock is ever taken and no byte of the file changes), reads it page by page in order of
`last_event_at`, and turns each row into the column values of a tasktrail task
(`map_row`). Rows that OpenClaw's own reader would reject raise `RowRejected` with a reason.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.address import parse_address
from ledger.exceptions import InvalidInput, LedgerError
from ledger.text import BRIEF_MAX, KEY_MAX, LABEL_MAX, SUMMARY_MAX

ORIGIN = "openclaw"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RUNTIMES = ("subagent", "acp", "cli", "cron")
STATUSES = ("queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost")
DELIVERY_STATUSES = (
    "pending",
    "delivered",
    "session_queued",
    "failed",
    "parent_missing",
    "not_applicable",
    "dismissed",
)
NOTIFY_POLICIES = ("done_only", "state_changes", "silent")
SCOPE_KINDS = ("session", "system")

#: OpenClaw delivery status -> tasktrail delivery status. The original is kept in
#: `origin_detail["delivery_status"]` and shown by `show`.
DELIVERY_MAP: dict[str, str] = {
    "pending": "pending",
    "delivered": "delivered",
    # handed to the requester's session queue: OpenClaw's delivery is done with it
    "session_queued": "delivered",
    "failed": "failed",
    # the requester session is gone: the completion reached nobody
    "parent_missing": "failed",
    "not_applicable": "not_applicable",
    "dismissed": "dismissed",
}

#: Columns of `task_runs` OpenClaw 2026.9.6 writes; the first ones must exist.
REQUIRED_COLUMNS = ("task_id", "runtime", "task", "status", "created_at")
COLUMNS = (
    "task_id",
    "runtime",
    "task_kind",
    "source_id",
    "requester_session_key",
    "owner_key",
    "scope_kind",
    "child_session_key",
    "parent_flow_id",
    "parent_task_id",
    "agent_id",
    "requester_agent_id",
    "run_id",
    "execution_owner_host",
    "execution_owner_pid",
    "execution_owner_start_identity",
    "label",
    "task",
    "status",
    "delivery_status",
    "notify_policy",
    "created_at",
    "started_at",
    "ended_at",
    "last_event_at",
    "cleanup_after",
    "tool_use_count",
    "last_tool_name",
    "error",
    "progress_summary",
    "terminal_summary",
    "terminal_outcome",
    "detail_json",
)
_ID_MAX = 255
_KIND_MAX = 64


class OpenClawSourceError(LedgerError):
    """The OpenClaw database cannot be read (missing, not OpenClaw's layout, unreadable)."""

    http_status = 400

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"OpenClaw database {path}: {problem}")


class RowRejected(Exception):
    """A `task_runs` row OpenClaw's own reader would reject; the reason names the field."""


def default_db_path(env: Mapping[str, str] | None = None) -> Path:
    """`$OPENCLAW_STATE_DIR/state/openclaw.sqlite`, else `~/.openclaw/state/openclaw.sqlite`."""
    env = os.environ if env is None else env
    state_dir = env.get("OPENCLAW_STATE_DIR")
    base = Path(state_dir).expanduser() if state_dir else Path.home() / ".openclaw"
    return base / "state" / "openclaw.sqlite"


def resolve_openclaw_db(
    state_dir: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Where the OpenClaw database is: an explicit file, a state directory (its
    `state/openclaw.sqlite`, or the file itself when given one), or the default location."""
    if db_path is not None:
        return Path(db_path).expanduser()
    if state_dir is not None:
        base = Path(state_dir).expanduser()
        if base.is_file():
            return base
        nested = base / "state" / "openclaw.sqlite"
        flat = base / "openclaw.sqlite"
        return flat if not nested.exists() and flat.exists() else nested
    return default_db_path(env)


class OpenClawSource:
    """A read-only connection to one OpenClaw state database."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(path).expanduser().resolve()
        shown = str(self.path)
        if not self.path.is_file():
            raise OpenClawSourceError(
                shown, "not found; give --state-dir DIR or --openclaw-db PATH"
            )
        uri = f"file:{urllib.parse.quote(shown)}?mode=ro"
        try:
            self.conn = sqlite3.connect(
                uri, uri=True, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA query_only = ON")
            tables = {
                name
                for (name,) in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        except sqlite3.DatabaseError as error:
            raise OpenClawSourceError(shown, f"cannot be read ({error})") from None
        if "task_runs" not in tables:
            self.conn.close()
            raise OpenClawSourceError(shown, "has no task_runs table; not an OpenClaw ledger")
        present = {row[1] for row in self.conn.execute("PRAGMA table_info(task_runs)")}
        missing = [c for c in REQUIRED_COLUMNS if c not in present]
        if missing:
            self.conn.close()
            raise OpenClawSourceError(
                shown, f"task_runs lacks column(s) {', '.join(missing)}; not an OpenClaw ledger"
            )
        select = [f"r.{c}" if c in present else f"NULL AS {c}" for c in COLUMNS]
        if "task_delivery_state" in tables:
            select += ["d.requester_origin_json", "d.last_notified_event_at"]
            joined = "task_runs r LEFT JOIN task_delivery_state d ON d.task_id = r.task_id"
        else:
            select += ["NULL AS requester_origin_json", "NULL AS last_notified_event_at"]
            joined = "task_runs r"
        self._select = f"SELECT {', '.join(select)} FROM {joined}"

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> OpenClawSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        # Plain dicts: mapping reads some 35 columns of every row by name, and a dict lookup
        # is a hash probe where sqlite3.Row compares the name against each column in turn.
        # Iterated rather than fetched all at once: each row's tuple is gone before the next.
        cursor = self.conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    def count(self, since_ms: int | None) -> int:
        """How many rows `pages(since_ms)` will yield (read in a separate snapshot: an
        estimate when the gateway writes meanwhile)."""
        where = "" if since_ms is None else " WHERE last_event_at IS NULL OR last_event_at >= ?"
        params = () if since_ms is None else (since_ms,)
        (rows,) = self.conn.execute("SELECT count(*) FROM task_runs" + where, params).fetchone()
        return int(rows)

    def pages(
        self, since_ms: int | None, page_size: int = 2000, first_size: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Rows with `last_event_at >= since_ms` (all rows when None) in order of
        (`last_event_at`, `task_id`), one short read transaction per page; rows without
        `last_event_at` come first, every time. `first_size`: a smaller first page, so the
        writer waiting for it starts sooner."""
        try:
            nulls = self._fetch(self._select + " WHERE r.last_event_at IS NULL ORDER BY r.task_id")
            if nulls:
                yield nulls
            at = since_ms if since_ms is not None else -(2**63)
            after = ""
            # (last_event_at, task_id) after the previous page's last row. The `>=` term lets
            # SQLite seek the last_event_at index to the page; with the OR alone it scans the
            # index from its start for every page.
            query = (
                self._select
                + " WHERE r.last_event_at >= ? AND (r.last_event_at > ? OR r.task_id > ?)"
                " ORDER BY r.last_event_at, r.task_id LIMIT ?"
            )
            size = min(first_size or page_size, page_size)
            page = self._fetch(
                self._select + " WHERE r.last_event_at >= ?"
                " ORDER BY r.last_event_at, r.task_id LIMIT ?",
                (at, size),
            )
            while True:
                if not page:
                    return
                yield page
                if len(page) < size:
                    return
                last = page[-1]
                at, after = last["last_event_at"], last["task_id"]
                size = page_size
                page = self._fetch(query, (at, at, after, size))
        except sqlite3.DatabaseError as error:
            raise OpenClawSourceError(str(self.path), f"read failed ({error})") from None


# -- mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packed:
    names: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(slots=True)
class MappedTask:
    """One OpenClaw row as tasktrail column values, plus what the importer links later."""

    origin_ref: str
    #: The column values (see `values`); None while they are only `packed`.
    fields: dict[str, Any] | None
    #: The `origin_detail` object; None when only its JSON text in `values` came along (a
    #: page from the reading process): `get_detail()` parses it on first use.
    detail: dict[str, Any] | None
    parent_ref: str | None
    source_status: str
    source_runtime: str
    last_event_ms: int | None
    #: The TIME_COLUMNS values as epoch milliseconds (as normalized): a bulk insert renders
    #: SQLite's text straight from these rather than from the datetimes.
    times_ms: tuple[int | None, ...]
    #: The same times as SQLite's DATETIME text, when the reader rendered them (the
    #: importer does otherwise): see `ledger.importers.bulk.sqlite_datetime_ms`.
    sqlite_times: tuple[str | None, ...] | None = None
    #: The column values as a tuple in `Packed.names` order, as a page from the reading
    #: process brings them (`ledger.importers.openclaw_pages`): the importer inserts a new
    #: task straight from it, and builds `values` only for a task it has to change.
    packed: Packed | None = None

    @property
    def values(self) -> dict[str, Any]:
        """The tasktrail column values by name."""
        if self.fields is None:
            assert self.packed is not None
            self.fields = dict(zip(self.packed.names, self.packed.values, strict=True))
        return self.fields

    def get_detail(self) -> dict[str, Any]:
        if self.detail is None:
            self.detail = json.loads(self.values["origin_detail"])
        return self.detail

    def fill_datetimes(self) -> None:
        """Put the time columns into `values` as datetimes, when `map_row(datetimes=False)`
        left them out."""
        if TIME_COLUMNS[0] not in self.values:
            self.values.update(zip(TIME_COLUMNS, map(_dt, self.times_ms), strict=True))


#: The time columns map_row fills, in the order of `MappedTask.times_ms`.
TIME_COLUMNS = ("created_at", "started_at", "ended_at", "last_event_at", "cleanup_after")

#: The epoch-ms range a datetime can hold (years 1 to 9999): a value outside it is rejected.
_MIN_MS = (datetime.min.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
_MAX_MS = (datetime.max.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


def _ms(row: Mapping[str, Any], column: str, required: bool = False) -> int | None:
    """The column's epoch milliseconds, checked. Times stay integers: their order is settled
    on them, SQLite's text is rendered from them, and datetimes are built only where read."""
    value = row[column]
    if type(value) is not int:
        if value is None:
            if required:
                raise RowRejected(f"{column} is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise RowRejected(f"{column} {value!r} is not an epoch-milliseconds integer")
        value = int(value)
    if not _MIN_MS <= value <= _MAX_MS:
        raise RowRejected(f"{column} {value} is out of range")
    return value


def _dt(ms: int | None) -> datetime | None:
    # positional timedelta(days, seconds, microseconds, milliseconds): half the cost of the
    # keyword form
    return None if ms is None else EPOCH + timedelta(0, 0, 0, ms)


def _enum(row: Mapping[str, Any], column: str, allowed: tuple[str, ...]) -> str:
    value = row[column]
    if value is None:
        raise RowRejected(f"{column} is missing")
    if value not in allowed:
        raise RowRejected(f"{column} {str(value)[:60]!r} is not one of {', '.join(allowed)}")
    return str(value)


def _text(value: Any, limit: int) -> str | None:
    """Text as tasktrail stores it: empty as NULL, NUL replaced (PostgreSQL cannot hold
    it), clipped to the column's limit."""
    if value is None or value == "":
        return None
    if type(value) is str and len(value) <= limit and "\x00" not in value:
        return value
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _json(text: Any) -> Any:
    """Parsed JSON text (the raw text when it is not JSON). Shared, never mutated: the same
    origin and detail documents repeat across thousands of rows."""
    if text is None:
        return None
    if isinstance(text, str) and len(text) <= 512:
        return _json_cached(text)
    return _parse(text)


def _parse(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


_json_cached = functools.lru_cache(maxsize=4096)(_parse)


def reply_address(origin: Any, tenant_platform: str | None, tenant_space: str | None) -> str | None:
    """`requester_origin_json` -> a tasktrail address, when the channel is Slack or Discord
    and the ids fit (the workspace comes from the origin's team/guild id, else the tenant)."""
    if not isinstance(origin, dict):
        return None
    platform = origin.get("channel")
    if platform not in ("slack", "discord"):
        return None
    target = origin.get("to")
    if not isinstance(target, str):
        return None
    kind, _, ident = target.rpartition(":")
    if kind not in ("", "channel", platform):
        return None  # user:... and the like: a DM target, not a channel
    space = origin.get("teamId") or origin.get("guildId") or origin.get("workspaceId")
    if not space and tenant_platform == platform:
        space = tenant_space
    if not space or not ident:
        return None
    address = f"{platform}:{space}/{ident}"
    thread = origin.get("threadId")
    if thread not in (None, ""):
        address += f"/{thread}"
    try:
        return str(parse_address(address))
    except InvalidInput:
        return None


@functools.lru_cache(maxsize=4096)
def _cached_reply(text: str, platform: str | None, space: str | None) -> str | None:
    return reply_address(_json(text), platform, space)


def map_row(
    row: Mapping[str, Any],
    *,
    tenant: str,
    notify_from_tasktrail: bool,
    tenant_platform: str | None = None,
    tenant_space: str | None = None,
    datetimes: bool = True,
) -> MappedTask:
    """The tasktrail column values for one `task_runs` row (no `task_id`/`version`: the
    importer assigns those). Raises `RowRejected` for a row OpenClaw would not read.

    With `datetimes=False` the time columns stay out of `values` until `fill_datetimes()`:
    building five datetimes is a third of the mapping's cost, and a new row inserted on
    SQLite never needs them (see `MappedTask.times_ms`)."""
    origin_ref = row["task_id"]
    if not isinstance(origin_ref, str) or not origin_ref.strip():
        raise RowRejected("task_id is missing")
    if len(origin_ref) > _ID_MAX:
        raise RowRejected(f"task_id is longer than {_ID_MAX} characters")
    runtime = _enum(row, "runtime", RUNTIMES)
    status = _enum(row, "status", STATUSES)
    delivery = _enum(row, "delivery_status", DELIVERY_STATUSES)
    notify = _enum(row, "notify_policy", NOTIFY_POLICIES)
    scope = _enum(row, "scope_kind", SCOPE_KINDS)
    owner_key = row["owner_key"]
    if owner_key is None:
        raise RowRejected("owner_key is missing")
    brief = row["task"]
    if not isinstance(brief, str):
        raise RowRejected("task is missing")
    created = _ms(row, "created_at", required=True)
    assert created is not None
    started = _ms(row, "started_at")
    ended = _ms(row, "ended_at")
    last_event = _ms(row, "last_event_at")
    cleanup = _ms(row, "cleanup_after")
    # created <= started <= ended, whatever the producer's clock said (SPEC §2)
    floor = created
    if started is not None:
        floor = started = max(started, floor)
    if ended is not None:
        floor = ended = max(ended, floor)
    last_event = max(last_event, floor) if last_event is not None else floor

    requester = _blank_to_none(row["requester_session_key"])
    if requester is None and scope == "session":
        requester = _blank_to_none(owner_key)
    origin_text = row["requester_origin_json"]
    origin = _json(origin_text)
    label = _blank_to_none(row["label"])
    if label is None or not str(label).strip():
        first_line = brief.strip().splitlines()[0] if brief.strip() else ""
        label = first_line[:200] or f"OpenClaw task {origin_ref}"
    run_id = _blank_to_none(row["run_id"])
    detail: dict[str, Any] = {
        "delivery_status": delivery,
        "notify_policy": notify,
        "owner_key": owner_key,
        "scope_kind": scope,
    }
    for column in (
        "agent_id",
        "requester_agent_id",
        "parent_task_id",
        "parent_flow_id",
        "terminal_outcome",
        "tool_use_count",
        "last_tool_name",
        "execution_owner_host",
        "execution_owner_pid",
        "execution_owner_start_identity",
    ):
        value = row[column]
        if value is not None and value != "":
            detail[column] = value
    if origin is not None:
        detail["requester_origin"] = origin
    notified = row["last_notified_event_at"]
    if isinstance(notified, int) and not isinstance(notified, bool):
        detail["last_notified_event_at"] = notified
    extra = _json(row["detail_json"])
    if extra is not None:
        detail["detail"] = extra
    if isinstance(run_id, str) and len(run_id) > _ID_MAX:
        detail["run_id"] = run_id
        run_id = None

    policy = notify if notify_from_tasktrail else "silent"
    reply_to = (
        _cached_reply(origin_text, tenant_platform, tenant_space)
        if isinstance(origin_text, str) and len(origin_text) <= 512
        else reply_address(origin, tenant_platform, tenant_space)
    )
    if notify_from_tasktrail and status in ("queued", "running"):
        delivery_value = "pending" if reply_to and policy != "silent" else "not_applicable"
    else:
        delivery_value = DELIVERY_MAP[delivery]
    values: dict[str, Any] = {
        "tenant": tenant,
        "runtime": runtime,
        "task_kind": _text(row["task_kind"], _KIND_MAX),
        "label": _text(label, LABEL_MAX),
        "task": _text(brief, BRIEF_MAX),
        "status": status,
        "run_id": run_id,
        "source_id": _text(row["source_id"], _ID_MAX),
        "child_session_key": _text(row["child_session_key"], KEY_MAX),
        "requester_session_key": _text(requester, KEY_MAX),
        "parent_task_id": None,
        "reply_to": reply_to,
        "notify_policy": policy,
        "delivery_status": delivery_value,
        "heartbeat_at": None,
        # OpenClaw's gateway owns liveness: no tasktrail lease on a mirrored task
        "lease_expires_at": None,
        "lease_seconds": None,
        "grace_until": None,
        "progress_summary": _text(row["progress_summary"], SUMMARY_MAX),
        "terminal_summary": _text(row["terminal_summary"], SUMMARY_MAX),
        "error": _text(row["error"], SUMMARY_MAX),
        "cancel_requested_at": None,
        "cancel_reason": None,
        "runner": None,
        "probe_kind": "heartbeat",
        "probe_target": None,
        "proof_required": False,
        "follower_count": 0,
        "proof_status": None,
        "acknowledged_at": None,
        "origin": ORIGIN,
        "origin_ref": origin_ref,
        "origin_detail": None,  # serialized by the importer (ledger.importers.openclaw)
    }
    last_ms = row["last_event_at"]
    task = MappedTask(
        origin_ref=origin_ref,
        fields=values,
        detail=detail,
        parent_ref=_blank_to_none(row["parent_task_id"]),
        source_status=status,
        source_runtime=runtime,
        last_event_ms=last_ms if isinstance(last_ms, int) else None,
        times_ms=(created, started, ended, last_event, cleanup),
    )
    if datetimes:
        task.fill_datetimes()
    return task


#: One encoder for every row (json.dumps with options builds a new one per call). The
#: documents are parsed JSON and plain values, never circular: the check is skipped.
_DETAIL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def dump_detail(detail: Mapping[str, Any]) -> str:
    """Deterministic JSON text, so an unchanged row compares equal to what is stored."""
    return _DETAIL_ENCODER.encode(detail)


__all__ = [
    "DELIVERY_MAP",
    "ORIGIN",
    "TIME_COLUMNS",
    "MappedTask",
    "OpenClawSource",
    "OpenClawSourceError",
    "Packed",
    "RowRejected",
    "default_db_path",
    "dump_detail",
    "map_row",
    "reply_address",
    "resolve_openclaw_db",
]
