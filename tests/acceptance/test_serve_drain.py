"""SIGTERM while deliveries are in flight: serve drains within 10 s, exits 0, keeps no claim,
and every notice is delivered exactly once when a worker takes over."""

from __future__ import annotations

import re
import time
from collections import Counter

from sqlalchemy import func, select

from ledger import Ledger, db
from ledger.schema import deliveries_table
from tests.acceptance.serve_process import serve

D = deliveries_table.c
N = 120


def _states(url: str) -> dict[str, int]:
    with Ledger.connect(url) as ledger, db.read(ledger.engine) as conn:
        counts = dict(
            (row[0], row[1])
            for row in conn.execute(select(D.status, func.count()).group_by(D.status))
        )
        counts["claimed"] = conn.execute(
            select(func.count()).where(
                D.claimed_by.is_not(None), D.status.in_(("pending", "retrying"))
            )
        ).scalar_one()
    return counts


def test_sigterm_mid_delivery_loses_nothing_and_sends_nothing_twice(db_url: str) -> None:
    with Ledger.connect(db_url) as ledger:
        for i in range(N):
            # One channel per task: no digest, every notice is its own send.
            task = ledger.create(
                runtime="subagent",
                label=f"job-{i}",
                reply_to=f"slack:T1/C{i:04d}/1700000000.{i:06d}",
            )
            ledger.finish(task.task_id, status="succeeded", summary="ok")
        short_ids = {t.short_id for t in ledger.list(limit=None)}
    assert len(short_ids) == N

    with serve(db_url) as served:
        deadline = time.monotonic() + 30
        while not served.stdout:  # the first notice is out: deliveries are in flight
            assert time.monotonic() < deadline, "".join(served.stderr)
            time.sleep(0.005)
        started = time.monotonic()
        code = served.stop(timeout=15)
        assert code == 0, "".join(served.stderr)
        assert time.monotonic() - started < 10
    first = _states(db_url)
    assert first["claimed"] == 0, first
    assert first.get("delivered", 0) + first.get("pending", 0) == N, first

    with serve(db_url, command="worker") as worker:
        deadline = time.monotonic() + 60
        while _states(db_url).get("delivered", 0) < N:
            assert time.monotonic() < deadline, (_states(db_url), "".join(worker.stderr))
            time.sleep(0.2)
        assert worker.stop() == 0

    printed = Counter(
        match.group(1)
        for line in served.stdout + worker.stdout
        for match in re.finditer(r"\(([a-z2-7]{8})\)", line)
    )
    assert set(printed) == short_ids
    assert max(printed.values()) == 1, [k for k, v in printed.items() if v > 1]
