"""Discord delivery through the real `DeliveryWorker` and `DiscordTransport` against the fake
Discord: the requester's thread, each fallback route, transient and permanent failures,
progress edits, and crash recovery by nonce and key without a double post (SPEC §5)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from bot.discord.messages import nonce_for
from bot.discord.transport import DiscordTransport
from bot.render import Renderer
from ledger.config import LedgerConfig
from ledger.delivery import DeliveryWorker
from ledger.ledger import Ledger
from ledger.records import DeliveryRecord
from ledger.transports import Notice, PostedMessage
from tests.acceptance.discord_harness import make_task
from tests.conftest import T0
from tests.fakes.discord_server import FakeDiscord

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server


@pytest.fixture
async def transport(fake: FakeDiscord) -> AsyncIterator[DiscordTransport]:
    sender = DiscordTransport(fake.token, api_url=fake.api_url, renderer=Renderer())
    yield sender
    await sender.close()


def worker(
    ledger: Ledger, transport: object, *, ops: str | None = None, name: str = "w1"
) -> DeliveryWorker:
    config: LedgerConfig = ledger.config
    if ops is not None:
        config = replace(config, ops_channel=ops)
    return DeliveryWorker(ledger, config, [transport], name, rng=random.Random(3))  # type: ignore[list-item]


def terminal(ledger: Ledger, task_id: str) -> DeliveryRecord:
    (row,) = [d for d in ledger.deliveries(task=task_id) if d.kind == "terminal"]
    return row


def finished(ledger: Ledger, fake: FakeDiscord, label: str = "deploy check") -> str:
    task = make_task(ledger, fake, label)
    ledger.finish(task.task_id, status="succeeded", summary="all green")
    return task.task_id


@pytest.mark.anyio
async def test_a_completion_lands_in_the_requesters_thread(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    task_id = finished(ledger, fake)
    result = await worker(ledger, transport).run_once(T0)
    assert result.delivered == 1
    (message,) = fake.channel_messages(fake.thread_id)
    row = terminal(ledger, task_id)
    assert (row.status, row.route, row.platform_message_id) == (
        "delivered",
        "thread",
        str(message.id),
    )
    assert "deploy check" in message.payload["content"]
    assert "succeeded" in message.payload["content"]
    assert message.nonce == nonce_for(row.idempotency_key)
    assert row.idempotency_key in message.payload["embeds"][0]["footer"]["text"]
    assert message.allowed_mentions == {"parse": []}
    assert fake.channel_messages(fake.channel_id) == []
    assert fake.violations == []


@pytest.mark.parametrize(
    ("breakage", "route"),
    [
        ({"archived": True}, "channel"),
        ({"locked": True}, "channel"),
        ({"missing_access": True}, "channel"),
        ({"missing_permissions": True}, "channel"),
        ({"deleted": True}, "channel"),
    ],
    ids=[
        "archived",
        "locked",
        "missing-access-50001",
        "missing-permissions-50013",
        "unknown-10003",
    ],
)
@pytest.mark.anyio
async def test_an_unusable_thread_falls_back_to_its_channel(
    fake: FakeDiscord,
    ledger: Ledger,
    transport: DiscordTransport,
    breakage: dict[str, bool],
    route: str,
) -> None:
    fake.set_channel(fake.thread_id, **breakage)
    task_id = finished(ledger, fake)
    await worker(ledger, transport).run_once(T0)
    row = terminal(ledger, task_id)
    assert (row.status, row.route) == ("delivered", route)
    assert len(fake.channel_messages(fake.channel_id)) == 1


@pytest.mark.anyio
async def test_thread_and_channel_gone_means_a_dm_to_the_requester(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    fake.set_channel(fake.thread_id, archived=True)
    fake.set_channel(fake.channel_id, missing_access=True)
    task_id = finished(ledger, fake)
    await worker(ledger, transport).run_once(T0)
    row = terminal(ledger, task_id)
    assert (row.status, row.route) == ("delivered", "dm")
    dm = fake.dm_channel_for(fake.user_id)
    assert len(fake.channel_messages(dm.id)) == 1


@pytest.mark.anyio
async def test_closed_dms_fall_through_to_the_ops_channel(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    fake.set_channel(fake.thread_id, deleted=True)
    fake.set_channel(fake.channel_id, missing_permissions=True)
    fake.set_user(fake.user_id, dms_closed=True)
    task_id = finished(ledger, fake)
    ops = f"discord:{fake.guild_id}/{fake.ops_channel_id}"
    await worker(ledger, transport, ops=ops).run_once(T0)
    row = terminal(ledger, task_id)
    assert (row.status, row.route) == ("delivered", "ops")
    assert len(fake.channel_messages(fake.ops_channel_id)) == 1


@pytest.mark.anyio
async def test_no_route_left_fails_the_delivery_with_every_reason(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    fake.set_channel(fake.thread_id, archived=True)
    fake.set_channel(fake.channel_id, missing_access=True)
    fake.set_user(fake.user_id, dms_closed=True)
    task_id = finished(ledger, fake)
    await worker(ledger, transport).run_once(T0)
    row = terminal(ledger, task_id)
    assert row.status == "failed"
    assert row.last_error is not None
    for code in ("50083", "50001", "50007"):
        assert code in row.last_error
    assert ledger.get(task_id).delivery_status == "failed"


@pytest.mark.parametrize("cloudflare", [False, True], ids=["api-rate-limit", "cloudflare-ban"])
@pytest.mark.anyio
async def test_429_is_transient_and_honours_retry_after(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport, cloudflare: bool
) -> None:
    fake.inject(
        "POST", r"/channels/\d+/messages", status=429, retry_after=42, cloudflare=cloudflare
    )
    task_id = finished(ledger, fake)
    await worker(ledger, transport).run_once(T0)
    row = terminal(ledger, task_id)
    assert row.status == "retrying"
    assert row.route == "thread"
    assert row.next_attempt_at >= T0 + timedelta(seconds=42)
    assert "429" in (row.last_error or "")
    assert fake.channel_messages(fake.thread_id) == []
    await worker(ledger, transport).run_once(row.next_attempt_at)
    assert terminal(ledger, task_id).status == "delivered"
    assert len(fake.channel_messages(fake.thread_id)) == 1


@pytest.mark.anyio
async def test_a_server_error_is_retried_later_not_rerouted(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    fake.inject("POST", r"/channels/\d+/messages", status=502)
    task_id = finished(ledger, fake)
    await worker(ledger, transport).run_once(T0)
    row = terminal(ledger, task_id)
    assert (row.status, row.route) == ("retrying", "thread")
    assert "502" in (row.last_error or "")
    assert fake.channel_messages(fake.channel_id) == []


@pytest.mark.anyio
async def test_a_rejected_token_is_permanent_and_named_for_the_audit(
    fake: FakeDiscord, ledger: Ledger
) -> None:
    bad = DiscordTransport("not-the-token", api_url=fake.api_url, renderer=Renderer())
    try:
        task_id = finished(ledger, fake)
        await worker(ledger, bad).run_once(T0)
    finally:
        await bad.close()
    row = terminal(ledger, task_id)
    assert row.status == "failed"
    assert "discord_unauthorized" in (row.last_error or "")


class DiesAfterPosting:
    """A worker process that is killed right after Discord accepted the message and before
    the outcome was recorded."""

    platform = "discord"
    channel_rate = 1.0
    can_edit = True

    def __init__(self, inner: DiscordTransport) -> None:
        self.inner = inner

    async def send(self, notice: Notice) -> PostedMessage:
        await self.inner.send(notice)
        raise asyncio.CancelledError

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self.inner.edit(notice, message_id)

    async def find_posted(self, key: str, where: object) -> PostedMessage | None:
        return await self.inner.find_posted(key, where)  # type: ignore[arg-type]

    async def send_digest(self, channel: object, notices: list[Notice]) -> PostedMessage:
        return await self.inner.send_digest(channel, notices)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_worker_killed_after_posting_is_recovered_without_a_double_post(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    task_id = finished(ledger, fake)
    with pytest.raises(asyncio.CancelledError):
        await worker(ledger, DiesAfterPosting(transport), name="doomed").run_once(T0)
    assert len(fake.channel_messages(fake.thread_id)) == 1
    assert terminal(ledger, task_id).status != "delivered"

    later = T0 + ledger.config.delivery_claim_lease + timedelta(seconds=1)
    result = await worker(ledger, transport, name="survivor").run_once(later)
    row = terminal(ledger, task_id)
    assert result.recovered == 1
    assert row.status == "delivered"
    (message,) = fake.channel_messages(fake.thread_id)
    assert row.platform_message_id == str(message.id)


@pytest.mark.anyio
async def test_the_enforced_nonce_returns_the_first_message_on_a_resend(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    task_id = finished(ledger, fake)
    row = terminal(ledger, task_id)
    thread = ledger.get(task_id).reply_to
    assert thread is not None
    notice = worker(ledger, transport)._notice(_row(row), "thread", thread)
    first = await transport.send(notice)
    again = await transport.send(notice)
    assert first.message_id == again.message_id
    assert len(fake.channel_messages(fake.thread_id)) == 1


def _row(row: DeliveryRecord) -> dict[str, object]:
    import json

    return {
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "kind": row.kind,
        "tenant": row.tenant,
        "task_id": row.task_id,
        "target": row.target,
        "payload": json.dumps(row.payload),
    }


@pytest.mark.anyio
async def test_progress_under_state_changes_edits_one_message(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    task = make_task(ledger, fake, "long render", notify="state_changes")
    w = worker(ledger, transport)
    await w.run_once(T0)
    ledger.progress(task.task_id, "frame 10/100", now=T0 + timedelta(seconds=1))
    await w.run_once(T0 + timedelta(minutes=1))
    ledger.progress(task.task_id, "frame 90/100", now=T0 + timedelta(minutes=2))
    await w.run_once(T0 + timedelta(minutes=3))
    posted = fake.channel_messages(fake.thread_id)
    assert len(posted) == 1
    assert posted[0].edits
    assert "frame 90" in str(posted[0].payload["embeds"])


@pytest.mark.anyio
async def test_a_crowded_channel_gets_one_digest(
    fake: FakeDiscord, ledger: Ledger, transport: DiscordTransport
) -> None:
    ids = [finished(ledger, fake, f"batch job {i}") for i in range(15)]
    await worker(ledger, transport).run_once(T0)
    posted = fake.channel_messages(fake.channel_id)
    assert len(posted) == 1
    assert "15 task updates" in posted[0].payload["content"]
    assert {terminal(ledger, i).route for i in ids} == {"digest"}
    assert fake.violations == []
