"""Start `tasktrail serve` (or `worker`) as a real subprocess for acceptance tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TASKTRAIL = str(Path(sys.executable).with_name("tasktrail"))
_READY = re.compile(r"serving on http://([\d.]+):(\d+)/|(worker running)")


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def env_for(db_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKTRAIL_", "SLACK_", "DISCORD_"))
    }
    env["TASKTRAIL_DATABASE_URL"] = db_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def tasktrail(
    db_url: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TASKTRAIL, *args],
        env=env_for(db_url, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _drain(
    stream: object, sink: list[str], ready: threading.Event | None, found: list[str]
) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)
        if ready is not None and not found:
            match = _READY.search(line)
            if match:
                found.append(f"http://{match.group(1)}:{match.group(2)}" if match.group(2) else "")
                ready.set()
    stream.close()  # type: ignore[attr-defined]


@contextmanager
def serve(
    db_url: str, *args: str, env: Mapping[str, str] | None = None, command: str = "serve"
) -> Iterator[Served]:
    argv = [TASKTRAIL, command, *args]
    if command == "serve" and "--port" not in args:
        argv += ["--port", "0"]
    proc = subprocess.Popen(
        argv, env=env_for(db_url, env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ready = threading.Event()
    found: list[str] = []
    served = Served(proc, "")
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, served.stdout, None, []), daemon=True),
        threading.Thread(
            target=_drain, args=(proc.stderr, served.stderr, ready, found), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()
    try:
        if command in ("serve", "worker"):
            deadline = time.monotonic() + 30
            while not ready.wait(0.1):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("serve did not start:\n" + "".join(served.stderr))
            served.url = found[0]
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(timeout=5)
