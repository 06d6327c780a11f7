"""Test helpers that ship with the ledger: a recording transport with fault injection, and
a delivery-worker process for crash tests (`python -m ledger.testing worker ...`)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.address import Address, parse_address
from ledger.exceptions import DeliveryError
from ledger.transports import Notice, PostedMessage


@dataclass(frozen=True, slots=True)
class Received:
    """One call the transport accepted: `send`, `edit` or `digest`."""

    op: str
    keys: tuple[str, ...]
    where: str
    channel_key: str
    message_id: str
    notices: tuple[Notice, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return self.keys[0]


class RecordingTransport:
    """A `Transport` that records what it was given (in memory, and appended to `path` as
    JSON lines, one `os.write` each, so a SIGKILLed process leaves whole records).

    Fault injection:
    - `dead`: destinations that fail permanently: address strings, channel keys (every
      route into that channel but DMs), or `dm:USER` for direct messages;
    - `fail_next(error, times)`: the next sends raise `error` (e.g. a 429 with Retry-After);
    - `on_send`: an async hook called with each notice before it is accepted;
    - `after_persist`: seconds to sleep after recording and before returning (a window in
      which a crash leaves a posted-but-unrecorded message);
    - `enforce_rate`: refuse (transient, with Retry-After) sends faster than `channel_rate`
      per channel, as Slack does.
    """

    def __init__(
        self,
        platform: str = "slack",
        *,
        channel_rate: float = 1000.0,
        can_edit: bool = True,
        path: str | Path | None = None,
        enforce_rate: bool = False,
        after_persist: float = 0.0,
    ) -> None:
        self.platform = platform
        self.channel_rate = channel_rate
        self.can_edit = can_edit
        self.path = Path(path) if path is not None else None
        self.enforce_rate = enforce_rate
        self.after_persist = after_persist
        self.received: list[Received] = []
        self.dead: set[str] = set()
        self.on_send: Callable[[Notice], Awaitable[None]] | None = None
        self.find_calls: list[tuple[str, str]] = []
        self._faults: list[DeliveryError] = []
        self._last_send: dict[str, float] = {}
        self._offset = 0
        self._from_file: list[Received] = []

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, error: DeliveryError, times: int = 1) -> None:
        self._faults.extend([error] * times)

    def _check(self, where: Address, route: str) -> None:
        names = {str(where)}
        names.add(f"dm:{where.user}" if route == "dm" else where.channel_key)
        if names & self.dead:
            raise DeliveryError(f"{where} is gone (channel_not_found)", permanent=True)
        if self._faults:
            raise self._faults.pop(0)
        if self.enforce_rate:
            now = time.monotonic()
            last = self._last_send.get(where.channel_key)
            gap = 1.0 / self.channel_rate
            if last is not None and now - last < gap:
                raise DeliveryError(
                    "ratelimited", permanent=False, retry_after=gap - (now - last), code="429"
                )
            self._last_send[where.channel_key] = now

    # -- the Transport protocol ------------------------------------------------------------

    async def send(self, notice: Notice) -> PostedMessage:
        return await self._accept("send", [notice], notice.destination)

    async def edit(self, notice: Notice, message_id: str) -> PostedMessage:
        return await self._accept("edit", [notice], notice.destination, message_id)

    async def send_digest(self, channel: Address, notices: list[Notice]) -> PostedMessage:
        return await self._accept("digest", notices, channel)

    async def find_posted(self, idempotency_key: str, where: Address) -> PostedMessage | None:
        self.find_calls.append((idempotency_key, str(where)))
        for record in self.records():
            if idempotency_key not in record.keys or record.channel_key != where.channel_key:
                continue
            # Like Slack's lookup: a thread is searched, not the whole channel.
            if parse_address(record.where, "where").thread == where.thread:
                return PostedMessage(record.message_id, where.channel, where.thread)
        return None

    async def _accept(
        self, op: str, notices: list[Notice], where: Address, message_id: str | None = None
    ) -> PostedMessage:
        if self.on_send is not None:
            for notice in notices:
                await self.on_send(notice)
        self._check(where, notices[0].route if notices else "digest")
        record = Received(
            op=op,
            keys=tuple(n.idempotency_key for n in notices),
            where=str(where),
            channel_key=where.channel_key,
            message_id=message_id or uuid.uuid4().hex,
            notices=tuple(notices),
        )
        self.received.append(record)
        if self.path is not None:
            line = json.dumps(
                {
                    "op": op,
                    "keys": list(record.keys),
                    "where": record.where,
                    "channel_key": record.channel_key,
                    "message_id": record.message_id,
                }
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        if self.after_persist:
            await asyncio.sleep(self.after_persist)
        return PostedMessage(record.message_id, where.channel, where.thread)

    # -- reading back ------------------------------------------------------------------------

    def records(self) -> list[Received]:
        """What was received: from the file when persisting (all processes), else memory."""
        if self.path is None:
            return list(self.received)
        if self.path.exists():  # read only what was appended since the last look
            with self.path.open("rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(whole)
            self._from_file.extend(_parse_lines(whole.decode()))
        return list(self._from_file)

    def delivered_keys(self) -> list[str]:
        """Every idempotency key shown, one entry per time shown (edits count too)."""
        return [key for record in self.records() for key in record.keys]


def load_records(path: str | Path) -> list[Received]:
    target = Path(path)
    if not target.exists():
        return []
    return _parse_lines(target.read_text())


def _parse_lines(text: str) -> list[Received]:
    records: list[Received] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:  # a torn last line cannot happen with one os.write
            continue
        records.append(
            Received(
                op=data["op"],
                keys=tuple(data["keys"]),
                where=data["where"],
                channel_key=data["channel_key"],
                message_id=data["message_id"],
            )
        )
    return records


# -- a worker process for crash tests --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m ledger.testing worker --db URL --record FILE [--claim-lease S]
    [--after-persist S] [--until-drained] [--worker-id ID]`"""
    import argparse
    from datetime import timedelta

    from ledger.config import LedgerConfig
    from ledger.delivery import DeliveryWorker
    from ledger.ledger import Ledger

    parser = argparse.ArgumentParser(prog="python -m ledger.testing")
    parser.add_argument("command", choices=["worker"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--platform", default="slack")
    parser.add_argument("--claim-lease", type=float, default=1.0)
    parser.add_argument("--after-persist", type=float, default=0.0)
    parser.add_argument("--channel-rate", type=float, default=1000.0)
    parser.add_argument("--until-drained", action="store_true")
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)

    config = LedgerConfig(delivery_claim_lease=timedelta(seconds=args.claim_lease))
    ledger = Ledger.connect(args.db, config)
    transport = RecordingTransport(
        args.platform,
        path=args.record,
        after_persist=args.after_persist,
        channel_rate=args.channel_rate,
    )
    worker = DeliveryWorker(ledger, config, [transport], args.worker_id, poll_interval=0.05)

    async def drive() -> None:
        stop = asyncio.Event()
        if not args.until_drained:
            await worker.run(stop)
            return
        while True:
            await worker.run_once()
            if not ledger.deliveries(status="pending", limit=1) and not ledger.deliveries(
                status="retrying", limit=1
            ):
                return
            await asyncio.sleep(0.05)

    print("ready", flush=True)
    try:
        asyncio.run(drive())
    finally:
        ledger.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- the crash scenario (tests/integration/test_delivery_crash.py, bench/delivery_crash.py) --


@dataclass(frozen=True, slots=True)
class CrashReport:
    completions: int
    kills: int
    #: idempotency key -> how many times the transport showed it
    shown: dict[str, int]
    #: outbox rows not `delivered` at the end
    undelivered: int
    #: notices shown in total after each kill (is each kill landing mid-delivery?)
    shown_after_kill: tuple[int, ...] = ()
    #: notices a killed worker posted but never recorded (the crash window exercised)
    posted_unrecorded: int = 0

    @property
    def lost(self) -> int:
        return sum(1 for count in self.shown.values() if count == 0)

    @property
    def duplicated(self) -> int:
        return sum(1 for count in self.shown.values() if count > 1)


def crash_scenario(
    db_url: str,
    workdir: str | Path,
    *,
    completions: int,
    kills: int,
    seed: int,
    drain_timeout: float = 120.0,
) -> CrashReport:
    """Finish `completions` tasks, then start a real worker process and SIGKILL it at a
    random moment, `kills` times; a fresh worker then drains the outbox. Reports how often
    the recording transport showed each completion."""
    import random
    import signal
    import subprocess
    import sys

    from ledger.ledger import Ledger

    rng = random.Random(seed)
    workdir = Path(workdir)
    record = workdir / f"received-{seed}.jsonl"
    ledger = Ledger.connect(db_url)
    try:
        for i in range(completions):
            reply_to = f"slack:T1/C{i % 50}/{1700000000 + i}.000100@U1"
            task = ledger.create(runtime="subagent", label=f"job {i}", reply_to=reply_to)
            ledger.finish(task.task_id, status="succeeded", summary=f"result {i}")
        keys = [d.idempotency_key for d in ledger.deliveries(limit=None)]
    finally:
        ledger.close()

    command = [sys.executable, "-m", "ledger.testing", "worker", "--db", db_url]
    command += ["--record", str(record), "--claim-lease", "0.5", "--after-persist", "0.002"]
    after_kills: list[int] = []
    with open(workdir / f"worker-{seed}.err", "a") as errors:
        for _ in range(kills):
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=errors, text=True
            ) as proc:
                assert proc.stdout is not None
                proc.stdout.readline()  # "ready": connected, about to deliver
                _wait_for_deliveries(record, rng, completions)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            after_kills.append(len(load_records(record)))
        posted_unrecorded = _posted_unrecorded(db_url, record)
        with subprocess.Popen(
            [*command, "--until-drained"], stdout=subprocess.DEVNULL, stderr=errors
        ) as final:
            try:
                final.wait(timeout=drain_timeout)
            finally:
                if final.poll() is None:
                    final.kill()
                    final.wait()

    shown = dict.fromkeys(keys, 0)
    for received in load_records(record):
        for key in received.keys:
            shown[key] = shown.get(key, 0) + 1
    ledger = Ledger.connect(db_url)
    try:
        undelivered = sum(1 for d in ledger.deliveries(limit=None) if d.status != "delivered")
    finally:
        ledger.close()
    return CrashReport(
        completions, kills, shown, undelivered, tuple(after_kills), posted_unrecorded
    )


def _wait_for_deliveries(record: Path, rng: Any, completions: int) -> None:
    """Let the worker show a random number of further notices (at least one), then a random
    sliver of time more: the kill lands while it is delivering, not while it starts up."""
    shown = len(load_records(record))
    if shown >= completions:
        return
    target = shown + rng.randint(1, max(1, (completions - shown) // 3))
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and len(load_records(record)) < target:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.02))


def _posted_unrecorded(db_url: str, record: Path) -> int:
    from ledger.ledger import Ledger

    posted = {key for received in load_records(record) for key in received.keys}
    ledger = Ledger.connect(db_url)
    try:
        open_rows = [d for d in ledger.deliveries(limit=None) if d.status != "delivered"]
    finally:
        ledger.close()
    return sum(1 for d in open_rows if d.idempotency_key in posted)
