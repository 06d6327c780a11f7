"""Leases, probes and lost verdicts on both databases (SPEC §4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger import Ledger, LedgerConfig
from ledger.probes import pid_target, process_start_time
from ledger.tasks import create_task
from tests.conftest import T0

M = timedelta(minutes=1)


@pytest.fixture
def config() -> LedgerConfig:
    # Passes in these tests are minutes apart; keep the outage guard out of the way here
    # (tests/integration/test_reconcile_outage.py covers it).
    return LedgerConfig(reconcile_interval=timedelta(hours=1))


def kinds(ledger: Ledger, ref: str) -> list[str]:
    return [e.kind for e in ledger.events(ref)]


def test_heartbeats_keep_a_task_alive_past_its_original_lease(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="long job")
    ledger.heartbeat(task.task_id, now=T0 + 4 * M)
    ledger.heartbeat(task.task_id, now=T0 + 8 * M)

    report = ledger.reconcile(now=T0 + 11 * M)

    assert report.marked_lost == ()
    assert ledger.get(task.task_id).status == "running"
    later = ledger.reconcile(now=T0 + 19 * M)
    assert later.marked_lost == (task.task_id,)
    lost = ledger.get(task.task_id)
    assert lost.status == "lost"
    assert "heartbeat probe" in (lost.error or "")
    assert lost.cleanup_after is not None


def test_an_expired_lease_is_not_lost_before_the_grace_window_ends(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="quiet job")

    waiting = ledger.reconcile(now=T0 + 9 * M)

    assert waiting.waiting == (task.task_id,)
    assert ledger.get(task.task_id).status == "running"
    assert ledger.reconcile(now=T0 + 10 * M).marked_lost == (task.task_id,)


def test_a_late_success_after_lost_is_recorded_as_recovered(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="slow agent")
    ledger.reconcile(now=T0 + 11 * M)
    assert ledger.get(task.task_id).status == "lost"

    done = ledger.finish(task.task_id, status="succeeded", summary="late but fine", now=T0 + 20 * M)

    assert done.status == "succeeded"
    assert kinds(ledger, task.task_id)[-2:] == ["marked_lost", "recovered"]


def test_queued_and_mirrored_tasks_are_never_reconciled(ledger: Ledger) -> None:
    queued = ledger.create(runtime="cli", label="waiting", queued=True)
    mirrored = create_task(
        ledger.engine,
        ledger.config,
        runtime="subagent",
        label="from openclaw",
        origin="openclaw",
        origin_ref="oc-1",
        now=T0,
    )

    report = ledger.reconcile(now=T0 + 3 * 60 * M)

    assert report.marked_lost == ()
    assert ledger.get(queued.task_id).status == "queued"
    assert ledger.get(mirrored.task_id).status == "running"


# -- pid ---------------------------------------------------------------------------------


def test_the_pid_probe_keeps_a_live_process_alive_and_catches_it_once_killed(
    ledger: Ledger,
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        task = ledger.create(
            runtime="cli", label="child", probe="pid", probe_target={"pid": child.pid}
        )
        assert task.probe_target == pid_target(child.pid)

        alive = ledger.reconcile(now=T0 + 6 * M)
        assert alive.lease_extended == (task.task_id,)
        assert ledger.get(task.task_id).lease_expires_at == T0 + 11 * M

        child.kill()
        child.wait()
        assert ledger.reconcile(now=T0 + 12 * M).marked_lost == ()  # in its grace window
        gone = ledger.reconcile(now=T0 + 17 * M)
    finally:
        child.kill()
        child.wait()

    assert gone.marked_lost == (task.task_id,)
    error = ledger.get(task.task_id).error or ""
    assert "pid probe" in error
    assert f"process {child.pid} no longer exists" in error


def test_the_pid_probe_does_not_mistake_a_recycled_pid_for_the_task(ledger: Ledger) -> None:
    # This test's own process is alive at that pid, but it is not the process that
    # registered: its start time differs.
    start = process_start_time(os.getpid())
    assert start is not None
    task = ledger.create(runtime="cli", label="old process")
    ledger.set_probe(task.task_id, "pid", {"pid": os.getpid(), "start_time": start - 1})

    report = ledger.reconcile(now=T0 + 11 * M)

    assert report.marked_lost == (task.task_id,)
    assert "belongs to another process" in (ledger.get(task.task_id).error or "")


# -- http --------------------------------------------------------------------------------


@pytest.fixture
def status_server() -> Iterator[str]:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/hang":
                release.wait(5)
                return
            answers: dict[str, tuple[int, Any]] = {
                "/alive": (200, {"status": "running"}),
                "/done": (200, {"status": "succeeded", "summary": "built 3 images"}),
                "/failed": (200, {"status": "failed", "error": "exit 2"}),
            }
            code, body = answers.get(self.path, (404, {"error": "no such run"}))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_http_probe_reads_alive_terminal_gone_and_silent_from_a_status_url(
    ledger: Ledger, status_server: str
) -> None:
    ids = {}
    for path in ("alive", "done", "failed", "gone", "hang"):
        task = ledger.create(runtime="acp", label=path)
        # 1.5 s: roomy enough that a busy CI moment cannot make a live server look silent.
        target = {"url": f"{status_server}/{path}", "timeout": 1.5}
        ledger.set_probe(task.task_id, "http", target)
        ids[path] = task.task_id

    started = time.monotonic()
    report = ledger.reconcile(now=T0 + 11 * M)
    elapsed = time.monotonic() - started

    assert elapsed < 6, "a hanging status URL must cost at most its timeout"
    assert report.lease_extended == (ids["alive"],)
    assert set(report.recovered) == {ids["done"], ids["failed"]}
    assert set(report.marked_lost) == {ids["gone"], ids["hang"]}
    done = ledger.get(ids["done"])
    assert (done.status, done.terminal_summary) == ("succeeded", "built 3 images")
    failed = ledger.get(ids["failed"])
    assert (failed.status, failed.error) == ("failed", "exit 2")
    assert "answered 404" in (ledger.get(ids["gone"]).error or "")
    assert "did not answer in 1.5s" in (ledger.get(ids["hang"]).error or "")
    assert ledger.get(ids["alive"]).status == "running"


# -- cron --------------------------------------------------------------------------------


def test_a_recorded_cron_run_turns_a_would_be_lost_task_into_succeeded(ledger: Ledger) -> None:
    task = ledger.create(runtime="cron", label="nightly", run_id="cron-42", probe="cron")
    ledger.record_cron_run("default", "cron-42", "succeeded", summary="42 rows", now=T0 + 3 * M)

    report = ledger.reconcile(now=T0 + 11 * M)

    assert report.recovered == (task.task_id,)
    done = ledger.get(task.task_id)
    assert (done.status, done.terminal_summary) == ("succeeded", "42 rows")


def test_a_cron_run_recorded_after_the_lost_verdict_recovers_the_task(ledger: Ledger) -> None:
    task = ledger.create(runtime="cron", label="hourly", run_id="cron-7", probe="cron")
    assert ledger.reconcile(now=T0 + 11 * M).marked_lost == (task.task_id,)

    ledger.record_cron_run("default", "cron-7", "failed", summary="disk full", now=T0 + 20 * M)
    report = ledger.reconcile(now=T0 + 21 * M)

    assert report.recovered == (task.task_id,)
    assert ledger.get(task.task_id).status == "failed"
    assert kinds(ledger, task.task_id)[-1] == "recovered"


def test_a_probe_registration_with_a_bad_target_is_refused_with_the_field_named(
    ledger: Ledger,
) -> None:
    from ledger.exceptions import InvalidInput

    task = ledger.create(runtime="cli", label="x")
    with pytest.raises(InvalidInput, match="url"):
        ledger.set_probe(task.task_id, "http", {"url": "ftp://nope"})
    with pytest.raises(InvalidInput, match="probe"):
        ledger.set_probe(task.task_id, "carrier-pigeon", None)
    assert ledger.get(task.task_id).probe_kind == "heartbeat"
