"""Per-event statements run straight on the driver's cursor.

The ledger's hottest statements (read a task by id, the compare-and-set UPDATE, the event and
task INSERTs) are still Core statements: SQLAlchemy compiles each once per dialect and set of
columns, and the column types' own bind and result processors convert values both ways. What
this module skips is the per-call machinery of `Connection.execute` — execution context,
event dispatch, result proxy — which measured about 80 µs a statement on this machine, more
than SQLite needs to run one (bench/ledger.py reports the Ledger/raw ratio this buys).

The statements run on the caller's `Connection`, inside its transaction; driver errors come
out wrapped as SQLAlchemy's `DBAPIError` subclasses (a lost connection also invalidates the
pooled connection), so callers and `ledger.db` handle them exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Insert, Select, Update
from sqlalchemy.sql.elements import BindParameter

_Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    #: (bind name, key in the caller's params or None for a literal, literal value, processor)
    binds: tuple[tuple[str, str | None, Any, _Processor | None], ...]
    positional: bool
    #: (result key, processor) per selected / returned column; empty for plain DML
    columns: tuple[tuple[str, _Processor | None], ...]


class Prepared:
    """A Core SELECT / INSERT / UPDATE compiled once per dialect and column set."""

    def __init__(self, statement: Select[Any] | Insert | Update) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}

    def _plan(self, dialect: Dialect, keys: Sequence[str]) -> _Plan:
        cache_key = (dialect.name, frozenset(keys))
        plan = self._plans.get(cache_key)
        if plan is None:
            plan = self._plans[cache_key] = self._compile(dialect, keys)
        return plan

    def _compile(self, dialect: Dialect, keys: Sequence[str]) -> _Plan:
        statement = self.statement
        if isinstance(statement, Insert):
            table = statement.table
            serial = getattr(table, "autoincrement_column", None)
            skipped = [
                c.key
                for c in table.columns
                if c.key not in keys
                and c is not serial
                and (c.default is not None or (not c.nullable and c.server_default is None))
            ]
            if skipped:  # SQLAlchemy would fill these in; this path does not
                raise ValueError(f"INSERT INTO {table} needs values for {sorted(skipped)}")
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        escaped = getattr(compiled, "escaped_bind_names", None)
        if escaped:
            raise ValueError(f"bind names need escaping on {dialect.name}: {sorted(escaped)}")
        binds_by_name: Mapping[str, BindParameter[Any]] = compiled.binds
        names = list(compiled.positiontup or []) if dialect.positional else list(binds_by_name)
        binds: list[tuple[str, str | None, Any, _Processor | None]] = []
        for name in names:
            bind = binds_by_name[name]
            if bind.expanding:  # IN (...) lists are rendered at execution time by SQLAlchemy
                raise ValueError(f"{name}: expanding parameters are not supported here")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required or bind.key in keys:
                # A value from the caller: a named bindparam, or a column's SET/VALUES slot.
                binds.append((name, bind.key, None, processor))
            else:  # a literal bound into the statement itself
                binds.append((name, None, bind.effective_value, processor))
        columns = tuple(
            (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in statement.exported_columns  # selected or RETURNING columns
        )
        return _Plan(compiled.string, tuple(binds), dialect.positional, columns)

    def _run(self, conn: Connection, params: Mapping[str, Any]) -> tuple[_Plan, Any]:
        plan = self._plan(conn.dialect, list(params))
        values: dict[str, Any] | list[Any]
        if plan.positional:
            values = []
            for _name, key, literal, processor in plan.binds:
                value = params[key] if key is not None else literal
                values.append(processor(value) if processor is not None else value)
        else:
            values = {}
            for name, key, literal, processor in plan.binds:
                value = params[key] if key is not None else literal
                values[name] = processor(value) if processor is not None else value
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(plan.sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise wrap_driver_error(conn, plan.sql, values, error) from error
        return plan, cursor

    def rowcount(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run an INSERT / UPDATE; the number of rows it changed."""
        _plan, cursor = self._run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run a SELECT (or DML with RETURNING); its first row as a dict, or None."""
        plan, cursor = self._run(conn, params)
        try:
            raw = cursor.fetchone()
        except conn.dialect.loaded_dbapi.Error as error:
            raise wrap_driver_error(conn, plan.sql, params, error) from error
        finally:
            cursor.close()
        if raw is None:
            return None
        return {
            key: processor(value) if processor is not None else value
            for (key, processor), value in zip(plan.columns, raw, strict=True)
        }


def wrap_driver_error(conn: Connection, sql: str, params: Any, error: Exception) -> exc.DBAPIError:
    """The driver error as SQLAlchemy would raise it; a lost connection is invalidated."""
    dialect = conn.dialect
    disconnect = dialect.is_disconnect(error, conn.connection.dbapi_connection, None)  # type: ignore[arg-type]
    if disconnect:
        conn.invalidate(error)
    wrapped = exc.DBAPIError.instance(
        sql,
        params,
        error,
        dialect.loaded_dbapi.Error,
        dialect=dialect,
        connection_invalidated=disconnect,
    )
    assert isinstance(wrapped, exc.DBAPIError)
    return wrapped
