"""Engines, transactions and schema checks for SQLite and PostgreSQL.

SQLite runs in WAL mode with `synchronous` from config, a busy timeout, foreign keys on, and
write transactions that take the write lock up front (`BEGIN IMMEDIATE`), so concurrent
writers queue on the busy handler instead of failing with "database is locked" mid-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    String,
    any_,
    bindparam,
    create_engine,
    event,
    exc,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.engine import make_url

from ledger.config import LedgerConfig
from ledger.exceptions import DatabaseBusy, InvalidInput, SchemaMismatch
from ledger.prepared import wrap_driver_error
from ledger.schema import SCHEMA_REVISION

_WRITE = "tasktrail_write"
#: Key of the PostgreSQL advisory lock taken while migrating (crc32 of "tasktrail:migrate").
MIGRATE_LOCK_KEY = 0x7A5C_0001


def default_database_url() -> str:
    """SQLite file in the user data directory (created on first use)."""
    import platformdirs

    directory = Path(platformdirs.user_data_dir("tasktrail", appauthor=False))
    return f"sqlite:///{directory / 'ledger.db'}"


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as shorthands for psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _prepare_sqlite_file(database: str) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # The ledger holds reply addresses and briefs: readable by its owner only.
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def make_engine(url: str | None = None, config: LedgerConfig | None = None) -> Engine:
    config = config or LedgerConfig()
    url = normalize_url(url or default_database_url())
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise InvalidInput("database_url", f"{url!r} is not a database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, parsed.database or "", config)
    if backend == "postgresql":
        # No pre-ping: it is one more round trip on every transaction. A connection that died
        # (server restart) fails once with a disconnect error, SQLAlchemy invalidates the
        # pool, the caller sees DatabaseBusy and the next transaction reconnects.
        return create_engine(
            url,
            pool_recycle=1800,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": 10, "application_name": "tasktrail"},
        )
    raise InvalidInput(
        "database_url", f"unsupported database {backend!r}; use sqlite or postgresql"
    )


def _sqlite_engine(url: str, database: str, config: LedgerConfig) -> Engine:
    synchronous = config.sqlite_synchronous.lower()
    if synchronous not in ("normal", "full"):
        raise InvalidInput("sqlite_synchronous", f"{synchronous!r} is not normal or full")
    _prepare_sqlite_file(database)
    busy_seconds = config.sqlite_busy_timeout.total_seconds()
    engine = create_engine(
        url,
        connect_args={"timeout": busy_seconds, "check_same_thread": False},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module: we issue BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: this runs for every transaction, and going through
        # exec_driver_sql costs as much as one of the ledger's own statements.
        dbapi_connection = conn.connection.dbapi_connection
        if conn.get_execution_options().get(_WRITE):
            _begin_immediate(dbapi_connection, busy_seconds)
        else:
            dbapi_connection.execute("BEGIN")  # type: ignore[union-attr]

    return engine


#: How often a writer waiting for SQLite's write lock tries again (seconds, doubling up to
#: the second value).
_LOCK_POLL = (0.0005, 0.004)


def _begin_immediate(dbapi_connection: Any, busy_seconds: float) -> None:
    """`BEGIN IMMEDIATE`, polling for the write lock every few milliseconds.

    SQLite's own busy handler sleeps in growing steps of up to 100 ms, so a writer queued
    behind a batch of maintenance could sleep on long after the lock was free; polling here
    lets it in within a few milliseconds of the release. The handler is off only for the
    BEGIN; statements after it keep the connection's normal busy timeout."""
    deadline = time.monotonic() + busy_seconds
    delay, longest = _LOCK_POLL
    dbapi_connection.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                message = str(error)
                if "locked" not in message and "busy" not in message:
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, longest)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")


def _translate(error: exc.DBAPIError) -> DatabaseBusy | None:
    message = str(error.orig) if error.orig is not None else str(error)
    lowered = message.lower()
    if isinstance(error, exc.OperationalError) and (
        "locked" in lowered
        or "busy" in lowered
        or "connection" in lowered
        or "could not connect" in lowered
        or "server closed" in lowered
        or "unable to open" in lowered
    ):
        return DatabaseBusy(message.splitlines()[0])
    return None


_WRITERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _writer(engine: Engine) -> Engine:
    """The engine with the write option set once (sharing its pool), rather than setting it
    on every connection: this runs for every write transaction."""
    writer = _WRITERS.get(engine)
    if writer is None:
        writer = _WRITERS[engine] = engine.execution_options(**{_WRITE: True})
    return writer


class _Batches(threading.local):
    def __init__(self) -> None:
        self.open: dict[Engine, Connection] = {}
        self.depth = 0


_BATCHES = _Batches()


