"""Prometheus metrics of one `serve` process (`GET /metrics`), all prefixed `tasktrail_`.

Counts of tasks and deliveries come from cheap GROUP BY queries, cached for a few seconds
so a scraper hammering `/metrics` costs the database nothing. Audit findings are the last
auditor pass's summary as stored in the ledger. Request and delivery latencies are observed
in-process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from ledger import db
from ledger.schema import deliveries_table, state_table, tasks_table

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: ledger_state keys where an auditor pass leaves its summary (first one found wins).
AUDIT_STATE_KEYS = ("auditor:last_summary", "audit:last_summary", "auditor:last_pass")


class LedgerCollector(Collector):
    """Tasks by status and runtime, deliveries by status, audit findings by code."""

    def __init__(self, engine: Engine, ttl: float = 5.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached_at = 0.0
        self._cache: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._cached_at > self.ttl:
                try:
                    self._cache = self._read()
                except Exception:  # an unreachable database must not break /metrics
                    self._cache = []
                self._cached_at = time.monotonic()
            yield from self._cache

    def _read(self) -> list[Metric]:
        t = tasks_table.c
        d = deliveries_table.c
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
        with db.read(self.engine) as conn:
            for status, runtime, count in conn.execute(
                select(t.status, t.runtime, func.count()).group_by(t.status, t.runtime)
            ):
                tasks.add_metric([status, runtime], count)
            for status, count in conn.execute(select(d.status, func.count()).group_by(d.status)):
                deliveries.add_metric([status], count)
            rows = dict(
                conn.execute(
                    select(state_table.c.key, state_table.c.value).where(
                        state_table.c.key.in_(AUDIT_STATE_KEYS)
                    )
                ).all()
            )
        for key in AUDIT_STATE_KEYS:
            by_code = _findings_by_code(rows.get(key))
            if by_code is not None:
                for code, count in sorted(by_code.items()):
                    findings.add_metric([code], count)
                break
        return [tasks, deliveries, findings]


def _findings_by_code(raw: str | None) -> dict[str, int] | None:
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    for key in ("by_code", "codes"):
        value = doc.get(key)
        if isinstance(value, dict):
            return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)}
    summary = doc.get("summary")
    if isinstance(summary, dict):
        return _findings_by_code(json.dumps(summary))
    return None


class Metrics:
    """The registry of one process plus the in-process instruments."""

    def __init__(self, engine: Engine | None = None) -> None:
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
        if engine is not None:
            self.registry.register(LedgerCollector(engine))

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
