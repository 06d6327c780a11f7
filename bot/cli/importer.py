"""`tasktrail import openclaw`: mirror an OpenClaw task ledger, once or continuously."""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from bot.cli.main import Context
from bot.cli.output import emit_json

if TYPE_CHECKING:
    from ledger.importers import ImportReport

pass_ctx = click.make_pass_decorator(Context)
#: Skip reasons printed for people; `--json` lists them all.
_SHOWN_SKIPS = 20


@click.group("import")
def import_group() -> None:
    """Mirror another task ledger into tasktrail (read-only on the source)."""


@import_group.command("openclaw")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="OpenClaw state directory (reads DIR/state/openclaw.sqlite).",
)
@click.option(
    "--openclaw-db",
    type=click.Path(dir_okay=False),
    metavar="PATH",
    help="OpenClaw database file. Default: $OPENCLAW_STATE_DIR/state/openclaw.sqlite, "
    "else ~/.openclaw/state/openclaw.sqlite.",
)
@click.option("--tenant", default="default", show_default=True, help="Tenant of the mirror.")
@click.option("--watch", is_flag=True, help="Keep mirroring changes until interrupted.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Seconds between passes with --watch.",
)
@click.option(
    "--notify-from-tasktrail",
    is_flag=True,
    help="tasktrail posts the notices (with OpenClaw's policies) instead of staying silent.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def openclaw_cmd(
    obj: Context,
    state_dir: str | None,
    openclaw_db: str | None,
    tenant: str,
    watch: bool,
    interval: float,
    notify_from_tasktrail: bool,
    as_json: bool,
) -> None:
    """Import OpenClaw's background-task ledger (read-only) and keep it in sync.

    Importing again is incremental and changes nothing when OpenClaw did not change.
    """
    from ledger.exceptions import LedgerError
    from ledger.importers import resolve_openclaw_db

    if state_dir and openclaw_db:
        raise click.UsageError("give --state-dir or --openclaw-db, not both")
    path = resolve_openclaw_db(state_dir=state_dir, db_path=openclaw_db)
    ledger = obj.ledger

    def one_pass() -> ImportReport:
        return ledger.import_openclaw(
            path, tenant=tenant, notify_from_tasktrail=notify_from_tasktrail
        )

    if not watch:
        report = one_pass()
        if as_json:
            emit_json({"import": report.to_json()})
        else:
            _print_report(report)
        return

    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        first = True
        while not stop.is_set():
            try:
                report = one_pass()
            except LedgerError as error:
                if first:
                    raise
                # a busy ledger or a source being replaced: the next pass catches up
                click.echo(f"warning: {error}", err=True)
                stop.wait(interval)
                continue
            if as_json:
                line = {"schema_version": 1, "import": report.to_json()}
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            elif first:
                _print_report(report)
                click.echo(f"watching {report.source} every {interval:g}s (Ctrl-C stops)")
            elif report.created or report.updated or report.refused or report.skipped:
                click.echo(_one_line(report))
            first = False
            stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _one_line(report: ImportReport) -> str:
    return (
        f"{report.rows_read} read: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.refused} refused, {report.skipped} skipped"
    )


def _print_report(report: ImportReport) -> None:
    click.echo(f"OpenClaw {report.source} -> tenant {report.tenant}")
    click.echo(_one_line(report) + f" in {report.elapsed_seconds:.2f}s")
    if report.by_status:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.by_status.items()))
        click.echo(f"  by status:  {counts}")
    if report.by_runtime:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.by_runtime.items()))
        click.echo(f"  by runtime: {counts}")
    if report.refused:
        click.echo(
            f"  {report.refused} status change(s) refused (terminal stays terminal); "
            "see `tasktrail show REF --events`"
        )
    for skipped in report.skipped_rows[:_SHOWN_SKIPS]:
        click.echo(f"  skipped {skipped.openclaw_task_id or '(no id)'}: {skipped.reason}")
    if report.skipped > _SHOWN_SKIPS:
        click.echo(f"  ... and {report.skipped - _SHOWN_SKIPS} more skipped (--json lists all)")
    if not report.notify_from_tasktrail and report.created:
        click.echo("  mirrored tasks are silent in tasktrail (OpenClaw delivers their notices)")
