"""Bulk inserts for importers: Core `insert()` executemany, with the per-value type
processing done once per column instead of once per value on SQLite.

SQLAlchemy's bind processing (our `UTCDateTime` plus SQLite's DATETIME text rendering) costs
more per row than SQLite's own insert when a mirror brings in 100k tasks at once. On SQLite
the statement is compiled by Core once and the rows are handed to the driver's executemany
as tuples whose datetimes are rendered exactly as SQLAlchemy's SQLite DATETIME type renders
them (naive UTC, `YYYY-MM-DD HH:MM:SS.ffffff`; `tests/unit/test_openclaw_mapping.py` holds the
renderings equal, from datetimes and from epoch milliseconds); columns NULL in every row are
NULL literals. Other databases use the plain Core executemany.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, Connection, Dialect, Table, insert, null

from ledger import db
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


_NAIVE_EPOCH = datetime(1970, 1, 1)
#: "YYYY-MM-DD HH:MM:" by minute since the epoch: an import's times fall in comparatively few
#: minutes. The seconds and milliseconds come from two small tables: formatting them costs
#: more than the rest of the rendering together.
_minute_prefixes: dict[int, str] = {}
_SECONDS = [f"{second:02d}." for second in range(60)]
_MILLISECONDS = [f"{milli:03d}000" for milli in range(1000)]


def sqlite_datetime_ms(ms: int | None) -> str | None:
    """`sqlite_datetime` of the UTC time `ms` epoch milliseconds, without building the
    datetime (a bulk import renders several per row)."""
    if ms is None:
        return None
    minute, rest = divmod(ms, 60_000)
    prefix = _minute_prefixes.get(minute)
    if prefix is None:
        if len(_minute_prefixes) >= 100_000:
            _minute_prefixes.clear()
        when = _NAIVE_EPOCH + timedelta(minutes=minute)
        prefix = _minute_prefixes[minute] = when.isoformat(" ")[:17]
    second, milli = divmod(rest, 1000)
    return f"{prefix}{_SECONDS[second]}{_MILLISECONDS[milli]}"


def _sqlite_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _converter(column_type: Any) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        return sqlite_datetime
    if isinstance(column_type, Boolean):
        return _sqlite_bool
    return None


def _converted(
    values: tuple[Any, ...], convert: Callable[[Any], Any]
) -> tuple[Any, ...] | list[Any]:
    """One column's values, converted; a column holding a single value throughout (NULL in
    every row, or the events' `at`) is converted once."""
    first = values[0]
    if values.count(first) == len(values):
        return (convert(first) if first is not None else None,) * len(values)
    return [convert(v) if v is not None else None for v in values]


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


@functools.lru_cache(maxsize=64)
def _compiled(dialect: Dialect, table: Table, names: tuple[str, ...], nulls: frozenset[str]) -> Any:
    """The INSERT of `names` with `nulls` as NULL literals, compiled once per combination (an
    import compiles the same two statements for every page)."""
    statement = insert(table).values(dict.fromkeys(nulls, null())) if nulls else insert(table)
    return statement.compile(dialect=dialect, column_keys=[n for n in names if n not in nulls])


