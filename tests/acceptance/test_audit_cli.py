"""`tasktrail audit`, `maintenance` and `auditor` as an operator runs them: a subprocess,
JSON documents (SPEC §8 shapes) and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

from ledger import Ledger
from ledger.timeutil import utcnow

TASKTRAIL = [sys.executable, "-m", "bot"]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}


def run(db_url: str, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*TASKTRAIL, "--db", db_url, *args],
        capture_output=True,
        text=True,
        env={**env(), "COLUMNS": "400"},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == code, (result.stdout, result.stderr)
    return result


def document(db_url: str, *args: str, code: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run(db_url, *args, "--json", code=code).stdout)
    assert doc["schema_version"] == 1
    return doc


def test_audit_exits_one_on_error_findings_and_maintenance_always_exits_zero(
    db_url: str,
) -> None:
    empty = document(db_url, "audit")
    assert set(empty) == {"schema_version", "summary", "findings"}
    assert (empty["findings"], empty["summary"]["total"]) == ([], 0)
    an_hour_ago = utcnow() - timedelta(hours=1)
    with Ledger.connect(db_url) as ledger:
        quiet = ledger.create(runtime="subagent", label="went quiet", now=an_hour_ago)
        waiting = ledger.create(runtime="cli", label="never started", queued=True, now=an_hour_ago)

    before = document(db_url, "audit", code=1)
    assert [(f["code"], f["task_id"]) for f in before["findings"]] == [
        ("stale_running", quiet.task_id),
        ("stale_queued", waiting.task_id),
    ]
    assert set(before["findings"][0]) >= {
        "code",
        "severity",
        "task_id",
        "status",
        "age_seconds",
        "detail",
        "remedy",
    }

    preview = document(db_url, "maintenance")
    assert preview["mode"] == "preview"
    assert preview["actions"]["marked_lost"] == [quiet.task_id]
    assert preview["audit_before"]["errors"] == 1
    applied = document(db_url, "maintenance", "--apply")
    assert applied["mode"] == "apply"
    assert applied["actions"]["marked_lost"] == [quiet.task_id]
    assert applied["audit_after"]["by_code"]["lost"] == 1

    errors = document(db_url, "audit", "--severity", "error", code=1)
    assert [(f["code"], f["task_id"]) for f in errors["findings"]] == [("lost", quiet.task_id)]
    text = run(db_url, "audit", code=1).stdout
    assert "lost" in text and "tasktrail dismiss" in text
    run(db_url, "dismiss", quiet.task_id)
    assert run(db_url, "audit").returncode == 0


def test_the_auditor_runs_until_sigterm_and_records_its_passes(db_url: str) -> None:
    proc = subprocess.Popen(
        [*TASKTRAIL, "--db", db_url, "auditor"],
        env={**env(), "TASKTRAIL_RECONCILE_INTERVAL": "1s"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        with Ledger.connect(db_url) as ledger:
            while time.monotonic() < deadline:
                gaps = ledger.audit(code="auditor_gap", now=utcnow() + timedelta(hours=1))
                if gaps.findings:  # a pass was recorded (and an hour later it is overdue)
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the auditor never recorded a pass")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "stopping the scheduled auditor" in stderr
