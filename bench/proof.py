"""Proof check throughput (issue 9).

    .venv/bin/python bench/proof.py [--artifacts 400] [--delay 0.05] [--concurrency 8]
        [--backends sqlite,postgres] [--postgres URL]

A local HTTP server answers every page after `--delay` seconds (a slow origin). `--artifacts`
url artifacts (one per succeeded task, each expecting text) are due; one scheduler pass
(`Ledger.run_due_proof_checks(limit=N)`) checks them all. Printed: the pass's wall time,
checks per second, the ideal time `artifacts * delay / concurrency`, and the selection cost
of a pass when nothing is due among `--artifacts` verified artifacts.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text

from ledger import Ledger, LedgerConfig
from tests.fakes.web_site import Site


class Origin:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def serve_origin(delay: float, ready: multiprocessing.Queue[int]) -> None:
    site = Site()
    for i in range(50):
        site.page(f"/p/{i}", '<link rel="canonical"><button>checkout</button>', delay=delay)
    ready.put(site.port)
    threading.Event().wait()


def run(url: str, args: argparse.Namespace, site: Origin) -> None:
    config = LedgerConfig(proof_concurrency=args.concurrency, proof_timeout=timedelta(seconds=10))
    ledger = Ledger.connect(url, config)
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    for i in range(args.artifacts):
        task = ledger.create(runtime="cron", label=f"publish {i}", proof_required=True, now=now)
        ledger.add_artifact(
            task.task_id,
            kind="url",
            value=site.url(f"/p/{i % 50}"),
            proof={"expect_status": 200, "expect_text": "checkout"},
            now=now,
        )
        ledger.finish(task.task_id, status="succeeded", now=now)
    started = time.perf_counter()
    result = ledger.run_due_proof_checks(now=now + timedelta(seconds=1), limit=args.artifacts)
    elapsed = time.perf_counter() - started
    ideal = args.artifacts * args.delay / args.concurrency
    print(
        f"  pass: {result.checked} checks ({result.verified} verified) in {elapsed:.2f} s"
        f" = {result.checked / elapsed:.0f} checks/s (ideal {ideal:.2f} s at concurrency"
        f" {args.concurrency}, {args.delay * 1000:.0f} ms per page)"
    )
    started = time.perf_counter()
    idle = ledger.run_due_proof_checks(now=now + timedelta(hours=1), limit=args.artifacts)
    print(
        f"  idle pass (nothing due among {args.artifacts} verified artifacts):"
        f" {(time.perf_counter() - started) * 1000:.1f} ms, {idle.checked} checked"
    )
    ledger.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=int, default=400)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    # The origin runs in its own process so it does not share the checker's GIL.
    ready: multiprocessing.Queue[int] = multiprocessing.Queue()
    origin = multiprocessing.Process(target=serve_origin, args=(args.delay, ready), daemon=True)
    origin.start()
    site = Origin(ready.get(timeout=10))
    try:
        for backend in args.backends.split(","):
            print(f"{backend}:")
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    run(f"sqlite:///{tmp}/bench.db", args, site)
            else:
                name = f"bench_proof_{uuid.uuid4().hex[:8]}"
                admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                try:
                    run(f"{args.postgres.rsplit('/', 1)[0]}/{name}", args, site)
                finally:
                    with admin.connect() as conn:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()
    finally:
        origin.terminate()
        origin.join()


if __name__ == "__main__":
    main()
