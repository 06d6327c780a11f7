"""Ledger commands: list, show, create, start, heartbeat, progress, finish, artifact,
notify, cancel (SPEC §8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bot.cli.main import Context
from bot.cli.output import (
    emit_json,
    print_task_detail,
    print_task_table,
    stream_task_list,
)
from ledger.status import NotifyPolicy, Runtime, Status

F = TypeVar("F", bound=Callable[..., Any])

STATUSES = [s.value for s in Status]
RUNTIMES = [r.value for r in Runtime]
POLICIES = [p.value for p in NotifyPolicy]
FINISH = ["succeeded", "failed", "timed_out", "cancelled"]
ARTIFACT_KINDS = ["commit", "url", "file", "build", "deploy", "other"]

pass_ctx = click.make_pass_decorator(Context)
json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON document.")


def create_options(func: F) -> F:
    """The options `create` and `run` share."""
    options = [
        click.option("--runtime", type=click.Choice(RUNTIMES), required=True),
        click.option("--label", required=True, help="Short title (up to 5,000 characters)."),
        click.option("--tenant", default="default", show_default=True),
        click.option("--task", "brief", help="The brief: what was asked, what proof is needed."),
        click.option("--kind", "task_kind", help="Free-form sub-kind (exec, deploy, image...)."),
        click.option("--run-id", help="Producer's run id; creating it again is idempotent."),
        click.option("--source-id", help="E.g. the cron job id."),
        click.option("--child-session", help="Where the work runs (session, process, job)."),
        click.option("--requester", help="The session that asked."),
        click.option(
            "--reply-to", metavar="ADDR", help="slack:T/C[/TS][@U] or discord:G/C[/T][@U]"
        ),
        click.option("--notify", type=click.Choice([*POLICIES, "inherit"])),
        click.option("--lease", type=click.FloatRange(min=1), metavar="SECONDS"),
        click.option("--parent", metavar="REF", help="The task that spawned this one."),
        click.option("--queued", is_flag=True, help="Record it queued instead of running."),
        click.option("--proof-url", metavar="URL", help="A URL that must answer for proof."),
        click.option("--expect-status", type=click.IntRange(100, 599)),
        click.option("--expect-text"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--runtime", "runtimes", multiple=True, type=click.Choice(RUNTIMES))
@click.option("--requester", metavar="KEY")
@click.option("--tenant")
@click.option("--label", metavar="TEXT", help="Tasks whose label contains TEXT.")
@click.option("--limit", type=click.IntRange(min=1), help="How many tasks (default 50).")
@click.option("--all", "show_all", is_flag=True, help="Every matching task.")
@click.option("--cursor", help="Continue after a previous page (JSON next_cursor).")
@json_option
@pass_ctx
def list_cmd(
    obj: Context,
    statuses: tuple[str, ...] = (),
    runtimes: tuple[str, ...] = (),
    requester: str | None = None,
    tenant: str | None = None,
    label: str | None = None,
    limit: int | None = None,
    show_all: bool = False,
    cursor: str | None = None,
    as_json: bool = False,
) -> None:
    """List tasks, newest first."""
    if show_all and limit is not None:
        raise click.UsageError("give --limit N or --all, not both")
    filters: dict[str, Any] = {
        "status": statuses,
        "runtime": runtimes,
        "tenant": tenant,
        "requester": requester,
        "label": label,
    }
    ledger = obj.ledger
    if show_all:
        if cursor:
            raise click.UsageError("--cursor pages a limited listing; drop it with --all")
        tasks = ledger.iter_tasks(**filters)
        if as_json:
            stream_task_list(tasks, None)
        else:
            print_task_table(list(tasks), None)
        return
    page = ledger.list_page(**filters, limit=limit or 50, cursor=cursor)
    if as_json:
        stream_task_list(page.tasks, page.next_cursor)
    else:
        print_task_table(list(page.tasks), page.next_cursor)


@click.command("show")
@click.argument("ref")
@click.option("--events", "with_events", is_flag=True, help="Include the event history.")
@json_option
@pass_ctx
def show_cmd(obj: Context, ref: str, with_events: bool, as_json: bool) -> None:
    """Show one task: REF is a task id, unique id prefix, run id or session key."""
    ledger = obj.ledger
    task = ledger.get(ref, details=True)
    events = ledger.events(task.task_id) if with_events else None
    if as_json:
        doc: dict[str, Any] = {"task": task.to_json(with_details=True)}
        if events is not None:
            doc["events"] = [e.to_json() for e in events]
        emit_json(doc)
    else:
        print_task_detail(task, events)


def _print_one(obj: Context, task_id: str, as_json: bool, verb: str) -> None:
    task = obj.ledger.get(task_id, details=True)
    if as_json:
        emit_json({"task": task.to_json(with_details=True)})
    else:
        click.echo(f"{verb} {task.task_id} ({task.status.value}) {_one_line(task.label)}")


def _one_line(text: str, limit: int = 80) -> str:
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@click.command("create")
@create_options
@json_option
@pass_ctx
def create_cmd(obj: Context, /, as_json: bool, **options: Any) -> None:
    """Record a task (running, or queued with --queued)."""
    task = obj.ledger.create(**_create_kwargs(options))
    _print_one(obj, task.task_id, as_json, "created")


def _create_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {
        "runtime": options["runtime"],
        "label": options["label"],
        "tenant": options["tenant"],
        "task": options["brief"],
        "task_kind": options["task_kind"],
        "run_id": options["run_id"],
        "source_id": options["source_id"],
        "child_session_key": options["child_session"],
        "requester_session_key": options["requester"],
        "reply_to": options["reply_to"],
        "notify": options["notify"],
        "lease": options["lease"],
        "parent": options["parent"],
        "queued": options["queued"],
        "proof_url": options["proof_url"],
        "expect_status": options["expect_status"],
        "expect_text": options["expect_text"],
    }


@click.command("start")
@click.argument("ref")
@json_option
@pass_ctx
def start_cmd(obj: Context, ref: str, as_json: bool) -> None:
    """Move a queued task to running (no-op when it already runs)."""
    task = obj.ledger.start(ref)
    _print_one(obj, task.task_id, as_json, "started")


@click.command("heartbeat")
@click.argument("ref")
@json_option
@pass_ctx
def heartbeat_cmd(obj: Context, ref: str, as_json: bool) -> None:
    """Renew a running task's lease."""
    task = obj.ledger.heartbeat(ref)
    _print_one(obj, task.task_id, as_json, "heartbeat")


