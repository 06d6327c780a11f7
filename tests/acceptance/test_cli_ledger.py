"""The ledger CLI as a user runs it: a subprocess, JSON documents, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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
        assert result.returncode == check, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def as_json(db_url: str, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(run(db_url, *args, "--json").stdout)
    assert document["schema_version"] == 1
    return document


def test_create_show_finish_round_trip_in_json(db_url: str) -> None:
    created = as_json(
        db_url,
        "create",
        "--runtime",
        "subagent",
        "--label",
        "deploy-check",
        "--run-id",
        "r-1",
        "--reply-to",
        "slack:T1/C1/1700000000.000100@U1",
        "--notify",
        "state_changes",
    )["task"]
    assert created["status"] == "running"
    assert created["reply_to"] == {
        "platform": "slack",
        "team": "T1",
        "channel": "C1",
        "thread": "1700000000.000100",
        "user": "U1",
    }
    assert created["created_at"].endswith("Z")
    task_id = created["task_id"]
    run(db_url, "progress", task_id[:6], "built")
    finished = as_json(db_url, "finish", "r-1", "--status", "succeeded", "--summary", "ok")
    assert finished["task"]["status"] == "succeeded"
    shown = as_json(db_url, "show", task_id, "--events")
    assert shown["task"]["task_id"] == task_id
    assert shown["task"]["artifacts"] == []
    assert "deliveries" in shown["task"]
    assert [e["kind"] for e in shown["events"]][:3] == ["created", "progress", "finished"]


def test_list_json_has_the_spec_shape_and_is_stable_between_reads(db_url: str) -> None:
    for i in range(3):
        run(db_url, "create", "--runtime", "cli", "--label", f"job {i}")
    first = run(db_url, "list", "--json", "--limit", "2").stdout
    second = run(db_url, "list", "--json", "--limit", "2").stdout
    assert first == second  # no values computed from the current time
    document = json.loads(first)
    assert set(document) == {"schema_version", "tasks", "next_cursor"}
    assert len(document["tasks"]) == 2
    rest = as_json(db_url, "list", "--cursor", document["next_cursor"])
    assert len(rest["tasks"]) == 1
    assert rest["next_cursor"] is None
    everything = as_json(db_url, "list", "--all")
    assert len(everything["tasks"]) == 3


def test_no_command_lists_tasks_as_a_table(db_url: str) -> None:
    run(db_url, "create", "--runtime", "cli", "--label", "visible in the table")
    out = run(db_url).stdout
    assert "visible in the table" in out
    assert "STATUS" in out


def test_exit_codes_follow_the_spec(db_url: str) -> None:
    missing = run(db_url, "show", "nosuchtask", check=1)
    assert "no task matches 'nosuchtask'" in missing.stderr
    assert "Traceback" not in missing.stderr
    usage = run(db_url, "finish", "x", "--status", "exploded", check=2)
    assert "exploded" in usage.stderr
    created = as_json(db_url, "create", "--runtime", "cli", "--label", "once")["task"]
    run(db_url, "finish", created["task_id"], "--status", "succeeded")
    refused = run(db_url, "finish", created["task_id"], "--status", "failed", check=1)
    assert "is succeeded; cannot move it to failed" in refused.stderr
    too_long = run(db_url, "create", "--runtime", "cli", "--label", "x" * 10_000, check=2)
    assert "at most 5,000" in too_long.stderr


def test_cancel_notify_and_artifact_commands(db_url: str) -> None:
    task_id = as_json(db_url, "create", "--runtime", "subagent", "--label", "x")["task"]["task_id"]
    run(db_url, "notify", task_id, "silent")
    run(
        db_url,
        "artifact",
        task_id,
        "--kind",
        "url",
        "--value",
        "https://example.test/",
        "--expect-status",
        "200",
        "--expect-text",
        "ok",
    )
    cancelled = run(db_url, "cancel", task_id, "--reason", "not needed")
    assert "no runner was reachable" in cancelled.stdout
    shown = as_json(db_url, "show", task_id)["task"]
    assert shown["status"] == "cancelled"
    assert shown["notify_policy"] == "silent"
    assert shown["artifacts"][0]["proof"] == {"expect_status": 200, "expect_text": "ok"}


def test_default_database_is_created_in_the_user_data_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["XDG_DATA_HOME"] = str(tmp_path)
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [*TASKTRAIL, "create", "--runtime", "cli", "--label", "first use"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tasktrail" / "ledger.db").exists()


@pytest.mark.parametrize("ref_kind", ["id", "prefix", "run_id", "session"])
def test_show_resolves_every_kind_of_ref(db_url: str, ref_kind: str) -> None:
    task = as_json(
        db_url,
        "create",
        "--runtime",
        "acp",
        "--label",
        "x",
        "--run-id",
        "run-77",
        "--child-session",
        "agent:main:acp:9",
    )["task"]
    ref = {
        "id": task["task_id"],
        "prefix": task["task_id"][:5],
        "run_id": "run-77",
        "session": "agent:main:acp:9",
    }[ref_kind]
    assert as_json(db_url, "show", ref)["task"]["task_id"] == task["task_id"]


def test_artifact_takes_every_proof_expectation_and_proof_check_verifies_a_commit(
    sqlite_url: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.test", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "deploy"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    task_id = as_json(sqlite_url, "create", "--runtime", "cli", "--label", "publish")["task"][
        "task_id"
    ]
    run(sqlite_url, "artifact", task_id, "--kind", "commit", "--value", sha, "--repo", str(repo))
    bad = run(
        sqlite_url,
        "artifact",
        task_id,
        "--kind",
        "file",
        "--value",
        str(repo / "x"),
        "--sha256",
        "nothex",
        check=2,
    )
    assert "proof.sha256" in bad.stderr
    checked = run(sqlite_url, "proof", "check", task_id)
    assert "verified" in checked.stdout
    shown = as_json(sqlite_url, "show", task_id)["task"]
    assert [a["kind"] for a in shown["artifacts"]] == ["commit"]
    assert shown["artifacts"][0]["proof"] == {"repo": str(repo)}
    assert shown["artifacts"][0]["proof_status"] == "verified"
