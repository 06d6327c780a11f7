"""The ledger's tables as SQLAlchemy 2.x typed models.

Alembic migrations in `ledger/migrations/` create exactly this schema
(`tests/integration/test_migrations.py` compares them on SQLite and PostgreSQL).
These models never leave the `ledger` package: public functions return frozen records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: The Alembic revision this code's models correspond to. Checked (one SELECT) on connect;
#: migrations run only when the database is behind.
SCHEMA_REVISION = "0001"

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def reply_columns(reply_to: str | None) -> dict[str, str | None]:
    """`reply_channel` and `reply_user` for a `reply_to` address string (see TaskRow)."""
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


class TaskRow(Base):
    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(TaskId(), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200))
    runtime: Mapped[str] = mapped_column(String(16))
    task_kind: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[str | None] = mapped_column(String(255))
    source_id: Mapped[str | None] = mapped_column(String(255))
    child_session_key: Mapped[str | None] = mapped_column(String(512))
    requester_session_key: Mapped[str | None] = mapped_column(String(512))
    parent_task_id: Mapped[str | None] = mapped_column(TaskId())
    #: Address string (ledger.address); parsed into a dict in records.
    reply_to: Mapped[str | None] = mapped_column(String(300))
    notify_policy: Mapped[str] = mapped_column(String(16))
    delivery_status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    last_event_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    #: Per-task lease override in seconds (`--lease`); NULL uses the runtime default.
    lease_seconds: Mapped[int | None] = mapped_column(Integer)
    #: A fresh grace window granted by the outage guard: no `lost` verdict before it.
    grace_until: Mapped[datetime | None]
    cleanup_after: Mapped[datetime | None]
    progress_summary: Mapped[str | None] = mapped_column(Text)
    terminal_summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    #: `run`, `track` or `probe` when a live runner can act on a cancel; NULL otherwise.
    runner: Mapped[str | None] = mapped_column(String(16))
    #: Liveness probe: `heartbeat` (default), `pid`, `http`, `cron`.
    probe_kind: Mapped[str] = mapped_column(String(16), default="heartbeat")
    #: Probe parameters as JSON text (pid + start time, status URL, ...).
    probe_target: Mapped[str | None] = mapped_column(Text)
    proof_required: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Number of follower rows, so notifying a task without followers costs no query.
    follower_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Summary of the artifacts' proof checks: NULL (no checks), unchecked, verified, failed.
    proof_status: Mapped[str | None] = mapped_column(String(16))
    #: When an operator acknowledged a `lost` verdict (`dismiss`).
    acknowledged_at: Mapped[datetime | None]
    #: Where the record came from when mirrored (`openclaw`), and its id there.
    origin: Mapped[str | None] = mapped_column(String(32))
    origin_ref: Mapped[str | None] = mapped_column(String(255))
    #: Free-form JSON text for origin details (e.g. OpenClaw's own delivery status).
    origin_detail: Mapped[str | None] = mapped_column(Text)
    #: Derived from `reply_to` on every write (insert default; `bump` on updates), so chat
    #: boards find a channel's tasks and a person's tasks by index seek:
    #: `platform:workspace/channel` and `platform:user`.
    reply_channel: Mapped[str | None] = mapped_column(String(300), default=_reply_channel)
    reply_user: Mapped[str | None] = mapped_column(String(300), default=_reply_user)

    __table_args__ = (
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
        #: the trailing columns let the needs-attention filters run on the index alone.
        Index(
            "ix_tasks_tenant_channel",
            "tenant",
            "reply_channel",
            "status",
            "created_at",
            "delivery_status",
            "proof_required",
            "proof_status",
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


class EventRow(Base):
    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("task_id", "seq"),)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(Text)
    #: Proof expectations as JSON text ({expect_status, expect_text, ...}); NULL: none.
    proof: Mapped[str | None] = mapped_column(Text)
    proof_status: Mapped[str] = mapped_column(String(16), default="unchecked")
    checked_at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    #: Re-check no later than this (scheduler), until verified or the proof deadline.
    next_check_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_artifacts_task", "task_id"),
        Index("ix_artifacts_next_check", "next_check_at"),
    )


class DeliveryRow(Base):
    """The delivery outbox: one row per notice per destination."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: NULL for notices that are not about one task (audit digests).
    task_id: Mapped[str | None] = mapped_column(
        TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE")
    )
    tenant: Mapped[str] = mapped_column(String(200))
    #: started, progress, terminal, correction, proof, audit_digest
    kind: Mapped[str] = mapped_column(String(24))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    #: The destination address as given (reply_to or a follower's thread).
    target: Mapped[str] = mapped_column(String(300))
    #: Destination channel for pacing (platform:workspace/channel of the current route).
    channel_key: Mapped[str] = mapped_column(String(300))
    #: thread, channel, dm, ops, digest
    route: Mapped[str] = mapped_column(String(16))
    #: pending, delivered, retrying, failed, dismissed, superseded
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    deadline_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claim_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    platform_message_id: Mapped[str | None] = mapped_column(String(200))
    #: Snapshot of what the notice says (JSON text): status, label, summary, proof line, ...
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_task", "task_id"),
        Index("ix_deliveries_channel", "channel_key", "status"),
    )


class FollowerRow(Base):
    """Extra destinations for a task's notices (`/tasks follow`)."""

    __tablename__ = "followers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(TaskId(), ForeignKey("tasks.task_id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(300))
    #: platform:workspace/channel, to find the tasks followed from one channel.
    channel_key: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("task_id", "address"),
        Index("ix_followers_channel", "channel_key"),
    )


class CronRunRow(Base):
    """Finished cron runs as reported by the scheduler that ran them (the `cron` probe)."""

    __tablename__ = "cron_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(200))
    run_id: Mapped[str] = mapped_column(String(255))
    source_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    finished_at: Mapped[datetime | None]
    summary: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("tenant", "run_id"),)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(200))
    #: sha256 hex of the secret; the secret itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class StateRow(Base):
    """Small named state: scheduler passes, digest fingerprints, import watermarks."""

    __tablename__ = "ledger_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


tasks_table = cast(Table, TaskRow.__table__)
events_table = cast(Table, EventRow.__table__)
artifacts_table = cast(Table, ArtifactRow.__table__)
deliveries_table = cast(Table, DeliveryRow.__table__)
followers_table = cast(Table, FollowerRow.__table__)
cron_runs_table = cast(Table, CronRunRow.__table__)
api_tokens_table = cast(Table, ApiTokenRow.__table__)
state_table = cast(Table, StateRow.__table__)
