"""`tasktrail deliveries`, `retry` and `dismiss` as an operator runs them (subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

from ledger import Ledger
from ledger.delivery import DeliveryWorker
from ledger.testing import RecordingTransport

TASKTRAIL = [sys.executable, "-m", "bot"]


def run(db_url: str, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    result = subprocess.run(
        [*TASKTRAIL, "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if check is not None:
        assert result.returncode == check, (result.stdout, result.stderr)
    return result


def deliveries(db_url: str, *args: str) -> list[dict[str, Any]]:
    document = json.loads(run(db_url, "deliveries", "--json", *args).stdout)
    assert document["schema_version"] == 1
    rows: list[dict[str, Any]] = document["deliveries"]
    return rows


def fail_every_route(db_url: str) -> str:
    """One finished task whose completion could not be delivered anywhere."""
    ledger = Ledger.connect(db_url)
    try:
        task = ledger.create(runtime="cli", label="nightly", reply_to="slack:T1/C1/1.000100@U1")
        ledger.finish(task.task_id, status="failed", error="exit 2")
        transport = RecordingTransport()
        transport.dead = {"slack:T1/C1", "dm:U1"}
        asyncio.run(DeliveryWorker(ledger, transports=[transport]).run_once())
        return task.task_id
    finally:
        ledger.close()


def test_deliveries_lists_the_outbox_and_filters_by_status(db_url: str) -> None:
    task_id = fail_every_route(db_url)
    (row,) = deliveries(db_url)
    assert (row["task_id"], row["kind"], row["status"]) == (task_id, "terminal", "failed")
    assert "all routes failed" in row["last_error"]
    assert deliveries(db_url, "--status", "pending") == []
    table = run(db_url, "deliveries").stdout
    assert "failed" in table
    assert task_id[:8] in table


def test_retry_requeues_a_failed_delivery_under_a_new_generation(db_url: str) -> None:
    task_id = fail_every_route(db_url)
    out = run(db_url, "retry", task_id[:6]).stdout
    assert f"re-queued 1 failed deliveries of {task_id}" in out
    (pending,) = deliveries(db_url, "--status", "pending")
    assert pending["generation"] == 2
    shown = json.loads(run(db_url, "show", task_id, "--json").stdout)
    assert shown["task"]["delivery_status"] == "pending"
    assert "no failed deliveries" in run(db_url, "retry", task_id).stdout


def test_dismiss_marks_failed_deliveries_handled(db_url: str) -> None:
    task_id = fail_every_route(db_url)
    assert "dismissed 1 failed deliveries" in run(db_url, "dismiss", task_id).stdout
    assert deliveries(db_url, "--status", "failed") == []
    shown = json.loads(run(db_url, "show", task_id, "--json").stdout)
    assert shown["task"]["delivery_status"] == "dismissed"


def test_retry_of_an_unknown_task_says_so_and_exits_1(db_url: str) -> None:
    result = run(db_url, "retry", "no-such-task", check=1)
    assert "no task matches 'no-such-task'" in result.stderr