def insert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    rendered: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Insert `rows` (dicts with the same keys) in one executemany. On SQLite, `rendered`
    may give columns already as the driver takes them (one value per row, in order), used
    instead of the rows' values: the importer renders its times from epoch milliseconds."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        assert not rendered, "rendered columns are SQLite's"
        conn.execute(insert(table), list(rows))
        return
    rendered = rendered or {}
    names = (*rows[0], *(name for name in rendered if name not in rows[0]))
    order = _compiled(conn.dialect, table, names, frozenset()).positiontup
    assert order is not None, "SQLite compiles positional parameters"
    present = set(names)
    defaults = {name: _default(table.c[name]) for name in order if name not in present}
    if any(fill is None for fill in defaults.values()):
        assert not rendered, "a column default SQLAlchemy must run: give datetimes instead"
        conn.execute(insert(table), list(rows))
        return
    # Column by column: Python touches only the values that need converting. Each row's
    # values are taken as one tuple (itemgetter, in C) and turned into columns by zip(*).
    given = [name for name in order if name in present and name not in rendered]
    columns: dict[str, Sequence[Any]] = {}
    if len(given) == 1:
        columns[given[0]] = [row[given[0]] for row in rows]
    elif given:
        transposed = zip(*map(operator.itemgetter(*given), rows), strict=True)
        columns.update(zip(given, transposed, strict=True))
    for name, fill in defaults.items():
        assert fill is not None
        columns[name] = [fill(row) for row in rows]
    for name in order:
        convert = _converter(table.c[name].type)
        if convert is not None and name not in rendered:
            columns[name] = _converted(tuple(columns[name]), convert)
    for name, values in rendered.items():
        assert len(values) == len(rows)
        columns[name] = values
    # A column that is NULL in every row is written as a NULL literal, not bound: Python
    # 3.11's sqlite3 binds None through its adapter protocol, raising and clearing an
    # AttributeError per value, and a mirrored task has a dozen columns that are always NULL.
    nulls = frozenset(
        name
        for name in order
        if columns[name][0] is None and columns[name].count(None) == len(rows)
    )
    compiled = _compiled(conn.dialect, table, names, nulls)
    bound = compiled.positiontup
    assert bound is not None
    params = list(zip(*(columns[name] for name in bound), strict=True))
    conn.exec_driver_sql(str(compiled), params)


def insert_tuples(
    conn: Connection,
    table: Table,
    names: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    nulls: Collection[str] = (),
    rendered: Collection[str] = (),
) -> None:
    """SQLite: insert `rows`, tuples of values in `names` order already as the driver takes
    them, in one executemany; nothing is looked up or converted per value. `nulls`: names
    NULL in every row, written as NULL literals (see `insert_many`); `rendered`: the
    datetime columns given as SQLite's text. Every other column of the table must be
    nullable without a Python-side default (or be its autoincrement key), and no datetime
    may come unrendered."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        raise ValueError("insert_tuples writes SQLite's own values; use insert_many")
    given = set(names)
    serial = getattr(table, "autoincrement_column", None)
    for column in table.columns:
        missing = column.key not in given and column is not serial
        if missing and (
            column.default is not None or (not column.nullable and column.server_default is None)
        ):
            raise ValueError(f"insert_tuples: no value for {table.name}.{column.key}")
        if (
            column.key in given
            and isinstance(column.type, UTCDateTime)
            and column.key not in rendered
            and column.key not in nulls
        ):
            raise ValueError(f"insert_tuples: {table.name}.{column.key} is not rendered")
    position = {name: i for i, name in enumerate(names)}
    for name in nulls:  # a value in a NULL-literal column would be lost without a word
        at = position[name]
        if any(row[at] is not None for row in rows):
            raise ValueError(f"insert_tuples: {table.name}.{name} is not NULL in every row")
    compiled = _compiled(conn.dialect, table, tuple(names), frozenset(nulls))
    bound = compiled.positiontup
    assert bound is not None, "SQLite compiles positional parameters"
    if list(bound) == list(names):
        params: Sequence[tuple[Any, ...]] = rows
    else:  # each row's bound values in the statement's order, in one C call a row
        pick = operator.itemgetter(*(position[name] for name in bound))
        params = list(map(pick, rows)) if len(bound) > 1 else [(pick(row),) for row in rows]
    conn.exec_driver_sql(str(compiled), params)


def bulk_cache(conn: Connection, rows: int) -> contextlib.AbstractContextManager[None]:
    """Raise SQLite's page cache for the duration of a large batch (see `db.sqlite_cache`)."""
    if rows < 500:
        return contextlib.nullcontext()
    return db.sqlite_cache(conn, BULK_CACHE_KIB)
