"""Liveness probes: what the reconciler asks before it judges a task whose lease expired
(SPEC §4).

A probe answers one question about one running task: is the work still alive, did it end
(and how), or is it gone? Four built-ins, chosen by the task's `probe_kind`:

- `heartbeat` (default): no evidence beyond the heartbeats themselves; always `silent`.
- `pid`: a local process, identified by pid *and* its start time (field 22 of
  `/proc/<pid>/stat`), so a recycled pid is not mistaken for the task's process.
  Target: `{"pid": 123, "start_time": 456789}` (`pid_target(pid)` builds it).
- `http`: a status URL the producer registered. 2xx with a JSON `status` of a terminal
  status → that status; any other 2xx → alive; 404/410 → gone; anything else (5xx,
  timeout, refused connection) → silent. Target: `{"url": "...", "timeout": 5}`.
- `cron`: the `cron_runs` table (filled by `Ledger.record_cron_run`) by (tenant, run_id).

Probes run outside any write transaction (an HTTP probe may take its whole timeout).
`Probe` is a Protocol: `PROBES` maps a kind to its implementation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from ledger import db
from ledger.exceptions import InvalidInput
from ledger.schema import cron_runs_table
from ledger.status import TERMINAL, Status
from ledger.text import SUMMARY_MAX, check_text

#: The longest an HTTP probe may wait for an answer, whatever the target asks for.
HTTP_TIMEOUT_MAX = 10.0
HTTP_TIMEOUT_DEFAULT = 5.0

PROBE_KINDS = ("heartbeat", "pid", "http", "cron")


class Verdict(StrEnum):
    ALIVE = "alive"
    ENDED = "ended"
    GONE = "gone"
    SILENT = "silent"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a probe found. `status` (and `summary`/`error`) only with `Verdict.ENDED`."""

    verdict: Verdict
    detail: str
    status: Status | None = None
    summary: str | None = None
    error: str | None = None


class Probe(Protocol):
    kind: str

    def check(self, engine: Engine, row: Mapping[str, Any], now: datetime) -> ProbeResult: ...


def _target(row: Mapping[str, Any]) -> dict[str, Any]:
    raw = row.get("probe_target")
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class HeartbeatProbe:
    kind = "heartbeat"

    def check(self, engine: Engine, row: Mapping[str, Any], now: datetime) -> ProbeResult:
        return ProbeResult(Verdict.SILENT, "no heartbeat before the lease expired")


# -- pid -----------------------------------------------------------------------------------


def process_start_time(pid: int, proc: Path = Path("/proc")) -> int | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or None
    when there is no such process."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field 22 is fields[19].
    return int(fields[19])


def _process_state(pid: int, proc: Path = Path("/proc")) -> str | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[0]


def pid_target(pid: int | None = None) -> dict[str, Any]:
    """The probe target for a local process (default: this one): pid plus start time."""
    pid = os.getpid() if pid is None else pid
    start = process_start_time(pid)
    if start is None:
        raise InvalidInput("pid", f"no process with pid {pid}")
    return {"pid": pid, "start_time": start}


class PidProbe:
    kind = "pid"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc

    def check(self, engine: Engine, row: Mapping[str, Any], now: datetime) -> ProbeResult:
        target = _target(row)
        pid = target.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return ProbeResult(Verdict.SILENT, "pid probe has no pid registered")
        start = process_start_time(pid, self.proc)
        if start is None:
            return ProbeResult(Verdict.GONE, f"process {pid} no longer exists")
        expected = target.get("start_time")
        if expected is not None and int(expected) != start:
            return ProbeResult(
                Verdict.GONE,
                f"process {pid} exited; the pid now belongs to another process "
                f"(start time {start}, expected {expected})",
            )
        if _process_state(pid, self.proc) == "Z":
            return ProbeResult(Verdict.GONE, f"process {pid} exited (zombie, not yet reaped)")
        return ProbeResult(Verdict.ALIVE, f"process {pid} is running")


# -- http ----------------------------------------------------------------------------------

_ALIVE_WORDS = frozenset({"running", "queued", "alive", "active", "pending", "started"})


class HttpProbe:
    kind = "http"

    def check(self, engine: Engine, row: Mapping[str, Any], now: datetime) -> ProbeResult:
        import httpx

        target = _target(row)
        url = target.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return ProbeResult(Verdict.SILENT, "http probe has no status URL registered")
        try:
            timeout = min(float(target.get("timeout", HTTP_TIMEOUT_DEFAULT)), HTTP_TIMEOUT_MAX)
        except (TypeError, ValueError):
            timeout = HTTP_TIMEOUT_DEFAULT
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False) as client:
                response = client.get(url, headers={"Accept": "application/json"})
        except httpx.TimeoutException:
            return ProbeResult(Verdict.SILENT, f"status URL {url} did not answer in {timeout:g}s")
        except httpx.HTTPError as error:
            return ProbeResult(Verdict.SILENT, f"status URL {url} unreachable: {error}")
        code = response.status_code
        if code in (404, 410):
            return ProbeResult(Verdict.GONE, f"status URL {url} answered {code}: the run is gone")
        if not 200 <= code < 300:
            return ProbeResult(Verdict.SILENT, f"status URL {url} answered {code}")
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("status"), str):
            word = body["status"].strip().lower()
            if word in {s.value for s in TERMINAL}:
                return ProbeResult(
                    Verdict.ENDED,
                    f"status URL {url} reports {word}",
                    status=Status(word),
                    summary=_short(body.get("summary")),
                    error=_short(body.get("error")),
                )
            if word in ("lost", "gone"):
                return ProbeResult(Verdict.GONE, f"status URL {url} reports {word}")
            if word not in _ALIVE_WORDS:
                return ProbeResult(Verdict.SILENT, f"status URL {url} reports {word!r}")
        return ProbeResult(Verdict.ALIVE, f"status URL {url} answered {code}")


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


