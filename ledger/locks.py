"""PostgreSQL advisory locks, so one replica among several runs a job or holds a gateway.
Callers check `engine.dialect.name == "postgresql"` first; other backends have no such
locks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection, Engine, text


@contextlib.contextmanager
def try_advisory_lock(engine: Engine, key: int) -> Iterator[bool]:
    """Try the session-level advisory lock `key` on a connection of its own (autocommit);
    yield whether it is held, and release it on exit."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        try:
            yield held
        finally:
            if held:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


class HeldLock:
    """A connection kept open to hold an advisory lock for as long as this process runs
    (the lock goes with the connection if the process dies). Not thread-safe: use it from
    one thread at a time."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.key = key
        self._conn: Connection = engine.connect()

    def try_acquire(self) -> bool:
        held = self._conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
        ).scalar()
        self._conn.commit()
        return bool(held)

    def close(self) -> None:
        self._conn.close()
