"""Knobs the ledger itself needs (leases, thresholds, retention, policies).

`bot.settings` reads them from the environment / TOML; producers using the Python API
get these defaults (SPEC §11) unless they pass their own `LedgerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from ledger.status import NotifyPolicy, Runtime, Status

DEFAULT_NOTIFY: dict[Runtime, NotifyPolicy] = {
    Runtime.SUBAGENT: NotifyPolicy.DONE_ONLY,
    Runtime.ACP: NotifyPolicy.DONE_ONLY,
    Runtime.CLI: NotifyPolicy.DONE_ONLY,
    Runtime.MEDIA: NotifyPolicy.DONE_ONLY,
    Runtime.CRON: NotifyPolicy.SILENT,
}


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    lease: timedelta = timedelta(minutes=5)
    lease_per_runtime: dict[Runtime, timedelta] = field(default_factory=dict)
    lost_grace: timedelta = timedelta(minutes=5)
    stale_queued: timedelta = timedelta(minutes=10)
    stale_running: timedelta = timedelta(minutes=30)
    delivery_stuck: timedelta = timedelta(minutes=10)
    cancel_stuck: timedelta = timedelta(minutes=5)
    retention: timedelta = timedelta(days=7)
    retention_failed: timedelta = timedelta(days=7)
    delivery_deadline: timedelta = timedelta(minutes=30)
    delivery_claim_lease: timedelta = timedelta(seconds=30)
    progress_coalesce: timedelta = timedelta(seconds=30)
    notify_defaults: dict[Runtime, NotifyPolicy] = field(
        default_factory=lambda: dict(DEFAULT_NOTIFY)
    )
    reconcile_interval: timedelta = timedelta(seconds=30)
    audit_interval: timedelta = timedelta(minutes=5)
    maintenance_interval: timedelta = timedelta(hours=1)
    #: Address (SPEC §2 form) of the last-resort route and of audit digests.
    ops_channel: str | None = None
    #: Hosts / networks proof checks never fetch (None: the built-in default deny list).
    proof_deny: tuple[str, ...] | None = None
    #: Proof checks (ledger.proof): per-check timeout, parallel checks, redirects followed,
    #: response bytes read, first re-check delay and its cap, and how long after the task
    #: ends (or the artifact is added) failing checks are retried before proof has failed.
    proof_timeout: timedelta = timedelta(seconds=10)
    proof_concurrency: int = 8
    proof_max_redirects: int = 5
    proof_max_bytes: int = 1_048_576
    proof_recheck: timedelta = timedelta(minutes=1)
    proof_recheck_max: timedelta = timedelta(minutes=15)
    proof_deadline: timedelta = timedelta(hours=2)
    proof_interval: timedelta = timedelta(seconds=30)
    #: SQLite `synchronous` pragma in WAL mode: `normal` or `full`.
    sqlite_synchronous: str = "normal"
    sqlite_busy_timeout: timedelta = timedelta(seconds=30)

    def lease_for(self, runtime: Runtime | str) -> timedelta:
        return self.lease_per_runtime.get(Runtime(runtime), self.lease)

    def notify_default(self, runtime: Runtime | str) -> NotifyPolicy:
        return self.notify_defaults.get(Runtime(runtime), NotifyPolicy.DONE_ONLY)

    def retention_for(self, status: Status | str) -> timedelta:
        if Status(status) in (Status.FAILED, Status.TIMED_OUT, Status.LOST):
            return self.retention_failed
        return self.retention
