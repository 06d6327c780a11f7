"""Prometheus metrics of one `serve` process (`GET /metrics`), all prefixed `tasktrail_`.

Counts of tasks and deliveries come from cheap GROUP BY queries, cached for a few seconds
so a scraper hammering `/metrics` costs the database nothing. Audit findings are the last
auditor pass's summary as stored in the ledger. Request and delivery latencies are observed
in-process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.ledger import Ledger

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Seconds the audit findings gauge is cached (an audit pass reads the whole ledger's index).
AUDIT_TTL = 30.0
#: Seconds the first scrape waits for the first read of the counts.
FIRST_WAIT = 3.0


class LedgerCollector(Collector):
    """Tasks by status and runtime, deliveries by status, audit findings by code."""

    def __init__(
        self,
        ledger: Ledger,
        audit: Callable[[], dict[str, int]] | None = None,
        ttl: float = 5.0,
    ) -> None:
        self.ledger = ledger
        self.audit = audit
        self.ttl = ttl
        self._audit_at = -AUDIT_TTL
        self._by_code: dict[str, int] = {}
        self._lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._cached_at = -ttl
        self._cache: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        """The latest counts at once. A stale cache is refreshed in a background thread, so
        a scrape never waits on a large ledger (the first scrape waits up to
        `FIRST_WAIT` seconds for the first read)."""
        with self._lock:
            stale = time.monotonic() - self._cached_at > self.ttl
            start = stale and (self._refresher is None or not self._refresher.is_alive())
            if start:
                self._refresher = threading.Thread(
                    target=self._refresh, name="tasktrail-metrics", daemon=True
                )
                self._refresher.start()
            refresher = self._refresher
            first = not self._cache
        if first and refresher is not None:
            refresher.join(timeout=FIRST_WAIT)
        with self._lock:
            cache = list(self._cache)
        yield from cache

    def _refresh(self) -> None:
        try:
            fresh = self._read()
        except Exception:  # an unreachable database must not break /metrics
            fresh = []
        with self._lock:
            self._cache = fresh
            self._cached_at = time.monotonic()

    def _read(self) -> list[Metric]:
        tasks = GaugeMetricFamily(
            "tasktrail_tasks",
            "Tasks in the ledger by status and runtime",
            labels=["status", "runtime"],
        )
        deliveries = GaugeMetricFamily(
            "tasktrail_deliveries", "Outbox rows by status", labels=["status"]
        )
        findings = GaugeMetricFamily(
            "tasktrail_audit_findings", "Findings of the last auditor pass by code", labels=["code"]
        )
        counts = self.ledger.counts()
        for task in counts.tasks:
            tasks.add_metric([task.status, task.runtime], task.count)
        for delivery in counts.deliveries:
            deliveries.add_metric([delivery.status], delivery.count)
        if self.audit is not None and time.monotonic() - self._audit_at > AUDIT_TTL:
            self._by_code = self.audit()
            self._audit_at = time.monotonic()
        for code, count in sorted(self._by_code.items()):
            findings.add_metric([code], count)
        return [tasks, deliveries, findings]


class Metrics:
    """The registry of one process plus the in-process instruments."""

    def __init__(
        self, ledger: Ledger | None = None, audit: Callable[[], dict[str, int]] | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.request_latency = Histogram(
            "tasktrail_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.delivery_attempts = Counter(
            "tasktrail_delivery_attempts",
            "Delivery attempts by platform and outcome",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.delivery_failures = Counter(
            "tasktrail_delivery_failures",
            "Failed delivery attempts by platform and kind (transient, permanent)",
            ["platform", "kind"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "tasktrail_delivery_latency_seconds",
            "Time one send to a platform took",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if ledger is not None:
            self.registry.register(LedgerCollector(ledger, audit))

    def record_delivery(
        self, platform: str, outcome: str, seconds: float | None = None, *, permanent: bool = False
    ) -> None:
        """Hook for delivery workers: outcome is `delivered`, `retrying` or `failed`."""
        self.delivery_attempts.labels(platform, outcome).inc()
        if outcome != "delivered":
            self.delivery_failures.labels(platform, "permanent" if permanent else "transient").inc()
        if seconds is not None:
            self.delivery_latency.labels(platform).observe(seconds)

    def delivery_hook(self) -> Callable[..., Any]:
        return self.record_delivery
