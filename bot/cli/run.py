"""`tasktrail run [create options] [--timeout S] [--api URL --token T] -- COMMAND...`

Wraps any command as a task (SPEC §8): the command runs in its own process group with its
output streamed through to this terminal; the task heartbeats while it runs; the output tail,
with likely secrets redacted, becomes the summary. Exit 0 -> succeeded, non-zero -> failed,
`--timeout` -> timed_out. A cancel (seen on a heartbeat) terminates the whole process group
(SIGTERM, then SIGKILL after a grace) and the task is recorded `cancelled` only once the
processes are gone. `run` exits with the command's own exit code.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any, ClassVar, Protocol

import click

from bot.cli.main import Context
from bot.cli.tasks import _create_kwargs, create_options
from ledger.exceptions import IllegalTransition, LedgerError

pass_ctx = click.make_pass_decorator(Context)

TAIL_BYTES = 4000
SUMMARY_CHARS = 2000
KILL_GRACE = 5.0

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        "[REDACTED PRIVATE KEY]",
    ),
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{6,}"), "[REDACTED]"),
    (re.compile(r"\bxapp-[A-Za-z0-9-]{6,}"), "[REDACTED]"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{16,}"), "[REDACTED]"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "[REDACTED]"),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{16,}"), "[REDACTED]"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "[REDACTED]"),
    (re.compile(r"\bttk_[A-Za-z0-9_-]{16,}"), "[REDACTED]"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[REDACTED]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [REDACTED]"),
    (re.compile(r"(?i)(://[^/\s:@]+:)[^/\s@]+@"), r"\1[REDACTED]@"),
    (
        re.compile(
            r"(?i)\b([A-Z0-9_.-]*(?:password|passwd|pwd|token|secret|api[_-]?key|access[_-]?key"
            r"|private[_-]?key|credentials?)[A-Z0-9_.-]*)(\"?\s*[=:]\s*)(\"|')?([^\s\"'&,;]+)"
        ),
        r"\1\2\3[REDACTED]",
    ),
]


def redact(text: str) -> str:
    """Mask likely secrets: chat/cloud/VCS tokens, bearer values, URL passwords, and
    `password=`/`token=`/`secret=`-style values."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class Backend(Protocol):
    """Where the task lives: the local ledger or a remote serve's HTTP API."""

    def create(self, options: dict[str, Any]) -> str: ...

    def heartbeat(self, task_id: str) -> tuple[bool, str | None]:
        """Renew the lease; returns (cancel requested, reason)."""
        ...

    def finish(self, task_id: str, status: str, summary: str | None, error: str | None) -> None: ...


class LedgerBackend:
    def __init__(self, obj: Context) -> None:
        self.ledger = obj.ledger

    def create(self, options: dict[str, Any]) -> str:
        task = self.ledger.create(**options, runner="run")
        if task.status.value == "queued":
            task = self.ledger.start(task.task_id, runner="run")
        if task.status.is_terminal:
            raise IllegalTransition(task.task_id, task.status.value, "running", "already ended")
        return task.task_id

    def heartbeat(self, task_id: str) -> tuple[bool, str | None]:
        task = self.ledger.heartbeat(task_id)
        return task.cancel_requested_at is not None, task.cancel_reason

    def finish(self, task_id: str, status: str, summary: str | None, error: str | None) -> None:
        self.ledger.finish(task_id, status=status, summary=summary, error=error)


class ApiBackend:
    _EVENT: ClassVar[dict[str, str]] = {
        "succeeded": "succeed",
        "failed": "fail",
        "timed_out": "timeout",
    }

    def __init__(self, url: str, token: str) -> None:
        from bot.client import ApiClient

        self.client = ApiClient(url, token)

    def create(self, options: dict[str, Any]) -> str:
        fields = dict(options)
        fields.pop("tenant", None)  # the token decides the tenant
        task = self.client.create(**fields, runner="run")
        if task["status"] == "queued":
            task = self.client.event(task["task_id"], "start")
        if task["status"] not in ("running",):
            raise IllegalTransition(task["task_id"], task["status"], "running", "already ended")
        return str(task["task_id"])

    def heartbeat(self, task_id: str) -> tuple[bool, str | None]:
        task = self.client.event(task_id, "heartbeat")
        return task.get("cancel_requested_at") is not None, task.get("cancel_reason")

    def finish(self, task_id: str, status: str, summary: str | None, error: str | None) -> None:
        self.client.event(task_id, self._EVENT.get(status, status), summary=summary, error=error)


