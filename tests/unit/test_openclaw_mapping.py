"""Mapping one OpenClaw `task_runs` row onto tasktrail's columns, and the bulk insert's
datetime rendering (which must equal SQLAlchemy's own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import sqlite

from ledger.importers.bulk import sqlite_datetime, sqlite_datetime_ms
from ledger.importers.openclaw_source import (
    COLUMNS,
    TIME_COLUMNS,
    RowRejected,
    map_row,
    reply_address,
    resolve_openclaw_db,
)
from ledger.schema import tasks_table

BASE_MS = 1_795_771_709_931


def source_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        task_id="23b8c1e9-3924-46de-beb1-3b9046685257",
        runtime="subagent",
        owner_key="agent:main:slack:channel:c07abcdef12",
        scope_kind="session",
        task="Research GPU pricing\nand write a table",
        status="succeeded",
        delivery_status="delivered",
        notify_policy="done_only",
        created_at=BASE_MS,
        started_at=BASE_MS + 100,
        ended_at=BASE_MS + 5000,
        last_event_at=BASE_MS + 5000,
        requester_origin_json=None,
        last_notified_event_at=None,
    )
    row.update(changes)
    return row


def mapped(**changes: Any) -> dict[str, Any]:
    return map_row(source_row(**changes), tenant="default", notify_from_tasktrail=False).values


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("status", "exploded", "status 'exploded' is not one of"),
        ("runtime", "media", "runtime 'media' is not one of"),
        ("delivery_status", "lost_in_space", "delivery_status 'lost_in_space'"),
        ("notify_policy", None, "notify_policy is missing"),
        ("scope_kind", "galaxy", "scope_kind 'galaxy'"),
        ("owner_key", None, "owner_key is missing"),
        ("task", None, "task is missing"),
        ("task_id", "", "task_id is missing"),
        ("created_at", None, "created_at is missing"),
        ("created_at", "yesterday", "created_at 'yesterday' is not an epoch-milliseconds"),
        ("ended_at", 10**20, "ended_at 100000000000000000000 is out of range"),
        ("created_at", -62_135_596_800_001, "created_at -62135596800001 is out of range"),
        ("cleanup_after", 253_402_300_800_000, "cleanup_after 253402300800000 is out of range"),
        ("started_at", 1.5e12, "started_at 1500000000000.0 is not an epoch-milliseconds"),
    ],
)
def test_rows_openclaw_would_reject_are_refused_with_a_reason(
    column: str, value: Any, reason: str
) -> None:
    with pytest.raises(RowRejected, match=reason):
        mapped(**{column: value})


def test_times_are_normalized_so_created_started_ended_never_go_backwards() -> None:
    values = mapped(started_at=BASE_MS - 50, ended_at=BASE_MS - 100, last_event_at=None)

    created = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=BASE_MS)
    assert values["created_at"] == created
    assert values["started_at"] == created
    assert values["ended_at"] == created
    assert values["last_event_at"] == created


def test_times_as_far_as_a_datetime_reaches_are_accepted() -> None:
    values = mapped(created_at=-62_135_596_800_000, started_at=None, ended_at=None)
    assert values["created_at"] == datetime(1, 1, 1, tzinfo=UTC)
    values = mapped(cleanup_after=253_402_300_799_999)
    assert values["cleanup_after"] == datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def test_times_left_out_of_the_values_are_filled_in_as_the_same_datetimes() -> None:
    row = source_row(started_at=BASE_MS - 50, cleanup_after=BASE_MS + 86_400_000)
    full = map_row(row, tenant="default", notify_from_tasktrail=False)
    lazy = map_row(row, tenant="default", notify_from_tasktrail=False, datetimes=False)

    assert not set(TIME_COLUMNS) & set(lazy.values)
    lazy.fill_datetimes()
    assert lazy.values == full.values
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [
        epoch + timedelta(milliseconds=ms) if ms is not None else None for ms in lazy.times_ms
    ] == [full.values[name] for name in TIME_COLUMNS]


def test_a_missing_label_falls_back_to_the_first_line_of_the_brief() -> None:
    assert mapped(label=None)["label"] == "Research GPU pricing"
    assert mapped(label="Calendar sync")["label"] == "Calendar sync"


def test_system_scoped_rows_have_no_requester_and_session_rows_fall_back_to_the_owner() -> None:
    assert mapped(scope_kind="system", owner_key="")["requester_session_key"] is None
    assert (
        mapped(requester_session_key=None)["requester_session_key"]
        == "agent:main:slack:channel:c07abcdef12"
    )


def test_the_notify_policy_is_silent_unless_tasktrail_notifies() -> None:
    row = source_row(status="running", ended_at=None)
    quiet = map_row(row, tenant="default", notify_from_tasktrail=False)
    loud = map_row(row, tenant="default", notify_from_tasktrail=True)

    assert quiet.values["notify_policy"] == "silent"
    assert quiet.detail["notify_policy"] == "done_only"
    assert loud.values["notify_policy"] == "done_only"


@pytest.mark.parametrize(
    ("origin", "tenant", "expected"),
    [
        (
            {"channel": "slack", "to": "channel:C07ABCDEF12", "threadId": "1767225600.000100"},
            ("slack", "T1"),
            "slack:T1/C07ABCDEF12/1767225600.000100",
        ),
        (
            {"channel": "slack", "to": "channel:C07ABCDEF12", "teamId": "T9"},
            (None, None),
            "slack:T9/C07ABCDEF12",
        ),
        (
            {"channel": "discord", "to": "channel:118765", "guildId": "42"},
            (None, None),
            "discord:42/118765",
        ),
        ({"channel": "discord", "to": "channel:118765"}, ("discord", "42"), "discord:42/118765"),
        ({"channel": "discord", "to": "channel:118765"}, ("slack", "T1"), None),
        ({"channel": "slack", "to": "user:U123"}, ("slack", "T1"), None),
        ({"channel": "slack", "to": "channel:not valid"}, ("slack", "T1"), None),
        ({"channel": "telegram", "to": "telegram:5012345678"}, ("slack", "T1"), None),
        ("not json", ("slack", "T1"), None),
    ],
)
def test_requester_origins_become_reply_addresses_only_when_the_ids_fit(
    origin: Any, tenant: tuple[str | None, str | None], expected: str | None
) -> None:
    assert reply_address(origin, *tenant) == expected


def test_the_default_database_location_follows_openclaw_state_dir(tmp_path: Path) -> None:
    env = {"OPENCLAW_STATE_DIR": str(tmp_path)}
    assert resolve_openclaw_db(env=env) == tmp_path / "state" / "openclaw.sqlite"
    assert resolve_openclaw_db(env={}) == Path.home() / ".openclaw/state/openclaw.sqlite"
    assert resolve_openclaw_db(state_dir=tmp_path) == tmp_path / "state" / "openclaw.sqlite"
    assert resolve_openclaw_db(db_path=tmp_path / "x.sqlite") == tmp_path / "x.sqlite"


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 27, 9, 28, 29, 931000, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        None,
    ],
)
def test_bulk_datetimes_render_exactly_as_sqlalchemy_renders_them(value: datetime | None) -> None:
    dialect = sqlite.dialect()
    column_type = tasks_table.c.created_at.type
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    assert sqlite_datetime(value) == processor(value)


@pytest.mark.parametrize(
    "ms",
    [
        1_795_771_709_931,
        1_795_771_709_000,
        1_795_771_719_999,  # the same minute as the first two
        0,
        -1,
        -60_001,
        -62_135_596_800_000,  # 0001-01-01
        253_402_300_799_999,  # 9999-12-31 23:59:59.999
        None,
    ],
)
def test_bulk_times_rendered_from_epoch_ms_equal_the_datetimes_rendering(ms: int | None) -> None:
    when = None if ms is None else datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert sqlite_datetime_ms(ms) == sqlite_datetime(when)
