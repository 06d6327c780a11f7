"""The delivery worker against a real outbox (SQLite and PostgreSQL) and a recording
transport: routing, retries, pacing and digests, edits, crash recovery (SPEC §5)."""

from __future__ import annotations

import asyncio
import io
import random
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from ledger import Ledger, LedgerConfig, Status
from ledger.address import parse_address
from ledger.db import write
from ledger.delivery import DeliveryWorker, PassResult, backoff
from ledger.exceptions import DeliveryError
from ledger.lookup import fetch_row
from ledger.outbox import enqueue_notice
from ledger.schema import deliveries_table
from ledger.testing import RecordingTransport
from ledger.transitions import transition
from ledger.transports import ConsoleTransport, Notice
from tests.conftest import T0

THREAD = "slack:T1/C1/1700000000.000100@U1"
OPS = "slack:T1/COPS"


def worker(ledger: Ledger, *transports: object, **options: object) -> DeliveryWorker:
    return DeliveryWorker(
        ledger, ledger.config, list(transports), "w1", rng=random.Random(7), **options
    )  # type: ignore[arg-type]


def deliver(w: DeliveryWorker, now: datetime) -> PassResult:
    return asyncio.run(w.run_once(now))


def finished(ledger: Ledger, reply_to: str = THREAD, **create: object) -> str:
    task = ledger.create(runtime="subagent", label="build", reply_to=reply_to, **create)  # type: ignore[arg-type]
    ledger.finish(task.task_id, status="succeeded", summary="done")
    return task.task_id


def only_delivery(ledger: Ledger, task_id: str, kind: str = "terminal") -> object:
    rows = [d for d in ledger.deliveries(task=task_id) if d.kind == kind]
    assert len(rows) == 1
    return rows[0]


def test_a_completion_reaches_the_thread_and_the_outcome_is_recorded(ledger: Ledger) -> None:
    transport = RecordingTransport()
    task_id = finished(ledger)
    result = deliver(worker(ledger, transport), T0)
    assert (result.claimed, result.delivered) == (1, 1)
    (record,) = transport.received
    assert record.op == "send"
    assert record.where == THREAD
    assert record.notices[0].payload["task_id"] == task_id
    row = ledger.deliveries(task=task_id)[0]
    assert (row.status, row.route, row.attempts) == ("delivered", "thread", 1)
    assert row.platform_message_id == record.message_id
    assert ledger.get(task_id).delivery_status == "delivered"
    assert deliver(worker(ledger, transport), T0).claimed == 0  # nothing twice


def test_a_transient_failure_is_retried_later_and_then_succeeds(ledger: Ledger) -> None:
    transport = RecordingTransport()
    transport.fail_next(DeliveryError("502 bad gateway", permanent=False))
    task_id = finished(ledger)
    w = worker(ledger, transport)
    assert deliver(w, T0).retried == 1
    row = ledger.deliveries(task=task_id)[0]
    assert row.status == "retrying"
    assert "502" in (row.last_error or "")
    assert ledger.get(task_id).delivery_status == "retrying"
    assert T0 + timedelta(seconds=1) <= row.next_attempt_at <= T0 + timedelta(seconds=2)
    assert deliver(w, T0 + timedelta(milliseconds=500)).claimed == 0
    assert deliver(w, row.next_attempt_at).delivered == 1
    assert ledger.get(task_id).delivery_status == "delivered"
    assert len(transport.received) == 1


def test_retry_after_is_honoured_to_the_second(ledger: Ledger) -> None:
    transport = RecordingTransport()
    transport.fail_next(DeliveryError("ratelimited", permanent=False, retry_after=120))
    task_id = finished(ledger)
    w = worker(ledger, transport)
    deliver(w, T0)
    row = ledger.deliveries(task=task_id)[0]
    assert T0 + timedelta(seconds=120) <= row.next_attempt_at <= T0 + timedelta(seconds=132)
    assert deliver(w, T0 + timedelta(seconds=119)).claimed == 0
    assert deliver(w, row.next_attempt_at - timedelta(milliseconds=1)).claimed == 0
    assert deliver(w, row.next_attempt_at).delivered == 1


