"""`tasktrail serve` as a subprocess: the HTTP API over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.serve_process import Served, serve, tasktrail
from tests.conftest import BACKENDS, _fresh_postgres

STATIC_TOKEN = "globex-static-token-0123456789"


@dataclass
class Api:
    served: Served
    acme: httpx.Client
    globex: httpx.Client
    anonymous: httpx.Client
    acme_secret: str


@pytest.fixture(scope="module", params=BACKENDS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One serve per backend for this module (each test uses its own run ids and labels)."""
    if request.param == "sqlite":
        yield from _api(f"sqlite:///{tmp_path_factory.mktemp('api') / 'ledger.db'}")
    else:
        for url in _fresh_postgres():
            yield from _api(url)


def _api(db_url: str) -> Iterator[Api]:
    created = tasktrail(db_url, "token", "create", "--tenant", "acme", "--name", "ci")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    env = {"TASKTRAIL_API_TOKENS": f"globex:{STATIC_TOKEN}"}
    with serve(db_url, env=env) as served:
        clients = [
            httpx.Client(base_url=served.url, headers=headers, timeout=10)
            for headers in (
                {"Authorization": f"Bearer {secret}"},
                {"Authorization": f"Bearer {STATIC_TOKEN}"},
                {},
            )
        ]
        try:
            yield Api(served, *clients, acme_secret=secret)
        finally:
            for client in clients:
                client.close()
        assert served.stop() == 0
    assert secret not in "".join(served.stderr + served.stdout), "a secret reached the log"


def test_create_is_idempotent_on_run_id_and_events_drive_the_task(api: Api) -> None:
    body = {"runtime": "subagent", "label": "deploy-check", "run_id": "r-1"}
    first = api.acme.post("/api/v1/tasks", json=body)
    assert first.status_code == 201, first.text
    task = first.json()["task"]
    assert first.json()["schema_version"] == 1
    assert (task["status"], task["tenant"]) == ("running", "acme")
    again = api.acme.post("/api/v1/tasks", json=body)
    assert again.status_code == 200
    assert again.json()["task"]["task_id"] == task["task_id"]

    ref = task["task_id"]
    for event in (
        {"type": "heartbeat"},
        {"type": "progress", "text": "built"},
        {"type": "artifact", "kind": "commit", "value": "abc1234"},
        {"type": "succeed", "summary": "deployed"},
    ):
        response = api.acme.post(f"/api/v1/tasks/{ref}/events", json=event)
        assert response.status_code == 200, response.text
    done = api.acme.get(f"/api/v1/tasks/{ref}", params={"events": "true"}).json()
    assert done["task"]["status"] == "succeeded"
    assert done["task"]["terminal_summary"] == "deployed"
    assert [a["value"] for a in done["task"]["artifacts"]] == ["abc1234"]
    assert [e["kind"] for e in done["events"]] == [
        "created",
        "progress",
        "artifact_added",
        "finished",
    ]

    refused = api.acme.post(f"/api/v1/tasks/{ref}/events", json={"type": "fail"})
    assert refused.status_code == 409
    assert "succeeded" in refused.json()["message"]

    listed = api.acme.get("/api/v1/tasks", params={"status": "succeeded", "limit": 10}).json()
    assert [t["task_id"] for t in listed["tasks"]] == [ref]
    assert listed["next_cursor"] is None


