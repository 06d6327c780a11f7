"""The scheduled auditor (SPEC §6, §12): APScheduler 3.x jobs in worker threads.

Core jobs, each the same function the CLI calls:

- `reconcile` every `TASKTRAIL_RECONCILE_INTERVAL` (30 s): `Ledger.reconcile()`;
- `audit` every `TASKTRAIL_AUDIT_INTERVAL` (5 min): `Ledger.audit()`, then one
  `audit_digest` notice to `TASKTRAIL_OPS_CHANNEL` when the set of error-level findings
  changed (`Ledger.audit_digest`, through the delivery outbox);
- `maintenance` every `TASKTRAIL_MAINTENANCE_INTERVAL` (1 h): `Ledger.maintenance(apply=True)`;
- `proof` every `TASKTRAIL_PROOF_INTERVAL` (30 s): `Ledger.run_due_proof_checks()` (not
  recorded for `auditor_gap`).

Each completed core pass is recorded (`Ledger.record_auditor_pass`), which feeds the
`auditor_gap` audit code.

One pass at a time: on PostgreSQL every pass first takes `pg_try_advisory_lock(key)` (one
key per job) on a connection of its own and skips the pass when another process holds it;
the lock goes with the connection if the process dies. On a SQLite file the same is done
with an exclusive `flock` on `<database>.<job>.lock`. Within one process a job never
overlaps itself (`max_instances=1`).

Extending it: other parts of the bot add their own periodic work as `ScheduledJob`s, either
when building it::

    scheduler = build_scheduler(settings, ledger, extra_jobs=[
        ScheduledJob("proof_check", lambda: ledger.check_proofs(), timedelta(seconds=30)),
    ])

or later, before or after `start()`::

    scheduler.add_job(ScheduledJob("openclaw_watch", watch_once, timedelta(seconds=10)))

An extra job runs under the same one-process-at-a-time lock unless `exclusive=False`, and is
not recorded for `auditor_gap` unless `record=True`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.locks import try_advisory_lock
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from bot.settings import Settings
    from ledger import Ledger

log = logging.getLogger(__name__)

#: Base of the advisory lock keys; a job's key adds the crc32 of its name.
LOCK_NAMESPACE = "tasktrail:scheduler:"
#: How many findings the audit job fetches for its digest.
DIGEST_LIMIT = 500


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """A periodic job. `func` takes no arguments; its return value is ignored."""

    name: str
    func: Callable[[], object]
    interval: timedelta
    #: Run under the cross-process lock (one process runs a pass at a time).
    exclusive: bool = True
    #: Record each completed pass so `auditor_gap` notices when passes stop.
    record: bool = False
    #: Run once right after `start()` instead of waiting one interval.
    run_at_start: bool = True


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a job name."""
    return zlib.crc32((LOCK_NAMESPACE + name).encode()) | (0x7A5C << 32)


# -- the core jobs: the functions the CLI calls --------------------------------------------


def reconcile_pass(ledger: Ledger) -> object:
    return ledger.reconcile()


def audit_pass(ledger: Ledger) -> object:
    report = ledger.audit(limit=DIGEST_LIMIT)
    if ledger.audit_digest(report):
        log.info("audit: error-level findings changed; digest queued")
    return report


def maintenance_pass(ledger: Ledger) -> object:
    return ledger.maintenance(apply=True)


def proof_pass(ledger: Ledger, *, limit: int = 100, rounds: int = 5) -> int:
    """Due proof checks (`Ledger.run_due_proof_checks`); a full batch is followed by
    another, up to `rounds`, so a backlog drains within one pass. Returns checks run."""
    checked = 0
    for _ in range(rounds):
        result = ledger.run_due_proof_checks(limit=limit)
        checked += result.checked
        if result.checked:
            log.info(
                "proof: %d checked, %d passed, %d failed",
                result.checked,
                result.verified,
                result.failed,
            )
        if result.checked < limit:
            break
    return checked


def core_jobs(ledger: Ledger, settings: Settings) -> list[ScheduledJob]:
    config = settings.ledger
    return [
        ScheduledJob(
            "reconcile", lambda: reconcile_pass(ledger), config.reconcile_interval, record=True
        ),
        ScheduledJob("audit", lambda: audit_pass(ledger), config.audit_interval, record=True),
        ScheduledJob(
            "maintenance",
            lambda: maintenance_pass(ledger),
            config.maintenance_interval,
            record=True,
            run_at_start=False,
        ),
        ScheduledJob("proof", lambda: proof_pass(ledger), config.proof_interval),
    ]