def test_backoff_doubles_with_jitter_and_never_undercuts_retry_after() -> None:
    rng = random.Random(1)
    for attempts in range(1, 8):
        base = min(300.0, 2.0 * 2 ** (attempts - 1))
        delay = backoff(attempts, None, rng)
        assert base * 0.5 <= delay <= base
    assert 90.0 <= backoff(1, 90.0, rng) <= 99.0
    assert 90.0 <= backoff(6, 90.0, rng) <= 99.0
    assert backoff(20, None, rng) <= 300.0


def test_transient_failures_past_the_deadline_end_failed(ledger: Ledger) -> None:
    transport = RecordingTransport()
    transport.fail_next(DeliveryError("503", permanent=False), times=100)
    task_id = finished(ledger)
    w = worker(ledger, transport)
    now = T0
    for _ in range(100):
        deliver(w, now)
        row = ledger.deliveries(task=task_id)[0]
        if row.status == "failed":
            break
        now = row.next_attempt_at
    assert row.status == "failed"
    assert now <= T0 + ledger.config.delivery_deadline
    assert ledger.get(task_id).delivery_status == "failed"


@pytest.fixture
def ops_ledger(ledger: Ledger) -> Ledger:
    ledger.config = replace(ledger.config, ops_channel=OPS)
    return ledger


@pytest.mark.parametrize(
    ("dead", "route", "where"),
    [
        ({THREAD}, "channel", "slack:T1/C1"),
        ({THREAD, "slack:T1/C1"}, "dm", "slack:T1/C1@U1"),
        ({"slack:T1/C1", "dm:U1"}, "ops", OPS),
    ],
)
def test_a_permanent_error_falls_through_thread_channel_dm_ops_in_order(
    ops_ledger: Ledger, dead: set[str], route: str, where: str
) -> None:
    transport = RecordingTransport()
    transport.dead = dead
    tried: list[str] = []

    async def note(notice: Notice) -> None:
        tried.append(notice.route)

    transport.on_send = note
    task_id = finished(ops_ledger)
    assert deliver(worker(ops_ledger, transport), T0).delivered == 1
    assert tried == ["thread", "channel", "dm", "ops"][: tried.index(route) + 1]
    (record,) = transport.received
    assert record.where == where
    assert record.notices[0].route == route
    if route == "dm":
        assert record.notices[0].destination.user == "U1"
    row = ops_ledger.deliveries(task=task_id)[0]
    assert (row.status, row.route) == ("delivered", route)


def test_all_routes_dead_fails_then_retry_delivers_under_a_new_key(ops_ledger: Ledger) -> None:
    transport = RecordingTransport()
    transport.dead = {"slack:T1/C1", "dm:U1", OPS}
    task_id = finished(ops_ledger)
    w = worker(ops_ledger, transport)
    assert deliver(w, T0).failed == 1
    (failed,) = ops_ledger.deliveries(task=task_id)
    assert failed.status == "failed"
    for route in ("thread", "channel", "dm", "ops"):
        assert f"{route}:" in (failed.last_error or "")
    assert ops_ledger.get(task_id).delivery_status == "failed"
    assert [d.id for d in ops_ledger.deliveries(status="failed")] == [failed.id]
    finding = ops_ledger.audit(code="delivery_failed", now=T0 + timedelta(minutes=1)).findings
    assert [f.task_id for f in finding] == [task_id]

    later = T0 + timedelta(minutes=5)
    retried = ops_ledger.retry(task_id, now=later)
    assert retried.delivery_status == "pending"
    old, new = sorted(retried.deliveries, key=lambda d: d.id)
    assert old.status == "superseded"
    assert (new.status, new.generation, new.route) == ("pending", 2, "thread")
    assert new.idempotency_key != old.idempotency_key
    assert new.deadline_at == later + ops_ledger.config.delivery_deadline

    transport.dead = set()
    assert deliver(w, later).delivered == 1
    assert ops_ledger.get(task_id).delivery_status == "delivered"
    assert ops_ledger.deliveries(status="failed") == ()
    assert ops_ledger.audit(code="delivery_failed", now=later).findings == ()