@contextlib.contextmanager
def batch(engine: Engine) -> Iterator[Connection]:
    """One write transaction for several operations on this thread: each `write()` inside
    it becomes a SAVEPOINT of it (an operation that raises undoes only its own changes),
    and everything commits together on exit — one commit for many small writes."""
    if engine in _BATCHES.open:
        raise RuntimeError("batch() is already open on this thread")
    with write(engine) as conn:
        _BATCHES.open[engine] = conn
        try:
            yield conn
        finally:
            del _BATCHES.open[engine]


@contextlib.contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A SAVEPOINT issued on the driver: SQLAlchemy's `begin_nested()` costs two full
    statement executions per operation, as much as the operation's own writes. Nothing
    inside a batch uses SQLAlchemy's nested-transaction API, so its bookkeeping is not
    needed."""
    dbapi_connection: Any = conn.connection.dbapi_connection
    depth = _BATCHES.depth = _BATCHES.depth + 1
    name = f"tt_op_{depth}"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            cursor.execute(f"RELEASE SAVEPOINT {name}")
            raise
        cursor.execute(f"RELEASE SAVEPOINT {name}")
    except conn.dialect.loaded_dbapi.Error as error:
        raise wrap_driver_error(conn, f"SAVEPOINT {name}", None, error) from error
    finally:
        _BATCHES.depth -= 1
        cursor.close()


@contextlib.contextmanager
def _busy_translated() -> Iterator[None]:
    """A driver error that means the database is busy, raised as `LedgerBusy`."""
    try:
        yield
    except exc.DBAPIError as error:
        busy = _translate(error)
        if busy is not None:
            raise busy from error
        raise


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction: takes the write lock at BEGIN on SQLite; commits on exit.
    Inside `batch()`, a savepoint of the batch's transaction instead."""
    with _busy_translated():
        ambient = _BATCHES.open.get(engine) if _BATCHES.open else None
        if ambient is not None:
            with _savepoint(ambient):
                yield ambient
            return
        with _writer(engine).connect() as conn, conn.begin():
            yield conn


@contextlib.contextmanager
def writer_connection(engine: Engine) -> Iterator[Connection]:
    """One pooled connection for a run of write transactions, each `with conn.begin():`
    (which takes the write lock, as `write()` does): for work that sets connection state,
    such as a PRAGMA, once for all of them."""
    with _busy_translated(), _writer(engine).connect() as conn:
        yield conn


@contextlib.contextmanager
def sqlite_cache(conn: Connection, kib: int) -> Iterator[None]:
    """On SQLite, a page cache of at least `kib` KiB on this connection for the block, then
    the one it had (left alone when it was that large already: shrinking a cache drops the
    pages it holds, which the next batch would read again). Set on the driver's connection,
    where the PRAGMA does not begin a transaction."""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver: Any = conn.connection.dbapi_connection
    (previous,) = driver.execute("PRAGMA cache_size").fetchone()
    previous = int(previous)
    # cache_size is pages when positive, KiB when negative; the default is -2000
    if previous < 0:
        held_kib = -previous
    else:
        (page_size,) = driver.execute("PRAGMA page_size").fetchone()
        held_kib = previous * int(page_size) // 1024
    if held_kib >= kib:
        yield
        return
    driver.execute(f"PRAGMA cache_size = -{kib}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size = {previous}")


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one consistent snapshot); inside `batch()`, the batch's own."""
    ambient = _BATCHES.open.get(engine) if _BATCHES.open else None
    if ambient is not None:
        yield ambient
        return
    with _busy_translated(), engine.connect() as conn, conn.begin():
        yield conn


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision recorded in the database, or None for an empty database."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except exc.OperationalError as error:
        busy = _translate(error)
        if busy is not None and "no such table" not in str(error).lower():
            raise busy from error
        return None
    except exc.ProgrammingError:  # PostgreSQL: relation does not exist
        return None


def ensure_schema(engine: Engine) -> None:
    """Check the schema revision with one SELECT; run migrations only when behind."""
    found = current_revision(engine)
    if found == SCHEMA_REVISION:
        return
    from ledger.migrate import known_revisions, upgrade

    if found is not None and found not in known_revisions():
        raise SchemaMismatch(found, SCHEMA_REVISION)
    upgrade(engine)


def one_of(conn: Connection, column: Any, values: Sequence[str]) -> Any:
    """`column IN values` with the values as ONE bound parameter (a PostgreSQL array, a JSON
    array read by SQLite's json_each): a few thousand ids make one statement, not one bound
    value (and one rendered placeholder) each. Both planners still probe the column's own
    index per value."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam("values", list(values), type_=ARRAY(String())))
    listed: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam("values", json.dumps(list(values))))
    )
    return column.in_(listed.scalar_subquery())


def dialect_insert(conn: Connection, table: Any) -> Any:
    """`INSERT` with the dialect's `ON CONFLICT` support (SQLite or PostgreSQL), importing
    only the dialect in use: the PostgreSQL dialect package costs a ledger command that runs
    on SQLite tens of milliseconds of start-up."""
    import importlib

    module = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
    return module.insert(table)