# -- cron ----------------------------------------------------------------------------------

#: Words cron schedulers use for a finished run, mapped to ledger statuses.
CRON_STATUS = {
    "succeeded": Status.SUCCEEDED,
    "success": Status.SUCCEEDED,
    "ok": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "failure": Status.FAILED,
    "error": Status.FAILED,
    "timed_out": Status.TIMED_OUT,
    "timeout": Status.TIMED_OUT,
    "cancelled": Status.CANCELLED,
    "canceled": Status.CANCELLED,
}


class CronProbe:
    kind = "cron"

    def check(self, engine: Engine, row: Mapping[str, Any], now: datetime) -> ProbeResult:
        run_id = row.get("run_id")
        if not run_id:
            return ProbeResult(Verdict.SILENT, "cron probe: the task has no run id to look up")
        with db.read(engine) as conn:
            found = find_cron_run(conn, row["tenant"], run_id)
        if found is None:
            return ProbeResult(Verdict.SILENT, f"cron run {run_id} has not been recorded")
        status = CRON_STATUS.get(str(found["status"]).lower())
        if status is None:
            return ProbeResult(Verdict.ALIVE, f"cron run {run_id} is {found['status']}")
        return ProbeResult(
            Verdict.ENDED,
            f"cron run {run_id} finished {status.value}",
            status=status,
            summary=found["summary"],
        )


def find_cron_run(conn: Connection, tenant: str, run_id: str) -> dict[str, Any] | None:
    c = cron_runs_table.c
    row = (
        conn.execute(select(cron_runs_table).where(c.tenant == tenant, c.run_id == run_id))
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


def record_cron_run(
    engine: Engine,
    *,
    tenant: str,
    run_id: str,
    status: str,
    finished_at: datetime | None,
    summary: str | None,
    source_id: str | None = None,
    now: datetime,
) -> None:
    """Record (or update) a cron run's outcome, for the `cron` probe."""
    check_text(tenant, "tenant", 200, required=True)
    check_text(run_id, "run_id", 255, required=True)
    check_text(summary, "summary", SUMMARY_MAX)
    if status.lower() not in CRON_STATUS and status.lower() not in _ALIVE_WORDS:
        choices = ", ".join(sorted(set(CRON_STATUS) | _ALIVE_WORDS))
        raise InvalidInput("status", f"{status!r} is not a cron run status ({choices})")
    values = {
        "tenant": tenant,
        "run_id": run_id,
        "source_id": source_id,
        "status": status.lower(),
        "finished_at": finished_at,
        "summary": summary,
        "recorded_at": now,
    }
    with db.write(engine) as conn:
        statement = db.dialect_insert(conn, cron_runs_table).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=["tenant", "run_id"],
            set_={
                k: statement.excluded[k]
                for k in ("status", "finished_at", "summary", "recorded_at")
            },
        )
        conn.execute(statement)


PROBES: dict[str, Probe] = {
    "heartbeat": HeartbeatProbe(),
    "pid": PidProbe(),
    "http": HttpProbe(),
    "cron": CronProbe(),
}


def probe_for(kind: str | None) -> Probe:
    return PROBES.get(kind or "heartbeat", PROBES["heartbeat"])


def validate_target(kind: str, target: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Check a probe registration; returns the target to store."""
    if kind not in PROBE_KINDS:
        raise InvalidInput("probe", f"{kind!r} is not one of: {', '.join(PROBE_KINDS)}")
    data = dict(target or {})
    if kind == "pid":
        pid = data.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise InvalidInput("probe_target", "a pid probe needs {'pid': <positive int>}")
        if "start_time" not in data:
            start = process_start_time(pid)
            if start is None:
                raise InvalidInput("probe_target", f"no process with pid {pid}")
            data["start_time"] = start
    elif kind == "http":
        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInput("probe_target", "an http probe needs {'url': 'http(s)://...'}")
        if "timeout" in data:
            try:
                seconds = float(data["timeout"])
            except (TypeError, ValueError):
                raise InvalidInput("probe_target", "timeout must be a number of seconds") from None
            if not 0 < seconds <= HTTP_TIMEOUT_MAX:
                raise InvalidInput(
                    "probe_target", f"timeout must be between 0 and {HTTP_TIMEOUT_MAX:g} seconds"
                )
    return data or None


def set_probe(
    engine: Engine,
    ref: str,
    kind: str,
    target: Mapping[str, Any] | None,
    *,
    now: datetime,
    tenant: str | None = None,
    actor: str | None = None,
) -> Any:
    """Register how the reconciler checks a task's liveness (`pid`, `http`, `cron`, or back
    to `heartbeat`). Allowed while the task is active; returns the task record."""
    from sqlalchemy import update

    from ledger.schema import tasks_table
    from ledger.tasks import _with_row
    from ledger.transitions import Refused

    stored = validate_target(kind, target)
    text = json.dumps(stored) if stored else None

    def step(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
        status = Status(row["status"])
        if not status.is_active:
            raise Refused(status, "set probe", "the task has ended")
        values = {"probe_kind": kind, "probe_target": text}
        t = tasks_table.c
        result = conn.execute(
            update(tasks_table)
            .where(t.task_id == row["task_id"], t.version == row["version"])
            .values(values)
        )
        if result.rowcount != 1:
            return None
        return {**row, **values}

    return _with_row(engine, ref, tenant, step, now=now, actor=actor)
