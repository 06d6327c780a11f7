"""Two delivery workers, each with its own connection pool, draining one PostgreSQL outbox
at the same time (claims with SKIP LOCKED and compare-and-set): no notice is sent twice.
The same race on SQLite, where BEGIN IMMEDIATE serializes the claims."""

from __future__ import annotations

import asyncio
from collections import Counter

from ledger import Ledger
from ledger.delivery import DeliveryWorker
from ledger.testing import RecordingTransport


def test_two_workers_drain_one_outbox_without_sending_anything_twice(db_url: str) -> None:
    producer = Ledger.connect(db_url)
    for i in range(120):
        task = producer.create(
            runtime="subagent", label=f"job {i}", reply_to=f"slack:T1/C{i % 12}/{i}.000100"
        )
        producer.finish(task.task_id, status="succeeded")
    keys = {d.idempotency_key for d in producer.deliveries(limit=None)}
    transport = RecordingTransport(after_persist=0.001)
    replicas = [Ledger.connect(db_url) for _ in range(2)]
    workers = [
        DeliveryWorker(replica, replica.config, [transport], f"w{n}", max_claims=8)
        for n, replica in enumerate(replicas)
    ]

    async def drain(worker: DeliveryWorker) -> int:
        delivered = 0
        for _ in range(500):
            result = await worker.run_once()
            delivered += result.delivered
            if result.claimed == 0 and not await asyncio.to_thread(
                producer.deliveries, status="pending", limit=1
            ):
                break
        return delivered

    async def both() -> list[int]:
        return list(await asyncio.gather(*(drain(w) for w in workers)))

    try:
        counts = asyncio.run(both())
        shown = Counter(transport.delivered_keys())
        assert set(shown) == keys
        assert max(shown.values()) == 1
        assert sum(counts) == len(keys)
        assert min(counts) > 0  # both workers took part
        assert {d.status for d in producer.deliveries(limit=None)} == {"delivered"}
    finally:
        for replica in replicas:
            replica.close()
        producer.close()
