"""HTTP API throughput and `serve` memory (issue: serve).

1. Sustained task events per second through `tasktrail serve`'s HTTP API with 8 concurrent
   clients (keep-alive connections, one thread each), on SQLite and on PostgreSQL. The
   producer mix, per task: 1 create, 3 heartbeats, 2 progress events, 1 finish (succeed) =
   7 events, each one HTTP request and one write transaction. Prints events/s and p50/p99
   request latency. Targets: >= 1,000 events/s on SQLite, p99 <= 50 ms.
2. `serve`'s resident memory with 1,000,000 tasks in a SQLite ledger, after the board, the
   task list, /healthz and /metrics were each requested. Target: RSS <= 200 MB.

    .venv/bin/python bench/api.py [--seconds 20] [--clients 8] [--tasks 1000000]
                                  [--postgres URL | env TASKTRAIL_TEST_POSTGRES_URL]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._data import build_sqlite, percentiles, synthetic_rows

TASKTRAIL = str(Path(sys.executable).with_name("tasktrail"))
REPLY_TO = os.environ.get("BENCH_REPLY_TO") or None
MIX = ["create", "heartbeat", "progress", "heartbeat", "progress", "heartbeat", "succeed"]


def start_serve(db_url: str) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["TASKTRAIL_DATABASE_URL"] = db_url
    token = subprocess.run(
        [TASKTRAIL, "token", "create", "--tenant", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [TASKTRAIL, "serve", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        match = re.search(r"serving on http://([\d.]+):(\d+)/", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            return proc, f"{match.group(1)}:{match.group(2)}", token
    raise SystemExit("serve did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)


class Producer(threading.Thread):
    def __init__(self, address: str, token: str, deadline: float, index: int) -> None:
        super().__init__(daemon=True)
        host, port = address.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.deadline = deadline
        self.index = index
        self.latencies: list[float] = []
        self.errors = 0

    def call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        payload = json.dumps(body)
        began = time.perf_counter()
        self.conn.request("POST", path, payload, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        self.latencies.append(time.perf_counter() - began)
        if response.status >= 300:
            self.errors += 1
            return {}
        doc: dict[str, object] = json.loads(data)
        return doc

    def run(self) -> None:
        n = 0
        while time.perf_counter() < self.deadline:
            n += 1
            task_id = ""
            for step in MIX:
                if step == "create":
                    doc = self.call(
                        "/api/v1/tasks",
                        {
                            "runtime": "subagent",
                            "label": f"bench task {self.index}-{n}",
                            "run_id": f"bench-{self.index}-{n}-{uuid.uuid4().hex[:6]}",
                            "reply_to": REPLY_TO,
                        },
                    )
                    task = doc.get("task")
                    task_id = str(task["task_id"]) if isinstance(task, dict) else ""
                    if not task_id:
                        break
                elif step == "progress":
                    self.call(
                        f"/api/v1/tasks/{task_id}/events", {"type": "progress", "text": "step"}
                    )
                elif step == "succeed":
                    self.call(
                        f"/api/v1/tasks/{task_id}/events", {"type": "succeed", "summary": "ok"}
                    )
                else:
                    self.call(f"/api/v1/tasks/{task_id}/events", {"type": step})


def throughput(name: str, db_url: str, seconds: float, clients: int) -> None:
    proc, address, token = start_serve(db_url)
    try:
        warm = Producer(address, token, time.perf_counter() + 1.0, 99)
        warm.run()
        deadline = time.perf_counter() + seconds
        producers = [Producer(address, token, deadline, i) for i in range(clients)]
        cpu_before = cpu_seconds(proc.pid)
        began = time.perf_counter()
        for p in producers:
            p.start()
        for p in producers:
            p.join()
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        stop(proc)
    samples = [s for p in producers for s in p.latencies]
    errors = sum(p.errors for p in producers)
    p50, p99 = percentiles(samples)
    print(
        f"{name:<10} {clients} clients, {elapsed:5.1f} s: {len(samples) / elapsed:7.0f} events/s, "
        f"p50 {p50 * 1000:5.1f} ms, p99 {p99 * 1000:5.1f} ms, {errors} errors; "
        f"serve CPU {cpu / len(samples) * 1000:.2f} ms/event "
        f"(= {len(samples) / cpu:.0f} events per CPU-second)"
    )


def rss(tasks: int, keep: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(keep) if keep else Path(tmp) / "ledger.db"
        if keep and path.exists():
            print(f"rss        reusing {path}")
        else:
            built = build_sqlite(path, synthetic_rows(tasks))
            print(f"rss        loaded {tasks:,} tasks into SQLite in {built:.0f} s")
        proc, address, token = start_serve(f"sqlite:///{path}")
        try:
            host, port = address.split(":")
            timings = []
            for path_ in (
                "/",
                "/?status=failed",
                "/api/v1/tasks?limit=500",
                "/healthz",
                "/metrics",
                "sleep",
                "/metrics",
            ):
                if path_ == "sleep":  # let the background refresh finish: a warm scrape
                    time.sleep(30)
                    continue
                conn = http.client.HTTPConnection(host, int(port), timeout=120)
                began = time.perf_counter()
                conn.request("GET", path_, headers={"Authorization": f"Bearer {token}"})
                response = conn.getresponse()
                response.read()
                timings.append(f"{path_} {response.status} {time.perf_counter() - began:.2f}s")
                conn.close()
            status = Path(f"/proc/{proc.pid}/status").read_text()
            current = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
            peak = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
        finally:
            stop(proc)
    print(f"rss        serve with {tasks:,} tasks: RSS {current:.0f} MB (peak {peak:.0f} MB)")
    print("           requests: " + "; ".join(timings))


def postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg

    name = f"tt_bench_{uuid.uuid4().hex[:8]}"
    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{admin_url.rsplit('/', 1)[0]}/{name}", name


def drop_postgres(admin_url: str, name: str) -> None:
    import psycopg

    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="RSS test size (0: skip)")
    parser.add_argument("--postgres", default=os.environ.get("TASKTRAIL_TEST_POSTGRES_URL"))
    parser.add_argument("--rss-db", help="keep the big SQLite ledger here (reused if present)")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("producer mix per task: 1 create, 3 heartbeats, 2 progress, 1 succeed (7 events)")
    if args.skip_throughput:
        args.postgres = None
    else:
        with tempfile.TemporaryDirectory() as tmp:
            db = f"sqlite:///{Path(tmp) / 'ledger.db'}"
            throughput("sqlite", db, args.seconds, args.clients)
    if args.postgres:
        url, name = postgres_database(args.postgres)
        try:
            throughput("postgresql", url, args.seconds, args.clients)
        finally:
            drop_postgres(args.postgres, name)
    elif not args.skip_throughput:
        print("postgresql skipped (set TASKTRAIL_TEST_POSTGRES_URL or --postgres)")
    if args.tasks:
        rss(args.tasks, args.rss_db)


if __name__ == "__main__":
    main()
