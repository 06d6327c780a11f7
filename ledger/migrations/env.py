"""Alembic environment: always given a live connection by ledger.migrate."""

from __future__ import annotations

from alembic import context

from ledger.schema import metadata

target_metadata = metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through ledger.migrate.upgrade(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
context.run_migrations()
