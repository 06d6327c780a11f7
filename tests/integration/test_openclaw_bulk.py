"""The importer's bulk insert stores exactly what a plain Core insert stores (column
defaults included; columns NULL in every row, in some rows, and times rendered from epoch
milliseconds), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from ledger import Ledger
from ledger.importers.bulk import insert_many, insert_tuples, sqlite_datetime, sqlite_datetime_ms
from ledger.importers.openclaw_source import COLUMNS, TIME_COLUMNS, dump_detail, map_row
from ledger.schema import reply_columns, tasks_table

_MS = timedelta(milliseconds=1)


def _values(task_id: str, run_id: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        task_id="oc-1",
        runtime="cli",
        owner_key="agent:main:main",
        scope_kind="session",
        task="nightly build",
        status="running",
        delivery_status="pending",
        notify_policy="state_changes",
        created_at=1_795_771_709_931,
        started_at=1_795_771_710_000,
        last_event_at=1_795_771_720_000,
        run_id=run_id,
        requester_origin_json='{"channel": "slack", "to": "channel:C1", "threadId": "1.2"}',
        last_notified_event_at=None,
    )
    row.update(changes)
    mapped = map_row(
        row,
        tenant="slack:T1",
        notify_from_tasktrail=True,
        tenant_platform="slack",
        tenant_space="T1",
    )
    values = dict(mapped.values, task_id=task_id, version=1)
    values["origin_detail"] = dump_detail(mapped.detail)
    return values


def test_bulk_insert_stores_what_a_core_insert_stores(ledger: Ledger) -> None:
    with ledger.engine.begin() as conn:
        insert_many(conn, tasks_table, [_values("bulkbulkbulkbulk", "r-bulk")])
        conn.execute(tasks_table.insert(), _values("corecorecorecore", "r-core"))
        rows = {
            r["task_id"]: dict(r)
            for r in conn.execute(select(tasks_table).order_by(tasks_table.c.task_id)).mappings()
        }

    bulk, core = rows["bulkbulkbulkbulk"], rows["corecorecorecore"]
    for row in (bulk, core):
        del row["task_id"], row["run_id"]
    assert bulk == core
    assert bulk["reply_to"] == "slack:T1/C1/1.2"
    assert bulk["created_at"] == datetime(2026, 11, 27, 9, 28, 29, 931000, tzinfo=UTC)


def _stored(ledger: Ledger) -> dict[str, dict[str, Any]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(select(tasks_table).order_by(tasks_table.c.task_id)).mappings()
        return {r["task_id"]: dict(r, task_id=None, run_id=None) for r in rows}


def test_a_page_as_the_importer_inserts_it_stores_what_core_inserts_store(ledger: Ledger) -> None:
    variants = [
        {},
        {"status": "succeeded", "ended_at": 1_795_771_730_000, "error": "exit 1"},
        {"status": "queued", "started_at": None, "requester_origin_json": None},
    ]
    bulk = [_values(f"bulk{i:012d}", f"r-bulk-{i}", **v) for i, v in enumerate(variants)]
    core = [_values(f"core{i:012d}", f"r-core-{i}", **v) for i, v in enumerate(variants)]
    rendered = None
    if ledger.engine.dialect.name == "sqlite":
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        rendered = {
            name: [
                None if v[name] is None else sqlite_datetime_ms((v[name] - epoch) // _MS)
                for v in bulk
            ]
            for name in TIME_COLUMNS
        }
        for v in bulk:
            for name in TIME_COLUMNS:
                del v[name]
    with ledger.engine.begin() as conn:
        insert_many(conn, tasks_table, bulk, rendered=rendered)
        conn.execute(tasks_table.insert(), core)

    stored = _stored(ledger)
    for i in range(len(variants)):
        assert stored[f"bulk{i:012d}"] == stored[f"core{i:012d}"]
    assert stored["bulk000000000001"]["error"] == "exit 1"
    assert stored["bulk000000000002"]["reply_to"] is None


def test_rows_as_tuples_store_what_core_inserts_store_and_bad_rows_are_refused(
    sqlite_url: str,
) -> None:
    ledger = Ledger.connect(sqlite_url)
    variants = [{}, {"status": "succeeded", "ended_at": 1_795_771_730_000, "error": "exit 1"}]
    given = [_values(f"tupl{i:012d}", f"r-tuple-{i}", **v) for i, v in enumerate(variants)]
    core = [_values(f"core{i:012d}", f"r-core-{i}", **v) for i, v in enumerate(variants)]
    names = [n for n in given[0] if n not in TIME_COLUMNS]
    for row in given:  # times as SQLite's text, everything else as it is
        for name in TIME_COLUMNS:
            row[name] = sqlite_datetime(row[name])
        row.update(reply_columns(row["reply_to"]))  # what the column defaults would derive
    names += [*TIME_COLUMNS, "reply_channel", "reply_user"]
    rows = [tuple(row[n] for n in names) for row in given]
    nulls = {n for i, n in enumerate(names) if all(r[i] is None for r in rows)}

    with ledger.engine.begin() as conn:
        insert_tuples(conn, tasks_table, names, rows, nulls=nulls, rendered=TIME_COLUMNS)
        conn.execute(tasks_table.insert(), core)
    stored = _stored(ledger)
    assert stored["tupl000000000000"] == stored["core000000000000"]
    assert stored["tupl000000000001"] == stored["core000000000001"]

    with ledger.engine.begin() as conn:
        with pytest.raises(ValueError, match="is not NULL in every row"):
            insert_tuples(
                conn, tasks_table, names, rows, nulls={*nulls, "error"}, rendered=TIME_COLUMNS
            )
        with pytest.raises(ValueError, match=r"tasks\.created_at is not rendered"):
            insert_tuples(conn, tasks_table, names, rows, nulls=nulls)
        at = names.index("status")
        short = names[:at] + names[at + 1 :]
        no_status = [r[:at] + r[at + 1 :] for r in rows]
        with pytest.raises(ValueError, match=r"no value for tasks\.status"):
            insert_tuples(conn, tasks_table, short, no_status, nulls=nulls, rendered=TIME_COLUMNS)
    assert len(_stored(ledger)) == 4
    ledger.close()
