"""A bulk load (a pass of `bulk_min_rows` rows or more): pages read by a child process and,
on SQLite, the indexes the import does not read set aside and built again at the end. It
must store exactly what an ordinary pass stores, leave every index of the schema in place
however it ends, and leave no process behind."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from ledger import Ledger
from ledger.deferred_indexes import STATE_KEY, defer_indexes, deferrable
from ledger.importers import openclaw as importer
from ledger.importers.openclaw import IMPORT_READS, import_openclaw
from ledger.importers.openclaw_pages import MapOptions, ProcessPages
from ledger.importers.openclaw_source import OpenClawSource, OpenClawSourceError
from ledger.schema import events_table, state_table, tasks_table
from tests.conftest import T0
from tests.integration.openclaw_helpers import (
    copy_sample,
    mirror_snapshot,
    source_query,
    source_write,
)

OPTIONS = MapOptions("default", False, None, None, sqlite_times=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "openclaw")


def _rows(ledger: Ledger, tenant: str) -> dict[str, dict[str, Any]]:
    """Every column of the tenant's mirrored tasks by OpenClaw id, tasktrail's own ids
    replaced by the OpenClaw ids they stand for."""
    with ledger.engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(tasks_table).where(tasks_table.c.tenant == tenant)
            ).mappings()
        ]
        kinds = conn.execute(
            select(events_table.c.kind, events_table.c.summary)
            .join(tasks_table, tasks_table.c.task_id == events_table.c.task_id)
            .where(tasks_table.c.tenant == tenant)
            .order_by(events_table.c.summary)
        ).all()
    refs = {r["task_id"]: r["origin_ref"] for r in rows}
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        row["parent_task_id"] = refs.get(row["parent_task_id"])
        del row["task_id"], row["tenant"]
        found[row["origin_ref"]] = row
    found["(events)"] = {"events": [tuple(k) for k in kinds]}
    return found


def _task_indexes(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'"
        else:
            query = "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'"
        return {name for (name,) in conn.execute(text(query))}


def _marker(engine: Engine) -> object:
    with engine.connect() as conn:
        return conn.execute(
            select(state_table.c.value).where(state_table.c.key == STATE_KEY)
        ).scalar_one_or_none()


def _schema_indexes() -> set[str]:
    return {str(index.name) for index in tasks_table.indexes}


def test_a_bulk_load_stores_exactly_what_an_ordinary_pass_stores(
    ledger: Ledger, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # links to parents in a later page (linked at the end), in an earlier page, and to none
    ids = [
        ref
        for (ref,) in source_query(
            source, "SELECT task_id FROM task_runs ORDER BY last_event_at, task_id"
        )
    ]
    links = [(ids[-1 - i], ids[i]) for i in range(10)]
    links += [(ids[100 + i], ids[600 + i]) for i in range(10)]
    links.append(("gone-from-openclaw", ids[700]))
    for parent, child in links:
        source_write(
            source, "UPDATE task_runs SET parent_task_id = ? WHERE task_id = ?", (parent, child)
        )
    # a run id some other task in each tenant holds already
    (taken,) = source_query(source, "SELECT run_id FROM task_runs WHERE task_id = ?", (ids[42],))[0]
    for tenant in ("ordinary", "bulk"):
        ledger.create(runtime="cli", label="holds the run id", run_id=taken, tenant=tenant)
    packed_pages: list[int] = []
    insert_packed = importer._Importer._insert_packed

    def spy(self: Any, conn: Any, new: Any, nulls: Any) -> None:
        packed_pages.append(len(new))
        insert_packed(self, conn, new, nulls)

    monkeypatch.setattr(importer._Importer, "_insert_packed", spy)

    ordinary = ledger.import_openclaw(source, tenant="ordinary")
    assert packed_pages == []  # an ordinary pass maps on a thread and inserts from dicts
    bulk = import_openclaw(
        ledger.engine, ledger.config, source, now=T0, tenant="bulk", bulk_min_rows=1
    )

    # on SQLite the pages from the reading process go to the driver as tuples
    assert sum(packed_pages) == (1000 if ledger.engine.dialect.name == "sqlite" else 0)
    stored = _rows(ledger, "bulk")
    assert stored == _rows(ledger, "ordinary")
    linked = {
        ref: row["parent_task_id"] for ref, row in stored.items() if row.get("parent_task_id")
    }
    assert linked == {child: parent for parent, child in links if parent in ids}
    assert stored[ids[42]]["run_id"] is None
    assert json.loads(stored[ids[42]]["origin_detail"])["run_id"] == taken

    assert _rows(ledger, "bulk") == _rows(ledger, "ordinary")
    assert mirror_snapshot(ledger, "bulk") == mirror_snapshot(ledger, "ordinary")
    (total,) = source_query(source, "SELECT count(*) FROM task_runs")[0]
    assert bulk.created == ordinary.created == total
    assert (bulk.rows_read, bulk.by_status, bulk.by_runtime, bulk.watermark) == (
        ordinary.rows_read,
        ordinary.by_status,
        ordinary.by_runtime,
        ordinary.watermark,
    )
    assert multiprocessing.active_children() == []


def test_a_bulk_load_in_small_pages_counts_and_skips_what_one_page_does(
    ledger: Ledger, source: Path
) -> None:
    # two rows OpenClaw's reader would reject, in different pages
    source_write(
        source,
        "UPDATE task_runs SET status = 'exploded' WHERE task_id IN "
        "(SELECT task_id FROM task_runs ORDER BY last_event_at LIMIT 1)",
    )
    source_write(
        source,
        "UPDATE task_runs SET runtime = 'teleport' WHERE task_id IN "
        "(SELECT task_id FROM task_runs ORDER BY last_event_at DESC LIMIT 1)",
    )

    whole = ledger.import_openclaw(source, tenant="whole")
    paged = import_openclaw(
        ledger.engine,
        ledger.config,
        source,
        now=T0,
        tenant="paged",
        page_size=37,
        bulk_min_rows=1,
    )

    assert paged.skipped == whole.skipped == 2
    assert sorted(s.reason for s in paged.skipped_rows) == sorted(
        s.reason for s in whole.skipped_rows
    )
    assert (paged.rows_read, paged.created, paged.watermark) == (
        whole.rows_read,
        whole.created,
        whole.watermark,
    )
    assert mirror_snapshot(ledger, "paged") == mirror_snapshot(ledger, "whole")


def test_on_sqlite_the_load_sets_indexes_aside_and_builds_them_all_again(
    sqlite_url: str, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.connect(sqlite_url)
    present_while_loading: list[set[str]] = []
    write_page = importer._Importer.write_page

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        present_while_loading.append(_task_indexes(ledger.engine))
        write_page(self, *args, **kwargs)

    monkeypatch.setattr(importer._Importer, "write_page", spy)
    before = _task_indexes(ledger.engine)

    import_openclaw(ledger.engine, ledger.config, source, now=T0, bulk_min_rows=100)

    set_aside = {str(index.name) for index in deferrable(tasks_table, IMPORT_READS)}
    assert set_aside and set_aside <= _schema_indexes()
    assert present_while_loading and all(
        seen == before - set_aside for seen in present_while_loading
    )
    assert _task_indexes(ledger.engine) == before
    assert _schema_indexes() <= before
    assert _marker(ledger.engine) is None
    # the planner uses them again
    with ledger.engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT task_id FROM tasks WHERE status = 'running' "
                "ORDER BY created_at DESC LIMIT 50"
            )
        ).all()
    assert "ix_tasks_status_created" in str(plan)
    ledger.close()


def test_an_ordinary_pass_or_a_large_load_into_a_larger_ledger_keeps_its_indexes(
    sqlite_url: str, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.connect(sqlite_url)
    calls: list[object] = []
    monkeypatch.setattr(
        "ledger.deferred_indexes.defer_indexes", lambda *a, **k: calls.append(a) or []
    )

    ledger.import_openclaw(source, tenant="first")  # 1,000 rows: below the default
    ledger.import_openclaw(source, tenant="second")
    # a bulk pass (its pages read by a child process) of 1,000 rows into 2,000
    third = import_openclaw(
        ledger.engine, ledger.config, source, now=T0, tenant="third", bulk_min_rows=1
    )

    assert third.created == 1000
    assert calls == []
    assert _task_indexes(ledger.engine) >= _schema_indexes()
    ledger.close()


def test_a_load_that_fails_half_way_still_builds_its_indexes_and_stops_its_reader(
    sqlite_url: str, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger.connect(sqlite_url)
    before = _task_indexes(ledger.engine)
    pages = 0
    write_page = importer._Importer.write_page

    def failing(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise RuntimeError("disk on fire")
        write_page(self, *args, **kwargs)

    monkeypatch.setattr(importer._Importer, "write_page", failing)

    with pytest.raises(RuntimeError, match="disk on fire"):
        import_openclaw(
            ledger.engine, ledger.config, source, now=T0, page_size=100, bulk_min_rows=100
        )

    assert _task_indexes(ledger.engine) == before
    assert _marker(ledger.engine) is None
    assert multiprocessing.active_children() == []
    with ledger.engine.connect() as conn:  # the first page stays, whole
        tasks = conn.execute(text("SELECT count(*) FROM tasks")).scalar_one()
        events = conn.execute(text("SELECT count(*) FROM task_events")).scalar_one()
    assert tasks == events == 100
    ledger.close()


def test_indexes_a_dead_load_left_aside_come_back_with_the_next_pass(
    sqlite_url: str, source: Path
) -> None:
    ledger = Ledger.connect(sqlite_url)
    before = _task_indexes(ledger.engine)
    # what a load killed between its drops and its rebuild leaves behind
    dropped = defer_indexes(ledger.engine, deferrable(tasks_table, IMPORT_READS), now=T0)
    assert dropped and _task_indexes(ledger.engine) == before - set(dropped)
    assert _marker(ledger.engine) is not None

    ledger.maintenance(apply=False)  # a preview writes nothing
    assert _task_indexes(ledger.engine) == before - set(dropped)

    report = ledger.import_openclaw(source)  # an ordinary pass: no bulk load of its own

    assert report.created == 1000
    assert _task_indexes(ledger.engine) == before
    assert _marker(ledger.engine) is None
    ledger.close()


def test_maintenance_apply_builds_indexes_a_dead_load_left_aside(sqlite_url: str) -> None:
    ledger = Ledger.connect(sqlite_url)
    before = _task_indexes(ledger.engine)
    defer_indexes(ledger.engine, deferrable(tasks_table, IMPORT_READS), now=T0)

    ledger.maintenance(apply=True)

    assert _task_indexes(ledger.engine) == before
    assert _marker(ledger.engine) is None
    ledger.close()


def test_the_reading_process_reports_a_source_it_cannot_open(source: Path) -> None:
    with OpenClawSource(source) as opened:
        source.unlink()  # gone before the child opens it
        pages = ProcessPages(opened, None, 100, OPTIONS)
        try:
            with pytest.raises(OpenClawSourceError, match="not found"):
                list(pages)
        finally:
            pages.close()
    assert multiprocessing.active_children() == []


def test_a_reader_stopped_after_one_page_leaves_no_process(source: Path) -> None:
    with OpenClawSource(source) as opened:
        pages = ProcessPages(opened, None, 10, OPTIONS)
        first = next(iter(pages))
        pages.close()

    assert (first.rows_read, len(first.tasks)) == (10, 10)
    assert all(t.sqlite_times is not None for t in first.tasks)
    assert multiprocessing.active_children() == []


def test_a_bulk_load_beside_other_threads_spawns_its_reader_and_stores_the_same(
    sqlite_url: str, source: Path
) -> None:
    """`serve` runs the mirror beside its other threads: the reader is spawned, not forked."""
    ledger = Ledger.connect(sqlite_url)
    ordinary = ledger.import_openclaw(source, tenant="ordinary")
    started: list[str] = []
    original = multiprocessing.get_context

    def spy(method: str | None = None) -> Any:
        started.append(str(method))
        return original(method)

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, name="scheduler")  # as serve has
    other.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(multiprocessing, "get_context", spy)
            bulk = import_openclaw(
                ledger.engine, ledger.config, source, now=T0, tenant="bulk", bulk_min_rows=1
            )
    finally:
        stop.set()
        other.join()

    assert started == ["spawn"]
    assert bulk.created == ordinary.created == 1000
    assert _rows(ledger, "bulk") == _rows(ledger, "ordinary")
    assert multiprocessing.active_children() == []
    ledger.close()
