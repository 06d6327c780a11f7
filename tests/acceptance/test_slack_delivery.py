"""Completions reach Slack threads through the delivery worker and the Slack transport,
against the fake Slack: routes, fallbacks, rate limits, auth failures, crash recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.render import Renderer
from bot.slack.transport import EVENT_TYPE, SlackTransport
from ledger import Ledger, LedgerConfig
from ledger.address import parse_address
from ledger.delivery import DeliveryWorker
from ledger.exceptions import DeliveryError
from ledger.timeutil import utcnow
from ledger.transports import Notice, PostedMessage
from tests.fakes.slack_server import FakeSlack, run_fake_slack_in_thread

TEAM = "T0TASKTRL"
TENANT = f"slack:{TEAM}"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with run_fake_slack_in_thread(channels=["C0WORK", "C0OPS"]) as fake:
        yield fake


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    instance = Ledger.connect(sqlite_url, LedgerConfig(ops_channel=f"slack:{TEAM}/C0OPS"))
    try:
        yield instance
    finally:
        instance.close()


def transport_for(fake: FakeSlack, token: str = "xoxb-test") -> SlackTransport:
    return SlackTransport(AsyncWebClient(token=token, base_url=fake.api_url), Renderer())


def thread_of(fake: FakeSlack, label: str = "work") -> str:
    return fake.add_user_message("C0WORK", f"please run {label}", user="U0ALICE")


def finish_task(
    ledger: Ledger,
    reply_to: str,
    *,
    label: str = "deploy-check",
    status: str = "succeeded",
    **kw: Any,
) -> str:
    task = ledger.create(runtime="subagent", label=label, tenant=TENANT, reply_to=reply_to, **kw)
    ledger.finish(task.task_id, status=status, summary="all done")
    return task.task_id


def drain(ledger: Ledger, transport: Any, *, passes: int = 1, step: float = 0.0) -> list[Any]:
    worker = DeliveryWorker(ledger, transports=[transport])

    async def run() -> list[Any]:
        results = []
        now = utcnow()
        for _ in range(passes):
            results.append(await worker.run_once(now))
            now += timedelta(seconds=step)
        return results

    return asyncio.run(run())


def bot_messages(fake: FakeSlack, channel: str, thread: str | None = None) -> list[dict[str, Any]]:
    found = fake.messages(channel, thread) if thread else fake.all_messages(channel)
    return [m for m in found if m.get("bot_id")]


def test_a_completion_reaches_the_requesters_thread_with_its_key_in_metadata(
    fake: FakeSlack, ledger: Ledger
) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    drain(ledger, transport_for(fake))
    replies = bot_messages(fake, "C0WORK", ts)
    assert len(replies) == 1
    assert "deploy-check" in replies[0]["text"]
    assert replies[0]["metadata"]["event_type"] == EVENT_TYPE
    assert replies[0]["metadata"]["event_payload"]["key"].startswith(task_id)
    record = ledger.get(task_id, details=True)
    assert record.delivery_status == "delivered"
    assert [d.route for d in record.deliveries] == ["thread"]
    params = fake.calls_to("chat.postMessage")[0]
    assert "link_names" not in params
    assert params.get("parse") != "full"


@pytest.mark.parametrize(
    ("break_it", "expected_route", "channel"),
    [
        (lambda f, ts: f.delete_message("C0WORK", ts), "channel", "C0WORK"),
        (lambda f, ts: f.update_channel("C0WORK", archived=True), "dm", "D0ALICE"),
        (lambda f, ts: f.update_channel("C0WORK", bot_member=False), "dm", "D0ALICE"),
        (lambda f, ts: f.remove_channel("C0WORK"), "dm", "D0ALICE"),
    ],
    ids=["thread_not_found", "is_archived", "not_in_channel", "channel_not_found"],
)
def test_a_permanently_unavailable_route_falls_back_to_the_next(
    fake: FakeSlack, ledger: Ledger, break_it: Any, expected_route: str, channel: str
) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    break_it(fake, ts)
    drain(ledger, transport_for(fake))
    record = ledger.get(task_id, details=True)
    assert record.delivery_status == "delivered"
    assert record.deliveries[0].route == expected_route
    assert len(bot_messages(fake, channel)) == 1
    if expected_route == "dm":
        assert fake.calls_to("conversations.open")[0]["users"] == "U0ALICE"


def test_when_the_dm_fails_too_the_ops_channel_gets_the_notice(
    fake: FakeSlack, ledger: Ledger
) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    fake.update_channel("C0WORK", archived=True)
    fake.inject("conversations.open", error="user_not_found")
    drain(ledger, transport_for(fake))
    record = ledger.get(task_id, details=True)
    assert record.deliveries[0].route == "ops"
    assert len(bot_messages(fake, "C0OPS")) == 1


def test_a_429_is_transient_and_honours_retry_after(fake: FakeSlack, ledger: Ledger) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    fake.inject("chat.postMessage", status=429, retry_after=7)
    drain(ledger, transport_for(fake))
    record = ledger.get(task_id, details=True)
    delivery = record.deliveries[0]
    assert delivery.status == "retrying"
    assert "ratelimited" in (delivery.last_error or "")
    assert delivery.next_attempt_at - delivery.updated_at >= timedelta(seconds=7)
    assert bot_messages(fake, "C0WORK", ts) == []


def test_a_server_error_is_retried_later_and_then_delivered(
    fake: FakeSlack, ledger: Ledger
) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    fake.inject("chat.postMessage", status=503)
    drain(ledger, transport_for(fake), passes=2, step=120)
    record = ledger.get(task_id, details=True)
    assert record.delivery_status == "delivered"
    assert record.deliveries[0].attempts == 2
    assert len(bot_messages(fake, "C0WORK", ts)) == 1


@pytest.mark.parametrize("code", ["invalid_auth", "token_revoked"])
def test_auth_failures_are_permanent_with_a_code_the_audit_can_surface(
    fake: FakeSlack, code: str
) -> None:
    transport = transport_for(fake, token="xoxb-revoked" if code == "token_revoked" else "bad")
    fake.revoke_token("xoxb-revoked")
    notice = Notice(
        delivery_id=1,
        idempotency_key="k1",
        kind="terminal",
        tenant=TENANT,
        task_id="t" * 16,
        target=parse_address(f"slack:{TEAM}/C0WORK"),
        route="channel",
        destination=parse_address(f"slack:{TEAM}/C0WORK"),
        payload={"status": "succeeded", "label": "x", "short_id": "tttttttt"},
    )
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(transport.send(notice))
    assert caught.value.permanent
    assert caught.value.code == f"slack_auth:{code}"


class LostResponse:
    """Posts through the real transport, then loses the answer (a crash after sending)."""

    def __init__(self, inner: SlackTransport) -> None:
        self.inner = inner
        self.platform = inner.platform
        self.channel_rate = inner.channel_rate
        self.can_edit = inner.can_edit

    async def send(self, notice: Notice) -> PostedMessage:
        await self.inner.send(notice)
        raise ConnectionResetError("worker died after posting")

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self.inner.edit(notice, message_id)

    async def find_posted(self, key: str, where: Any) -> PostedMessage | None:
        return await self.inner.find_posted(key, where)

    async def send_digest(self, channel: Any, notices: list[Notice]) -> PostedMessage:
        return await self.inner.send_digest(channel, notices)


def test_crash_recovery_finds_the_posted_message_by_metadata_and_does_not_post_twice(
    fake: FakeSlack, ledger: Ledger
) -> None:
    ts = thread_of(fake)
    task_id = finish_task(ledger, f"slack:{TEAM}/C0WORK/{ts}@U0ALICE")
    drain(ledger, LostResponse(transport_for(fake)))
    assert ledger.get(task_id).delivery_status == "retrying"
    worker = DeliveryWorker(ledger, transports=[transport_for(fake)])
    result = asyncio.run(worker.run_once(utcnow() + timedelta(minutes=5)))
    assert result.recovered == 1
    assert len(bot_messages(fake, "C0WORK", ts)) == 1
    assert ledger.get(task_id).delivery_status == "delivered"
    assert fake.calls_to("conversations.replies")[0]["include_all_metadata"] in (True, "true", "1")


def test_state_changes_progress_edits_one_message_with_chat_update(
    fake: FakeSlack, ledger: Ledger
) -> None:
    ts = thread_of(fake)
    task = ledger.create(
        runtime="subagent",
        label="long job",
        tenant=TENANT,
        reply_to=f"slack:{TEAM}/C0WORK/{ts}@U0ALICE",
        notify="state_changes",
    )
    transport = transport_for(fake)
    drain(ledger, transport)
    ledger.progress(task.task_id, "step 1 of 3", now=utcnow() + timedelta(minutes=1))
    worker = DeliveryWorker(ledger, transports=[transport])
    asyncio.run(worker.run_once(utcnow() + timedelta(minutes=2)))
    replies = bot_messages(fake, "C0WORK", ts)
    assert len(replies) == 1
    updates = fake.calls_to("chat.update")
    assert len(updates) == 1
    assert "step 1 of 3" in updates[0]["text"]


def test_a_burst_for_one_channel_is_merged_into_one_digest(fake: FakeSlack, ledger: Ledger) -> None:
    ids = [finish_task(ledger, f"slack:{TEAM}/C0WORK", label=f"job {i}") for i in range(15)]
    drain(ledger, transport_for(fake))
    top = bot_messages(fake, "C0WORK")
    assert len(top) == 1
    assert "15 task updates" in top[0]["text"]
    assert all(ledger.get(i, details=True).deliveries[0].route == "digest" for i in ids)
    assert not fake.violations
