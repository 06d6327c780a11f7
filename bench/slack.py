"""Slack `/tasks` latency with 1,000,000 tasks in a SQLite ledger.

    .venv/bin/python bench/slack.py [--tasks 1000000] [--samples 200] [--db PATH]

The real `SlackAdapter` (Bolt `AsyncApp`) is served by uvicorn on 127.0.0.1 and driven with
correctly signed slash commands; the Web API and `response_url` are the fake Slack from
`tests/fakes` (its own thread). The ledger holds `--tasks` tasks in one workspace (the worst
case for `/tasks all`), bulk-inserted with SQLAlchemy Core `executemany`, spread over 200
channels: 1 % running, 0.5 % queued, the rest finished (a third failed or timed out), 5 % with
proof required. `--db` keeps the file between runs.

Prints p50/p99 for `/tasks` (this channel's board) and `/tasks all`:
- `ack`: signed POST sent -> HTTP 200 received (Slack's 3 s rule). Target p99 <= 200 ms.
- `answer`: signed POST sent -> the board posted to `response_url`.
- `board`: `build_board` alone (the SQL), for reference.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from bench._data import percentiles
from bot.chat.board import build_board
from bot.chat.permissions import Actor
from bot.render import Renderer
from bot.settings import Settings
from bot.slack.app import SlackAdapter
from ledger import Ledger
from ledger.db import ensure_schema, make_engine
from ledger.ids import new_task_id
from ledger.schema import tasks_table
from tests.acceptance.slack_harness import ServerThread
from tests.fakes.slack_payloads import TEAM_ID, sign_request, slash_command_body
from tests.fakes.slack_server import FakeSlack, run_fake_slack_in_thread

SECRET = "bench-signing-secret"
TENANT = f"slack:{TEAM_ID}"
RUNTIMES = ("subagent", "acp", "cron", "cli", "media")
FINISHED = ("succeeded", "succeeded", "succeeded", "failed", "timed_out", "cancelled")
CHANNELS = 200
BATCH = 50_000


def load(url: str, count: int) -> float:
    """Bulk insert `count` tasks with Core executemany; returns seconds."""
    began = time.perf_counter()
    engine = make_engine(url)
    ensure_schema(engine)
    rng = random.Random(7)
    now = datetime.now(UTC)
    start = now - timedelta(days=6)
    step = timedelta(days=6) / max(count, 1)
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for i in range(count):
            created = start + step * i
            if i % 100 == 0:
                status = "running"
            elif i % 200 == 1:
                status = "queued"
            else:
                status = rng.choice(FINISHED)
            active = status in ("running", "queued")
            ended = None if active else created + timedelta(seconds=rng.randint(1, 600))
            proof = i % 20 == 0
            user = f"U{i % 50:04d}"
            batch.append(
                {
                    "task_id": new_task_id(),
                    "tenant": TENANT,
                    "runtime": RUNTIMES[i % 5],
                    "label": f"synthetic task {i}",
                    "status": status,
                    "version": 3,
                    "run_id": f"run-{i}",
                    "requester_session_key": f"slack:{user}",
                    "reply_to": f"slack:{TEAM_ID}/C{i % CHANNELS:05d}/1700000000.{i % 999999:06d}"
                    f"@{user}",
                    "notify_policy": "done_only",
                    "delivery_status": "not_applicable" if active else "delivered",
                    "created_at": created,
                    "started_at": None if status == "queued" else created,
                    "ended_at": ended,
                    "last_event_at": ended or created,
                    "heartbeat_at": created,
                    "lease_expires_at": (now + timedelta(minutes=5)) if active else None,
                    "cleanup_after": (ended + timedelta(days=7)) if ended else None,
                    "probe_kind": "heartbeat",
                    "proof_required": proof,
                    "proof_status": ("verified" if i % 60 else "unchecked") if proof else None,
                    "follower_count": 0,
                }
            )
            if len(batch) >= BATCH:
                conn.execute(tasks_table.insert(), batch)
                batch = []
        if batch:
            conn.execute(tasks_table.insert(), batch)
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return time.perf_counter() - began


def existing(url: str) -> int:
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(tasks_table)).scalar_one())
    finally:
        engine.dispose()


def _answered(fake: FakeSlack, name: str) -> list[dict[str, Any]] | None:
    return fake.responses(name) or None


def measure(
    http: httpx.Client, server: ServerThread, fake: FakeSlack, text: str, samples: int
) -> tuple[list[float], list[float]]:
    acks: list[float] = []
    answers: list[float] = []
    for n in range(samples):
        name = f"{text or 'channel'}-{n}"
        body = slash_command_body(
            text=text, channel_id="C00007", user_id="U0007", response_url=fake.response_url(name)
        )
        headers = sign_request(SECRET, body)
        began = time.perf_counter()
        response = http.post(f"{server.url}/slack/events", content=body, headers=headers)
        acks.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise SystemExit(f"/tasks {text}: HTTP {response.status_code} {response.text[:200]}")
        fake.wait_until_sync(functools.partial(_answered, fake, name), 30)
        answers.append(time.perf_counter() - began)
    return acks, answers


def report(label: str, samples: list[float]) -> None:
    p50, p99 = percentiles(samples)
    print(f"  {label:<28} p50 {p50 * 1000:8.1f} ms   p99 {p99 * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--db", type=Path, default=None, help="keep the ledger file here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench-slack.db"
        url = f"sqlite:///{path}"
        have = existing(url)
        if have != args.tasks:
            if have:
                path.unlink()
                for suffix in ("-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)
            seconds = load(url, args.tasks)
            print(f"loaded {args.tasks:,} tasks in {seconds:.1f} s ({path})")
        else:
            print(f"reusing {have:,} tasks in {path}")

        ledger = Ledger.connect(url)
        actor = Actor("slack", "U0007", TENANT)
        now = datetime.now(UTC)
        print(f"/tasks with {args.tasks:,} tasks in one workspace (SQLite), {args.samples} each:")
        for text, channel in (("", f"slack:{TEAM_ID}/C00007"), ("all", None)):
            timings = []
            for _ in range(min(args.samples, 50)):
                began = time.perf_counter()
                build_board(
                    ledger, tenant=TENANT, channel_key=channel, filter=text or None,
                    actor=actor, now=now,
                )  # fmt: skip
                timings.append(time.perf_counter() - began)
            report(f"board /tasks {text}".rstrip(), timings)

        with run_fake_slack_in_thread(channels=["C00007"]) as fake:
            settings = Settings(
                database_url=url,
                slack_bot_token="xoxb-bench",
                slack_signing_secret=SECRET,
                slack_api_url=fake.api_url,
            )
            adapter = SlackAdapter(settings, ledger, Renderer())
            api = FastAPI()
            adapter.mount(api)
            with ServerThread(api) as server, httpx.Client(timeout=30) as http:
                measure(http, server, fake, "help", 5)  # warm up (auth.test, imports)
                for text in ("", "all"):
                    acks, answers = measure(http, server, fake, text, args.samples)
                    report(f"ack    /tasks {text}".rstrip(), acks)
                    report(f"answer /tasks {text}".rstrip(), answers)
        ledger.close()


if __name__ == "__main__":
    main()
