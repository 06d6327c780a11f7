"""Notify policies: which notices a change makes due (SPEC §5).

Called by `ledger.transitions.transition()` inside the transition's transaction, so a notice
row is committed exactly when the change that made it due is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from ledger.config import LedgerConfig


def enqueue_for_transition(
    conn: Connection,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    kind: str,
    now: datetime,
    config: LedgerConfig,
) -> None:
    """Write the outbox rows that this status change makes due (filled in by the outbox)."""
    return None
