"""The ledger's tables, as SQLAlchemy Core `Table`s.

Alembic migrations in `ledger/migrations/` create exactly this schema
(`tests/integration/test_migrations.py` compares them on SQLite and PostgreSQL). Every
read and write in the ledger is a Core statement, so the ORM is never imported: it cost a
ledger command ~60 ms of its 0.5 s start-up budget for mapped classes nothing used. Rows
never leave the `ledger` package: public functions return frozen records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

#: The Alembic revision this code's models correspond to. Checked (one SELECT) on connect;
#: migrations run only when the database is behind.
SCHEMA_REVISION = "0002"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Task ids compare bytewise on PostgreSQL too, so id-prefix lookups are index range scans.


class TaskId(TypeDecorator[str]):
    """VARCHAR(32), with the "C" collation on PostgreSQL (as the migration creates it).

    A TypeDecorator rather than `with_variant(..., "postgresql")`, which would import the
    PostgreSQL dialect into every SQLite ledger command at start-up."""

    impl = String(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(String(32, collation="C"))
        return dialect.type_descriptor(String(32))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    PostgreSQL stores `timestamptz`. SQLite has no time type: values are stored as
    naive UTC ISO text (which sorts correctly) and come back with `tzinfo=UTC`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the ledger; use UTC-aware times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: Every table of the ledger (Alembic compares the migrations against it).
metadata = MetaData(naming_convention=NAMING)


def reply_columns(reply_to: str | None) -> dict[str, str | None]:
    """`reply_channel` and `reply_user` for a `reply_to` address string (see tasks_table)."""
    if not reply_to:
        return {"reply_channel": None, "reply_user": None}
    head, _, user = reply_to.partition("@")
    platform = head.split(":", 1)[0]
    return {
        "reply_channel": "/".join(head.split("/")[:2]),
        "reply_user": f"{platform}:{user}" if user else None,
    }


def _reply_channel(context: Any) -> str | None:
    return reply_columns(context.get_current_parameters().get("reply_to"))["reply_channel"]


def _reply_user(context: Any) -> str | None:
    return reply_columns(context.get_current_parameters().get("reply_to"))["reply_user"]


tasks_table = Table(
    "tasks",
    metadata,
    Column("task_id", TaskId(), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("runtime", String(16), nullable=False),
    Column("task_kind", String(64), nullable=True),
    Column("label", Text, nullable=False),
    Column("task", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("version", Integer, default=1, nullable=False),
    Column("run_id", String(255), nullable=True),
    Column("source_id", String(255), nullable=True),
    Column("child_session_key", String(512), nullable=True),
    Column("requester_session_key", String(512), nullable=True),
    Column("parent_task_id", TaskId(), nullable=True),
    #: Address string (ledger.address); parsed into a dict in records.
    Column("reply_to", String(300), nullable=True),
    Column("notify_policy", String(16), nullable=False),
    Column("delivery_status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("ended_at", UTCDateTime(), nullable=True),
    Column("last_event_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    #: Per-task lease override in seconds (`--lease`); NULL uses the runtime default.
    Column("lease_seconds", Integer, nullable=True),
    #: A fresh grace window granted by the outage guard: no `lost` verdict before it.
    Column("grace_until", UTCDateTime(), nullable=True),
    Column("cleanup_after", UTCDateTime(), nullable=True),
    Column("progress_summary", Text, nullable=True),
    Column("terminal_summary", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("cancel_requested_at", UTCDateTime(), nullable=True),
    Column("cancel_reason", Text, nullable=True),
    #: `run`, `track` or `probe` when a live runner can act on a cancel; NULL otherwise.
    Column("runner", String(16), nullable=True),
    #: Liveness probe: `heartbeat` (default), `pid`, `http`, `cron`.
    Column("probe_kind", String(16), default="heartbeat", nullable=False),
    #: Probe parameters as JSON text (pid + start time, status URL, ...).
    Column("probe_target", Text, nullable=True),
    Column("proof_required", Boolean, default=False, nullable=False),
    #: Number of follower rows, so notifying a task without followers costs no query.
    Column("follower_count", Integer, default=0, nullable=False),
    #: Summary of the artifacts' proof checks: NULL (no checks), unchecked, verified, failed.
    Column("proof_status", String(16), nullable=True),
    #: When an operator acknowledged a `lost` verdict (`dismiss`).
    Column("acknowledged_at", UTCDateTime(), nullable=True),
    #: Where the record came from when mirrored (`openclaw`), and its id there.
    Column("origin", String(32), nullable=True),
    Column("origin_ref", String(255), nullable=True),
    #: Free-form JSON text for origin details (e.g. OpenClaw's own delivery status).
    Column("origin_detail", Text, nullable=True),
    #: Derived from `reply_to` on every write (insert default; `bump` on updates), so chat
    #: boards find a channel's tasks and a person's tasks by index seek:
    #: `platform:workspace/channel` and `platform:user`.
    Column("reply_channel", String(300), default=_reply_channel, nullable=True),
    Column("reply_user", String(300), default=_reply_user, nullable=True),
    UniqueConstraint("tenant", "run_id"),
    Index("ix_tasks_created", "created_at", "task_id"),
    Index("ix_tasks_status_created", "status", "created_at", "task_id"),
    Index("ix_tasks_tenant_created", "tenant", "created_at", "task_id"),
    Index("ix_tasks_tenant_status_created", "tenant", "status", "created_at", "task_id"),
    Index("ix_tasks_run_id", "run_id"),
    Index("ix_tasks_child_session", "child_session_key", "created_at"),
    Index("ix_tasks_requester_session", "requester_session_key", "created_at"),
    Index("ix_tasks_cleanup_after", "cleanup_after"),
    #: Audit: unproven successes and ended records without `ended_at`, by seek.
    Index("ix_tasks_status_proof_ended", "status", "proof_required", "ended_at"),
    # Partial on SQLite: most tasks have no parent and no origin, and indexing their
    # NULLs would cost every insert for nothing. (Not on PostgreSQL: a postgresql_where
    # here would import that dialect into every SQLite command at start-up.)
    Index(
        "ix_tasks_parent",
        "parent_task_id",
        sqlite_where=text("parent_task_id IS NOT NULL"),
    ),
    Index(
        "ix_tasks_origin_ref",
        "origin_ref",
        sqlite_where=text("origin_ref IS NOT NULL"),
    ),
    #: Chat boards (bot.chat.board): one index range per (scope, status), newest first;
    #: the trailing columns let the needs-attention filters run on the index alone. Board
    #: queries always name the channel or user, so on SQLite tasks without one stay out
    #: (migration 0002).
    Index(
        "ix_tasks_tenant_channel",
        "tenant",
        "reply_channel",
        "status",
        "created_at",
        "delivery_status",
        "proof_required",
        "proof_status",
        sqlite_where=text("reply_channel IS NOT NULL"),
    ),
    Index(
        "ix_tasks_tenant_reply_user",
        "tenant",
        "reply_user",
        "status",
        "created_at",
        "delivery_status",
        "proof_required",
        "proof_status",
        sqlite_where=text("reply_user IS NOT NULL"),
    ),
    Index("ix_tasks_tenant_delivery", "tenant", "delivery_status", "status", "created_at"),
    Index(
        "ix_tasks_tenant_proof",
        "tenant",
        "proof_required",
        "status",
        "proof_status",
        "created_at",
    ),
)


events_table = Table(
    "task_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=True),
    Column("actor", String(200), nullable=True),
    Column("summary", Text, nullable=True),
    UniqueConstraint("task_id", "seq"),
)


artifacts_table = Table(
    "artifacts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", Text, nullable=False),
    #: Proof expectations as JSON text ({expect_status, expect_text, ...}); NULL: none.
    Column("proof", Text, nullable=True),
    Column("proof_status", String(16), default="unchecked", nullable=False),
    Column("checked_at", UTCDateTime(), nullable=True),
    Column("detail", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    #: Re-check no later than this (scheduler), until verified or the proof deadline.
    Column("next_check_at", UTCDateTime(), nullable=True),
    Index("ix_artifacts_task", "task_id"),
    Index("ix_artifacts_next_check", "next_check_at"),
)


#: The delivery outbox: one row per notice per destination.
deliveries_table = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    #: NULL for notices that are not about one task (audit digests).
    Column("task_id", TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"), nullable=True),
    Column("tenant", String(200), nullable=False),
    #: started, progress, terminal, correction, proof, audit_digest
    Column("kind", String(24), nullable=False),
    Column("generation", Integer, default=1, nullable=False),
    Column("idempotency_key", String(128), unique=True, nullable=False),
    #: The destination address as given (reply_to or a follower's thread).
    Column("target", String(300), nullable=False),
    #: Destination channel for pacing (platform:workspace/channel of the current route).
    Column("channel_key", String(300), nullable=False),
    #: thread, channel, dm, ops, digest
    Column("route", String(16), nullable=False),
    #: pending, delivered, retrying, failed, dismissed, superseded
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("deadline_at", UTCDateTime(), nullable=False),
    Column("claimed_by", String(100), nullable=True),
    Column("claim_expires_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("platform_message_id", String(200), nullable=True),
    #: Snapshot of what the notice says (JSON text): status, label, summary, proof line, ...
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Index("ix_deliveries_status_due", "status", "next_attempt_at"),
    Index("ix_deliveries_task", "task_id"),
    Index("ix_deliveries_channel", "channel_key", "status"),
)


#: Extra destinations for a task's notices (`/tasks follow`).
followers_table = Table(
    "followers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"), nullable=False),
    Column("address", String(300), nullable=False),
    #: platform:workspace/channel, to find the tasks followed from one channel.
    Column("channel_key", String(300), nullable=False),
    Column("created_by", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("task_id", "address"),
    Index("ix_followers_channel", "channel_key"),
)


#: Finished cron runs as reported by the scheduler that ran them (the `cron` probe).
cron_runs_table = Table(
    "cron_runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("tenant", String(200), nullable=False),
    Column("run_id", String(255), nullable=False),
    Column("source_id", String(255), nullable=True),
    Column("status", String(16), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("summary", Text, nullable=True),
    Column("recorded_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant", "run_id"),
)


api_tokens_table = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("tenant", String(200), nullable=False),
    #: sha256 hex of the secret; the secret itself is shown once and never stored.
    Column("token_hash", String(64), unique=True, nullable=False),
    Column("name", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
)


#: Small named state: scheduler passes, digest fingerprints, import watermarks.
state_table = Table(
    "ledger_state",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
