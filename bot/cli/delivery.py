"""Delivery commands: `retry REF...`, `dismiss REF...`, `deliveries [--status S] [--json]`
(SPEC §5, §8)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from bot.cli.main import Context
from bot.cli.output import emit_json
from ledger.exceptions import InvalidInput, LedgerError
from ledger.records import DeliveryRecord, TaskRecord
from ledger.timeutil import isoformat

DELIVERY_STATUSES = ["pending", "retrying", "delivered", "failed", "dismissed", "superseded"]

pass_ctx = click.make_pass_decorator(Context)


def _for_each_task(
    refs: tuple[str, ...],
    act: Callable[[str], tuple[TaskRecord, TaskRecord]],
    report: Callable[[TaskRecord, TaskRecord], str],
) -> None:
    """Run `act` on every REF (each returns the task before and after), print one line per
    task; an error on one REF is reported and the others still run (exit 1 at the end)."""
    errors = 0
    for ref in refs:
        try:
            before, after = act(ref)
        except InvalidInput:
            raise
        except LedgerError as error:
            click.echo(f"error: {error}", err=True)
            errors += 1
            continue
        click.echo(report(before, after))
    if errors:
        sys.exit(1)


def _failed(task: TaskRecord) -> int:
    return sum(1 for d in task.deliveries if d.status == "failed")


@click.command("retry")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@pass_ctx
def retry_cmd(obj: Context, refs: tuple[str, ...]) -> None:
    """Re-queue the failed deliveries of each task (new generation, new key)."""

    def act(ref: str) -> tuple[TaskRecord, TaskRecord]:
        return obj.ledger.get(ref, details=True), obj.ledger.retry(ref)

    def report(before: TaskRecord, task: TaskRecord) -> str:
        if _failed(before):
            return f"re-queued {_failed(before)} failed deliveries of {task.task_id}"
        return f"{task.task_id} has no failed deliveries (delivery {task.delivery_status})"

    _for_each_task(refs, act, report)


@click.command("dismiss")
@click.argument("refs", nargs=-1, required=True, metavar="REF...")
@pass_ctx
def dismiss_cmd(obj: Context, refs: tuple[str, ...]) -> None:
    """Mark each task's failed deliveries handled; acknowledge a lost task (it stays lost)."""

    def act(ref: str) -> tuple[TaskRecord, TaskRecord]:
        return obj.ledger.get(ref, details=True), obj.ledger.dismiss(ref)

    def report(before: TaskRecord, task: TaskRecord) -> str:
        done = []
        if _failed(before):
            done.append(f"dismissed {_failed(before)} failed deliveries")
        if task.status == "lost" and before.acknowledged_at is None and task.acknowledged_at:
            done.append("acknowledged the lost verdict")
        if done:
            return f"{task.task_id}: " + "; ".join(done)
        return f"{task.task_id}: nothing to dismiss"

    _for_each_task(refs, act, report)


@click.command("deliveries")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), help="Only rows in this status.")
@click.option("--task", "task_ref", metavar="REF", help="Only this task's deliveries.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@pass_ctx
def deliveries_cmd(
    obj: Context, status: str | None, task_ref: str | None, limit: int, as_json: bool
) -> None:
    """List the delivery outbox, newest first."""
    rows = obj.ledger.deliveries(status=status, limit=limit, task=task_ref)
    if as_json:
        emit_json({"deliveries": [d.to_json() for d in rows]})
        return
    _print_table(rows)


def _print_table(rows: tuple[DeliveryRecord, ...]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False)
    if not rows:
        console.print("no deliveries")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "task", "kind", "route", "status", "tries", "next attempt", "error"):
        table.add_column(column)
    for d in rows:
        error = (d.last_error or "").replace("\n", " ")
        table.add_row(
            str(d.id),
            (d.task_id or "-")[:8],
            d.kind,
            d.route,
            d.status,
            str(d.attempts),
            isoformat(d.next_attempt_at) if d.status in ("pending", "retrying") else "",
            escape(error[:60] + ("…" if len(error) > 60 else "")),
        )
    console.print(table)