class Tail:
    """The last `limit` bytes of the command's output (both streams, interleaved)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= self._limit:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)[-self._limit :]
        text = data.decode("utf-8", errors="replace").replace("\x00", "")
        return redact(text).strip()[-SUMMARY_CHARS:]


def _pump(source: IO[bytes], sink: IO[bytes], tail: Tail) -> None:
    """Copy the child's output to our terminal as it comes, keeping the tail."""
    reader: Callable[[int], bytes] = getattr(source, "read1", source.read)
    while True:
        chunk = reader(65536)
        if not chunk:
            break
        tail.add(chunk)
        with contextlib.suppress(OSError, ValueError):
            sink.write(chunk)
            sink.flush()
    source.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the whole process group, SIGKILL whatever is left after `grace`, and return
    once the leader is reaped and the group is empty (or after a last short wait)."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 2.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


@click.command(
    "run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": False}
)
@create_options
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS")
@click.option("--api", metavar="URL", help="Record through a remote serve's HTTP API.")
@click.option("--token", envvar="TASKTRAIL_TOKEN", metavar="T", help="API token for --api.")
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.05),
    default=None,
    hidden=True,
    help="Seconds between heartbeats (default: a third of the lease, at most 5 s).",
)
@click.option("--kill-grace", type=click.FloatRange(min=0), default=KILL_GRACE, hidden=True)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def run_cmd(
    obj: Context,
    /,
    command: tuple[str, ...],
    timeout: float | None,
    api: str | None,
    token: str | None,
    heartbeat_interval: float | None,
    kill_grace: float,
    **options: Any,
) -> None:
    """Run COMMAND as a task: heartbeats, output tail, exit status, cancel, timeout."""
    if bool(api) != bool(token):
        raise click.UsageError("--api and --token go together")
    backend: Backend = ApiBackend(api, token) if api and token else LedgerBackend(obj)
    create = _create_kwargs(options)
    task_id = backend.create(create)
    lease = options.get("lease") or obj.settings.ledger.lease_for(create["runtime"]).total_seconds()
    every = heartbeat_interval or max(0.5, min(5.0, lease / 3))
    code = supervise(
        backend, task_id, list(command), timeout=timeout, every=every, grace=kill_grace
    )
    sys.exit(code)


def supervise(
    backend: Backend,
    task_id: str,
    command: list[str],
    *,
    timeout: float | None,
    every: float,
    grace: float = KILL_GRACE,
) -> int:
    """Run the command to its end under the task; returns the exit code to exit with."""
    tail = Tail()
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL if not sys.stdin.isatty() else None,
            start_new_session=True,
        )
    except OSError as error:
        code = 127 if isinstance(error, FileNotFoundError) else 126
        message = f"could not start {command[0]!r}: {error.strerror or error}"
        click.echo(f"error: {message}", err=True)
        _finish(backend, task_id, "failed", None, message)
        return code
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer, tail), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer, tail), daemon=True),
    ]
    for pump in pumps:
        pump.start()

    interrupted: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        interrupted.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    next_beat = started + every
    outcome: str | None = None
    reason: str | None = None
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if timeout is not None and now - started >= timeout:
                outcome = "timed_out"
                _terminate_group(proc, grace)
                break
            if now >= next_beat:
                next_beat = now + every
                try:
                    cancel, reason = backend.heartbeat(task_id)
                except IllegalTransition:
                    cancel, reason = True, "the task was ended elsewhere"
                except LedgerError as error:
                    click.echo(f"tasktrail: heartbeat failed: {error}", err=True)
                    cancel = False
                if cancel:
                    outcome = "cancelled"
                    click.echo("tasktrail: cancel requested; stopping the command", err=True)
                    _terminate_group(proc, grace)
                    break
            wait = min(next_beat, started + timeout if timeout else next_beat) - time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.01, min(wait, 0.25)))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if outcome is None and _group_alive(proc.pid):
        # The leader exited but left children in its group: they go with it.
        _terminate_group(proc, grace)
    for pump in pumps:
        pump.join(timeout=2)
    code = _exit_code(proc.returncode if proc.returncode is not None else proc.wait())
    text = tail.text() or None
    if outcome == "cancelled":
        why = f" ({reason})" if reason else ""
        _finish(backend, task_id, "cancelled", f"stopped after a cancel request{why}", None)
    elif outcome == "timed_out":
        _finish(backend, task_id, "timed_out", text, f"timed out after {timeout:g} s")
    elif code == 0:
        _finish(backend, task_id, "succeeded", text, None)
    else:
        cause = f"interrupted by signal {interrupted[0]}; " if interrupted else ""
        _finish(backend, task_id, "failed", text, f"{cause}exit code {code}")
    return code


def _finish(
    backend: Backend, task_id: str, status: str, summary: str | None, error: str | None
) -> None:
    try:
        backend.finish(task_id, status, summary, error)
    except IllegalTransition as refused:
        click.echo(f"tasktrail: {refused}", err=True)
    except LedgerError as failure:
        click.echo(f"tasktrail: could not record the result: {failure}", err=True)
