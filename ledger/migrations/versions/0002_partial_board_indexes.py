"""board indexes hold only tasks that have a board scope (SQLite)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 16:55:00

`ix_tasks_tenant_channel` and `ix_tasks_tenant_reply_user` serve the chat boards, whose
queries always name the channel or the user (`reply_channel = ?`, `reply_user = ?`). Tasks
without a reply address (CLI jobs, cron, an OpenClaw mirror without a workspace) never match
those, yet every insert of one added an entry to both seven-column indexes. On SQLite they
become partial (`... IS NOT NULL`, which an equality term implies, so the planner still
uses them); PostgreSQL keeps them whole (see the note on partial indexes in ledger.schema).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BOARD_INDEXES = {
    "ix_tasks_tenant_channel": "reply_channel",
    "ix_tasks_tenant_reply_user": "reply_user",
}
_TRAILING = ["status", "created_at", "delivery_status", "proof_required", "proof_status"]


def _recreate(partial: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, column in _BOARD_INDEXES.items():
        op.drop_index(name, table_name="tasks")
        columns = ["tenant", column, *_TRAILING]
        if partial:
            where = sa.text(f"{column} IS NOT NULL")
            op.create_index(name, "tasks", columns, unique=False, sqlite_where=where)
        else:
            op.create_index(name, "tasks", columns, unique=False)


def upgrade() -> None:
    _recreate(partial=True)


def downgrade() -> None:
    _recreate(partial=False)
