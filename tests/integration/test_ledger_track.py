"""`Ledger.track()`: create + start, heartbeats in the background, finished on exit."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ledger import Ledger, Status


@pytest.fixture
def live_ledger(db_url: str) -> Iterator[Ledger]:
    """A ledger on the real clock (heartbeats and leases are about elapsed time)."""
    instance = Ledger.connect(db_url)
    yield instance
    instance.close()


def test_a_tracked_block_that_returns_is_succeeded(live_ledger: Ledger) -> None:
    with live_ledger.track(runtime="cli", label="nightly build", heartbeat_every=0.05) as task:
        assert live_ledger.get(task.task_id).status is Status.RUNNING
        first = live_ledger.get(task.task_id).heartbeat_at
        time.sleep(0.3)
        assert live_ledger.get(task.task_id).heartbeat_at > first  # type: ignore[operator]
        task.progress("half way")
    done = live_ledger.get(task.task_id)
    assert done.status is Status.SUCCEEDED
    assert done.progress_summary == "half way"
    assert done.runner == "track"


def test_a_tracked_block_that_raises_is_failed_with_the_exception_text(
    live_ledger: Ledger,
) -> None:
    with (
        pytest.raises(RuntimeError, match="disk full"),
        live_ledger.track(runtime="cli", label="export") as task,
    ):
        raise RuntimeError("disk full")
    done = live_ledger.get(task.task_id)
    assert done.status is Status.FAILED
    assert done.error == "RuntimeError: disk full"


def test_a_cancel_request_stops_the_block_at_the_next_heartbeat(live_ledger: Ledger) -> None:
    reached_end = False
    with live_ledger.track(runtime="cli", label="long loop", heartbeat_every=0.05) as task:
        asked = live_ledger.cancel(task.task_id, reason="operator said stop")
        assert asked.status is Status.RUNNING  # a live runner: intent only
        for _ in range(200):
            time.sleep(0.02)
        reached_end = True
    assert not reached_end
    done = live_ledger.get(task.task_id)
    assert done.status is Status.CANCELLED
    assert "operator said stop" in (done.terminal_summary or "")


def test_without_interrupts_the_blocks_own_heartbeat_raises_the_cancel(
    live_ledger: Ledger,
) -> None:
    reached_end = False
    with live_ledger.track(
        runtime="cli", label="polite", heartbeat_every=60, interrupt=False
    ) as task:
        live_ledger.cancel(task.task_id)
        task.heartbeat()  # raises CancelRequested, which track() turns into `cancelled`
        reached_end = True
    assert not reached_end
    assert live_ledger.get(task.task_id).status is Status.CANCELLED
