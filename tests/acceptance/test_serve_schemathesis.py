"""The OpenAPI document fuzzed by schemathesis against a running serve: whatever it sends,
the API never answers 5xx. Bounded (`-n`) so it stays well under a minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.acceptance.serve_process import serve, tasktrail

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def test_fuzzing_the_openapi_document_finds_no_server_error(
    sqlite_url: str, tmp_path: Path
) -> None:
    token = tasktrail(sqlite_url, "token", "create", "--tenant", "fuzz").stdout.strip()
    config = tmp_path / "schemathesis.toml"
    # Point `{ref}` at real tasks so events, cancel and notify reach the ledger, not only 404.
    config.write_text('[parameters]\nref = "fuzz-target"\n')
    with serve(sqlite_url) as served:
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{served.url}/api/v1/tasks",
            json={"runtime": "subagent", "label": "fuzz target", "run_id": "fuzz-target"},
            headers=headers,
        )
        assert created.status_code == 201
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(config),
                "run",
                f"{served.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {token}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "--request-timeout",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        assert "passed" in result.stdout
        assert httpx.get(f"{served.url}/healthz").status_code == 200
    assert not [line for line in served.stderr if "Traceback" in line], "".join(served.stderr)