@click.command("progress")
@click.argument("ref")
@click.argument("text")
@json_option
@pass_ctx
def progress_cmd(obj: Context, ref: str, text: str, as_json: bool) -> None:
    """Record progress text on an active task."""
    task = obj.ledger.progress(ref, text)
    _print_one(obj, task.task_id, as_json, "progress")


@click.command("finish")
@click.argument("ref")
@click.option("--status", type=click.Choice(FINISH), required=True)
@click.option("--summary")
@click.option("--error")
@json_option
@pass_ctx
def finish_cmd(
    obj: Context, ref: str, status: str, summary: str | None, error: str | None, as_json: bool
) -> None:
    """Finish a task: succeeded, failed, timed_out or cancelled."""
    task = obj.ledger.finish(ref, status=status, summary=summary, error=error)
    _print_one(obj, task.task_id, as_json, "finished")


@click.command("artifact")
@click.argument("ref")
@click.option("--kind", type=click.Choice(ARTIFACT_KINDS), required=True)
@click.option("--value", required=True, help="Commit sha, URL, file path, build or deploy URL.")
@click.option("--expect-status", type=click.IntRange(100, 599), help="URL: HTTP status.")
@click.option("--expect-text", help="URL or file: text that must appear.")
@click.option("--forbid-text", help="URL or file: text that must not appear.")
@click.option("--expect-header", metavar="'NAME: VALUE'", help="URL: a response header.")
@click.option("--sha256", help="File: its SHA-256 (hex).")
@click.option("--max-age", metavar="DURATION", help="File: modified at most this long ago.")
@click.option("--repo", metavar="PATH", help="Commit: the repository to look in.")
@click.option("--branch", help="Commit: a branch the commit must be on.")
@json_option
@pass_ctx
def artifact_cmd(
    obj: Context,
    /,
    ref: str,
    kind: str,
    value: str,
    expect_status: int | None,
    expect_text: str | None,
    as_json: bool,
    **more: str | None,
) -> None:
    """Attach an artifact, optionally with proof expectations the scheduler checks."""
    proof = {key: text for key, text in more.items() if text is not None}
    task = obj.ledger.add_artifact(
        ref,
        kind=kind,
        value=value,
        expect_status=expect_status,
        expect_text=expect_text,
        proof=proof or None,
    )
    _print_one(obj, task.task_id, as_json, "artifact added to")


@click.command("notify")
@click.argument("ref")
@click.argument("policy", type=click.Choice(POLICIES))
@json_option
@pass_ctx
def notify_cmd(obj: Context, ref: str, policy: str, as_json: bool) -> None:
    """Change a task's notify policy."""
    task = obj.ledger.set_notify(ref, policy)
    _print_one(obj, task.task_id, as_json, f"notify {policy} for")


@click.command("cancel")
@click.argument("ref")
@click.option("--reason")
@json_option
@pass_ctx
def cancel_cmd(obj: Context, ref: str, reason: str | None, as_json: bool) -> None:
    """Cancel a task: at once without a live runner, else ask the runner to stop."""
    task = obj.ledger.cancel(ref, reason=reason)
    if as_json:
        emit_json({"task": obj.ledger.get(task.task_id, details=True).to_json(with_details=True)})
    elif task.status is Status.CANCELLED:
        click.echo(f"cancelled {task.task_id}: {task.terminal_summary}")
    else:
        click.echo(f"cancel requested for {task.task_id}; waiting for its runner to stop it")
