"""What an import pass did (`ImportReport`), and the watermark it resumes from.

The watermark is the highest OpenClaw `last_event_at` (epoch ms) seen, kept in tasktrail's
`ledger_state` table per (tenant, source file), written in the same transaction as the page
of tasks it covers.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from ledger import db
from ledger.schema import state_table
from ledger.timeutil import isoformat

S = state_table.c


@dataclass(frozen=True, slots=True)
class SkippedRow:
    openclaw_task_id: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"openclaw_task_id": self.openclaw_task_id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import pass did. `by_status`/`by_runtime` count the OpenClaw rows read and
    accepted in this pass, by their OpenClaw status and runtime."""

    source: str
    tenant: str
    notify_from_tasktrail: bool
    rows_read: int
    created: int
    updated: int
    unchanged: int
    refused: int
    skipped: int
    by_status: Mapping[str, int] = field(default_factory=dict)
    by_runtime: Mapping[str, int] = field(default_factory=dict)
    skipped_rows: tuple[SkippedRow, ...] = ()
    watermark: datetime | None = None
    elapsed_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Rows per second over the pass."""
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "tenant": self.tenant,
            "notify_from_tasktrail": self.notify_from_tasktrail,
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "refused": self.refused,
            "skipped": self.skipped,
            "by_status": dict(sorted(self.by_status.items())),
            "by_runtime": dict(sorted(self.by_runtime.items())),
            "skipped_rows": [s.to_json() for s in self.skipped_rows],
            "watermark": isoformat(self.watermark),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


@dataclass(slots=True)
class Tally:
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    refused: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_runtime: Counter[str] = field(default_factory=Counter)
    skipped: list[SkippedRow] = field(default_factory=list)


def watermark_key(tenant: str, path: Path) -> str:
    digest = hashlib.sha256(f"{tenant}\0{path}".encode()).hexdigest()[:24]
    return f"openclaw:watermark:{digest}"


def load_watermark(engine: Engine, key: str) -> int | None:
    with db.read(engine) as conn:
        value = conn.execute(select(S.value).where(S.key == key)).scalar()
    if value is None:
        return None
    try:
        return int(json.loads(value)["last_event_at_ms"])
    except (ValueError, KeyError, TypeError):
        return None


def store_watermark(
    conn: Connection, key: str, ms: int, *, path: Path, tenant: str, now: datetime
) -> None:
    value = json.dumps({"last_event_at_ms": ms, "source": str(path), "tenant": tenant})
    done = conn.execute(
        update(state_table).where(S.key == key).values(value=value, updated_at=now)
    ).rowcount
    if not done:
        conn.execute(insert(state_table), {"key": key, "value": value, "updated_at": now})
