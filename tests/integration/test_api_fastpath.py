"""The producer fast path answers exactly as the FastAPI application does, and the API's
batched SQLite writer keeps each request's outcome its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from bot.api.fastpath import ProducerFastPath
from bot.app import App, build_app
from bot.settings import load_settings
from ledger import Ledger
from ledger.tokens import create_token


@pytest.fixture
def served(db_url: str) -> Iterator[tuple[App, dict[str, str], dict[str, str]]]:
    settings = load_settings({"TASKTRAIL_DATABASE_URL": db_url})
    ledger = Ledger.connect(db_url, settings.ledger)
    now = datetime.now(UTC)
    mine = create_token(ledger.engine, "acme", None, now=now).secret
    theirs = create_token(ledger.engine, "other", None, now=now).secret
    app = build_app(settings, ledger=ledger)
    yield (
        app,
        {"Authorization": f"Bearer {mine}"},
        {"Authorization": f"Bearer {theirs}"},
    )
    app.services.writer.close()
    ledger.close()


def _calls(app: Any, requests: list[tuple[str, str, dict[str, str], Any]]) -> list[Any]:
    async def run() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        out = []
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            for method, path, headers, body in requests:
                kwargs: dict[str, Any] = {"headers": headers}
                if isinstance(body, bytes):
                    kwargs["content"] = body
                elif body is not None:
                    kwargs["json"] = body
                response = await client.request(method, path, **kwargs)
                doc = response.json() if response.content else None
                out.append((response.status_code, _stable(doc)))
        return out

    return asyncio.run(run())


def _stable(doc: Any) -> Any:
    """The document without what legitimately differs between two runs (ids, times)."""
    if isinstance(doc, dict):
        return {
            k: _stable(v)
            for k, v in doc.items()
            if k not in ("task_id", "run_id", "message", "cleanup_after") and not k.endswith("_at")
        }
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _script(mine: dict[str, str], theirs: dict[str, str], tag: str) -> list[Any]:
    json_headers = {"Content-Type": "application/json"}
    return [
        ("POST", "/api/v1/tasks", mine, {"runtime": "cli", "label": "<!channel>", "run_id": tag}),
        ("POST", "/api/v1/tasks", mine, {"runtime": "cli", "label": "again", "run_id": tag}),
        ("POST", f"/api/v1/tasks/{tag}/events", mine, {"type": "heartbeat"}),
        ("POST", f"/api/v1/tasks/{tag}/events", mine, {"type": "progress", "text": "half"}),
        ("POST", f"/api/v1/tasks/{tag}/events", mine, {"type": "progress"}),
        ("POST", f"/api/v1/tasks/{tag}/events", mine, {"type": "succeed", "summary": "ok"}),
        ("POST", f"/api/v1/tasks/{tag}/events", mine, {"type": "fail"}),  # 409
        ("POST", f"/api/v1/tasks/{tag}/events", theirs, {"type": "heartbeat"}),  # 404
        ("POST", f"/api/v1/tasks/{tag}/events", {}, {"type": "heartbeat"}),  # 401
        ("POST", "/api/v1/tasks", mine, {"runtime": "nope", "label": "x"}),  # 422 runtime
        ("POST", "/api/v1/tasks", mine, {"runtime": "cli", "label": "x", "bogus": 1}),
        ("POST", "/api/v1/tasks", {**mine, **json_headers}, b"{not json"),
        ("POST", "/api/v1/tasks", {**mine, **json_headers}, b"x" * (1024 * 1024 + 10)),  # 413
        ("POST", "/api/v1/tasks/a%2Fb/events", mine, {"type": "heartbeat"}),
        ("POST", "/api/v1/tasks", {**mine, "Content-Type": "text/plain"}, b'{"runtime":"cli"}'),
    ]


def test_fast_path_answers_as_fastapi_does(
    served: tuple[App, dict[str, str], dict[str, str]],
) -> None:
    app, mine, theirs = served
    through_fastapi = _calls(app.api, _script(mine, theirs, "run-one"))
    fast = ProducerFastPath(app.api, app.services.metrics)
    through_fast_path = _calls(fast, _script(mine, theirs, "run-two"))
    assert [status for status, _ in through_fastapi] == [
        201, 200, 200, 200, 422, 200, 409, 404, 401, 422, 422, 422, 413, 404, 422,
    ]  # fmt: skip
    assert through_fast_path == through_fastapi
    ledger = app.ledger
    one, two = ledger.get("run-one", tenant="acme"), ledger.get("run-two", tenant="acme")
    assert one.label == two.label == "<!channel>"
    kinds_one = [e.kind for e in ledger.events(one.task_id)]
    assert kinds_one == [e.kind for e in ledger.events(two.task_id)]
    assert kinds_one[-1] == "late_update_ignored"  # the refused `fail`, recorded once


def test_batched_writes_keep_each_outcome_their_own(
    served: tuple[App, dict[str, str], dict[str, str]],
) -> None:
    """Many requests at once (so the writer batches them): the refused ones answer 409 and
    leave their refusal event, the others all land, nothing is lost or doubled."""
    app, mine, _theirs = served
    ledger = app.ledger
    tasks = [ledger.create(runtime="cli", label=f"t{i}", tenant="acme") for i in range(20)]
    for task in tasks[:10]:
        ledger.finish(task.task_id, status="succeeded")
    fast = ProducerFastPath(app.api, app.services.metrics)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=fast)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/api/v1/tasks/{task.task_id}/events",
                        headers=mine,
                        json={"type": "progress", "text": "step"},
                    )
                    for task in tasks
                )
            )
        return [r.status_code for r in responses]

    assert asyncio.run(run()) == [409] * 10 + [200] * 10
    for task in tasks[:10]:
        assert [e.kind for e in ledger.events(task.task_id)][-1] == "late_update_ignored"
        assert ledger.get(task.task_id).progress_summary is None
    for task in tasks[10:]:
        events = ledger.events(task.task_id)
        assert [e.kind for e in events] == ["created", "progress"]
        assert [e.seq for e in events] == [1, 2]
