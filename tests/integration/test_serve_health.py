"""`/healthz` answers 503 when the database does not, 200 with details when it does."""

from __future__ import annotations

import asyncio

import httpx

from bot.app import build_app
from bot.settings import load_settings
from ledger import Ledger
from ledger.db import make_engine


def _get(app: object, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await client.get(path)

    return asyncio.run(call())


def test_healthz_is_503_when_the_database_does_not_answer() -> None:
    url = "postgresql+psycopg://tasktrail@127.0.0.1:1/nowhere"
    settings = load_settings({"TASKTRAIL_DATABASE_URL": url})
    ledger = Ledger(make_engine(url), settings.ledger)  # never connected: nothing listens on :1
    app = build_app(settings, ledger=ledger)
    response = _get(app.api, "/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    ledger.close()


def test_healthz_reports_database_backlog_and_auditor_age(sqlite_url: str) -> None:
    settings = load_settings({"TASKTRAIL_DATABASE_URL": sqlite_url})
    ledger = Ledger.connect(sqlite_url, settings.ledger)
    ledger.create(runtime="cli", label="x", reply_to="slack:T1/C1")
    ledger.finish(ledger.list()[0].task_id, status="succeeded")
    app = build_app(settings, ledger=ledger)
    doc = _get(app.api, "/healthz").json()
    assert (doc["status"], doc["database"], doc["backend"]) == ("ok", "ok", "sqlite")
    assert doc["delivery_backlog"] == 1  # nothing has sent it: no worker runs here
    assert doc["last_auditor_pass_age_seconds"] is None
    ledger.close()
