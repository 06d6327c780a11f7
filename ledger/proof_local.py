"""Proof checks on this machine: files (exists, sha256, age, text in it) and commits in a
local git repository."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.exceptions import InvalidInput
from ledger.proof_checks import (
    CheckResult,
    as_list,
    commit_target,
    judge_needles,
    limit_detail,
    quote,
    shorten,
    size,
)
from ledger.timeutil import humanize_age, parse_duration

# -- files ------------------------------------------------------------------------------------


def file_path(value: str) -> Path:
    text = value.strip()
    if text.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse

        text = unquote(urlparse(text).path)
    return Path(text).expanduser()


def check_file(value: str, proof: Mapping[str, Any], now: datetime) -> CheckResult:
    """Exists and is a regular file; optionally its sha256, its age, and text in it (read
    once, in chunks, whatever the size)."""
    path = file_path(value)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return CheckResult(False, "missing")
    except OSError as error:
        return CheckResult(False, f"cannot read: {shorten(error.strerror or str(error))}")
    if not path.is_file():
        return CheckResult(False, "not a regular file")
    passed = True
    parts = [f"present, {size(stat.st_size)}"]
    max_age = _max_age(proof.get("max_age"))
    if max_age is not None:
        modified = datetime.fromtimestamp(stat.st_mtime, UTC)
        age = (now - modified).total_seconds()
        if age > max_age:
            passed = False
            parts.append(f"modified {humanize_age(age)} ago (max {humanize_age(float(max_age))})")
        else:
            parts.append(f"modified {humanize_age(max(0.0, age))} ago")
    want_sha = proof.get("sha256")
    needles = as_list(proof.get("expect_text")) + as_list(proof.get("forbid_text"))
    if want_sha or needles:
        try:
            digest, found = _scan(path, [n.encode() for n in needles])
        except OSError as error:
            return CheckResult(False, f"cannot read: {shorten(error.strerror or str(error))}")
        if want_sha:
            if digest == want_sha:
                parts.append("sha256 ok")
            else:
                passed = False
                parts.append(f"sha256 is {digest[:12]}…, expected {str(want_sha)[:12]}…")
        hits = {n for n, hit in zip(needles, found, strict=True) if hit}
        text_passed, text_parts = judge_needles(proof, hits.__contains__)
        passed = passed and text_passed
        parts.extend(text_parts)
    return CheckResult(passed, limit_detail(", ".join(parts)))


def _max_age(raw: Any) -> float | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return parse_duration(raw).total_seconds()
    except (ValueError, TypeError):
        return None


def _scan(path: Path, needles: list[bytes]) -> tuple[str, list[bool]]:
    """sha256 of the file and which needles occur in it, in one streaming pass."""
    digest = hashlib.sha256()
    found = [False] * len(needles)
    keep = max((len(n) for n in needles), default=1) - 1
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            window = tail + chunk
            for i, needle in enumerate(needles):
                if not found[i] and needle in window:
                    found[i] = True
            tail = window[-keep:] if keep else b""
    return digest.hexdigest(), found


# -- commits ----------------------------------------------------------------------------------


async def check_commit(value: str, proof: Mapping[str, Any]) -> CheckResult:
    """The commit exists in a local repository (`git cat-file -e`), and optionally is on
    a branch (`git merge-base --is-ancestor`). The caller's timeout bounds it; a git that
    runs past it is killed."""
    try:
        repo, sha = commit_target(value, proof)
    except InvalidInput as error:
        return CheckResult(False, error.problem, True)
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return CheckResult(
            False, "remote repositories are not checked; give the path of a local clone", True
        )
    path = await asyncio.to_thread(file_path, repo)
    if not await asyncio.to_thread(path.is_dir):
        return CheckResult(False, f"repository {quote(repo)} not found")
    code, output = await _git(path, ["cat-file", "-e", f"{sha}^{{commit}}"])
    if code != 0:
        if "not a git repository" in output.lower():
            return CheckResult(False, f"{quote(repo)} is not a git repository")
        return CheckResult(False, f"commit {sha[:12]} not found")
    parts = [f"commit {sha[:12]} present"]
    branch = proof.get("branch")
    if branch:
        code, _ = await _git(path, ["merge-base", "--is-ancestor", sha, str(branch)])
        if code != 0:
            parts.append(f"not on {quote(str(branch))}")
            return CheckResult(False, ", ".join(parts))
        parts.append(f"on {quote(str(branch))}")
    return CheckResult(True, ", ".join(parts))


async def _git(repo: Path, args: list[str]) -> tuple[int, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    process = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(repo),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        output, _ = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return process.returncode or 0, output.decode("utf-8", errors="replace")
