"""`tasktrail serve --demo`: simulated producers on the configured ledger, so a new user sees
a live board at once. Sub-agents spawn children and finish, a cron runs every minute, a CLI
job heartbeats (and honours `tasktrail cancel`), one task goes silent and is marked lost by
the reconciler, and one task's completion cannot be delivered. Notices print to the console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.settings import Settings
from ledger import Ledger
from ledger.address import Address
from ledger.exceptions import DeliveryError, LedgerError
from ledger.transports import Notice, PostedMessage

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger("tasktrail.demo")

THREAD = "slack:TDEMO/CBUILDS/1700000000.000100@UALICE"
BROKEN = "discord:404404404/404404405@404404406"
AGENT_WORK = [
    "refactor the billing module",
    "write release notes for 2.4",
    "triage flaky test test_upload_resume",
    "summarize yesterday's incident channel",
    "bump dependencies and run the suite",
    "draft the Q3 migration plan",
    "find unused feature flags",
    "render product shots (media)",
]


def demo_settings(settings: Settings) -> Settings:
    """Short intervals so a silent task is marked lost within a minute or two."""
    ledger = replace(
        settings.ledger,
        lease=timedelta(seconds=60),
        lost_grace=timedelta(seconds=20),
        reconcile_interval=timedelta(seconds=5),
        audit_interval=timedelta(seconds=20),
        maintenance_interval=timedelta(minutes=10),
    )
    return replace(settings, ledger=ledger, api_tokens=())


class DeletedChannelTransport:
    """Discord in the demo: every channel is gone, so that task's delivery fails."""

    platform = "discord"
    channel_rate = 5.0
    can_edit = False

    async def send(self, notice: Notice) -> PostedMessage:
        raise DeliveryError(
            f"Unknown Channel {notice.destination} (demo: deleted)", permanent=True, code="10003"
        )

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self.send(notice)

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        return None

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        raise DeliveryError(f"Unknown Channel {channel} (demo: deleted)", permanent=True)


def install_demo(app: App) -> None:
    """Add the simulated producers to the app's background jobs."""
    producers = DemoProducers(app.ledger)
    app.background.append(producers.run)


class DemoProducers:
    def __init__(self, ledger: Ledger, *, seed: int | None = None) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.counter = 0
        self._working: set[asyncio.Task[None]] = set()

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except LedgerError as error:  # e.g. an operator cancelled it from the CLI: fine
            log.info("demo: %s", error)
            return None

    async def run(self, stop: asyncio.Event) -> None:
        jobs = [
            self._seed(),
            self._agents(stop),
            self._cron(stop),
            self._cli_job(stop),
            self._silent(stop),
            self._undeliverable(stop),
        ]
        tasks = [asyncio.create_task(job) for job in jobs]
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
        """Sleep; True when the demo should stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        return stop.is_set()

    async def _seed(self) -> None:
        """A few finished tasks so the board is not empty in the first second."""
        done = [
            ("subagent", "audit the README links", "succeeded"),
            ("acp", "port the CLI to click 8", "succeeded"),
            ("media", "generate the launch banner", "failed"),
        ]
        for runtime, label, status in done:
            task = await self.call(
                self.ledger.create, runtime=runtime, label=label, reply_to=THREAD
            )
            if task is not None:
                await self.call(
                    self.ledger.finish,
                    task.task_id,
                    status=status,
                    summary="done" if status == "succeeded" else None,
                    error="model refused the prompt" if status == "failed" else None,
                )

    async def _agents(self, stop: asyncio.Event) -> None:
        """An orchestrator spawns sub-agents every few seconds; each works and finishes."""
        while not await self._sleep(stop, self.rng.uniform(3, 6)):
            self.counter += 1
            label = self.rng.choice(AGENT_WORK)
            runtime = "media" if "media" in label else "subagent"
            notify = "state_changes" if self.counter % 3 == 0 else None
            task = await self.call(
                self.ledger.create,
                runtime=runtime,
                label=label,
                run_id=f"demo-agent-{self.counter}",
                child_session_key=f"agent:demo:{self.counter}",
                requester_session_key="agent:demo:orchestrator",
                reply_to=THREAD,
                notify=notify,
            )
            if task is not None:
                job = asyncio.create_task(self._work(task.task_id, stop))
                self._working.add(job)
                job.add_done_callback(self._working.discard)

    async def _work(self, task_id: str, stop: asyncio.Event) -> None:
        steps = self.rng.randint(2, 4)
        for step in range(1, steps + 1):
            if await self._sleep(stop, self.rng.uniform(3, 8)):
                return
            await self.call(self.ledger.progress, task_id, f"step {step} of {steps}")
        if self.rng.random() < 0.2:
            await self.call(
                self.ledger.finish, task_id, status="failed", error="tests failed: 3 of 212"
            )
        else:
            await self.call(
                self.ledger.finish, task_id, status="succeeded", summary=f"{steps} steps done"
            )

    async def _cron(self, stop: asyncio.Event) -> None:
        """`nightly-sync`, every minute (cron is `silent` by default)."""
        run = 0
        while True:
            run += 1
            task = await self.call(
                self.ledger.create,
                runtime="cron",
                label="nightly-sync: mirror S3 inventory",
                source_id="nightly-sync",
                run_id=f"nightly-sync-{run}-{id(self)}",
            )
            if await self._sleep(stop, 4):
                return
            if task is not None:
                await self.call(
                    self.ledger.finish, task.task_id, status="succeeded", summary="412 objects"
                )
            if await self._sleep(stop, 56):
                return

    async def _cli_job(self, stop: asyncio.Event) -> None:
        """A `tasktrail run`-style job: heartbeats, and stops when an operator cancels it."""
        while True:
            task = await self.call(
                self.ledger.create,
                runtime="cli",
                label="make integration-test (try: tasktrail cancel <id>)",
                runner="run",
                reply_to=THREAD,
                lease=30,
            )
            if task is None:
                return
            for _ in range(12):
                if await self._sleep(stop, 5):
                    return
                record = await self.call(self.ledger.heartbeat, task.task_id)
                if record is None:
                    break
                if record.cancel_requested_at is not None:
                    await self.call(
                        self.ledger.finish,
                        task.task_id,
                        status="cancelled",
                        summary="stopped after a cancel request",
                    )
                    break
            else:
                await self.call(
                    self.ledger.finish, task.task_id, status="succeeded", summary="187 passed"
                )
            if await self._sleep(stop, 20):
                return

    async def _silent(self, stop: asyncio.Event) -> None:
        """A sub-agent that stops reporting: the reconciler marks it lost after its lease
        (15 s) and the grace window."""
        while True:
            await self.call(
                self.ledger.create,
                runtime="subagent",
                label="scrape competitor pricing (goes silent)",
                reply_to=THREAD,
                lease=15,
            )
            if await self._sleep(stop, 300):
                return

    async def _undeliverable(self, stop: asyncio.Event) -> None:
        """A task whose reply thread was deleted: its completion cannot be delivered."""
        while True:
            task = await self.call(
                self.ledger.create,
                runtime="subagent",
                label="weekly report for a deleted Discord channel",
                reply_to=BROKEN,
            )
            if await self._sleep(stop, 6):
                return
            if task is not None:
                await self.call(
                    self.ledger.finish, task.task_id, status="succeeded", summary="report ready"
                )
            if await self._sleep(stop, 240):
                return
