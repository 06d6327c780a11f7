"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 10:52:40.382151
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "cron_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cron_runs")),
        sa.UniqueConstraint("tenant", "run_id", name=op.f("uq_cron_runs_tenant_run_id")),
    )
    op.create_table(
        "ledger_state",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_ledger_state")),
    )
    op.create_table(
        "tasks",
        sa.Column(
            "task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("runtime", sa.String(length=16), nullable=False),
        sa.Column("task_kind", sa.String(length=64), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("task", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=255), nullable=True),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("child_session_key", sa.String(length=512), nullable=True),
        sa.Column("requester_session_key", sa.String(length=512), nullable=True),
        sa.Column(
            "parent_task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("reply_to", sa.String(length=300), nullable=True),
        sa.Column("notify_policy", sa.String(length=16), nullable=False),
        sa.Column("delivery_status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_seconds", sa.Integer(), nullable=True),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleanup_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_summary", sa.Text(), nullable=True),
        sa.Column("terminal_summary", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("runner", sa.String(length=16), nullable=True),
        sa.Column("probe_kind", sa.String(length=16), nullable=False),
        sa.Column("probe_target", sa.Text(), nullable=True),
        sa.Column("proof_required", sa.Boolean(), nullable=False),
        sa.Column("follower_count", sa.Integer(), nullable=False),
        sa.Column("proof_status", sa.String(length=16), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("origin", sa.String(length=32), nullable=True),
        sa.Column("origin_ref", sa.String(length=255), nullable=True),
        sa.Column("origin_detail", sa.Text(), nullable=True),
        sa.Column("reply_channel", sa.String(length=300), nullable=True),
        sa.Column("reply_user", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("tenant", "run_id", name=op.f("uq_tasks_tenant_run_id")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_child_session", ["child_session_key", "created_at"], unique=False
        )
        batch_op.create_index("ix_tasks_cleanup_after", ["cleanup_after"], unique=False)
        batch_op.create_index("ix_tasks_created", ["created_at", "task_id"], unique=False)
        batch_op.create_index(
            "ix_tasks_origin_ref",
            ["origin_ref"],
            unique=False,
            sqlite_where=sa.text("origin_ref IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_tasks_parent",
            ["parent_task_id"],
            unique=False,
            sqlite_where=sa.text("parent_task_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_tasks_requester_session", ["requester_session_key", "created_at"], unique=False
        )
        batch_op.create_index("ix_tasks_run_id", ["run_id"], unique=False)
        batch_op.create_index(
            "ix_tasks_status_created", ["status", "created_at", "task_id"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_status_proof_ended",
            ["status", "proof_required", "ended_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_tenant_created", ["tenant", "created_at", "task_id"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_tenant_status_created",
            ["tenant", "status", "created_at", "task_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_tenant_channel",
            [
                "tenant",
                "reply_channel",
                "status",
                "created_at",
                "delivery_status",
                "proof_required",
                "proof_status",
            ],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_tenant_reply_user",
            [
                "tenant",
                "reply_user",
                "status",
                "created_at",
                "delivery_status",
                "proof_required",
                "proof_status",
            ],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_tenant_delivery",
            ["tenant", "delivery_status", "status", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_tenant_proof",
            ["tenant", "proof_required", "status", "proof_status", "created_at"],
            unique=False,
        )

    op.create_table(
        "artifacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("proof_status", sa.String(length=16), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.task_id"],
            name=op.f("fk_artifacts_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index("ix_artifacts_next_check", ["next_check_at"], unique=False)
        batch_op.create_index("ix_artifacts_task", ["task_id"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=True,
        ),
        sa.Column("tenant", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("channel_key", sa.String(length=300), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("platform_message_id", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.task_id"],
            name=op.f("fk_deliveries_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_deliveries_idempotency_key")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_channel", ["channel_key", "status"], unique=False)
        batch_op.create_index(
            "ix_deliveries_status_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_deliveries_task", ["task_id"], unique=False)

    op.create_table(
        "followers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("channel_key", sa.String(length=300), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.task_id"],
            name=op.f("fk_followers_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followers")),
        sa.UniqueConstraint("task_id", "address", name=op.f("uq_followers_task_id_address")),
    )
    with op.batch_alter_table("followers", schema=None) as batch_op:
        batch_op.create_index("ix_followers_channel", ["channel_key"], unique=False)

    op.create_table(
        "task_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "task_id",
            sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.task_id"],
            name=op.f("fk_task_events_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_events")),
        sa.UniqueConstraint("task_id", "seq", name=op.f("uq_task_events_task_id_seq")),
    )


def downgrade() -> None:

    op.drop_table("task_events")
    with op.batch_alter_table("followers", schema=None) as batch_op:
        batch_op.drop_index("ix_followers_channel")

    op.drop_table("followers")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_task")
        batch_op.drop_index("ix_deliveries_status_due")
        batch_op.drop_index("ix_deliveries_channel")

    op.drop_table("deliveries")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_task")
        batch_op.drop_index("ix_artifacts_next_check")

    op.drop_table("artifacts")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_tenant_proof")
        batch_op.drop_index("ix_tasks_tenant_delivery")
        batch_op.drop_index("ix_tasks_tenant_reply_user")
        batch_op.drop_index("ix_tasks_tenant_channel")
        batch_op.drop_index("ix_tasks_tenant_status_created")
        batch_op.drop_index("ix_tasks_tenant_created")
        batch_op.drop_index("ix_tasks_status_proof_ended")
        batch_op.drop_index("ix_tasks_status_created")
        batch_op.drop_index("ix_tasks_run_id")
        batch_op.drop_index("ix_tasks_requester_session")
        batch_op.drop_index("ix_tasks_parent")
        batch_op.drop_index("ix_tasks_origin_ref")
        batch_op.drop_index("ix_tasks_created")
        batch_op.drop_index("ix_tasks_cleanup_after")
        batch_op.drop_index("ix_tasks_child_session")

    op.drop_table("tasks")
    op.drop_table("ledger_state")
    op.drop_table("cron_runs")
    op.drop_table("api_tokens")
