"""The scheduled auditor: jobs, pass records, the digest, and one pass at a time across
processes (PostgreSQL advisory lock; flock on a SQLite file)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.scheduler import Auditor, ScheduledJob, build_scheduler
from bot.settings import Settings
from ledger import Ledger, LedgerConfig
from tests.conftest import T0

M = timedelta(minutes=1)

PASS_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from datetime import timedelta
    from bot.scheduler import Auditor, ScheduledJob
    from ledger import Ledger

    url, log_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    ledger = Ledger.connect(url)

    def one_pass():
        start = time.time()
        ledger.reconcile()
        time.sleep(0.05)  # long enough that an overlap could not go unnoticed
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {start} {time.time()}\\n")

    auditor = Auditor(ledger, [ScheduledJob("reconcile", one_pass, timedelta(seconds=30))])
    ran = skipped = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        if auditor.run_job("reconcile"):
            ran += 1
        else:
            skipped += 1
        time.sleep(0.01)
    print(ran, skipped)
    ledger.close()
    """
)


def test_two_scheduler_processes_never_run_a_pass_at_the_same_time(
    ledger: Ledger, tmp_path: Path
) -> None:
    script = tmp_path / "passes.py"
    script.write_text(PASS_SCRIPT)
    log = tmp_path / "passes.log"
    url = ledger.engine.url.render_as_string(hide_password=False)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, str(log), "1.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)

    passes = sorted(
        (float(start), float(end), pid)
        for pid, start, end in (line.split() for line in log.read_text().splitlines())
    )
    assert len(passes) >= 5
    for (_, end, _), (next_start, _, _) in itertools.pairwise(passes):
        assert next_start >= end, "two passes overlapped"
    skipped = sum(int(out[1]) for out in outputs)
    assert skipped > 0, "the processes never contended for the lock"


def test_a_pass_is_skipped_while_another_thread_runs_the_same_job(ledger: Ledger) -> None:
    inside = threading.Event()
    release = threading.Event()

    def slow() -> None:
        inside.set()
        release.wait(5)

    auditor = Auditor(ledger, [ScheduledJob("slow", slow, timedelta(seconds=30))])
    worker = threading.Thread(target=auditor.run_job, args=["slow"])
    worker.start()
    assert inside.wait(5)
    try:
        assert auditor.run_job("slow") is False
    finally:
        release.set()
        worker.join(5)
    assert auditor.run_job("slow") is True


def settings_with(**ledger_values: object) -> Settings:
    return Settings(ledger=LedgerConfig(**ledger_values))  # type: ignore[arg-type]


@pytest.fixture
def config() -> LedgerConfig:
    return LedgerConfig(ops_channel="slack:T1/COPS")


def test_core_jobs_record_their_passes_and_audit_queues_a_digest(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="vanishes")
    auditor = build_scheduler(settings_with(ops_channel="slack:T1/COPS"), ledger)
    auditor.clock = lambda: T0 + 11 * M
    ledger.clock = lambda: T0 + 11 * M

    assert auditor.run_job("reconcile")
    assert ledger.get(task.task_id).status == "lost"
    assert auditor.run_job("audit")
    assert auditor.run_job("audit")  # same findings: no second digest

    digests = [d for d in ledger.deliveries(limit=None) if d.kind == "audit_digest"]
    assert len(digests) == 1
    assert digests[0].payload["findings"][0]["task_id"] == task.task_id
    assert ledger.audit(code="auditor_gap", now=T0 + 12 * M).findings == ()
    gap = ledger.audit(code="auditor_gap", now=T0 + 13 * M).findings
    assert [f.detail.split(" pass")[0] for f in gap] == ["the scheduled reconcile"]


def test_the_scheduler_runs_its_jobs_and_extra_jobs_in_worker_threads(ledger: Ledger) -> None:
    ran: list[str] = []
    extra_done = threading.Event()
    added_done = threading.Event()

    def extra() -> None:
        ran.append(threading.current_thread().name)
        extra_done.set()

    auditor = build_scheduler(
        settings_with(reconcile_interval=timedelta(milliseconds=200)),
        ledger,
        extra_jobs=[ScheduledJob("proof_check", extra, timedelta(seconds=60))],
    )
    auditor.clock = lambda: T0
    auditor.start()
    try:
        auditor.add_job(ScheduledJob("openclaw_watch", added_done.set, timedelta(seconds=60)))
        assert extra_done.wait(5)
        assert added_done.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if ledger.audit(code="auditor_gap", now=T0 + 10 * M).findings:
                break  # the reconcile pass was recorded (and is overdue 10 min later)
            time.sleep(0.05)
        else:
            pytest.fail("the reconcile job never recorded a pass")
    finally:
        auditor.shutdown()
    assert ran and ran[0] != threading.main_thread().name
    assert not auditor.running
    with pytest.raises(ValueError, match="already scheduled"):
        auditor.add_job(ScheduledJob("proof_check", extra, timedelta(seconds=1)))
