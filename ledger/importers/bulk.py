"""Bulk inserts for importers: Core `insert()` executemany, with the per-value type
processing done once per column instead of once per value on SQLite.

SQLAlchemy's bind processing (our `UTCDateTime` plus SQLite's DATETIME text rendering) costs
more per row than SQLite's own insert when a mirror brings in 100k tasks at once. On SQLite
the statement is compiled by Core once and the rows are handed to the driver's executemany
as tuples whose datetimes are rendered exactly as SQLAlchemy's SQLite DATETIME type renders
them (naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`; `tests/unit/test_openclaw_mapping.py` holds the
two renderings equal). Other databases use the plain Core executemany.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Connection, Table, insert

from ledger.schema import UTCDateTime

#: SQLite page cache (KiB, as a negative cache_size) while a large batch is inserted: the
#: tasks table has many indexes and random ids; the default 2 MB cache thrashes at 100k rows.
BULK_CACHE_KIB = 65_536


def sqlite_datetime(value: datetime | None) -> str | None:
    """A UTC-aware datetime as SQLAlchemy's SQLite DATETIME stores it."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to the ledger; use UTC-aware times")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _converter(column_type: Any) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        return sqlite_datetime
    if isinstance(column_type, Boolean):
        return _sqlite_bool
    return None


class _RowContext:
    """What a Python-side column default (`default=fn(context)`) reads: the row's values."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.current_parameters = row

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


def _default(column: Any) -> Callable[[dict[str, Any]], Any] | None:
    """A function giving a missing column's Python-side default for one row (None: the
    default is of a kind only SQLAlchemy's own execution handles)."""
    default = column.default
    if default is None:
        return lambda _row: None
    if default.is_scalar:
        return lambda _row: default.arg
    if default.is_callable:
        return lambda row: default.arg(_RowContext(row))
    return None


def insert_many(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) in one executemany."""
    if not rows:
        return
    names = list(rows[0])
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), list(rows))
        return
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=names)
    order = compiled.positiontup
    assert order is not None, "SQLite compiles positional parameters"
    present = set(names)
    defaults = {name: _default(table.c[name]) for name in order if name not in present}
    if any(fill is None for fill in defaults.values()):
        conn.execute(insert(table), list(rows))
        return
    if defaults:
        rows = [
            {**row, **{name: fill(row) for name, fill in defaults.items() if fill}} for row in rows
        ]
    pick = operator.itemgetter(*order)
    converters = [
        (i, convert)
        for i, name in enumerate(order)
        if (convert := _converter(table.c[name].type)) is not None
    ]
    params: list[Any] = []
    for row in rows:
        values = list(pick(row)) if len(order) > 1 else [row[order[0]]]
        for i, convert in converters:
            if values[i] is not None:
                values[i] = convert(values[i])
        params.append(tuple(values))
    conn.exec_driver_sql(str(compiled), params)


@contextlib.contextmanager
def bulk_cache(conn: Connection, rows: int) -> Iterator[None]:
    """Raise SQLite's page cache for the duration of a large batch, then restore it."""
    if conn.dialect.name != "sqlite" or rows < 500:
        yield
        return
    previous = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {int(previous or -2000)}")