def test_bad_bodies_are_refused_with_422_naming_the_field(api: Api) -> None:
    cases = [
        ({"runtime": "subagent"}, "label"),
        ({"runtime": "robot", "label": "x"}, "runtime"),
        ({"runtime": "cli", "label": "x", "colour": "red"}, "colour"),
        ({"runtime": "cli", "label": "x", "reply_to": "irc:#ops"}, "reply_to"),
        ({"runtime": "cli", "label": "x" * 5001}, "label"),
        ({"runtime": "cli", "label": "nul\x00"}, "label"),
    ]
    for body, field in cases:
        response = api.acme.post("/api/v1/tasks", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field, response.json()
        assert field in response.json()["message"]
    task = api.acme.post("/api/v1/tasks", json={"runtime": "cli", "label": "x"}).json()["task"]
    progress = api.acme.post(f"/api/v1/tasks/{task['task_id']}/events", json={"type": "progress"})
    assert (progress.status_code, progress.json()["field"]) == (422, "text")
    bad_proof = api.acme.post(
        f"/api/v1/tasks/{task['task_id']}/events",
        json={
            "type": "artifact",
            "kind": "file",
            "value": "/srv/out.tar",
            "proof": {"sha256": "x"},
        },
    )
    assert (bad_proof.status_code, bad_proof.json()["field"]) == (422, "proof.sha256")
    good_proof = api.acme.post(
        f"/api/v1/tasks/{task['task_id']}/events",
        json={
            "type": "artifact",
            "kind": "url",
            "value": "https://shop.example.test/",
            "proof": {"forbid_text": "Out of stock", "expect_header": "Cache-Control: public"},
        },
    )
    assert good_proof.status_code == 200, good_proof.text
    shown = api.acme.get(f"/api/v1/tasks/{task['task_id']}").json()["task"]
    assert shown["artifacts"][-1]["proof"] == {
        "forbid_text": "Out of stock",
        "expect_header": "Cache-Control: public",
    }
    not_json = api.acme.post(
        "/api/v1/tasks", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    huge = api.acme.post("/api/v1/tasks", content=b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413


def test_requests_without_a_valid_token_are_401(api: Api) -> None:
    assert api.anonymous.get("/api/v1/tasks").status_code == 401
    wrong = api.anonymous.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    basic = api.anonymous.get("/api/v1/tasks", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_another_tenants_task_answers_404_exactly_like_a_missing_one(api: Api) -> None:
    mine = api.acme.post(
        "/api/v1/tasks", json={"runtime": "cli", "label": "acme only", "run_id": "shared"}
    ).json()["task"]
    ref = mine["task_id"]
    theirs = api.globex.get(f"/api/v1/tasks/{ref}")
    missing = api.globex.get("/api/v1/tasks/zzzzzzzzzzzzzzzz")
    assert theirs.status_code == missing.status_code == 404
    assert set(theirs.json()) == set(missing.json())
    for path, body in (
        (f"/api/v1/tasks/{ref}/events", {"type": "fail"}),
        (f"/api/v1/tasks/{ref}/cancel", {}),
        (f"/api/v1/tasks/{ref}/notify", {"policy": "silent"}),
        (f"/api/v1/tasks/{ref[:6]}/events", {"type": "heartbeat"}),
    ):
        assert api.globex.post(path, json=body).status_code == 404, path
    assert {t["tenant"] for t in api.globex.get("/api/v1/tasks").json()["tasks"]} <= {"globex"}
    # The same run id in another tenant is another task.
    other = api.globex.post(
        "/api/v1/tasks", json={"runtime": "cli", "label": "globex", "run_id": "shared"}
    )
    assert other.status_code == 201
    assert other.json()["task"]["task_id"] != ref
    assert api.acme.get(f"/api/v1/tasks/{ref}").json()["task"]["status"] == "running"


def test_metrics_and_healthz_describe_the_process(api: Api) -> None:
    api.acme.post("/api/v1/tasks", json={"runtime": "cron", "label": "nightly"})
    health = api.anonymous.get("/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    assert "delivery_backlog" in health.json()
    assert "last_auditor_pass_age_seconds" in health.json()
    # Counts are refreshed in the background (a scrape never waits on a big ledger).
    deadline = time.monotonic() + 15
    while True:
        text = api.anonymous.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        tasks = families.get("tasktrail_tasks")
        cron = {"status": "running", "runtime": "cron"}
        if tasks and any(s.labels == cron and s.value == 1 for s in tasks.samples):
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.5)
    assert all(name.startswith("tasktrail_") for name in families)
    latency = families["tasktrail_http_request_duration_seconds"]
    routes = {s.labels.get("route") for s in latency.samples}
    assert "/api/v1/tasks" in routes
    assert "tasktrail_delivery_attempts" in families
    assert api.anonymous.get("/openapi.json").json()["paths"]["/api/v1/tasks"]


def test_audit_and_maintenance_preview_are_scoped_to_the_tenant(api: Api) -> None:
    api.globex.post("/api/v1/tasks", json={"runtime": "cli", "label": "globex", "queued": True})
    audit = api.acme.get("/api/v1/audit")
    assert audit.status_code == 200, audit.text
    assert audit.json()["findings"] == []
    assert "summary" in audit.json()
    preview = api.acme.post("/api/v1/maintenance", json={})
    assert preview.status_code == 200, preview.text
    assert preview.json()["mode"] == "preview"
    refused = api.acme.post("/api/v1/maintenance", json={"apply": True})
    assert refused.status_code == 403
