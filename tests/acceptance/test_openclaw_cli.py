"""`tasktrail import openclaw` as an operator runs it: a subprocess against a copy of the
shared OpenClaw sample, a JSON report, the default location, and `--watch` until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.openclaw_helpers import (
    copy_sample,
    next_event_ms,
    one_source_row,
    source_counts,
    source_query,
    source_write,
)

TASKTRAIL = [sys.executable, "-m", "bot"]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "OPENCLAW_"))}
    return {**base, "COLUMNS": "400", **extra}


def run(*args: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*TASKTRAIL, *args],
        capture_output=True,
        text=True,
        env=environ or env(),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def test_import_prints_a_json_report_and_show_finds_tasks_by_their_openclaw_id(
    sqlite_url: str, tmp_path: Path
) -> None:
    source = copy_sample(tmp_path / "openclaw")

    report: dict[str, Any] = json.loads(
        run("--db", sqlite_url, "import", "openclaw", "--openclaw-db", str(source), "--json").stdout
    )

    assert report["schema_version"] == 1
    assert report["import"]["created"] == sum(source_counts(source, "status").values())
    assert report["import"]["by_status"] == source_counts(source, "status")
    ref, _ = one_source_row(source, "delivery_status = 'session_queued'")
    shown = json.loads(run("--db", sqlite_url, "show", ref, "--json").stdout)["task"]
    assert shown["origin"]["source"] == "openclaw"
    assert shown["origin"]["ref"] == ref
    assert shown["origin"]["detail"]["delivery_status"] == "session_queued"
    text = run("--db", sqlite_url, "show", ref).stdout
    assert "openclaw: session_queued" in text


def test_the_default_location_is_under_openclaw_state_dir(sqlite_url: str, tmp_path: Path) -> None:
    state_dir = tmp_path / "openclaw"
    copy_sample(state_dir)

    result = run(
        "--db",
        sqlite_url,
        "import",
        "openclaw",
        environ=env(OPENCLAW_STATE_DIR=str(state_dir)),
    )

    assert str(state_dir / "state" / "openclaw.sqlite") in result.stdout
    assert "0 skipped" in result.stdout


def test_watch_mirrors_changes_within_the_interval_and_stops_on_sigterm(
    sqlite_url: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "openclaw"
    source = copy_sample(state_dir)
    command = [
        *TASKTRAIL,
        "--db",
        sqlite_url,
        "import",
        "openclaw",
        "--state-dir",
        str(state_dir),
        "--watch",
        "--interval",
        "0.2",
        "--json",
    ]
    ref, _ = one_source_row(source, "status = 'running'")
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env()
    ) as watcher:
        try:
            assert watcher.stdout is not None
            first = json.loads(watcher.stdout.readline())
            assert first["import"]["created"] > 0
            at = next_event_ms(source)
            source_write(
                source,
                "UPDATE task_runs SET status = 'failed', error = 'boom', ended_at = ?, "
                "last_event_at = ? WHERE task_id = ?",
                (at, at, ref),
            )
            deadline = time.monotonic() + 30
            updated = 0
            while time.monotonic() < deadline and not updated:
                updated = json.loads(watcher.stdout.readline())["import"]["updated"]
            assert updated == 1
            watcher.send_signal(signal.SIGTERM)
            assert watcher.wait(timeout=30) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
    shown = json.loads(run("--db", sqlite_url, "show", ref, "--json").stdout)["task"]
    assert (shown["status"], shown["error"]) == ("failed", "boom")
    assert source_query(source, "SELECT status FROM task_runs WHERE task_id = ?", (ref,)) == [
        ("failed",)
    ]
