"""The web board at `/` and task pages at `/tasks/{id}`: server-rendered HTML from
`templates/web/`, built from the same board data as the Slack and Discord boards
(`bot.chat.board.build_board`). Live refresh is a small inline script re-fetching the board.

Access: bound to a loopback address, the board is readable without a token (the operator's
own machine); otherwise a token is required, given once as `?token=` (then kept in an
HttpOnly cookie) or sent as `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.api.app import Services
from bot.api.auth import Unauthorized
from bot.web.render import render_html
from ledger.exceptions import LedgerError
from ledger.status import Runtime, Status
from ledger.timeutil import humanize_age, isoformat

COOKIE = "tasktrail_token"
REFRESH_SECONDS = 5
ROWS_PER_GROUP = 25
#: Status filters the board data knows as a group filter (others use a flat listing).
BOARD_FILTERS = {"running": "running", "queued": "queued", "lost": "lost", "failed": "failed"}


class _TenantCache:
    """Distinct tenants, for the operator's tenant picker (refreshed every 30 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = 0.0
        self._tenants: list[str] = []

    def get(self, services: Services) -> list[str]:
        with self._lock:
            if time.monotonic() - self._at > 30:
                self._tenants = list(services.ledger.tenants())
                self._at = time.monotonic()
            return list(self._tenants)


def _tenant(request: Request, services: Services) -> tuple[str | None, str | None]:
    """(tenant, token-to-store-in-a-cookie). Tenant None means: ask for a token."""
    query_token = request.query_params.get("token")
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    for secret, is_query in ((query_token, True), (cookie, False)):
        if secret:
            tenant = services.auth.tenant_for_secret(secret)
            if tenant is not None:
                return tenant, secret if is_query else None
    if header:
        try:
            return services.auth.tenant_for_header(header), None
        except Unauthorized:
            return None, None
    if services.open_board:
        return request.query_params.get("tenant") or "default", None
    return None, None


