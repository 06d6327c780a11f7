"""Import a 100k-task OpenClaw ledger and time tasktrail's commands on the mirror.

    .venv/bin/python bench/openclaw.py [--rows 100000] [--dir DIR]

Builds an OpenClaw 2026.9.6-layout database from the shared empty sample's schema, filled
with copies of the 1k sample's rows (new ids, times shifted so the newest is about now),
imports it into a fresh SQLite ledger and prints the import rate (target: >= 10,000 tasks/s),
the incremental re-import, then the wall time and peak memory (max RSS of the process) of
`tasktrail show`, `list --status running --limit 50`, `audit --json` and
`maintenance --json` on the mirror (targets: each <= 1 s and <= 150 MB).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _samples_dir() -> Path:
    """The shared OpenClaw samples: $TASKTRAIL_OPENCLAW_SAMPLES, else `shared/` beside the
    checkout (where CI puts it), else /work/shared."""
    if os.environ.get("TASKTRAIL_OPENCLAW_SAMPLES"):
        return Path(os.environ["TASKTRAIL_OPENCLAW_SAMPLES"])
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "openclaw"
    return beside if beside.is_dir() else Path("/work/shared/data/openclaw")


SAMPLES = _samples_dir()
EMPTY = SAMPLES / "openclaw-2026.9.6-empty.sqlite"
SAMPLE = SAMPLES / "openclaw-2026.9.6-1k-tasks.sqlite"
TIME_COLUMNS = ("created_at", "started_at", "ended_at", "last_event_at", "cleanup_after")


def build_source(target: Path, rows: int) -> None:
    """An OpenClaw-layout database with `rows` task rows (WAL mode, like a live gateway)."""
    shutil.copyfile(EMPTY, target)
    os.chmod(target, 0o644)
    # read a copy: even a read-only SQLite reader creates -wal/-shm beside a WAL database
    template_copy = target.with_name("sample-1k.sqlite")
    shutil.copyfile(SAMPLE, template_copy)
    sample = sqlite3.connect(f"file:{template_copy}?mode=ro", uri=True)
    columns = [d[0] for d in sample.execute("SELECT * FROM task_runs LIMIT 0").description]
    templates = sample.execute("SELECT * FROM task_runs ORDER BY created_at").fetchall()
    origins = dict(sample.execute("SELECT task_id, requester_origin_json FROM task_delivery_state"))
    (newest,) = sample.execute("SELECT max(last_event_at) FROM task_runs").fetchone()
    sample.close()

    index = {name: i for i, name in enumerate(columns)}
    copies = -(-rows // len(templates))
    now_ms = int(time.time() * 1000)
    # spread the copies over the past: copy k is k hours older than the newest
    task_rows: list[list[object]] = []
    delivery_rows: list[tuple[str, str]] = []
    for k in range(copies):
        shift = now_ms - newest - k * 3_600_000
        for template in templates:
            if len(task_rows) == rows:
                break
            row = list(template)
            old_id = row[index["task_id"]]
            new_id = str(uuid.uuid4())
            row[index["task_id"]] = new_id
            if row[index["run_id"]]:
                row[index["run_id"]] = f"{row[index['run_id']]}:{k}"
            row[index["parent_task_id"]] = None
            for column in TIME_COLUMNS:
                if row[index[column]] is not None:
                    row[index[column]] += shift
            task_rows.append(row)
            if old_id in origins:
                delivery_rows.append((new_id, origins[old_id]))

    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode = WAL")
    marks = ", ".join("?" for _ in columns)
    with conn:
        conn.executemany(f"INSERT INTO task_runs VALUES ({marks})", task_rows)
        conn.executemany(
            "INSERT INTO task_delivery_state (task_id, requester_origin_json) VALUES (?, ?)",
            delivery_rows,
        )
    conn.close()


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (a bulk import reads
    in a child process)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_command(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit code of one `tasktrail` process, measured by
    GNU time (a fresh small parent, so the child's max RSS is its own, not this process's
    memory inherited through fork)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        started = time.perf_counter()
        code = subprocess.call(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - started
        lines = [line for line in out.read().splitlines() if line.strip().isdigit()]
    return wall, int(lines[-1]) / 1024 if lines else float("nan"), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="work directory (kept); default: a temp dir")
    options = parser.parse_args()

    from ledger import Ledger

    work = options.dir or Path(tempfile.mkdtemp(prefix="tasktrail-openclaw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / "state" / "openclaw.sqlite"
    source.parent.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("ledger.db*"):
        stale.unlink()
    url = f"sqlite:///{work / 'ledger.db'}"

    started = time.perf_counter()
    build_source(source, options.rows)
    took = time.perf_counter() - started
    print(f"built {options.rows:,} OpenClaw tasks in {took:.1f}s: {source}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before import")

    ledger = Ledger.connect(url)
    cpu_before = _cpu_seconds()
    report = ledger.import_openclaw(source)
    cpu = _cpu_seconds() - cpu_before
    rate = report.rows_read / report.elapsed_seconds
    print(
        f"import: {report.created:,} created, {report.skipped} skipped in "
        f"{report.elapsed_seconds:.2f}s wall = {rate:,.0f} tasks/s (target >= 10,000); "
        f"{cpu:.2f}s CPU (with the reading process) = "
        f"{report.rows_read / cpu:,.0f} tasks per CPU-second"
    )
    again = ledger.import_openclaw(source)
    print(
        f"re-import (incremental): {again.rows_read} rows read, {again.created} created, "
        f"{again.updated} updated, {again.unchanged} unchanged in {again.elapsed_seconds:.3f}s"
    )
    running = ledger.list(status=["running"], limit=1)
    some = ledger.list(limit=1)[0]
    ref = some.origin_ref or some.task_id
    ledger.close()

    from bench._data import compile_bytecode
    from bot.cli.main import COMMANDS

    compile_bytecode()  # as an installed package has it (see bench._data)
    tasktrail = str(Path(sys.executable).with_name("tasktrail"))
    commands = [
        ("--version (interpreter start-up)", ["--version"]),
        ("show <openclaw id>", ["show", ref]),
        ("list --status running --limit 50", ["list", "--status", "running", "--limit", "50"]),
        ("audit --json", ["audit", "--json"]),
        ("maintenance --json", ["maintenance", "--json"]),
    ]
    print(
        f"commands on the {options.rows:,}-task mirror (targets: <= 1 s, <= 150 MB; "
        f"load average {os.getloadavg()[0]:.1f}):"
    )
    for title, args in commands:
        if not args[0].startswith("-") and args[0] not in COMMANDS:
            print(f"  {title:36} not available yet (no `{args[0]}` command)")
            continue
        wall, rss, code = run_command([tasktrail, "--db", url, *args])
        note = "" if code in (0, 1) else f"  (exit {code})"
        print(f"  {title:36} {wall:6.2f} s  {rss:6.1f} MB{note}")
    if not running:
        print("  (no running tasks in the mirror)")
    if options.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
