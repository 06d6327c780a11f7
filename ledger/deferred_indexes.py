"""Secondary indexes set aside during a large bulk load on SQLite, and built again after it.

A first OpenClaw import brings 100k tasks at once into a table with a dozen secondary
indexes. SQLite updating each of them row by row, with keys in random order, costs about
twice what building them once afterwards does (bench/openclaw.py; both are measured in the
module notes of `ledger.importers.openclaw`). So a bulk load that runs on SQLite and brings
at least `DEFER_MIN_ROWS` rows, and at least as many as the table already holds, may drop
the indexes it does not read itself, load, and create them again, one index per
transaction (each holds the write lock for about 0.15 s per 100k tasks).

While they are away, every query still answers correctly, only by scanning more. Nothing
else changes: unique constraints and the indexes the loader reads stay.

Crash safety: the dropped names are recorded in `ledger_state` in the same transaction as
the drops. `restore_indexes()` creates whichever of the recorded indexes are missing, from
the schema's own definitions, and clears the record; every import pass runs it before
anything else and `maintenance --apply` runs it too, so a load that died half-way leaves the
ledger slower only until the next of those.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Collection, Iterator
from datetime import datetime

from sqlalchemy import Connection, Engine, Index, Table, delete, func, select, text

from ledger import db
from ledger.reconcile import read_state, write_state
from ledger.schema import metadata, state_table

log = logging.getLogger(__name__)

#: The smallest load worth it: below this, rebuilding costs more than it saves.
DEFER_MIN_ROWS = 20_000
#: `ledger_state` key holding the JSON list of index names a bulk load dropped.
STATE_KEY = "bulk_load.deferred_indexes"
#: SQLite page cache (KiB) while an index is built: the table is read once per index.
BUILD_CACHE_KIB = 262_144


def _by_name() -> dict[str, Index]:
    return {
        index.name: index
        for table in metadata.tables.values()
        for index in table.indexes
        if isinstance(index.name, str)
    }


def deferrable(table: Table, keep: Collection[str]) -> list[Index]:
    """The table's plain (non-unique) indexes not named in `keep`, in schema order."""
    return [
        index
        for index in table.indexes
        if not index.unique and isinstance(index.name, str) and index.name not in keep
    ]


def worth_deferring(
    engine: Engine, table: Table, rows: int, *, min_rows: int = DEFER_MIN_ROWS
) -> bool:
    """Whether a load of `rows` rows into `table` should set its indexes aside."""
    if engine.dialect.name != "sqlite" or rows < min_rows:
        return False
    with db.read(engine) as conn:
        present = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return rows >= present


def _names(stored: str | None) -> list[str]:
    return list(json.loads(stored)) if stored else []


def _recorded(engine: Engine) -> list[str]:
    with db.read(engine) as conn:
        return _names(read_state(conn, STATE_KEY))


def defer_indexes(engine: Engine, indexes: list[Index], *, now: datetime) -> list[str]:
    """Drop `indexes`, recording their names (with any already recorded) in the same
    transaction. Returns the names dropped."""
    names = [str(index.name) for index in indexes if isinstance(index.name, str)]
    if not names:
        return []
    with db.write(engine) as conn:
        recorded = _names(read_state(conn, STATE_KEY))
        write_state(conn, STATE_KEY, json.dumps(sorted({*recorded, *names})), now)
        for name in names:
            conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
    log.info("bulk load: %d indexes set aside until it ends: %s", len(names), ", ".join(names))
    return names


def restore_indexes(engine: Engine, *, now: datetime, conn: Connection | None = None) -> list[str]:
    """Create the recorded indexes that are missing, one per transaction, then clear the
    record. Returns the names of the indexes it created. `conn`: a writer connection to
    build them on (a bulk load's own, whose cache holds the table), outside a transaction."""
    recorded = _recorded(engine)
    if not recorded:
        return []
    known = _by_name()
    created: list[str] = []
    held = contextlib.nullcontext(conn) if conn is not None else db.writer_connection(engine)
    with held as conn, db.sqlite_cache(conn, BUILD_CACHE_KIB):
        for name in recorded:
            index = known.get(name)
            if index is None:  # a later schema dropped it: nothing to rebuild
                continue
            with conn.begin():
                if conn.dialect.has_index(conn, index.table.name, name):  # type: ignore[union-attr]
                    continue
                index.create(conn)
            created.append(name)
    with db.write(engine) as conn:
        # another load may have set indexes aside meanwhile: keep what is still missing
        still = [
            name
            for name in _names(read_state(conn, STATE_KEY))
            if name in known and not conn.dialect.has_index(conn, known[name].table.name, name)  # type: ignore[union-attr]
        ]
        if still:
            write_state(conn, STATE_KEY, json.dumps(still), now)
        else:
            conn.execute(delete(state_table).where(state_table.c.key == STATE_KEY))
    if created:
        log.info("bulk load: %d indexes built again: %s", len(created), ", ".join(created))
    return created


@contextlib.contextmanager
def indexes_deferred(
    engine: Engine,
    table: Table,
    *,
    rows: int,
    keep: Collection[str],
    now: datetime,
    min_rows: int = DEFER_MIN_ROWS,
    conn: Connection | None = None,
) -> Iterator[list[str]]:
    """Around a load of about `rows` rows into `table`: set aside its deferrable indexes
    when `worth_deferring` says so, and build them again when the block ends, whether it
    ended well or raised (on `conn` when given, see `restore_indexes`). Yields the names
    set aside (empty: nothing deferred)."""
    names: list[str] = []
    if worth_deferring(engine, table, rows, min_rows=min_rows):
        names = defer_indexes(engine, deferrable(table, keep), now=now)
    try:
        yield names
    finally:
        if names:
            restore_indexes(engine, now=now, conn=conn)