def install_board(app: FastAPI, services: Services, renderer: Any = None) -> None:
    tenants = _TenantCache()

    def _login(request: Request, message: str | None) -> HTMLResponse:
        html = render_html(
            renderer,
            "web/login.j2",
            base_url="/",
            tenant="?",
            generated_at=isoformat(services.ledger.clock()),
            message=message,
        )
        return HTMLResponse(html, status_code=401)

    def _strip_token(request: Request, secret: str) -> Response:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        query = "&".join(f"{k}={v}" for k, v in params)
        response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
        response.set_cookie(
            COOKIE, secret, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def board(request: Request) -> Response:
        tenant, fresh_token = _tenant(request, services)
        if tenant is None:
            return _login(request, "invalid token" if request.query_params.get("token") else None)
        if fresh_token:
            return _strip_token(request, fresh_token)
        params = request.query_params
        filters = {
            "status": params.get("status") or "",
            "runtime": params.get("runtime") or "",
            "q": (params.get("q") or "")[:200],
        }
        try:
            context = await asyncio.to_thread(_board_context, services, tenant, filters)
        except LedgerError as error:
            return HTMLResponse(f"<p>{_escape(str(error))}</p>", status_code=error.http_status)
        partial = params.get("partial") == "1"
        context.update(
            base_url="/",
            tenant=tenant,
            filters=filters,
            statuses=[s.value for s in Status],
            runtimes=[r.value for r in Runtime],
            tenants=(await asyncio.to_thread(tenants.get, services)) if services.open_board else [],
            refresh_seconds=REFRESH_SECONDS,
            query_suffix=f"?tenant={tenant}" if services.open_board else "",
        )
        _link_rows(context, tenant if services.open_board else None)
        name = "web/board_body.j2" if partial else "web/board.j2"
        html = render_html(renderer, name, **context)
        return HTMLResponse(
            html,
            headers={"X-Generated-At": context["generated_at"], "Cache-Control": "no-store"},
        )

    @app.get("/tasks/{task_id}", response_class=HTMLResponse, include_in_schema=False)
    async def task_page(request: Request, task_id: str) -> Response:
        tenant, fresh_token = _tenant(request, services)
        if tenant is None:
            return _login(request, None)
        if fresh_token:
            return _strip_token(request, fresh_token)
        if "\x00" in task_id or len(task_id) > 512:
            return HTMLResponse("<p>no such task</p>", status_code=404)
        try:
            context = await asyncio.to_thread(_task_context, services, tenant, task_id)
        except LedgerError as error:
            return HTMLResponse(
                render_html(
                    renderer,
                    "web/login.j2",
                    base_url="/",
                    tenant=tenant,
                    generated_at=isoformat(services.ledger.clock()),
                    message=str(error),
                ),
                status_code=error.http_status,
            )
        board_url = f"/?tenant={tenant}" if services.open_board else "/"
        html = render_html(renderer, "web/task.j2", base_url=board_url, tenant=tenant, **context)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _board_context(services: Services, tenant: str, filters: dict[str, str]) -> dict[str, Any]:
    from bot.chat.board import ICONS, build_board

    ledger = services.ledger
    now = ledger.clock()
    status, runtime, text = filters["status"], filters["runtime"], filters["q"]
    board_filter: str | None = None
    flat = bool(text) or (status and runtime) or (status and status not in BOARD_FILTERS)
    if not flat:
        if status:
            board_filter = BOARD_FILTERS[status]
        elif runtime:
            board_filter = f"runtime:{runtime}"
        else:
            board_filter = "all"
    if flat:
        page = ledger.list_page(
            status=[status] if status else [],
            runtime=[runtime] if runtime else [],
            tenant=tenant,
            label=text or None,
            limit=100,
        )
        rows = [_flat_row(t, now, ICONS) for t in page.tasks]
        board = build_board(
            ledger, tenant=tenant, channel_key=None, filter="all", actor=None, now=now, rows=1
        )
        groups = [
            {
                "key": "matches",
                "title": "Matching tasks",
                "rows": rows,
                "more": 0,
                "capped": False,
                "total": len(rows) if page.next_cursor is None else f"{len(rows)}+",
            }
        ]
        return {"counts": board.counts, "groups": groups, "generated_at": _stamp(now)}
    board = build_board(
        ledger,
        tenant=tenant,
        channel_key=None,
        filter=board_filter,
        actor=None,
        now=now,
        rows=ROWS_PER_GROUP,
    )
    groups = [
        {
            "key": g.key,
            "title": g.title,
            "rows": [_board_row(r) for r in g.rows],
            "more": g.more,
            "capped": g.capped,
            "total": g.total,
        }
        for g in board.groups
    ]
    return {"counts": board.counts, "groups": groups, "generated_at": _stamp(now)}


def _stamp(now: Any) -> str:
    return f"{now:%Y-%m-%d %H:%M:%S} UTC"


def _board_row(row: Any) -> dict[str, Any]:
    return {
        "task_id": row.task_id,
        "short_id": row.short_id,
        "status": row.status,
        "icon": row.icon,
        "label": row.label,
        "runtime": row.runtime,
        "age": humanize_age(row.age_seconds),
        "delivery_status": row.delivery_status,
        "proof": row.proof,
    }


def _flat_row(task: Any, now: Any, icons: dict[str, str]) -> dict[str, Any]:
    from bot.chat.board import proof_label

    status = task.status.value
    return {
        "task_id": task.task_id,
        "short_id": task.short_id,
        "status": status,
        "icon": icons.get(status, "•"),
        "label": task.label,
        "runtime": task.runtime,
        "age": humanize_age((now - task.created_at).total_seconds()),
        "delivery_status": task.delivery_status,
        "proof": proof_label(status, task.proof_required, task.proof_status),
    }


def _link_rows(context: dict[str, Any], tenant: str | None) -> None:
    from urllib.parse import quote

    suffix = f"?tenant={quote(tenant)}" if tenant else ""
    for group in context["groups"]:
        for row in group["rows"]:
            row["href"] = f"/tasks/{quote(row['task_id'])}{suffix}"


def _task_context(services: Services, tenant: str, ref: str) -> dict[str, Any]:
    from bot.chat.board import ICONS, proof_label

    ledger = services.ledger
    task = ledger.get(ref, tenant=tenant, details=True)
    events = ledger.events(task.task_id, tenant=tenant)
    doc = task.to_json(with_details=True)
    shown = (
        "runtime",
        "task_kind",
        "task",
        "tenant",
        "run_id",
        "source_id",
        "child_session_key",
        "requester_session_key",
        "parent_task_id",
        "notify_policy",
        "delivery_status",
        "created_at",
        "started_at",
        "ended_at",
        "heartbeat_at",
        "lease_expires_at",
        "progress_summary",
        "terminal_summary",
        "error",
        "cancel_requested_at",
        "cancel_reason",
        "cleanup_after",
    )
    fields = [(name, doc[name]) for name in shown if doc.get(name) not in (None, "")]
    if task.reply_to is not None:
        fields.insert(3, ("reply_to", str(task.reply_to)))
    return {
        "task": doc | {"short_id": task.short_id},
        "icon": ICONS.get(task.status.value, "•"),
        "proof": proof_label(task.status.value, task.proof_required, task.proof_status),
        "fields": fields,
        "events": [e.to_json() for e in events],
        "artifacts": doc["artifacts"],
        "deliveries": doc["deliveries"],
        "generated_at": _stamp(ledger.clock()),
    }
