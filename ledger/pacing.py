"""Where a notice may go and how fast: the route fall-through order (SPEC §5), per-channel
pacing, and the retry backoff the delivery worker uses."""

from __future__ import annotations

import random
from datetime import datetime

from ledger.address import Address


class Pacer:
    """A token bucket per channel: `rate` sends per second, bursts up to one second's worth
    (at least one message). Time comes from the caller, so tests control it."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._stamp: dict[str, datetime] = {}
        self._blocked: dict[str, datetime] = {}

    def available(self, key: str, rate: float, now: datetime) -> float:
        blocked = self._blocked.get(key)
        if blocked is not None and blocked > now:
            return 0.0
        capacity = max(1.0, rate)
        last = self._stamp.get(key)
        tokens = self._tokens.get(key, capacity)
        if last is not None and now > last:
            tokens = min(capacity, tokens + (now - last).total_seconds() * rate)
        self._tokens[key] = tokens
        self._stamp[key] = max(now, last) if last is not None else now
        return tokens

    def take(self, key: str, count: int = 1) -> None:
        self._tokens[key] = self._tokens.get(key, 0.0) - count

    def block(self, key: str, until: datetime) -> None:
        """A Retry-After from the platform: nothing more to this channel before `until`."""
        current = self._blocked.get(key)
        self._blocked[key] = max(until, current) if current else until


def routes_for(target: Address, ops: Address | None) -> list[tuple[str, Address]]:
    """The routes a notice for `target` falls through, with where each one posts."""
    routes: list[tuple[str, Address]] = []
    if target.thread:
        routes.append(("thread", target))
    routes.append(("channel", Address(target.platform, target.workspace, target.channel)))
    if target.user:
        routes.append(
            ("dm", Address(target.platform, target.workspace, target.channel, None, target.user))
        )
    if ops is not None and ops.channel_key != target.channel_key:
        routes.append(("ops", ops))
    return routes


def route_channel_key(route: str, destination: Address) -> str:
    if route == "dm":
        return f"{destination.platform}:{destination.workspace}/@{destination.user}"
    return destination.channel_key


def backoff(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds until the next try. With a Retry-After: that long, plus up to 10 % jitter so
    the notices it held back do not all return at once. Without: 2 s doubling per attempt
    up to 5 min, jittered to 50-100 %."""
    if retry_after is not None and retry_after > 0:
        return float(retry_after) * rng.uniform(1.0, 1.1)
    base: float = min(300.0, 2.0 * 2.0 ** max(0, attempts - 1))
    delay: float = base * rng.uniform(0.5, 1.0)
    return delay
