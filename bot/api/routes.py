"""Task routes of the HTTP API (SPEC §9). Every ledger call is scoped to the token's tenant,
so another tenant's task answers exactly like a missing one (404)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from bot.api.models import (
    CancelRequest,
    CreateTask,
    MaintenanceRequest,
    NotifyRequest,
    TaskDocument,
    TaskEvent,
    TaskListDocument,
)
from bot.api.writer import Writer
from ledger import Ledger
from ledger.exceptions import InvalidInput, PermissionDenied
from ledger.records import TaskRecord
from ledger.status import Status

router = APIRouter(prefix="/api/v1")
_FINISH = {
    "succeed": "succeeded",
    "fail": "failed",
    "timeout": "timed_out",
    "cancelled": "cancelled",
}


def _tenant(request: Request) -> str:
    auth = request.app.state.services.auth
    tenant: str = auth.tenant_for_header(request.headers.get("authorization"))
    return tenant


async def tenant_of(request: Request) -> str:
    """The token's tenant. Async on purpose: a cached lookup costs no thread hop."""
    return _tenant(request)


async def ledger_of(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.services.ledger
    return ledger


async def writer_of(request: Request) -> Writer:
    """The ledger's writer (`bot.api.writer`); its `.ledger` is the ledger itself, so a
    write route needs one dependency besides the tenant."""
    writer: Writer = request.app.state.services.writer
    return writer


def _caller(request: Request) -> tuple[str, Writer]:
    """The token's tenant and the writer, for the per-event routes: called inline rather
    than as two `Depends`, whose resolution costs those routes more than their own work."""
    return _tenant(request), request.app.state.services.writer


Tenant = Annotated[str, Depends(tenant_of)]
LedgerDep = Annotated[Ledger, Depends(ledger_of)]
WriterDep = Annotated[Writer, Depends(writer_of)]


def _check_ref(ref: str) -> str:
    if "\x00" in ref or len(ref) > 512:
        raise InvalidInput("ref", "is not a task reference")
    try:
        ref.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("ref", "is not a task reference") from None
    return ref


def _task_doc(task: TaskRecord, *, details: bool = False) -> dict[str, Any]:
    return {"schema_version": 1, "task": task.to_json(with_details=details)}


def _reply(task: TaskRecord, status_code: int = 200) -> JSONResponse:
    """The task document, serialized once (no second validation pass on the way out)."""
    return JSONResponse(_task_doc(task), status_code=status_code)


@router.post("/tasks", response_model=TaskDocument, status_code=201)
async def create_task(body: CreateTask, request: Request) -> Any:
    """Record a task; idempotent on `run_id` (200 with the existing task, 201 when new)."""
    tenant, writer = _caller(request)
    now = writer.ledger.clock()
    task = await writer.run(_create, writer.ledger, body, tenant, now)
    return _reply(task, 201 if task.created_at == now else 200)


def _create(ledger: Ledger, body: CreateTask, tenant: str, now: Any) -> TaskRecord:
    return ledger.create(
        runtime=body.runtime,
        label=body.label,
        tenant=tenant,
        task=body.task,
        task_kind=body.task_kind,
        run_id=body.run_id,
        source_id=body.source_id,
        child_session_key=body.child_session_key,
        requester_session_key=body.requester_session_key,
        parent=_check_ref(body.parent) if body.parent else None,
        reply_to=body.reply_to,
        notify=body.notify,
        lease=body.lease,
        queued=body.queued,
        proof_required=body.proof_required,
        proof_url=body.proof_url,
        expect_status=body.expect_status,
        expect_text=body.expect_text,
        runner=body.runner,
        now=now,
        actor=f"api:{tenant}",
    )


@router.get("/tasks", response_model=TaskListDocument)
def list_tasks(
    tenant: Tenant,
    ledger: LedgerDep,
    status: Annotated[list[Status] | None, Query()] = None,
    runtime: Annotated[list[str] | None, Query()] = None,
    requester: Annotated[str | None, Query(max_length=512)] = None,
    label: Annotated[str | None, Query(max_length=5000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Any:
    """Newest first, at most 500 per page; pass `next_cursor` back as `cursor`."""
    for name, value in (("requester", requester), ("label", label), ("cursor", cursor)):
        if value is not None:
            _check_text_param(name, value)
    page = ledger.list_page(
        status=[s.value for s in status or ()],
        runtime=runtime or (),
        tenant=tenant,
        requester=requester,
        label=label,
        limit=limit,
        cursor=cursor,
    )
    return {
        "schema_version": 1,
        "tasks": [t.to_json() for t in page.tasks],
        "next_cursor": page.next_cursor,
    }


def _check_text_param(name: str, value: str) -> None:
    if "\x00" in value:
        raise InvalidInput(name, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(name, "is not valid Unicode text") from None


@router.get("/tasks/{ref}", response_model=TaskDocument)
def get_task(ref: str, tenant: Tenant, ledger: LedgerDep, events: bool = False) -> Any:
    """One task with artifacts and deliveries; `?events=true` adds its history."""
    task = ledger.get(_check_ref(ref), tenant=tenant, details=True)
    doc = _task_doc(task, details=True)
    if events:
        doc["events"] = [e.to_json() for e in ledger.events(task.task_id, tenant=tenant)]
    return doc


@router.post("/tasks/{ref}/events", response_model=TaskDocument)
async def post_event(ref: str, body: TaskEvent, request: Request) -> Any:
    """A producer event: start, heartbeat, progress, succeed, fail, timeout, cancelled,
    artifact."""
    tenant, writer = _caller(request)
    ref = _check_ref(ref)
    if body.type == "progress" and not body.text:
        raise InvalidInput("text", "is required for a progress event")
    if body.type == "artifact":
        if body.kind is None:
            raise InvalidInput("kind", "is required for an artifact event")
        if not body.value:
            raise InvalidInput("value", "is required for an artifact event")
    return _reply(await writer.run(_apply_event, writer.ledger, ref, body, tenant))


def _apply_event(ledger: Ledger, ref: str, body: TaskEvent, tenant: str) -> TaskRecord:
    actor = f"api:{tenant}"
    kind = body.type
    task: TaskRecord
    if kind == "start":
        task = ledger.start(ref, tenant=tenant, actor=actor)
    elif kind == "heartbeat":
        task = ledger.heartbeat(ref, tenant=tenant, actor=actor)
    elif kind == "progress":
        task = ledger.progress(ref, body.text or "", tenant=tenant, actor=actor)
    elif kind == "artifact":
        task = ledger.add_artifact(
            ref,
            kind=body.kind or "other",
            value=body.value or "",
            expect_status=body.expect_status,
            expect_text=body.expect_text,
            proof=body.proof,
            tenant=tenant,
            actor=actor,
        )
    else:
        task = ledger.finish(
            ref,
            status=_FINISH[kind],
            summary=body.summary,
            error=body.error,
            tenant=tenant,
            actor=actor,
        )
    return task


@router.post("/tasks/{ref}/cancel", response_model=TaskDocument)
async def cancel_task(
    ref: str,
    tenant: Tenant,
    writer: WriterDep,
    body: CancelRequest | None = None,
) -> Any:
    """Cancel: final at once without a live runner, else the runner is asked to stop
    (`cancel_requested_at` set, status still running)."""
    ref = _check_ref(ref)
    task = await writer.run(_cancel, writer.ledger, ref, body.reason if body else None, tenant)
    return _reply(task)


def _cancel(ledger: Ledger, ref: str, reason: str | None, tenant: str) -> TaskRecord:
    return ledger.cancel(ref, reason=reason, tenant=tenant, actor=f"api:{tenant}")


@router.post("/tasks/{ref}/notify", response_model=TaskDocument)
async def set_notify(ref: str, body: NotifyRequest, tenant: Tenant, writer: WriterDep) -> Any:
    ref = _check_ref(ref)
    task = await writer.run(_set_notify, writer.ledger, ref, body.policy, tenant)
    return _reply(task)


def _set_notify(ledger: Ledger, ref: str, policy: str, tenant: str) -> TaskRecord:
    return ledger.set_notify(ref, policy, tenant=tenant, actor=f"api:{tenant}")


@router.get("/audit")
def audit(
    tenant: Tenant,
    ledger: LedgerDep,
    severity: Annotated[Literal["warn", "error"] | None, Query()] = None,
    code: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 100,
) -> Any:
    """Audit findings (SPEC §6) for this tenant's tasks."""
    report = ledger.audit(tenant=tenant, severity=severity, code=code, limit=limit)
    return {"schema_version": 1, **report.to_json()}


@router.post("/maintenance")
def maintenance(tenant: Tenant, ledger: LedgerDep, body: MaintenanceRequest | None = None) -> Any:
    """Preview maintenance for this tenant's tasks: what `maintenance --apply` would do.
    Applying it spans every tenant, so it belongs to the operator's CLI (403 here)."""
    if body is not None and body.apply:
        raise PermissionDenied("apply maintenance", why="it spans every tenant; use the CLI")
    report = ledger.maintenance(apply=False).to_json()
    actions = report.get("actions") or {}
    mine = _owned_ids(ledger, tenant, {i for ids in actions.values() for i in ids})
    summary = ledger.audit(tenant=tenant, limit=0).summary()
    return {
        "schema_version": 1,
        "mode": "preview",
        "actions": {name: [i for i in ids if i in mine] for name, ids in actions.items()},
        "audit_before": summary,
        "audit_after": None,
    }


def _owned_ids(ledger: Ledger, tenant: str, ids: set[str]) -> set[str]:
    return ledger.owned_task_ids(ids, tenant=tenant)
