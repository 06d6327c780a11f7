"""The seed's example end to end: a nightly "publish" cron job records a commit, a deploy
URL and a live URL that must carry a canonical link and a checkout button. The job
succeeds; until the live page is right the task is *unproven* on the board, in the audit
and in `tasktrail proof check`; once the page is right the scheduler proves it and exactly
one follow-up notice reaches the thread that asked."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.board import Board, build_board
from ledger import Ledger
from ledger.address import parse_address
from ledger.delivery import DeliveryWorker
from ledger.testing import RecordingTransport
from tests.fakes.web_site import Site

THREAD = "slack:T1/C1/1700000000.000100@U1"
STALE_PAGE = "<html><head><title>Shop</title></head><body>Coming soon</body></html>"
LIVE_PAGE = (
    '<html><head><link rel="canonical" href="https://shop.example/"></head>'
    '<body><button id="checkout">Checkout</button></body></html>'
)


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    yield server
    server.close()


def git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_AUTHOR_NAME": "cron",
        "GIT_AUTHOR_EMAIL": "cron@example.invalid",
        "GIT_COMMITTER_NAME": "cron",
        "GIT_COMMITTER_EMAIL": "cron@example.invalid",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "bot", "--db", db_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def board_row_proof(ledger: Ledger, task_id: str, now: datetime) -> tuple[str, str | None]:
    board: Board = build_board(
        ledger,
        tenant="default",
        channel_key=parse_address(THREAD).channel_key,
        filter=None,
        actor=None,
        now=now,
    )
    for group in board.groups:
        for row in group.rows:
            if row.task_id == task_id:
                return group.key, row.proof
    raise AssertionError("the task is not on its channel's board")


def unproven_findings(ledger: Ledger, task_id: str, now: datetime) -> list[str]:
    report = ledger.audit(now=now, code="unproven_success")
    return [f.remedy for f in report.findings if f.task_id == task_id]


def test_nightly_publish_is_unproven_until_the_live_page_is_right_then_notified_once(
    ledger: Ledger, db_url: str, site: Site, tmp_path: Path
) -> None:
    # The world the cron job publishes to: a git repository, a deploy log URL, a live page.
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "index.html").write_text(LIVE_PAGE)
    git(repo, "add", "index.html")
    git(repo, "commit", "-q", "-m", "nightly publish")
    sha = git(repo, "rev-parse", "HEAD")
    site.page("/deploys/981", '{"deploy": 981, "state": "success"}')
    site.page("/", STALE_PAGE)  # the CDN still serves yesterday's page

    # Times follow the wall clock, because the CLI below checks at the real "now".
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    task = ledger.create(
        runtime="cron",
        task_kind="publish",
        label="nightly publish",
        task="Publish the shop. Proof: the live page has its canonical link and checkout.",
        run_id="publish-2026-11-27",
        source_id="cron:nightly-publish",
        reply_to=THREAD,
        notify="done_only",
        proof_required=True,
        now=start,
    )
    ref = task.task_id
    ledger.add_artifact(
        ref, kind="commit", value=f"{repo}@{sha}", proof={"exists": True}, now=start
    )
    ledger.add_artifact(
        ref,
        kind="deploy",
        value=site.url("/deploys/981"),
        proof={"expect_status": 200, "expect_text": '"state": "success"'},
        now=start,
    )
    ledger.add_artifact(
        ref,
        kind="url",
        value=site.url("/"),
        proof={
            "expect_status": 200,
            "expect_text": ['rel="canonical"', 'id="checkout"'],
            "forbid_text": "Coming soon",
        },
        now=start,
    )
    finished_at = start + timedelta(minutes=4)
    done = ledger.finish(ref, status="succeeded", summary="published 42 pages", now=finished_at)
    assert done.proven is False

    # Succeeded but unproven: on the board, in the audit, in the completion notice.
    assert board_row_proof(ledger, ref, finished_at) == ("attention", "unproven")
    (remedy,) = unproven_findings(ledger, ref, finished_at)
    assert f"tasktrail proof check {done.short_id}" in remedy

    # The scheduler's pass: commit and deploy check out, the live page does not (yet).
    first_pass = start + timedelta(minutes=5)
    result = ledger.run_due_proof_checks(now=first_pass)
    assert (result.checked, result.verified, result.failed) == (3, 2, 1)
    task_now = ledger.get(ref, details=True)
    assert [a.proof_status for a in task_now.artifacts] == ["verified", "verified", "failed"]
    assert task_now.artifacts[2].detail == (
        "200, 'rel=\"canonical\"' missing, 'id=\"checkout\"' missing, 'Coming soon' present"
    )
    assert task_now.proven is False
    assert board_row_proof(ledger, ref, first_pass) == ("attention", "unproven")
    assert unproven_findings(ledger, ref, first_pass)

    # The operator asks now, from the command line: not proven, exit 1, each check listed.
    checked = cli(db_url, "proof", "check", ref)
    assert checked.returncode == 1, checked.stderr
    assert "unproven" in checked.stdout
    assert "commit" in checked.stdout and "present" in checked.stdout
    assert "'id=\"checkout\"' missing" in checked.stdout
    shown = cli(db_url, "show", ref)
    assert shown.returncode == 0, shown.stderr
    assert "'Coming soon' present" in shown.stdout
    assert "failed, re-check" in shown.stdout

    # The CDN catches up; the next scheduled pass proves the task.
    site.page("/", LIVE_PAGE)
    later = datetime.now(UTC) + timedelta(minutes=20)
    result = ledger.run_due_proof_checks(now=later)
    assert (result.checked, result.verified) == (1, 1)
    proven = ledger.get(ref, details=True)
    assert proven.proven is True
    assert [a.proof_status for a in proven.artifacts] == ["verified"] * 3
    assert board_row_proof(ledger, ref, later) == ("finished", "proven")
    assert unproven_findings(ledger, ref, later) == []
    assert ledger.check_proof(ref, now=later + timedelta(minutes=1)).proven is True
    assert ledger.run_due_proof_checks(now=later + timedelta(hours=3)).checked == 0

    # Delivery: the completion notice said "unproven"; one follow-up says "proven".
    transport = RecordingTransport("slack")
    worker = DeliveryWorker(ledger, ledger.config, [transport], "w1", rng=random.Random(1))
    asyncio.run(worker.run_once(later + timedelta(minutes=1)))
    asyncio.run(worker.run_once(later + timedelta(minutes=2)))
    sent = [n for r in transport.received for n in r.notices]
    assert [(n.kind, n.payload["proof"]) for n in sent] == [
        ("terminal", "unproven"),
        ("proof", "proven"),
    ]
    assert sent[1].target == parse_address(THREAD)
    assert sent[1].route == "thread"
    rows = [d for d in ledger.deliveries(task=ref, limit=None) if d.kind == "proof"]
    assert len(rows) == 1 and rows[0].status == "delivered"