class Auditor:
    """The scheduler: core jobs plus any added ones. `start()` returns at once (jobs run in
    worker threads); `shutdown()` waits for passes in flight."""

    def __init__(
        self,
        ledger: Ledger,
        jobs: Sequence[ScheduledJob] = (),
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.worker_id = worker_id
        self.clock = clock
        self.jobs: dict[str, ScheduledJob] = {}
        self._local_locks: dict[str, threading.Lock] = {}
        self._scheduler: Any = None
        for job in jobs:
            self.add_job(job)

    # -- jobs ------------------------------------------------------------------------------

    def add_job(self, job: ScheduledJob) -> None:
        if job.interval <= timedelta(0):
            raise ValueError(f"job {job.name!r}: interval must be positive")
        if job.name in self.jobs:
            raise ValueError(f"a job named {job.name!r} is already scheduled")
        self.jobs[job.name] = job
        self._local_locks[job.name] = threading.Lock()
        if self._scheduler is not None:
            self._schedule(job)

    def run_job(self, name: str) -> bool:
        """Run one pass of `name` now, under its locks. False when another thread or process
        was running it (the pass is skipped, not queued). Errors are logged, not raised."""
        job = self.jobs[name]
        local = self._local_locks[name]
        if not local.acquire(blocking=False):
            return False
        try:
            with self._exclusive(job) as held:
                if not held:
                    log.debug("%s: another process is running this pass; skipped", name)
                    return False
                try:
                    job.func()
                except Exception:
                    log.exception("scheduled %s pass failed", name)
                    return True
                if job.record:
                    try:
                        self.ledger.record_auditor_pass(name, job.interval, now=self.clock())
                    except Exception:
                        log.exception("could not record the %s pass", name)
                return True
        finally:
            local.release()

    @contextlib.contextmanager
    def _exclusive(self, job: ScheduledJob) -> Iterator[bool]:
        if not job.exclusive:
            yield True
            return
        engine = self.ledger.engine
        if engine.dialect.name == "postgresql":
            key = lock_key(job.name)
            with try_advisory_lock(engine, key) as held:
                yield held
            return
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database and database != ":memory:":
            with _file_lock(Path(f"{database}.{job.name}.lock")) as held:
                yield held
            return
        yield True

    # -- lifecycle -------------------------------------------------------------------------

    def _schedule(self, job: ScheduledJob) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        seconds = job.interval.total_seconds()
        options: dict[str, Any] = {"next_run_time": utcnow()} if job.run_at_start else {}
        self._scheduler.add_job(
            self.run_job,
            IntervalTrigger(seconds=seconds),
            args=[job.name],
            id=job.name,
            name=job.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
            replace_existing=True,
            **options,
        )

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        if self._scheduler is not None:
            return
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max(4, len(self.jobs) + 1))},
            timezone="UTC",
        )
        for job in self.jobs.values():
            self._schedule(job)
        self._scheduler.start()
        log.info("scheduled auditor started: %s", ", ".join(sorted(self.jobs)))

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler is None:
            return
        scheduler, self._scheduler = self._scheduler, None
        scheduler.shutdown(wait=wait)

    @property
    def running(self) -> bool:
        return self._scheduler is not None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    import fcntl

    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole pass
    except OSError:
        yield True  # cannot lock (read-only directory): run; passes are CAS-safe anyway
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def build_scheduler(
    settings: Settings,
    ledger: Ledger,
    *,
    worker_id: str | None = None,
    extra_jobs: Sequence[ScheduledJob] = (),
) -> Auditor:
    """The scheduled auditor for `serve`, `worker` and `auditor`: the core jobs plus
    `extra_jobs`. Nothing runs until `start()`."""
    return Auditor(ledger, [*core_jobs(ledger, settings), *extra_jobs], worker_id=worker_id)


def run_until_signalled(auditor: Auditor, stop: threading.Event | None = None) -> None:
    """Start `auditor` and block until SIGINT/SIGTERM (or `stop` is set), then shut down."""
    import signal

    stop = stop or threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping the scheduled auditor", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        auditor.start()
        while not stop.wait(0.5):
            pass
    finally:
        auditor.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