def test_dismiss_marks_failed_deliveries_handled(ledger: Ledger) -> None:
    transport = RecordingTransport()
    transport.dead = {"slack:T1/C1", "dm:U1"}
    task_id = finished(ledger)
    deliver(worker(ledger, transport), T0)
    task = ledger.dismiss(task_id, now=T0 + timedelta(minutes=1))
    assert task.delivery_status == "dismissed"
    assert [d.status for d in task.deliveries] == ["dismissed"]
    assert task.acknowledged_at is None


def test_dismiss_on_a_lost_task_acknowledges_it_and_it_stays_lost(ledger: Ledger) -> None:
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD)
    with write(ledger.engine) as conn:
        row = fetch_row(conn, task.task_id)
        assert row is not None
        transition(conn, row, Status.LOST, now=T0, config=ledger.config, actor="reconciler")
    later = T0 + timedelta(minutes=3)
    assert [f.task_id for f in ledger.audit(code="lost", now=later).findings] == [task.task_id]
    done = ledger.dismiss(task.task_id, now=later)
    assert ledger.audit(code="lost", now=later).findings == ()
    assert done.status is Status.LOST
    assert done.acknowledged_at == later
    assert ledger.events(task.task_id)[-1].kind == "acknowledged"
    again = ledger.dismiss(task.task_id, now=later + timedelta(minutes=1))
    assert again.acknowledged_at == later


def test_state_changes_posts_start_edits_it_for_progress_and_posts_the_end(
    ledger: Ledger,
) -> None:
    transport = RecordingTransport(can_edit=True)
    w = worker(ledger, transport)
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    deliver(w, T0)
    ledger.progress(task.task_id, "50%", now=T0 + timedelta(seconds=1))
    deliver(w, T0 + timedelta(seconds=1))
    ledger.progress(task.task_id, "80%", now=T0 + timedelta(seconds=2))
    ledger.progress(task.task_id, "90%", now=T0 + timedelta(seconds=3))
    assert deliver(w, T0 + timedelta(seconds=3)).claimed == 0  # coalesced: not yet due
    deliver(w, T0 + timedelta(seconds=31))
    ledger.finish(task.task_id, status="succeeded", now=T0 + timedelta(seconds=40))
    deliver(w, T0 + timedelta(seconds=40))
    ops = [(r.op, r.notices[0].kind) for r in transport.received]
    assert ops == [
        ("send", "started"),
        ("edit", "progress"),
        ("edit", "progress"),
        ("send", "terminal"),
    ]
    started_id = transport.received[0].message_id
    assert transport.received[1].message_id == started_id
    assert transport.received[2].notices[0].payload["summary"] == "90%"
    assert transport.received[3].message_id != started_id


def test_progress_is_posted_where_the_platform_cannot_edit(ledger: Ledger) -> None:
    transport = RecordingTransport(can_edit=False)
    w = worker(ledger, transport)
    task = ledger.create(runtime="subagent", label="x", reply_to=THREAD, notify="state_changes")
    ledger.progress(task.task_id, "50%", now=T0 + timedelta(seconds=1))
    # The progress update waits until the start notice is out, then goes as a new post.
    first = deliver(w, T0 + timedelta(seconds=1))
    assert (first.delivered, first.deferred) == (1, 1)
    deliver(w, T0 + timedelta(seconds=3))
    assert [(r.op, r.notices[0].kind) for r in transport.received] == [
        ("send", "started"),
        ("send", "progress"),
    ]


