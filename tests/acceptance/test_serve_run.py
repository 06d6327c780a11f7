"""`tasktrail run` with real subprocesses: exit codes, timeout, redaction, and a cancel from
another process that takes down the whole process group (grandchildren included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ledger import Ledger
from tests.acceptance.serve_process import TASKTRAIL, env_for, serve, tasktrail


def _show(db_url: str, ref: str) -> dict[str, object]:
    with Ledger.connect(db_url) as ledger:
        return ledger.get(ref).to_json()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_succeeding_command_is_recorded_with_its_output_tail(sqlite_url: str) -> None:
    result = tasktrail(
        sqlite_url,
        "run",
        "--runtime",
        "cli",
        "--label",
        "greet",
        "--run-id",
        "ok-1",
        "--",
        sys.executable,
        "-c",
        "print('hello from the job')",
    )
    assert result.returncode == 0, result.stderr
    assert "hello from the job" in result.stdout  # streamed through
    task = _show(sqlite_url, "ok-1")
    assert task["status"] == "succeeded"
    assert task["terminal_summary"] == "hello from the job"


def test_a_failing_command_keeps_its_exit_code_and_secrets_are_redacted(sqlite_url: str) -> None:
    script = (
        "import sys; print('connecting with password=hunter2 token: xoxb-1234-5678-abcdefgh');"
        "print('Authorization: Bearer abcdefghijklmnop', file=sys.stderr);"
        "print('aws AKIAABCDEFGHIJKLMNOP ghp_abcdefghijklmnopqrstuvwxyz0123'); sys.exit(3)"
    )
    result = tasktrail(
        sqlite_url,
        "run",
        "--runtime",
        "cli",
        "--label",
        "deploy",
        "--run-id",
        "bad-1",
        "--",
        sys.executable,
        "-c",
        script,
    )
    assert result.returncode == 3
    task = _show(sqlite_url, "bad-1")
    assert task["status"] == "failed"
    assert task["error"] == "exit code 3"
    summary = str(task["terminal_summary"])
    for secret in ("hunter2", "xoxb-1234", "abcdefghijklmnop", "AKIAABCDEFGHIJKLMNOP", "ghp_abc"):
        assert secret not in summary, summary
    assert "[REDACTED]" in summary


def test_a_command_past_its_timeout_is_stopped_and_recorded_timed_out(sqlite_url: str) -> None:
    started = time.monotonic()
    result = tasktrail(
        sqlite_url,
        "run",
        "--runtime",
        "cli",
        "--label",
        "slow",
        "--run-id",
        "slow-1",
        "--timeout",
        "1",
        "--",
        "sleep",
        "30",
    )
    assert time.monotonic() - started < 15
    assert result.returncode == 128 + signal.SIGTERM
    task = _show(sqlite_url, "slow-1")
    assert task["status"] == "timed_out"
    assert "timed out after 1 s" in str(task["error"])


def test_a_missing_command_fails_the_task_with_exit_code_127(sqlite_url: str) -> None:
    result = tasktrail(
        sqlite_url,
        "run",
        "--runtime",
        "cli",
        "--label",
        "typo",
        "--run-id",
        "nf-1",
        "--",
        "definitely-not-a-command-xyz",
    )
    assert result.returncode == 127
    assert _show(sqlite_url, "nf-1")["status"] == "failed"


def _start_run(db_url: str, pid_file: Path, *extra: str) -> subprocess.Popen[str]:
    # The job starts a grandchild that ignores SIGTERM; both must be gone after the cancel.
    script = (
        f"import subprocess, sys, time; "
        f"g = subprocess.Popen([sys.executable, '-c', "
        f"'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']); "
        f"open({str(pid_file)!r}, 'w').write(str(g.pid)); time.sleep(300)"
    )
    return subprocess.Popen(
        [
            TASKTRAIL,
            "run",
            "--runtime",
            "cli",
            "--label",
            "long job",
            "--run-id",
            "cx-1",
            "--heartbeat-interval",
            "0.3",
            "--kill-grace",
            "1",
            *extra,
            "--",
            sys.executable,
            "-c",
            script,
        ],
        env=env_for(db_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_file(path: Path, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the job never started its grandchild"
        time.sleep(0.05)
    return int(path.read_text())


def test_a_cancel_from_another_process_kills_the_whole_process_group(
    db_url: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    proc = _start_run(db_url, pid_file)
    grandchild = _wait_for_file(pid_file, proc)
    assert _alive(grandchild)
    cancelled = tasktrail(db_url, "cancel", "cx-1", "--reason", "operator said so")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel requested" in cancelled.stdout
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    task = _show(db_url, "cx-1")
    assert task["status"] == "cancelled"
    assert "operator said so" in str(task["terminal_summary"])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the grandchild survived the cancel"


def test_run_through_a_remote_serve_records_and_honours_cancel(
    sqlite_url: str, tmp_path: Path
) -> None:
    token = tasktrail(sqlite_url, "token", "create", "--tenant", "ci").stdout.strip()
    with serve(sqlite_url) as served:
        ok = subprocess.run(
            [
                TASKTRAIL,
                "run",
                "--api",
                served.url,
                "--token",
                token,
                "--runtime",
                "cli",
                "--label",
                "remote ok",
                "--run-id",
                "remote-1",
                "--",
                "sh",
                "-c",
                "echo done; exit 4",
            ],
            env=env_for("sqlite:////nonexistent/never-used.db"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ok.returncode == 4, ok.stderr
        client = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {token}"})
        with client:
            task = client.get("/api/v1/tasks/remote-1").json()["task"]
            assert (task["status"], task["tenant"], task["error"]) == (
                "failed",
                "ci",
                "exit code 4",
            )
            assert task["terminal_summary"] == "done"

            pid_file = tmp_path / "remote.pid"
            proc = _start_run(
                "sqlite:////nonexistent/never-used.db",
                pid_file,
                "--api",
                served.url,
                "--token",
                token,
            )
            grandchild = _wait_for_file(pid_file, proc)
            assert client.post("/api/v1/tasks/cx-1/cancel", json={}).status_code == 200
            proc.communicate(timeout=30)
            assert proc.returncode == 128 + signal.SIGTERM
            assert client.get("/api/v1/tasks/cx-1").json()["task"]["status"] == "cancelled"
        deadline = time.monotonic() + 5
        while _alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(grandchild)


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("password=hunter2", "hunter2"),
        ("DB_PASSWORD: s3cr3t!", "s3cr3t!"),
        ("export GITHUB_TOKEN=ghp_0123456789abcdefghij", "ghp_0123456789"),
        ("url=postgres://app:pa55w0rd@db/prod", "pa55w0rd"),
        ("SLACK_BOT_TOKEN=xoxb-1-2-abcdef", "xoxb-1"),
        ("api_key='k-123456'", "k-123456"),
    ],
)
def test_redaction_hides_likely_secrets(text: str, hidden: str) -> None:
    from bot.cli.run import redact

    assert hidden not in redact(text)
