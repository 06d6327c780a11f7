"""Operator commands: audit, maintenance, auditor (SPEC §6, §7, §8)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from bot.cli.main import Context
from bot.cli.output import emit_json

if TYPE_CHECKING:
    from ledger.audit import AuditReport, Finding
    from ledger.maintenance import MaintenanceReport

pass_ctx = click.make_pass_decorator(Context)
CODES = [
    "stale_queued",
    "stale_running",
    "lost",
    "delivery_failed",
    "delivery_stuck",
    "unproven_success",
    "cancel_stuck",
    "inconsistent",
    "missing_cleanup",
    "auditor_gap",
]
#: Findings the text output shows without --limit.
DEFAULT_SHOWN = 100


def _safe(text: str | None, limit: int = 160) -> str:
    from rich.markup import escape

    flat = "".join(ch if ch.isprintable() else " " for ch in (text or ""))
    return escape(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def _print_findings(findings: tuple[Finding, ...] | list[Finding]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ledger.ids import short_id
    from ledger.timeutil import humanize_age

    console = Console(highlight=False, soft_wrap=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("SEVERITY", "CODE", "TASK", "STATUS", "AGE", "DETAIL", "REMEDY"):
        table.add_column(column, overflow="fold", no_wrap=column in ("SEVERITY", "CODE", "TASK"))
    for f in findings:
        style = "bold red" if f.severity == "error" else "yellow"
        table.add_row(
            f"[{style}]{f.severity}[/]",
            f.code,
            short_id(f.task_id) if f.task_id else "-",
            f.status or "-",
            humanize_age(f.age_seconds),
            _safe(f.detail),
            _safe(f.remedy),
        )
    console.print(table)


def _summary_line(summary: dict[str, Any] | Any) -> str:
    codes = ", ".join(f"{code} {n}" for code, n in summary["by_code"].items() if n)
    return f"{summary['errors']} error(s), {summary['warnings']} warning(s)" + (
        f": {codes}" if codes else ""
    )


@click.command("audit")
@click.option(
    "--severity",
    type=click.Choice(["warn", "error"]),
    help="error: only error-level findings; warn: everything (the default).",
)
@click.option("--code", type=click.Choice(CODES), help="Only this finding code.")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most N findings.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@pass_ctx
def audit_cmd(
    obj: Context, severity: str | None, code: str | None, limit: int | None, as_json: bool
) -> None:
    """Report records where work gets quietly dropped. Exits 1 when any error-level
    finding is present."""
    report: AuditReport = obj.ledger.audit(severity=severity, code=code, limit=limit)
    if as_json:
        emit_json(report.to_json())
    else:
        summary = report.summary()
        if not report.findings:
            click.echo("audit: no findings")
        else:
            shown = report.findings if limit else report.findings[:DEFAULT_SHOWN]
            _print_findings(shown)
            more = summary["total"] - len(shown)
            if more > 0:
                click.echo(f"… and {more} more (use --limit N, --code C or --json)")
            click.echo(f"audit: {_summary_line(summary)}")
    if report.errors:
        sys.exit(1)


@click.command("maintenance")
@click.option("--apply", "apply", is_flag=True, help="Write the changes (default: preview).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")
@pass_ctx
def maintenance_cmd(obj: Context, apply: bool, as_json: bool) -> None:
    """Reconcile, finalize stuck cancels, requeue stuck deliveries, stamp and prune by
    retention. Previews unless --apply; exits 0 whenever it ran."""
    report: MaintenanceReport = obj.ledger.maintenance(apply=apply)
    if as_json:
        emit_json(report.to_json())
        return
    verb = "done" if apply else "would do (preview; --apply writes)"
    click.echo(f"maintenance {verb}:")
    for name, ids in report.actions.items():
        shown = " ".join(ids[:10]) + (f" … (+{len(ids) - 10})" if len(ids) > 10 else "")
        click.echo(f"  {name:20} {len(ids):6}  {shown}")
    click.echo(f"audit before: {_summary_line(report.audit_before)}")
    label = "audit after" if apply else "audit after (projected)"
    click.echo(f"{label}: {_summary_line(report.audit_after)}")
    if report.remaining:
        click.echo("left for an operator:")
        _print_findings(list(report.remaining[:DEFAULT_SHOWN]))


@click.command("auditor")
@pass_ctx
def auditor_cmd(obj: Context) -> None:
    """Run the scheduled auditor alone (reconcile, audit, maintenance) until SIGINT or
    SIGTERM."""
    import logging

    from bot.scheduler import build_scheduler, run_until_signalled

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("apscheduler", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    auditor = build_scheduler(obj.settings, obj.ledger)
    click.echo(
        "scheduled auditor running (reconcile every "
        f"{obj.settings.ledger.reconcile_interval.total_seconds():g}s); Ctrl-C stops it",
        err=True,
    )
    run_until_signalled(auditor)