def test_a_burst_for_one_channel_is_merged_into_one_digest(ledger: Ledger) -> None:
    transport = RecordingTransport(channel_rate=1.0)
    ids = [finished(ledger, reply_to=f"slack:T1/C1/17000000{i:02d}.000100") for i in range(30)]
    result = deliver(worker(ledger, transport), T0)
    assert (result.digests, result.delivered) == (1, 30)
    (record,) = transport.received
    assert record.op == "digest"
    assert record.where == "slack:T1/C1"  # the channel's top level
    assert {n.payload["task_id"] for n in record.notices} == set(ids)
    rows = ledger.deliveries(limit=None)
    assert {(d.status, d.route) for d in rows} == {("delivered", "digest")}
    assert {ledger.get(i).delivery_status for i in ids} == {"delivered"}


def test_without_coalescing_a_channel_is_paced_at_its_rate(ledger: Ledger) -> None:
    transport = RecordingTransport(channel_rate=1.0)
    for i in range(12):
        finished(ledger, reply_to=f"slack:T1/C1/17000000{i:02d}.000100")
    finished(ledger, reply_to="slack:T1/C2")
    w = worker(ledger, transport, coalesce=False)
    assert deliver(w, T0).delivered == 2  # one per channel
    assert deliver(w, T0 + timedelta(milliseconds=500)).delivered == 0
    assert deliver(w, T0 + timedelta(seconds=1)).delivered == 1
    assert all(r.op == "send" for r in transport.received)


def test_a_few_notices_for_one_channel_go_out_one_by_one_within_the_rate(
    ledger: Ledger,
) -> None:
    transport = RecordingTransport(channel_rate=1.0)
    for i in range(3):
        finished(ledger, reply_to=f"slack:T1/C1/17000000{i:02d}.000100")
    w = worker(ledger, transport)
    delivered = [deliver(w, T0 + timedelta(seconds=s)).delivered for s in range(4)]
    assert delivered == [1, 1, 1, 0]
    assert [r.op for r in transport.received] == ["send", "send", "send"]


def claim_as_dead_worker(ledger: Ledger, task_id: str, expires: datetime) -> None:
    with write(ledger.engine) as conn:
        conn.execute(
            update(deliveries_table)
            .where(deliveries_table.c.task_id == task_id)
            .values(claimed_by="dead", claim_expires_at=expires, attempts=1)
        )


def test_a_claim_held_by_a_live_worker_is_not_taken(ledger: Ledger) -> None:
    task_id = finished(ledger)
    claim_as_dead_worker(ledger, task_id, T0 + timedelta(seconds=30))
    assert deliver(worker(ledger, RecordingTransport()), T0 + timedelta(seconds=29)).claimed == 0


def test_an_expired_claim_already_posted_is_recorded_without_posting_again(
    ledger: Ledger,
) -> None:
    transport = RecordingTransport()
    task_id = finished(ledger)
    row = ledger.deliveries(task=task_id)[0]
    # A previous worker posted the notice and died before recording it.
    asyncio.run(transport.send(_notice_for(row)))
    claim_as_dead_worker(ledger, task_id, T0 + timedelta(seconds=30))
    result = deliver(worker(ledger, transport), T0 + timedelta(seconds=31))
    assert (result.recovered, len(transport.received)) == (1, 1)
    assert transport.find_calls == [(row.idempotency_key, THREAD)]
    after = ledger.deliveries(task=task_id)[0]
    assert (after.status, after.platform_message_id) == (
        "delivered",
        transport.received[0].message_id,
    )


def test_an_expired_claim_never_posted_is_sent_once(ledger: Ledger) -> None:
    transport = RecordingTransport()
    task_id = finished(ledger)
    claim_as_dead_worker(ledger, task_id, T0 + timedelta(seconds=30))
    result = deliver(worker(ledger, transport), T0 + timedelta(seconds=31))
    assert (result.recovered, result.delivered) == (0, 1)
    key = ledger.deliveries(task=task_id)[0].idempotency_key
    # Looked for in its thread, and at the channel's top level where a digest would be.
    assert transport.find_calls == [(key, THREAD), (key, "slack:T1/C1")]
    assert len(transport.received) == 1


