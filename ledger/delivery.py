"""The delivery worker: claims due notices from the outbox and sends them (SPEC §5).

One pass (`run_once`):

1. count due notices per destination channel;
2. per channel, ask the pacer how many sends the channel's rate allows now; a channel with
   more due than its rate allows within 10 s gets one digest at its top level instead;
3. claim that many rows by compare-and-set (SKIP LOCKED on PostgreSQL), counting an attempt;
4. send through the `Transport` chosen by the destination's platform, renewing the claims
   while sending; a row tried before (its claim expired, or an earlier attempt failed) is
   first looked up with `find_posted`, so a crash between sending and recording never
   posts twice;
5. record the outcome: delivered (route, message id); transient error -> `retrying` with
   exponential backoff and jitter, never sooner than Retry-After, until the deadline;
   permanent error -> the next route (thread -> channel -> dm -> ops); none left -> `failed`.

Database calls run in threads (`asyncio.to_thread`) so the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from ledger import db, outbox
from ledger.address import Address, parse_address
from ledger.config import LedgerConfig
from ledger.exceptions import DeliveryError
from ledger.pacing import Pacer, backoff, route_channel_key, routes_for
from ledger.timeutil import utcnow
from ledger.transports import ROUTES, Notice, PostedMessage, Transport

log = logging.getLogger("ledger.delivery")
R = TypeVar("R")

#: A channel with more notices due than its rate allows within this window gets a digest.
DIGEST_WINDOW = 10.0
#: Kinds that may be merged into a digest (audit digests are already one message).
DIGESTABLE = frozenset({"started", "progress", "terminal", "correction", "proof"})


@dataclass
class PassResult:
    """What one `run_once` did."""

    claimed: int = 0
    delivered: int = 0
    recovered: int = 0
    digests: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0


class DeliveryWorker:
    """Sends due notices. `run(stop_event)` loops until the event is set; `run_once(now)`
    does one pass (tests drive it with an injected clock)."""

    def __init__(
        self,
        ledger_or_engine: Any,
        config: LedgerConfig | None = None,
        transports: Mapping[str, Transport] | Iterable[Transport] = (),
        worker_id: str | None = None,
        *,
        coalesce: bool = True,
        digest_max: int = 50,
        max_claims: int = 1000,
        poll_interval: float = 0.1,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        engine = getattr(ledger_or_engine, "engine", ledger_or_engine)
        if not isinstance(engine, Engine):
            raise TypeError("DeliveryWorker needs a Ledger or a SQLAlchemy Engine")
        self.engine = engine
        self.config = config or getattr(ledger_or_engine, "config", None) or LedgerConfig()
        if isinstance(transports, Mapping):
            self.transports: dict[str, Transport] = dict(transports)
        else:
            self.transports = {t.platform: t for t in transports}
        self.worker_id = worker_id or f"worker-{uuid.uuid4().hex[:8]}"
        self.coalesce = coalesce
        self.digest_max = digest_max
        self.max_claims = max_claims
        self.poll_interval = poll_interval
        self.clock = clock
        self.rng = rng or random.Random()
        self.pacer = Pacer()
        self.ops = (
            parse_address(self.config.ops_channel, "ops_channel")
            if (self.config.ops_channel)
            else None
        )
        self._wake = asyncio.Event()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop_event: asyncio.Event) -> None:
        """Deliver until `stop_event` is set (finishing the pass in progress)."""
        log.info("delivery worker %s started", self.worker_id)
        while not stop_event.is_set():
            try:
                result = await self.run_once()
            except Exception:
                log.exception("delivery pass failed; retrying shortly")
                result = PassResult()
                await self._pause(stop_event, 1.0)
                continue
            if result.claimed == 0:
                await self._pause(stop_event, self.poll_interval)
        log.info("delivery worker %s stopped", self.worker_id)

    def wake(self) -> None:
        """Start the next pass now (e.g. right after a finish in the same process)."""
        self._wake.set()

    async def _pause(self, stop_event: asyncio.Event, seconds: float) -> None:
        waiters = [
            asyncio.ensure_future(stop_event.wait()),
            asyncio.ensure_future(self._wake.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._wake.clear()

    # -- one pass ------------------------------------------------------------------------

    async def run_once(self, now: datetime | None = None) -> PassResult:
        now = now or self.clock()
        result = PassResult()
        counts = await asyncio.to_thread(self._read, outbox.due_counts, now)
        wants: dict[str, int] = {}
        digest: set[str] = set()
        budget = self.max_claims
        for channel_key, due in sorted(counts.items()):
            if budget <= 0:
                break
            rate = self._rate(channel_key)
            tokens = int(self.pacer.available(channel_key, rate, now))
            if tokens < 1:
                continue
            if self.coalesce and due > 1 and due > rate * DIGEST_WINDOW:
                wants[channel_key] = min(self.digest_max, budget)
                digest.add(channel_key)
            else:
                wants[channel_key] = min(due, tokens, budget)
            budget -= wants[channel_key]
        if not wants:
            return result
        rows, deferred = await asyncio.to_thread(self._write, self._claim, now, wants)
        result.claimed = len(rows)
        result.deferred = deferred
        if not rows:
            return result
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(row["channel_key"], []).append(row)
        started = time.monotonic()
        renewer = asyncio.create_task(self._renew([r["id"] for r in rows], now, started))
        try:
            await asyncio.gather(
                *(
                    self._send_group(key, group, key in digest, now, result)
                    for key, group in groups.items()
                )
            )
        finally:
            renewer.cancel()
        return result

    def _claim(
        self, conn: Connection, now: datetime, wants: Mapping[str, int]
    ) -> tuple[list[dict[str, Any]], int]:
        rows = outbox.claim(conn, self.worker_id, now, self.config.delivery_claim_lease, wants)
        ready: list[dict[str, Any]] = []
        waiting: list[int] = []
        for row in rows:
            row["edit_message_id"] = None
            if row["kind"] == "progress" and row["task_id"]:
                if outbox.earlier_open(conn, row):
                    waiting.append(row["id"])
                    continue
                row["edit_message_id"] = outbox.message_to_edit(conn, row["task_id"], row["target"])
            ready.append(row)
        outbox.defer(conn, waiting, self.worker_id, now + timedelta(seconds=1))
        return ready, len(waiting)

    async def _renew(self, ids: list[int], now: datetime, started: float) -> None:
        lease = self.config.delivery_claim_lease
        interval = max(0.05, lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(interval)
            until = now + timedelta(seconds=time.monotonic() - started) + lease
            try:
                await asyncio.to_thread(
                    self._write, outbox.renew_claims, ids, self.worker_id, until
                )
            except Exception:
                log.exception("renewing delivery claims failed")

    async def _send_group(
        self,
        channel_key: str,
        rows: list[dict[str, Any]],
        as_digest: bool,
        now: datetime,
        result: PassResult,
    ) -> None:
        if as_digest:
            # A digest lists tasks at a channel's top level: never for direct messages.
            merged = [r for r in rows if r["kind"] in DIGESTABLE and r["route"] != "dm"]
            singles = [r for r in rows if r not in merged]
            merged = await self._recover_posted(merged, now, result)
            if len(merged) > 1:
                self.pacer.take(channel_key)
                await self._send_digest(channel_key, merged, now, result)
            else:
                singles.extend(merged)
        else:
            singles = rows
        for row in singles:
            if not as_digest:
                self.pacer.take(channel_key)
            await self._deliver(row, now, result)

    async def _recover_posted(
        self, rows: list[dict[str, Any]], now: datetime, result: PassResult
    ) -> list[dict[str, Any]]:
        """Rows tried before are looked up first; those already posted are recorded."""
        remaining: list[dict[str, Any]] = []
        for row in rows:
            if row["prior_attempts"] == 0:
                remaining.append(row)
                continue
            target = parse_address(row["target"], "target")
            route_map = dict(routes_for(target, self.ops))
            destination = route_map.get(row["route"]) or target.with_thread(None)
            transport = self.transports.get(destination.platform) or self.transports.get("*")
            posted = None
            if transport is not None:
                try:
                    posted = await self._find_posted(transport, row, destination)
                except DeliveryError:
                    posted = None
            if posted is None:
                remaining.append(row)
                continue
            await self._record(
                outbox.record_delivered,
                row,
                now,
                route=row["route"],
                channel_key=row["channel_key"],
                message_id=posted.message_id,
            )
            result.recovered += 1
        return remaining

    async def _send_digest(
        self, channel_key: str, rows: list[dict[str, Any]], now: datetime, result: PassResult
    ) -> None:
        first = parse_address(rows[0]["target"], "target")
        route_map = dict(routes_for(first, self.ops))
        where = route_map.get(rows[0]["route"]) or first
        channel = Address(where.platform, where.workspace, where.channel)
        notices = [self._notice(row, "digest", channel) for row in rows]
        transport = self.transports.get(channel.platform) or self.transports.get("*")
        try:
            if transport is None:
                raise DeliveryError(f"no transport for {channel.platform}", permanent=True)
            posted = await transport.send_digest(channel, notices)
        except DeliveryError as error:
            if error.permanent:  # the channel itself is gone: each row tries its own routes
                for row in rows:
                    await self._deliver(row, now, result)
                return
            if error.retry_after:
                self.pacer.block(channel_key, now + timedelta(seconds=error.retry_after))
            for row in rows:
                await self._retry(row, now, str(error), error.retry_after, result)
            return
        except Exception as error:  # a transport bug or a network error: transient
            for row in rows:
                await self._retry(row, now, repr(error), None, result)
            return
        await asyncio.to_thread(self._write, self._record_digest, rows, now, channel_key, posted)
        result.digests += 1
        result.delivered += len(rows)

    def _record_digest(
        self,
        conn: Connection,
        rows: list[dict[str, Any]],
        now: datetime,
        channel_key: str,
        posted: PostedMessage,
    ) -> None:
        outbox.record_delivered_many(
            conn,
            rows,
            self.worker_id,
            now,
            route="digest",
            channel_key=channel_key,
            message_id=posted.message_id,
        )

    async def _deliver(self, row: dict[str, Any], now: datetime, result: PassResult) -> None:
        """Send one notice, falling through the routes on permanent errors."""
        target = parse_address(row["target"], "target")
        routes = routes_for(target, self.ops)
        names = [name for name, _ in routes]
        start = names.index(row["route"]) if row["route"] in names else 0
        errors: list[str] = []
        for route, destination in routes[start:]:
            transport = self.transports.get(destination.platform) or self.transports.get("*")
            channel_key = route_channel_key(route, destination)
            notice = self._notice(row, route, destination)
            try:
                if transport is None:
                    raise DeliveryError(
                        f"no transport for platform {destination.platform}", permanent=True
                    )
                posted = None
                if row["prior_attempts"] > 0:
                    posted = await self._find_posted(transport, row, destination)
                    if posted is not None:
                        result.recovered += 1
                if posted is None:
                    edit_id = row.get("edit_message_id")
                    if edit_id and transport.can_edit and route == row["route"]:
                        posted = await transport.edit(notice, edit_id)
                    else:
                        posted = await transport.send(notice)
            except DeliveryError as error:
                if error.permanent:
                    errors.append(f"{route}: {error}")
                    continue
                if error.retry_after:
                    self.pacer.block(channel_key, now + timedelta(seconds=error.retry_after))
                await self._retry(
                    row,
                    now,
                    f"{route}: {error}",
                    error.retry_after,
                    result,
                    route=route,
                    channel_key=channel_key,
                )
                return
            except Exception as error:
                log.warning("transport %s raised %r; will retry", destination.platform, error)
                await self._retry(
                    row,
                    now,
                    f"{route}: {error!r}",
                    None,
                    result,
                    route=route,
                    channel_key=channel_key,
                )
                return
            await self._record(
                outbox.record_delivered,
                row,
                now,
                route=route,
                channel_key=channel_key,
                message_id=posted.message_id,
            )
            result.delivered += 1
            return
        message = "; ".join(errors) or f"no route for {row['target']}"
        await self._record(outbox.record_failed, row, now, error=f"all routes failed: {message}")
        result.failed += 1

    async def _retry(
        self,
        row: dict[str, Any],
        now: datetime,
        error: str,
        retry_after: float | None,
        result: PassResult,
        *,
        route: str | None = None,
        channel_key: str | None = None,
    ) -> None:
        delay = backoff(row["attempts"], retry_after, self.rng)
        won = await self._record(
            outbox.record_retry,
            row,
            now,
            error=error,
            next_attempt_at=now + timedelta(seconds=delay),
            route=route or row["route"],
            channel_key=channel_key or row["channel_key"],
        )
        if won and now >= row["deadline_at"]:
            result.failed += 1
        else:
            result.retried += 1

    async def _record(
        self, step: Callable[..., bool], row: dict[str, Any], now: datetime, **values: Any
    ) -> bool:
        won: bool = await asyncio.to_thread(
            functools.partial(self._write, step, row, self.worker_id, now, **values)
        )
        if not won:
            log.warning(
                "delivery %s: claim lost before recording; left to its new holder", row["id"]
            )
        return won

    # -- helpers ---------------------------------------------------------------------------

    async def _find_posted(
        self, transport: Transport, row: Mapping[str, Any], destination: Address
    ) -> PostedMessage | None:
        """Was this notice already shown at `destination` — or, had it gone out in a digest,
        at that channel's top level?"""
        key = row["idempotency_key"]
        posted = await transport.find_posted(key, destination)
        if posted is None and (destination.thread or destination.user):
            top = Address(destination.platform, destination.workspace, destination.channel)
            if row["route"] != "dm":
                posted = await transport.find_posted(key, top)
        return posted

    def _notice(self, row: Mapping[str, Any], route: str, destination: Address) -> Notice:
        import json

        return Notice(
            delivery_id=row["id"],
            idempotency_key=row["idempotency_key"],
            kind=row["kind"],
            tenant=row["tenant"],
            task_id=row["task_id"],
            target=parse_address(row["target"], "target"),
            route=route,
            destination=destination,
            payload=json.loads(row["payload"]),
            edit_message_id=row.get("edit_message_id") if row["kind"] == "progress" else None,
        )

    def _rate(self, channel_key: str) -> float:
        platform = channel_key.split(":", 1)[0]
        transport = self.transports.get(platform) or self.transports.get("*")
        rate = float(getattr(transport, "channel_rate", None) or 1.0)
        return max(rate, 0.001)

    def _read(self, step: Callable[..., R], *args: Any) -> R:
        with db.read(self.engine) as conn:
            return step(conn, *args)

    def _write(self, step: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        with db.write(self.engine) as conn:
            return step(conn, *args, **kwargs)


__all__ = ["ROUTES", "DeliveryWorker", "PassResult", "backoff", "routes_for"]
