"""`Ledger`: the Python API for producers and operators (SPEC §13)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from ledger import db, tasks
from ledger.config import LedgerConfig
from ledger.lookup import list_page, resolve_row
from ledger.queries import get_task, task_events
from ledger.records import DeliveryRecord, EventRecord, Page, TaskRecord
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from pathlib import Path

    from ledger.audit import AuditReport
    from ledger.boards import BoardData
    from ledger.importers.report import ImportReport
    from ledger.maintenance import MaintenanceReport
    from ledger.proof import ProofPass
    from ledger.reconcile import ReconcileReport
    from ledger.stats import Health, LedgerCounts
    from ledger.track import TrackedTask


class Ledger:
    """One ledger database. Thread-safe; share one instance per process.

    Every method that writes takes `now` (default: the current UTC time) so callers and
    tests control time, and `tenant` to scope the lookup of `ref`.
    """

    def __init__(
        self,
        engine: Engine,
        config: LedgerConfig | None = None,
        *,
        actor: str = "sdk",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.config = config or LedgerConfig()
        self.actor = actor
        self.clock = clock

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        config: LedgerConfig | None = None,
        *,
        actor: str = "sdk",
        migrate: bool = True,
    ) -> Ledger:
        """Open (and on first use create) the ledger at `url`; default: the SQLite file in
        the user data directory."""
        config = config or LedgerConfig()
        engine = db.make_engine(url, config)
        if migrate:
            db.ensure_schema(engine)
        return cls(engine, config, actor=actor)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _now(self, now: datetime | None) -> datetime:
        return now if now is not None else self.clock()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run several writes on this thread as one transaction with one commit: each
        operation inside is its own savepoint, so one that raises (e.g. `IllegalTransition`)
        undoes only its own changes, and nothing is durable until the block exits."""
        with db.batch(self.engine):
            yield

    # -- producers -------------------------------------------------------------------------

    def create(
        self,
        *,
        runtime: str,
        label: str,
        tenant: str = "default",
        task: str | None = None,
        task_kind: str | None = None,
        run_id: str | None = None,
        source_id: str | None = None,
        child_session_key: str | None = None,
        requester_session_key: str | None = None,
        parent: str | None = None,
        reply_to: str | None = None,
        notify: str | None = None,
        lease: float | timedelta | None = None,
        queued: bool = False,
        proof_required: bool = False,
        proof_url: str | None = None,
        expect_status: int | None = None,
        expect_text: str | None = None,
        runner: str | None = None,
        probe: str = "heartbeat",
        probe_target: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        now = self._now(now)
        if probe != "heartbeat" or probe_target:
            from ledger.probes import validate_target

            probe_target = validate_target(probe, probe_target)  # pid: start time filled in
        if proof_url is not None:  # refuse a bad proof URL before anything is recorded
            from ledger.proof_checks import validate_expectations

            expected = {"expect_status": expect_status or 200, "expect_text": expect_text}
            validate_expectations(
                "url", proof_url, {k: v for k, v in expected.items() if v is not None}
            )
        record = tasks.create_task(
            self.engine,
            self.config,
            runtime=runtime,
            label=label,
            tenant=tenant,
            task=task,
            task_kind=task_kind,
            run_id=run_id,
            source_id=source_id,
            child_session_key=child_session_key,
            requester_session_key=requester_session_key,
            parent=parent,
            reply_to=reply_to,
            notify=notify,
            lease=lease,
            queued=queued,
            proof_required=proof_required or proof_url is not None,
            runner=runner,
            probe=probe,
            probe_target=probe_target,
            now=now,
            actor=actor or self.actor,
        )
        if proof_url is not None and not any(True for _ in record.artifacts):
            existing = self.get(record.task_id, details=True)
            if not any(a.kind == "url" and a.value == proof_url for a in existing.artifacts):
                record = self.add_artifact(
                    record.task_id,
                    kind="url",
                    value=proof_url,
                    expect_status=expect_status if expect_status is not None else 200,
                    expect_text=expect_text,
                    now=now,
                    actor=actor,
                )
        return record

    def start(
        self,
        ref: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
        runner: str | None = None,
    ) -> TaskRecord:
        return tasks.start_task(
            self.engine,
            self.config,
            ref,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
            runner=runner,
        )

    def heartbeat(
        self,
        ref: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        return tasks.heartbeat_task(
            self.engine,
            self.config,
            ref,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    def progress(
        self,
        ref: str,
        text: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        return tasks.progress_task(
            self.engine,
            self.config,
            ref,
            text,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    def finish(
        self,
        ref: str,
        *,
        status: str,
        summary: str | None = None,
        error: str | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        return tasks.finish_task(
            self.engine,
            self.config,
            ref,
            status,
            now=self._now(now),
            summary=summary,
            error=error,
            tenant=tenant,
            actor=actor or self.actor,
        )

    def add_artifact(
        self,
        ref: str,
        *,
        kind: str,
        value: str,
        expect_status: int | None = None,
        expect_text: str | None = None,
        proof: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        expectations: dict[str, Any] = dict(proof or {})
        if expect_status is not None:
            expectations["expect_status"] = expect_status
        if expect_text is not None:
            expectations["expect_text"] = expect_text
        return tasks.add_artifact(
            self.engine,
            self.config,
            ref,
            kind=kind,
            value=value,
            proof=expectations,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    # -- operators -------------------------------------------------------------------------

    def cancel(
        self,
        ref: str,
        *,
        reason: str | None = None,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        return tasks.cancel_task(
            self.engine,
            self.config,
            ref,
            reason=reason,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    def set_notify(
        self,
        ref: str,
        policy: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        return tasks.set_notify_policy(
            self.engine,
            self.config,
            ref,
            policy,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    def get(self, ref: str, *, tenant: str | None = None, details: bool = False) -> TaskRecord:
        with db.read(self.engine) as conn:
            return get_task(conn, ref, tenant, details=details)

    def resolve(self, ref: str, *, tenant: str | None = None) -> str:
        """The task id `ref` stands for."""
        with db.read(self.engine) as conn:
            return str(resolve_row(conn, ref, tenant)["task_id"])

    def events(self, ref: str, *, tenant: str | None = None) -> list[EventRecord]:
        with db.read(self.engine) as conn:
            task_id = resolve_row(conn, ref, tenant)["task_id"]
            return task_events(conn, task_id)

    def list_page(
        self,
        *,
        status: Sequence[str] = (),
        runtime: Sequence[str] = (),
        tenant: str | None = None,
        requester: str | None = None,
        label: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        with db.read(self.engine) as conn:
            return list_page(
                conn,
                status=status,
                runtime=runtime,
                tenant=tenant,
                requester=requester,
                label=label,
                limit=limit,
                cursor=cursor,
            )

    def list(
        self,
        *,
        status: Sequence[str] = (),
        runtime: Sequence[str] = (),
        tenant: str | None = None,
        requester: str | None = None,
        label: str | None = None,
        limit: int | None = 50,
    ) -> list[TaskRecord]:
        """Newest first. `limit=None` returns every match, read page by page."""
        if limit is not None:
            return list(
                self.list_page(
                    status=status,
                    runtime=runtime,
                    tenant=tenant,
                    requester=requester,
                    label=label,
                    limit=limit,
                ).tasks
            )
        return list(
            self.iter_tasks(
                status=status, runtime=runtime, tenant=tenant, requester=requester, label=label
            )
        )

    def iter_tasks(
        self,
        *,
        status: Sequence[str] = (),
        runtime: Sequence[str] = (),
        tenant: str | None = None,
        requester: str | None = None,
        label: str | None = None,
        page_size: int = 500,
    ) -> Iterator[TaskRecord]:
        cursor: str | None = None
        while True:
            page = self.list_page(
                status=status,
                runtime=runtime,
                tenant=tenant,
                requester=requester,
                label=label,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- delivery: followers and the outbox (SPEC §5) ------------------------------------------

    def follow(
        self,
        ref: str,
        address: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        """Send this task's notices to `address` too (an address string, SPEC §2)."""
        from ledger.followers import follow_task

        return follow_task(
            self.engine, ref, address, now=self._now(now), tenant=tenant, actor=actor or self.actor
        )

    def unfollow(
        self,
        ref: str,
        address: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        from ledger.followers import unfollow_task

        return unfollow_task(
            self.engine, ref, address, now=self._now(now), tenant=tenant, actor=actor or self.actor
        )

    def retry(
        self, ref: str, *, tenant: str | None = None, now: datetime | None = None
    ) -> TaskRecord:
        """Re-queue the task's failed deliveries (new generation, new idempotency key)."""
        from ledger.redelivery import retry_deliveries

        retry_deliveries(self.engine, self.config, ref, now=self._now(now), tenant=tenant)
        return self.get(ref, tenant=tenant, details=True)

    def dismiss(
        self,
        ref: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        """Mark the task's failed deliveries handled; on a `lost` task also acknowledge the
        verdict (the task stays lost, its `lost` audit finding goes away)."""
        from ledger.redelivery import dismiss_deliveries

        dismiss_deliveries(
            self.engine, ref, now=self._now(now), tenant=tenant, actor=actor or self.actor
        )
        return self.get(ref, tenant=tenant, details=True)

    def deliveries(
        self,
        *,
        status: str | None = None,
        limit: int | None = 100,
        tenant: str | None = None,
        task: str | None = None,
    ) -> tuple[DeliveryRecord, ...]:
        """Outbox rows, newest first (`task`: only that task's)."""
        from ledger.records import delivery_from_row
        from ledger.redelivery import list_deliveries

        with db.read(self.engine) as conn:
            task_id = resolve_row(conn, task, tenant)["task_id"] if task else None
            rows = list_deliveries(conn, status=status, task_id=task_id, tenant=tenant, limit=limit)
        return tuple(delivery_from_row(r) for r in rows)

    # -- read models for boards, metrics and health (ledger.boards, ledger.stats) -----------

    def board(
        self,
        *,
        tenant: str,
        channel_key: str | None = None,
        filter: str | None = None,
        actor_key: str | None = None,
        rows: int = 10,
        count_cap: int = 10_000,
    ) -> BoardData:
        """The tasks a board shows (SPEC §10): the newest `rows` of each group plus counts
        capped at `count_cap`; see `ledger.boards.board_data`."""
        from ledger.boards import board_data

        return board_data(
            self.engine,
            tenant=tenant,
            channel_key=channel_key,
            filter=filter,
            actor_key=actor_key,
            rows=rows,
            count_cap=count_cap,
        )

    def counts(self) -> LedgerCounts:
        """Tasks by status and runtime, deliveries by status (for `/metrics`)."""
        from ledger.stats import counts

        return counts(self.engine)

    def health(self, *, now: datetime | None = None) -> Health:
        """Backend, due delivery backlog and the last auditor pass (for `/healthz`); raises
        the driver's error when the database does not answer."""
        from ledger.stats import health

        return health(self.engine, self._now(now))

    def tenants(self) -> tuple[str, ...]:
        """Every tenant that has a task, sorted."""
        from ledger.stats import tenants

        return tuple(tenants(self.engine))

    def owned_task_ids(self, task_ids: Iterable[str], *, tenant: str) -> set[str]:
        """The subset of `task_ids` that belongs to `tenant`."""
        from ledger.stats import owned_task_ids

        return owned_task_ids(self.engine, tenant, task_ids)

    def followers(self, task_id: str) -> tuple[str, ...]:
        """Addresses of the threads following task `task_id`, oldest first."""
        from ledger.followers import followers_of

        with db.read(self.engine) as conn:
            return tuple(followers_of(conn, task_id))

    def release_claims(self, worker_id: str) -> None:
        """Hand back the unfinished deliveries `worker_id` holds (on shutdown)."""
        from ledger.stats import release_claims

        release_claims(self.engine, worker_id)

    # -- proof: are the claimed artifacts really there (ledger.proof) -----------------------

    def check_proof(
        self,
        ref: str,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        """Run the task's proof checks now; returns the task with its artifacts."""
        from ledger.proof import check_task

        return check_task(
            self.engine,
            self.config,
            ref,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )

    def run_due_proof_checks(self, *, now: datetime | None = None, limit: int = 100) -> ProofPass:
        """Check the artifacts whose re-check is due (the scheduler's proof job)."""
        from ledger.proof import run_due_checks

        return run_due_checks(self.engine, self.config, now=self._now(now), limit=limit)

    # -- mirrors of other ledgers -----------------------------------------------------------

    def import_openclaw(
        self,
        path: str | Path,
        *,
        tenant: str = "default",
        notify_from_tasktrail: bool = False,
        now: datetime | None = None,
    ) -> ImportReport:
        """Mirror the OpenClaw database at `path` (opened read-only) into `tenant`: new rows
        are created, changed ones updated through the state machine, rejected ones reported.
        Incremental: a second call reads only what changed since the first."""
        from ledger.importers.openclaw import import_openclaw

        return import_openclaw(
            self.engine,
            self.config,
            path,
            now=self._now(now),
            tenant=tenant,
            notify_from_tasktrail=notify_from_tasktrail,
        )

    # -- liveness, audit, maintenance (SPEC §4, §6, §7) ------------------------------------

    def set_probe(
        self,
        ref: str,
        kind: str,
        target: Mapping[str, Any] | None = None,
        *,
        tenant: str | None = None,
        now: datetime | None = None,
        actor: str | None = None,
    ) -> TaskRecord:
        """Register how the reconciler checks liveness: `heartbeat`, `pid` ({"pid": N},
        start time filled in), `http` ({"url": ..., "timeout": s}) or `cron` (by run id)."""
        from ledger.probes import set_probe

        record: TaskRecord = set_probe(
            self.engine,
            ref,
            kind,
            target,
            now=self._now(now),
            tenant=tenant,
            actor=actor or self.actor,
        )
        return record

    def record_cron_run(
        self,
        tenant: str,
        run_id: str,
        status: str,
        finished_at: datetime | None = None,
        summary: str | None = None,
        *,
        source_id: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record a cron run's outcome; the `cron` probe reads it by (tenant, run_id)."""
        from ledger.probes import record_cron_run

        now = self._now(now)
        record_cron_run(
            self.engine,
            tenant=tenant,
            run_id=run_id,
            status=status,
            finished_at=finished_at or now,
            summary=summary,
            source_id=source_id,
            now=now,
        )

    def reconcile(self, *, now: datetime | None = None, apply: bool = True) -> ReconcileReport:
        """One reconciliation pass (lease expiry -> probe -> recover / extend / lost)."""
        from ledger.reconcile import reconcile

        return reconcile(self.engine, self.config, now=self._now(now), apply=apply)

    def audit(
        self,
        *,
        now: datetime | None = None,
        severity: str | None = None,
        code: str | None = None,
        limit: int | None = None,
        tenant: str | None = None,
    ) -> AuditReport:
        """Findings (SPEC §6), errors first then oldest; the summary counts every match."""
        from ledger.audit import audit

        return audit(
            self.engine,
            self.config,
            now=self._now(now),
            severity=severity,
            code=code,
            limit=limit,
            tenant=tenant,
        )

    def maintenance(self, apply: bool = False, *, now: datetime | None = None) -> MaintenanceReport:
        """Preview (default) or apply: reconcile, finalize stuck cancels, requeue stuck
        deliveries, stamp cleanup_after, prune expired tasks in batches."""
        from ledger.maintenance import run_maintenance

        return run_maintenance(self.engine, self.config, now=self._now(now), apply=apply)

    def record_auditor_pass(
        self, job: str, interval: timedelta, *, now: datetime | None = None
    ) -> None:
        """The scheduled auditor completed a `job` pass (feeds the `auditor_gap` check)."""
        from ledger.audit import record_scheduled_pass

        record_scheduled_pass(self.engine, job, interval, now=self._now(now))

    def audit_digest(self, report: AuditReport, *, now: datetime | None = None) -> bool:
        """Queue one `audit_digest` notice to the ops channel when the set of error-level
        findings changed since the last digest. True when one was queued."""
        from ledger.audit import enqueue_digest

        return enqueue_digest(self.engine, self.config, report, now=self._now(now))

    # -- the context-manager producer ------------------------------------------------------

    def track(
        self,
        *,
        runtime: str,
        label: str,
        heartbeat_every: float | None = None,
        interrupt: bool = True,
        **create_options: Any,
    ) -> TrackedTask:
        """Create and start a task, heartbeat it from a background thread, and finish it:
        succeeded on normal exit, failed (with the exception text) on an exception,
        cancelled when an operator's cancel stopped the block."""
        from ledger.track import TrackedTask

        return TrackedTask(
            self,
            runtime=runtime,
            label=label,
            heartbeat_every=heartbeat_every,
            interrupt=interrupt,
            create_options=create_options,
        )