def test_a_notice_shown_in_a_digest_before_a_crash_is_not_shown_again(ledger: Ledger) -> None:
    transport = RecordingTransport()
    task_id = finished(ledger)
    row = ledger.deliveries(task=task_id)[0]
    channel = parse_address("slack:T1/C1")
    asyncio.run(transport.send_digest(channel, [_notice_for(row)]))
    claim_as_dead_worker(ledger, task_id, T0 + timedelta(seconds=30))
    result = deliver(worker(ledger, transport), T0 + timedelta(seconds=31))
    assert (result.recovered, len(transport.received)) == (1, 1)
    assert ledger.get(task_id).delivery_status == "delivered"


def _notice_for(row: object) -> Notice:
    target = parse_address(row.target)  # type: ignore[attr-defined]
    return Notice(
        delivery_id=row.id,  # type: ignore[attr-defined]
        idempotency_key=row.idempotency_key,  # type: ignore[attr-defined]
        kind=row.kind,  # type: ignore[attr-defined]
        tenant=row.tenant,  # type: ignore[attr-defined]
        task_id=row.task_id,  # type: ignore[attr-defined]
        target=target,
        route="thread",
        destination=target,
    )


def test_an_audit_digest_without_a_task_goes_to_the_ops_channel(ledger: Ledger) -> None:
    transport = RecordingTransport()
    with write(ledger.engine) as conn:
        enqueue_notice(
            conn,
            tenant="default",
            task_id=None,
            kind="audit_digest",
            target=OPS,
            payload={"findings": [{"code": "lost"}], "text": "1 task lost"},
            key="audit:1",
            now=T0,
            config=ledger.config,
        )
    assert deliver(worker(ledger, transport), T0).delivered == 1
    (record,) = transport.received
    assert record.where == OPS
    assert record.notices[0].payload["text"] == "1 task lost"


def test_a_platform_without_a_transport_falls_through_to_failed(ledger: Ledger) -> None:
    task_id = finished(ledger, reply_to="discord:1/2/3@4")
    assert deliver(worker(ledger, RecordingTransport("slack")), T0).failed == 1
    assert "no transport for platform discord" in (
        ledger.deliveries(task=task_id)[0].last_error or ""
    )


def test_the_console_transport_prints_each_notice_as_plain_text(ledger: Ledger) -> None:
    out = io.StringIO()
    task_id = finished(ledger)
    deliver(worker(ledger, ConsoleTransport(stream=out)), T0)
    text = out.getvalue()
    assert "[succeeded] build" in text
    assert task_id[:8] in text
    assert ledger.get(task_id).delivery_status == "delivered"


def test_the_worker_loop_delivers_until_stopped(sqlite_url: str) -> None:
    ledger = Ledger.connect(sqlite_url, LedgerConfig())
    transport = RecordingTransport()
    w = DeliveryWorker(ledger, ledger.config, [transport], "loop", poll_interval=0.02)

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(w.run(stop))
        await asyncio.to_thread(finished, ledger)
        for _ in range(200):
            if transport.received:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(loop, 5)

    try:
        asyncio.run(scenario())
        assert len(transport.received) == 1
    finally:
        ledger.close()


def test_a_claim_is_renewed_while_a_slow_send_is_in_flight(sqlite_url: str) -> None:
    config = LedgerConfig(delivery_claim_lease=timedelta(milliseconds=300))
    ledger = Ledger.connect(sqlite_url, config)
    slow = RecordingTransport()

    async def take_a_second(notice: Notice) -> None:
        await asyncio.sleep(1.0)

    slow.on_send = take_a_second
    rival_transport = RecordingTransport()
    first = DeliveryWorker(ledger, config, [slow], "slow")
    rival = DeliveryWorker(ledger, config, [rival_transport], "rival")

    async def race() -> tuple[PassResult, PassResult]:
        sending = asyncio.create_task(first.run_once())
        await asyncio.sleep(0.7)  # well past the first claim's original expiry
        taken = await rival.run_once()
        return await sending, taken

    try:
        finished(ledger)
        sent, taken = asyncio.run(race())
        assert (sent.delivered, taken.claimed) == (1, 0)
        assert rival_transport.received == []
    finally:
        ledger.close()
