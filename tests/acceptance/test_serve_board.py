"""The web board in a real headless Chromium (Debian's package, driven by Playwright): it
renders the board groups, filters, opens a task page, and shows a hostile label as text.
With TASKTRAIL_UPDATE_SCREENSHOT=1 it refreshes the screenshot the README shows
(docs/board.png)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from ledger import Ledger
from tests.acceptance.serve_process import Served, serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><script>window.pwned=1</script>"
#: The README's picture. Refreshed only when asked (TASKTRAIL_UPDATE_SCREENSHOT=1), so a
#: test run does not leave the checkout modified; otherwise the shot goes to a temp dir.
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "board.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")


def _populate(url: str) -> None:
    thread = "slack:T0DEMO/C0BUILDS/1700000000.000100@U0ALICE"
    with Ledger.connect(url) as ledger:
        now = ledger.clock()
        ago = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
        rows = [
            ("subagent", "refactor the billing module", "running", 12),
            ("acp", "port the CLI to click 8", "running", 4),
            ("cli", "make integration-test", "running", 2),
            ("media", "render product shots for the launch", "queued", 1),
            ("subagent", "triage flaky test test_upload_resume", "failed", 40),
            ("cron", "nightly-sync: mirror S3 inventory", "succeeded", 55),
            ("subagent", "write release notes for 2.4", "succeeded", 30),
            ("subagent", "scrape competitor pricing", "lost", 90),
            ("subagent", HOSTILE, "timed_out", 20),
        ]
        for runtime, label, status, minutes in rows:
            task = ledger.create(
                runtime=runtime,
                label=label,
                reply_to=thread,
                queued=status == "queued",
                lease=60 if status == "lost" else None,
                now=ago(minutes),
                task="reproduce, fix, and link the green build" if runtime == "subagent" else None,
            )
            if status == "running":
                ledger.progress(task.task_id, "step 2 of 3", now=now)
            elif status == "lost":
                pass  # the reconciler below gives the verdict
            elif status not in ("queued",):
                ledger.finish(
                    task.task_id,
                    status=status,
                    summary="done" if status == "succeeded" else None,
                    error="3 of 212 tests failed" if status == "failed" else None,
                    now=ago(minutes) + timedelta(minutes=5),
                )
        # The silent one: its lease ran out long ago; two passes (the first grants grace).
        ledger.reconcile(now=now)
        ledger.reconcile(now=now + timedelta(minutes=6))


@pytest.fixture
def board(sqlite_url: str) -> Iterator[Served]:
    _populate(sqlite_url)
    with serve(sqlite_url) as served:
        yield served


def test_the_web_board_renders_filters_opens_a_task_and_escapes_labels(
    board: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(board.url + "/")
            titles = page.locator("section.group h2").all_inner_texts()
            assert [t.split(" (")[0] for t in titles] == [
                "Needs attention",
                "Running",
                "Queued",
                "Recently finished",
            ]
            assert page.locator("tr.task").count() == 9
            # The hostile label is text on the page, not markup.
            assert page.get_by_text(HOSTILE[:40], exact=False).count() == 1
            assert page.locator("img[src=x]").count() == 0
            assert page.evaluate("window.pwned") is None
            assert page.title() != "pwned"
            shot = (
                README_SCREENSHOT
                if os.environ.get("TASKTRAIL_UPDATE_SCREENSHOT")
                else tmp_path / "board.png"
            )
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000  # a real rendering, not a blank page

            page.select_option("select[name=status]", "running")
            page.click("form.filters button")
            page.wait_for_url("**status=running**")
            statuses = set(
                page.locator("tr.task").evaluate_all("rs => rs.map(r => r.dataset.status)")
            )
            assert statuses == {"running"}
            assert page.locator("tr.task").count() == 3

            page.fill("input[name=q]", "billing")
            page.click("form.filters button")
            page.wait_for_url("**q=billing**")
            assert page.locator("tr.task td.label").all_inner_texts() == [
                "refactor the billing module"
            ]

            page.click("tr.task a.id")
            page.wait_for_url("**/tasks/**")
            assert page.locator("#task-label").inner_text().endswith("refactor the billing module")
            kinds = page.locator("tr.event td:nth-child(3)").all_inner_texts()
            assert kinds[:2] == ["created", "progress"]
            assert page.locator("tr.delivery").count() == 0  # running, done_only: none yet

            page.goto(board.url + "/?q=onerror")
            page.click("tr.task a.id")
            page.wait_for_url("**/tasks/**")
            assert "<script>" in page.locator("#task-label").inner_text()
            assert page.evaluate("window.pwned") is None
            assert page.locator("tr.delivery").count() >= 1
        finally:
            browser.close()


def test_off_loopback_the_board_needs_a_token_and_shows_only_its_tenant(sqlite_url: str) -> None:
    import httpx

    from tests.acceptance.serve_process import tasktrail

    with Ledger.connect(sqlite_url) as ledger:
        ledger.create(runtime="cli", label="acme build", tenant="acme")
        ledger.create(runtime="cli", label="globex secret plan", tenant="globex")
    token = tasktrail(sqlite_url, "token", "create", "--tenant", "acme").stdout.strip()
    # Any address but 127.0.0.1 turns the login-less mode off; 127.0.0.2 is still local.
    with (
        serve(sqlite_url, "--host", "127.0.0.2") as served,
        httpx.Client(base_url=served.url, timeout=10, follow_redirects=True) as browser,
    ):
        assert browser.get("/").status_code == 401
        assert browser.get("/?token=wrong").status_code == 401
        opened = browser.get(f"/?token={token}")  # follows the redirect, keeps the cookie
        assert opened.status_code == 200
        assert "token=" not in str(opened.url)
        assert "acme build" in opened.text
        assert "globex" not in opened.text
        again = browser.get("/")  # the cookie alone
        assert again.status_code == 200 and "acme build" in again.text
