"""`tasktrail serve --demo`: a new user sees a live board within seconds, no token needed."""

from __future__ import annotations

import time

import httpx

from tests.acceptance.serve_process import serve, tasktrail


def test_the_demo_shows_a_live_board_and_the_cli_sees_its_tasks(sqlite_url: str) -> None:
    with serve(sqlite_url, "--demo") as served:
        deadline = time.monotonic() + 20
        rows = 0
        while rows < 5:
            assert time.monotonic() < deadline, "".join(served.stderr)
            page = httpx.get(served.url + "/", timeout=10)
            assert page.status_code == 200
            rows = page.text.count('class="task"')
            time.sleep(0.2)
        assert "Needs attention" in page.text
        listed = tasktrail(sqlite_url, "list", "--runtime", "cli", "--status", "running")
        assert "make integration-test" in listed.stdout
        assert served.stop() == 0
    assert any("demo: simulated producers" in line for line in served.stderr)
