"""Notify policies (SPEC §5): which notices each policy makes due on each status path,
written in the same transaction as the change, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from ledger import Ledger, Status
from ledger.db import write
from ledger.lookup import fetch_row
from ledger.notify import enqueue_task_notice
from ledger.schema import deliveries_table
from ledger.transitions import transition
from tests.conftest import T0

THREAD = "slack:T1/C1/1700000000.000100@U1"
PAYLOAD_KEYS = {
    "task_id",
    "short_id",
    "label",
    "status",
    "runtime",
    "task_kind",
    "summary",
    "error",
    "proof",
    "notify_policy",
    "reply_to",
    "event",
    "at",
}


def kinds(ledger: Ledger, task_id: str, *, open_only: bool = False) -> list[str]:
    rows = sorted(ledger.deliveries(task=task_id, limit=None), key=lambda d: d.id)
    return [d.kind for d in rows if not open_only or d.status != "superseded"]


def follower_count(ledger: Ledger, task_id: str) -> int:
    with write(ledger.engine) as conn:
        row = fetch_row(conn, task_id)
        assert row is not None
        return int(row["follower_count"])


def mark_lost(ledger: Ledger, task_id: str) -> None:
    with write(ledger.engine) as conn:
        row = fetch_row(conn, task_id)
        assert row is not None
        transition(
            conn,
            row,
            Status.LOST,
            now=T0 + timedelta(minutes=20),
            config=ledger.config,
            actor="test",
            extra={"error": "lease expired, no probe"},
        )


def run_succeeds(ledger: Ledger, policy: str) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=THREAD, notify=policy)
    ledger.finish(task.task_id, status="succeeded", summary="done", now=T0 + timedelta(seconds=5))
    return task.task_id


def run_fails(ledger: Ledger, policy: str) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=THREAD, notify=policy)
    ledger.finish(task.task_id, status="failed", error="boom", now=T0 + timedelta(seconds=5))
    return task.task_id


def run_times_out(ledger: Ledger, policy: str) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=THREAD, notify=policy)
    ledger.finish(task.task_id, status="timed_out", now=T0 + timedelta(seconds=5))
    return task.task_id


def run_cancelled(ledger: Ledger, policy: str) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=THREAD, notify=policy)
    ledger.cancel(task.task_id, reason="not needed", now=T0 + timedelta(seconds=5))
    return task.task_id


def queued_started_succeeds(ledger: Ledger, policy: str) -> str:
    task = ledger.create(
        runtime="subagent", label="build", reply_to=THREAD, notify=policy, queued=True
    )
    ledger.start(task.task_id, now=T0 + timedelta(seconds=1))
    ledger.finish(task.task_id, status="succeeded", now=T0 + timedelta(seconds=5))
    return task.task_id


def queued_cancelled(ledger: Ledger, policy: str) -> str:
    task = ledger.create(
        runtime="subagent", label="build", reply_to=THREAD, notify=policy, queued=True
    )
    ledger.cancel(task.task_id, now=T0 + timedelta(seconds=5))
    return task.task_id


def goes_lost(ledger: Ledger, policy: str) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=THREAD, notify=policy)
    mark_lost(ledger, task.task_id)
    return task.task_id


def lost_then_recovered(ledger: Ledger, policy: str) -> str:
    task_id = goes_lost(ledger, policy)
    ledger.finish(task_id, status="succeeded", now=T0 + timedelta(minutes=30))
    return task_id


PATHS: dict[str, tuple[Callable[[Ledger, str], str], dict[str, list[str]]]] = {
    "running -> succeeded": (
        run_succeeds,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "running -> failed": (
        run_fails,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "running -> timed_out": (
        run_times_out,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "running -> cancelled": (
        run_cancelled,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "queued -> running -> succeeded": (
        queued_started_succeeds,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "queued -> cancelled": (
        queued_cancelled,
        {"done_only": ["terminal"], "state_changes": ["terminal"]},
    ),
    "running -> lost": (
        goes_lost,
        {"done_only": ["terminal"], "state_changes": ["started", "terminal"]},
    ),
    "lost -> succeeded (late truth)": (
        lost_then_recovered,
        {
            "done_only": ["terminal", "correction"],
            "state_changes": ["started", "terminal", "correction"],
        },
    ),
}


@pytest.mark.parametrize("policy", ["done_only", "state_changes", "silent"])
@pytest.mark.parametrize("path", list(PATHS))
def test_each_policy_on_each_status_path_queues_exactly_the_expected_notices(
    ledger: Ledger, policy: str, path: str
) -> None:
    scenario, expected = PATHS[path]
    task_id = scenario(ledger, policy)
    assert kinds(ledger, task_id) == expected.get(policy, [])
    task = ledger.get(task_id)
    assert task.delivery_status == ("not_applicable" if policy == "silent" else "pending")


def test_a_terminal_notice_carries_the_payload_contract(ledger: Ledger) -> None:
    task = ledger.create(
        runtime="cli", label="deploy", reply_to=THREAD, task_kind="deploy", proof_required=True
    )
    ledger.finish(task.task_id, status="succeeded", summary="shipped", now=T0 + timedelta(1))
    (notice,) = ledger.deliveries(task=task.task_id)
    assert set(notice.payload) == PAYLOAD_KEYS
    assert notice.payload["status"] == "succeeded"
    assert notice.payload["summary"] == "shipped"
    assert notice.payload["proof"] == "unproven"
    assert notice.payload["reply_to"] == THREAD
    assert notice.payload["event"] == "finished"
    assert notice.payload["short_id"] == task.task_id[:8]
    assert notice.route == "thread"
    assert notice.target == THREAD


def test_a_notice_for_a_channel_address_starts_on_the_channel_route(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="x", reply_to="discord:1/2")
    ledger.finish(task.task_id, status="failed", error="exit 3")
    (notice,) = ledger.deliveries(task=task.task_id)
    assert notice.route == "channel"
    assert notice.payload["error"] == "exit 3"


def test_the_outbox_row_commits_with_the_transition_and_not_without_it(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD)
    seen: list[str] = []

    def finish_then_fail() -> None:
        with write(ledger.engine) as conn:
            row = fetch_row(conn, task.task_id)
            assert row is not None
            transition(conn, row, Status.SUCCEEDED, now=T0, config=ledger.config, actor="t")
            seen.extend(conn.execute(select(deliveries_table.c.kind)).scalars())
            raise RuntimeError("the transaction rolls back")

    with pytest.raises(RuntimeError):
        finish_then_fail()
    assert seen == ["terminal"]
    assert kinds(ledger, task.task_id) == []
    assert ledger.get(task.task_id).status is Status.RUNNING


def test_defaults_come_from_the_runtime_cron_silent_others_done_only(ledger: Ledger) -> None:
    cron = ledger.create(runtime="cron", label="nightly", reply_to=THREAD)
    agent = ledger.create(runtime="subagent", label="agent", reply_to=THREAD)
    assert cron.notify_policy == "silent"
    assert cron.delivery_status == "not_applicable"
    assert agent.notify_policy == "done_only"
    for task in (cron, agent):
        ledger.finish(task.task_id, status="succeeded")
    assert kinds(ledger, cron.task_id) == []
    assert kinds(ledger, agent.task_id) == ["terminal"]


def test_a_child_inherits_its_parents_policy(ledger: Ledger) -> None:
    parent = ledger.create(runtime="subagent", label="parent", notify="state_changes")
    child = ledger.create(
        runtime="cron", label="child", reply_to=THREAD, parent=parent.task_id, notify="inherit"
    )
    assert child.notify_policy == "state_changes"
    assert kinds(ledger, child.task_id) == ["started"]


def test_a_policy_change_mid_run_applies_to_the_next_notice(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="done_only")
    ledger.progress(task.task_id, "half way", now=T0 + timedelta(seconds=1))
    ledger.set_notify(task.task_id, "state_changes", now=T0 + timedelta(seconds=2))
    ledger.progress(task.task_id, "nearly", now=T0 + timedelta(seconds=3))
    ledger.set_notify(task.task_id, "silent", now=T0 + timedelta(seconds=4))
    ledger.finish(task.task_id, status="succeeded", now=T0 + timedelta(seconds=5))
    # Only the progress made while state_changes was on became a notice; the end is silent.
    assert kinds(ledger, task.task_id) == ["progress"]
    assert ledger.get(task.task_id).delivery_status == "not_applicable"


def test_progress_is_coalesced_to_one_pending_notice_per_window(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    for second in range(1, 6):
        ledger.progress(task.task_id, f"step {second}", now=T0 + timedelta(seconds=second))
    rows = [d for d in ledger.deliveries(task=task.task_id) if d.kind == "progress"]
    assert len(rows) == 1
    assert rows[0].payload["summary"] == "step 5"


def test_progress_after_a_sent_update_waits_for_the_coalescing_window(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    ledger.progress(task.task_id, "one", now=T0 + timedelta(seconds=1))
    with write(ledger.engine) as conn:  # the first update went out
        conn.execute(deliveries_table.update().values(status="delivered"))
    ledger.progress(task.task_id, "two", now=T0 + timedelta(seconds=2))
    rows = sorted(
        (d for d in ledger.deliveries(task=task.task_id) if d.kind == "progress"),
        key=lambda d: d.id,
    )
    assert [r.payload["summary"] for r in rows] == ["one", "two"]
    window = ledger.config.progress_coalesce
    assert rows[1].next_attempt_at == rows[0].next_attempt_at + window


def test_a_pending_progress_notice_is_superseded_by_the_terminal_one(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    ledger.progress(task.task_id, "one", now=T0 + timedelta(seconds=1))
    ledger.finish(task.task_id, status="succeeded", now=T0 + timedelta(seconds=2))
    statuses = {d.kind: d.status for d in ledger.deliveries(task=task.task_id)}
    assert statuses == {"started": "pending", "progress": "superseded", "terminal": "pending"}


def test_followers_get_the_same_notices_in_their_own_threads(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    follower = "discord:10/20/30@40"
    ledger.follow(task.task_id, follower)
    ledger.follow(task.task_id, follower)  # following twice is a no-op
    assert follower_count(ledger, task.task_id) == 1
    ledger.finish(task.task_id, status="succeeded", now=T0 + timedelta(seconds=2))
    terminal = sorted(
        d.target for d in ledger.deliveries(task=task.task_id) if d.kind == "terminal"
    )
    assert terminal == sorted([THREAD, follower])
    ledger.unfollow(task.task_id, follower)
    assert follower_count(ledger, task.task_id) == 0


def test_following_a_task_without_reply_to_makes_its_completion_deliverable(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="subagent", label="x")
    assert task.delivery_status == "not_applicable"
    assert ledger.follow(task.task_id, "slack:T1/C9").delivery_status == "pending"
    ledger.finish(task.task_id, status="succeeded")
    assert [d.target for d in ledger.deliveries(task=task.task_id)] == ["slack:T1/C9"]


def test_a_completion_with_nowhere_to_go_is_not_applicable(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x")
    done = ledger.finish(task.task_id, status="succeeded")
    assert done.delivery_status == "not_applicable"
    assert kinds(ledger, task.task_id) == []


def test_a_follow_up_notice_fans_out_once_per_key(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD)
    ledger.follow(task.task_id, "slack:T1/C2")
    with write(ledger.engine) as conn:
        row = fetch_row(conn, task.task_id)
        assert row is not None
        first = enqueue_task_notice(conn, row, "proof", T0, ledger.config, "check-1")
        again = enqueue_task_notice(conn, row, "proof", T0, ledger.config, "check-1")
    assert (first, again) == (2, 0)
    assert kinds(ledger, task.task_id) == ["proof", "proof"]
