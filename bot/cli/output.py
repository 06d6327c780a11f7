"""Printing for the CLI: JSON documents (SPEC §8 shapes) and rich tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ledger.records import SCHEMA_VERSION, ArtifactRecord, EventRecord, TaskRecord
from ledger.timeutil import humanize_age, isoformat, utcnow

STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "dim",
    "lost": "bold red",
}


def emit_json(document: dict[str, Any]) -> None:
    doc = {"schema_version": SCHEMA_VERSION, **document}
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")


def stream_task_list(tasks: Iterable[TaskRecord], next_cursor: str | None) -> None:
    """Write a `list` document task by task, so `--all` never holds the ledger in memory."""
    out = sys.stdout
    out.write(f'{{\n  "schema_version": {SCHEMA_VERSION},\n  "tasks": [')
    first = True
    for task in tasks:
        out.write("\n    " if first else ",\n    ")
        out.write(json.dumps(task.to_json(), ensure_ascii=False))
        first = False
    out.write("\n  ]" if not first else "]")
    out.write(f',\n  "next_cursor": {json.dumps(next_cursor)}\n}}\n')


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _one_line(text: str | None, limit: int = 60) -> str:
    """One line, control characters shown as spaces, shortened."""
    if not text:
        return ""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return flat


def _safe(text: str | None, limit: int = 60) -> str:
    """`_one_line` with rich markup escaped, for text printed as markup."""
    from rich.markup import escape

    return escape(_one_line(text, limit))


def proof_label(task: TaskRecord) -> str:
    proven = task.proven
    if proven is None:
        return ""
    if task.proof_status == "failed":
        return "proof failed"
    return "proven" if proven else "unproven"


def print_task_table(
    tasks: list[TaskRecord], next_cursor: str | None, now: datetime | None = None
) -> None:
    from rich.table import Table
    from rich.text import Text

    now = now or utcnow()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "STATUS", "RUNTIME", "AGE", "LABEL", "DELIVERY", "PROOF"):
        table.add_column(column, no_wrap=column != "LABEL", overflow="fold")
    # Cells as Text, not markup strings: nothing to parse or escape, and a label's own
    # brackets stay text.
    for task in tasks:
        table.add_row(
            Text(task.short_id),
            Text(task.status.value, style=STATUS_STYLE.get(task.status.value, "")),
            Text(task.runtime),
            Text(humanize_age((now - task.created_at).total_seconds())),
            Text(_one_line(task.label)),
            Text(task.delivery_status if task.delivery_status != "not_applicable" else ""),
            Text(proof_label(task)),
        )
    console = _console()
    if not tasks:
        console.print("no tasks")
        return
    console.print(table)
    if next_cursor:
        console.print(f"[dim]more: --cursor {next_cursor} (or --limit N / --all)[/]")


def _with_origin(value: str, origin: str | None, original: Any) -> str:
    """`delivered (openclaw: session_queued)`: a mirrored task's own value, shown beside ours."""
    if origin and original and original != value:
        return f"{value} ({origin}: {original})"
    return value


def print_task_detail(task: TaskRecord, events: list[EventRecord] | None) -> None:
    from rich.table import Table

    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")

    def row(name: str, value: Any) -> None:
        if value is None or value == "":
            return
        if isinstance(value, datetime):
            value = isoformat(value)
        grid.add_row(name, _safe(str(value), 2000))

    row("task", task.task_id)
    row("label", task.label)
    row("status", task.status.value + (f" ({proof_label(task)})" if proof_label(task) else ""))
    row("tenant", task.tenant)
    row("runtime", task.runtime + (f" / {task.task_kind}" if task.task_kind else ""))
    row("run id", task.run_id)
    row("source id", task.source_id)
    row("child session", task.child_session_key)
    row("requester", task.requester_session_key)
    row("parent", task.parent_task_id)
    row("reply to", str(task.reply_to) if task.reply_to else None)
    origin = task.origin_detail or {}
    row("notify", _with_origin(task.notify_policy, task.origin, origin.get("notify_policy")))
    row("delivery", _with_origin(task.delivery_status, task.origin, origin.get("delivery_status")))
    row("created", task.created_at)
    row("started", task.started_at)
    row("ended", task.ended_at)
    row("heartbeat", task.heartbeat_at)
    row("lease until", task.lease_expires_at)
    row("cleanup after", task.cleanup_after)
    row("cancel requested", task.cancel_requested_at)
    row("cancel reason", task.cancel_reason)
    row("progress", task.progress_summary)
    row("summary", task.terminal_summary)
    row("error", task.error)
    row("brief", task.task)
    if task.origin:
        row("origin", f"{task.origin} {task.origin_ref or ''}".strip())
    console.print(grid)
    if task.artifacts:
        console.print(_artifact_table(task))
    if task.deliveries:
        table = Table(title="deliveries", box=None, title_justify="left", header_style="bold")
        for column in ("KIND", "TARGET", "ROUTE", "STATUS", "ATTEMPTS", "LAST ERROR"):
            table.add_column(column, overflow="fold")
        for delivery in task.deliveries:
            table.add_row(
                delivery.kind,
                _safe(delivery.target, 80),
                delivery.route,
                delivery.status,
                str(delivery.attempts),
                _safe(delivery.last_error, 120),
            )
        console.print(table)
    if events is not None:
        table = Table(title="events", box=None, title_justify="left", header_style="bold")
        for column in ("SEQ", "AT", "KIND", "MOVE", "ACTOR", "SUMMARY"):
            table.add_column(column, overflow="fold")
        for event in events:
            move = f"{event.from_status or ''} -> {event.to_status}" if event.to_status else ""
            table.add_row(
                str(event.seq),
                isoformat(event.at) or "",
                event.kind,
                move,
                _safe(event.actor, 40),
                _safe(event.summary, 120),
            )
        console.print(table)


def artifact_proof_label(artifact: ArtifactRecord) -> str:
    """`-` (nothing to check), `unchecked`, `verified`, `failed`, or `failed, re-check at T`
    while a failing check is still retried."""
    if not artifact.proof:
        return "-"
    if artifact.proof_status == "failed" and artifact.next_check_at is not None:
        return f"failed, re-check {isoformat(artifact.next_check_at)}"
    return artifact.proof_status


def _artifact_table(task: TaskRecord) -> Any:
    from rich.table import Table

    table = Table(title="artifacts", box=None, title_justify="left", header_style="bold")
    for column in ("KIND", "VALUE", "PROOF", "CHECKED", "DETAIL"):
        table.add_column(column, overflow="fold")
    for artifact in task.artifacts:
        table.add_row(
            artifact.kind,
            _safe(artifact.value, 200),
            artifact_proof_label(artifact),
            isoformat(artifact.checked_at) or "",
            _safe(artifact.detail, 200),
        )
    return table


def print_proof_checks(task: TaskRecord) -> None:
    """`proof check`: the task's proof line, then each artifact's check."""
    console = _console()
    summary = {
        "verified": "proven" if task.status.value == "succeeded" else "verified",
        "failed": "proof failed",
        "unchecked": "unproven",
    }.get(task.proof_status or "", "nothing to check")
    console.print(f"{task.short_id} {_safe(task.label)}: {task.status.value}, {summary}")
    checked = [a for a in task.artifacts if a.proof]
    if not checked:
        console.print("no artifacts with proof expectations")
        return
    console.print(_artifact_table(task))
