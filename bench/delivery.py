"""Delivery speed (issue 5 targets):

1. idle latency from `finish` to the transport receiving the notice (p50 / p99), with the
   worker otherwise idle — target p99 <= 500 ms;
2. draining 10,000 due notices to 100 channels through a transport that refuses more than
   1 message/s/channel (429 + Retry-After), digest coalescing on vs off — target <= 60 s on.

    .venv/bin/python bench/delivery.py [--db URL] [--samples 200] [--notices 10000]
                                       [--channels 100] [--skip-off] [--off-timeout 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/ledger.py would shadow the `ledger` package when this runs as bench/delivery.py.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sqlalchemy import func, select  # noqa: E402

from ledger import Ledger, LedgerConfig  # noqa: E402
from ledger.db import read, write  # noqa: E402
from ledger.delivery import DeliveryWorker  # noqa: E402
from ledger.outbox import enqueue_notice  # noqa: E402
from ledger.schema import deliveries_table  # noqa: E402
from ledger.testing import RecordingTransport  # noqa: E402
from ledger.timeutil import utcnow  # noqa: E402
from ledger.transports import Notice  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def idle_latency(url: str, samples: int) -> list[float]:
    ledger = Ledger.connect(url, LedgerConfig())
    transport = RecordingTransport()
    received: dict[str, float] = {}
    arrived = threading.Condition()

    async def note(notice: Notice) -> None:
        with arrived:
            received[str(notice.task_id)] = time.perf_counter()
            arrived.notify_all()

    transport.on_send = note
    worker = DeliveryWorker(ledger, ledger.config, [transport], "bench-idle")
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
    runner.start()
    latencies: list[float] = []
    try:
        for i in range(samples):
            task = ledger.create(
                runtime="subagent", label=f"idle {i}", reply_to=f"slack:T1/C1/{i}.000100"
            )
            time.sleep(random.uniform(0.02, 0.12))  # the worker sits idle between tasks
            started = time.perf_counter()
            ledger.finish(task.task_id, status="succeeded")
            task_id = task.task_id
            with arrived:
                arrived.wait_for(lambda: task_id in received, timeout=10)  # noqa: B023
            latencies.append((received[task_id] - started) * 1000)
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join()
        loop.close()
        ledger.close()
    return latencies


def drain(
    url: str, notices: int, channels: int, coalesce: bool, timeout: float
) -> tuple[float, int, int]:
    ledger = Ledger.connect(url, LedgerConfig())
    with write(ledger.engine) as conn:
        conn.execute(deliveries_table.delete())
        now = utcnow()
        for i in range(notices):
            channel = i % channels
            enqueue_notice(
                conn,
                tenant="bench",
                task_id=None,
                kind="terminal",
                target=f"slack:T1/C{channel}/{1700000000 + i}.000100",
                payload={
                    "task_id": f"t{i}",
                    "short_id": f"t{i}",
                    "label": f"job {i}",
                    "status": "succeeded",
                },
                key=f"bench:{coalesce}:{i}",
                now=now,
                config=ledger.config,
                route="thread",
            )
    transport = RecordingTransport(channel_rate=1.0, enforce_rate=True)
    worker = DeliveryWorker(
        ledger, ledger.config, [transport], "bench-drain", coalesce=coalesce, max_claims=5000
    )
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_until_complete, args=(worker.run(stop),))
    started = time.perf_counter()
    runner.start()
    delivered = 0
    try:
        while time.perf_counter() - started < timeout:
            time.sleep(0.25)
            with read(ledger.engine) as conn:
                delivered = conn.execute(
                    select(func.count()).where(deliveries_table.c.status == "delivered")
                ).scalar_one()
            if delivered >= notices:
                break
    finally:
        elapsed = time.perf_counter() - started
        loop.call_soon_threadsafe(stop.set)
        runner.join()
        loop.close()
        ledger.close()
    return elapsed, delivered, len(transport.received)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", help="ledger URL (default: a fresh SQLite file)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--notices", type=int, default=10_000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--skip-off", action="store_true", help="skip the no-coalescing run")
    parser.add_argument("--off-timeout", type=float, default=200.0)
    args = parser.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    print(f"database: {url.split('@')[-1]}")

    latencies = idle_latency(url, args.samples)
    print(
        f"idle latency finish -> transport ({len(latencies)} samples): "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
        f"max {max(latencies):.1f} ms  (target p99 <= 500 ms)"
    )

    runs = [True] if args.skip_off else [True, False]
    for coalesce in runs:
        timeout = 120.0 if coalesce else args.off_timeout
        elapsed, delivered, messages = drain(url, args.notices, args.channels, coalesce, timeout)
        label = "on " if coalesce else "off"
        rate = delivered / elapsed if elapsed else 0.0
        done = "drained" if delivered >= args.notices else f"NOT drained after {timeout:.0f} s"
        print(
            f"coalescing {label}: {delivered}/{args.notices} notices to {args.channels} channels "
            f"at 1 msg/s/channel in {elapsed:.1f} s ({rate:.0f} notices/s, {messages} messages "
            f"posted) {done}" + ("  (target <= 60 s)" if coalesce else "")
        )


if __name__ == "__main__":
    main()
