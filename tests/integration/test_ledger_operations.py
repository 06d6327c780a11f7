"""Ledger operations on real databases: idempotent create, lookups, listing, cancel,
notify policy, artifacts and hostile input."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledger import AmbiguousRef, InvalidInput, Ledger, Status, TaskNotFound
from ledger.records import TaskRecord
from tests.conftest import T0


def test_create_is_idempotent_on_tenant_and_run_id_and_merges_only_missing_fields(
    ledger: Ledger,
) -> None:
    first = ledger.create(runtime="subagent", label="deploy-check", run_id="r-1")
    second = ledger.create(
        runtime="subagent",
        label="another label",
        run_id="r-1",
        child_session_key="agent:main:sub:7",
        reply_to="slack:T1/C1/1700000000.000100@U1",
    )
    assert second.task_id == first.task_id
    assert second.label == "deploy-check"  # present fields are never overwritten
    assert second.child_session_key == "agent:main:sub:7"
    assert str(second.reply_to) == "slack:T1/C1/1700000000.000100@U1"
    third = ledger.create(runtime="subagent", label="x", run_id="r-1")
    assert third.version == second.version  # nothing new to merge: no write
    other_tenant = ledger.create(runtime="subagent", label="x", run_id="r-1", tenant="acme")
    assert other_tenant.task_id != first.task_id
    assert [e.kind for e in ledger.events(first.task_id)] == ["created", "merged"]


def test_create_records_running_with_a_lease_or_queued(ledger: Ledger) -> None:
    running = ledger.create(runtime="cli", label="build", lease=90)
    assert running.status is Status.RUNNING
    assert running.lease_expires_at == T0 + timedelta(seconds=90)
    queued = ledger.create(runtime="cron", label="nightly", queued=True)
    assert queued.status is Status.QUEUED
    assert queued.lease_expires_at is None
    assert queued.notify_policy == "silent"  # the cron default
    assert running.notify_policy == "done_only"


def test_notify_inherit_takes_the_parents_policy(ledger: Ledger) -> None:
    parent = ledger.create(runtime="subagent", label="parent", notify="state_changes")
    child = ledger.create(runtime="cli", label="child", parent=parent.task_id, notify="inherit")
    assert child.parent_task_id == parent.task_id
    assert child.notify_policy == "state_changes"
    with pytest.raises(InvalidInput, match="inherit"):
        ledger.create(runtime="cli", label="orphan", notify="inherit")


def test_lookup_by_id_run_id_session_key_origin_and_unique_prefix(ledger: Ledger) -> None:
    older = ledger.create(
        runtime="subagent",
        label="a",
        run_id="run-a",
        child_session_key="sess:1",
        now=T0,
    )
    newer = ledger.create(
        runtime="subagent",
        label="b",
        requester_session_key="sess:1",
        now=T0 + timedelta(seconds=1),
    )
    assert ledger.get(older.task_id).task_id == older.task_id
    assert ledger.get("run-a").task_id == older.task_id
    assert ledger.get("sess:1").task_id == newer.task_id  # newest match wins
    assert ledger.get(older.task_id[:6]).task_id == older.task_id
    assert ledger.get(older.task_id[:6].upper()).task_id == older.task_id
    with pytest.raises(TaskNotFound):
        ledger.get("zzzz-not-a-task")
    with pytest.raises(TaskNotFound):
        ledger.get(older.task_id, tenant="someone-else")


def test_an_ambiguous_prefix_lists_the_candidates(ledger: Ledger) -> None:
    ids = [ledger.create(runtime="cli", label=str(i)).task_id for i in range(40)]
    by_first = {}
    for task_id in ids:
        by_first.setdefault(task_id[0], []).append(task_id)
    letter, group = max(by_first.items(), key=lambda item: len(item[1]))
    assert len(group) >= 2
    shared = _common_prefix(group)
    if len(shared) < 4:
        # Force a shared 4-char prefix by asking for fewer characters than the minimum.
        with pytest.raises(TaskNotFound):
            ledger.get(letter)
        return
    with pytest.raises(AmbiguousRef) as ambiguous:
        ledger.get(shared)
    assert set(group) <= set(ambiguous.value.candidates)


def _common_prefix(values: list[str]) -> str:
    first, last = min(values), max(values)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


def test_listing_filters_pages_newest_first_with_a_cursor(ledger: Ledger) -> None:
    made: list[TaskRecord] = []
    for i in range(7):
        made.append(
            ledger.create(
                runtime="cli" if i % 2 else "subagent",
                label=f"job {i}",
                requester_session_key="me" if i < 3 else None,
                now=T0 + timedelta(seconds=i),
            )
        )
    ledger.finish(made[6].task_id, status="failed")
    page = ledger.list_page(limit=3)
    assert [t.label for t in page.tasks] == ["job 6", "job 5", "job 4"]
    assert page.next_cursor is not None
    rest = ledger.list_page(limit=10, cursor=page.next_cursor)
    assert [t.label for t in rest.tasks] == ["job 3", "job 2", "job 1", "job 0"]
    assert rest.next_cursor is None
    assert [t.label for t in ledger.list(status=["failed"])] == ["job 6"]
    assert {t.runtime for t in ledger.list(runtime=["cli"])} == {"cli"}
    assert len(ledger.list(requester="me")) == 3
    assert [t.label for t in ledger.list(label="B 5")] == ["job 5"]
    assert len(ledger.list(limit=None)) == 7
    with pytest.raises(InvalidInput, match="cursor"):
        ledger.list_page(cursor="not-a-cursor")


def test_cancel_without_a_live_runner_is_final_at_once(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="stuck")
    cancelled = ledger.cancel(task.task_id, reason="no longer needed")
    assert cancelled.status is Status.CANCELLED
    assert cancelled.cancel_requested_at == T0
    assert "no runner was reachable" in (cancelled.terminal_summary or "")


def test_cancel_with_a_live_runner_records_the_intent_until_the_runner_confirms(
    ledger: Ledger,
) -> None:
    task = ledger.create(runtime="cli", label="long job", runner="run")
    asked = ledger.cancel(task.task_id, reason="wrong branch")
    assert asked.status is Status.RUNNING
    assert asked.cancel_requested_at == T0
    assert asked.cancel_reason == "wrong branch"
    done = ledger.finish(task.task_id, status="cancelled", summary="runner stopped")
    assert done.status is Status.CANCELLED
    kinds = [e.kind for e in ledger.events(task.task_id)]
    assert kinds == ["created", "cancel_requested", "cancelled"]


def test_cancel_of_a_runner_whose_lease_expired_is_final_at_once(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="dead runner", runner="run", lease=60)
    cancelled = ledger.cancel(task.task_id, now=T0 + timedelta(minutes=5))
    assert cancelled.status is Status.CANCELLED


def test_heartbeat_renews_the_lease_and_progress_is_recorded(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="beat", lease=60)
    later = T0 + timedelta(seconds=50)
    beaten = ledger.heartbeat(task.task_id, now=later)
    assert beaten.lease_expires_at == later + timedelta(seconds=60)
    progressed = ledger.progress(task.task_id, "step 2 of 3", now=later + timedelta(seconds=5))
    assert progressed.progress_summary == "step 2 of 3"
    ledger.finish(task.task_id, status="succeeded")
    with pytest.raises(Exception, match="only a running task takes heartbeats"):
        ledger.heartbeat(task.task_id)


def test_set_notify_changes_the_policy_while_running(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to="discord:1/2/3@4")
    changed = ledger.set_notify(task.task_id, "state_changes")
    assert changed.notify_policy == "state_changes"
    with pytest.raises(InvalidInput, match="loud"):
        ledger.set_notify(task.task_id, "loud")


def test_artifacts_are_listed_with_their_proof_expectations(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="deploy")
    ledger.add_artifact(task.task_id, kind="commit", value="abc123")
    ledger.add_artifact(
        task.task_id,
        kind="url",
        value="https://example.test/",
        expect_status=200,
        expect_text="canonical",
    )
    shown = ledger.get(task.task_id, details=True)
    assert [a.kind for a in shown.artifacts] == ["commit", "url"]
    assert shown.artifacts[1].proof == {"expect_status": 200, "expect_text": "canonical"}
    assert shown.proof_status == "unchecked"
    with pytest.raises(InvalidInput, match="kind"):
        ledger.add_artifact(task.task_id, kind="banana", value="x")


HOSTILE = [
    "<!channel> deploy",
    "@everyone look",
    "<@U123> and <@&987>",
    "quotes ' \" ` and \\ backslash",
    "emoji 🚀🔥 and RTL \u202e text",
    "'; DROP TABLE tasks; --",
    "control \x01\x07\x1b[31m chars\r\n",
    "*bold* **bold** _it_ ~s~ `code` &amp; &lt;",
    "x" * 5000,
]


@pytest.mark.parametrize("label", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_labels_round_trip_unchanged(ledger: Ledger, label: str) -> None:
    task = ledger.create(runtime="subagent", label=label, task=label)
    stored = ledger.get(task.task_id)
    assert stored.label == label
    assert stored.task == label


def test_oversized_and_unstorable_input_is_refused_with_a_clear_error(ledger: Ledger) -> None:
    with pytest.raises(InvalidInput, match=r"label: is 10,000 characters; at most 5,000"):
        ledger.create(runtime="cli", label="y" * 10_000)
    with pytest.raises(InvalidInput, match="NUL"):
        ledger.create(runtime="cli", label="nul \x00 byte")
    with pytest.raises(InvalidInput, match="runtime"):
        ledger.create(runtime="cronjob", label="x")
    with pytest.raises(InvalidInput, match="reply_to"):
        ledger.create(runtime="cli", label="x", reply_to="slack:#general")
    assert ledger.list() == []  # nothing half-written
