"""The proof checks themselves: what one artifact's check finds, and running many.

Each check turns one artifact and its expectations into a `CheckResult` (passed or not, a
short detail such as "200, 'canonical' found, 'checkout' missing", and whether retrying could
help). `run_checks` runs them concurrently (at most `concurrency` at a time), each under a
hard timeout, from any thread. URL checks live in `ledger.proof_http`, file and commit checks
in `ledger.proof_local`; expectations are validated here when an artifact is added.

Details quote response content (header values) and producers' needles: they are untrusted
text, stored as given; surfaces escape them.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ledger.config import LedgerConfig
from ledger.exceptions import InvalidInput
from ledger.status import ArtifactKind
from ledger.timeutil import parse_duration

T = TypeVar("T")

#: Denied unless `TASKTRAIL_PROOF_DENY` says otherwise: link-local networks and the cloud
#: metadata endpoints (AWS, GCP, Alibaba). Loopback and private networks stay allowed.
DEFAULT_DENY: tuple[str, ...] = (
    "169.254.0.0/16",
    "fe80::/10",
    "169.254.169.254",
    "fd00:ec2::254",
    "metadata.google.internal",
    "100.100.100.200",
)

_HEX = re.compile(r"^[0-9a-fA-F]{4,64}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_NEEDLE_SHOWN = 40
DETAIL_MAX = 500

#: Expectation keys each kind of check understands.
HTTP_KEYS = frozenset({"expect_status", "expect_text", "forbid_text", "expect_header"})
FILE_KEYS = frozenset({"exists", "sha256", "max_age", "expect_text", "forbid_text"})
COMMIT_KEYS = frozenset({"exists", "repo", "branch"})
ALL_KEYS = HTTP_KEYS | FILE_KEYS | COMMIT_KEYS


@dataclass(frozen=True, slots=True)
class CheckResult:
    passed: bool
    detail: str
    #: Retrying cannot help (denied host, unsupported scheme, nothing to check against).
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class CheckRequest:
    kind: str
    value: str
    proof: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CheckLimits:
    timeout: float = 10.0
    concurrency: int = 8
    max_redirects: int = 5
    max_bytes: int = 1_048_576
    deny: tuple[str, ...] = DEFAULT_DENY

    @classmethod
    def from_config(cls, config: LedgerConfig) -> CheckLimits:
        return cls(
            timeout=max(0.01, config.proof_timeout.total_seconds()),
            concurrency=max(1, config.proof_concurrency),
            max_redirects=max(0, config.proof_max_redirects),
            max_bytes=max(1, config.proof_max_bytes),
            deny=DEFAULT_DENY if config.proof_deny is None else tuple(config.proof_deny),
        )


# -- expectations -----------------------------------------------------------------------------


def _texts(value: Any, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"proof.{field}", "must be a text or a non-empty list of texts")
    for item in items:
        if not isinstance(item, str) or not item:
            raise InvalidInput(f"proof.{field}", "each entry must be non-empty text")
        if len(item) > 1000:
            raise InvalidInput(f"proof.{field}", "each entry may be at most 1,000 characters")
    return list(items)


def validate_expectations(kind: str, value: str, proof: Mapping[str, Any]) -> dict[str, Any]:
    """Check a producer's proof expectations and return them normalized; raises InvalidInput
    naming the bad key. Which keys apply depends on what the artifact is."""
    unknown = sorted(set(proof) - ALL_KEYS)
    if unknown:
        known = ", ".join(sorted(ALL_KEYS))
        raise InvalidInput(f"proof.{unknown[0]}", f"is not a known expectation ({known})")
    method = check_method(kind, value)
    if method == "none":
        raise InvalidInput(
            "value", f"a {kind} artifact with proof expectations must be a URL or a file path"
        )
    scheme = value.strip().partition(":")[0].lower() if "://" in value else ""
    if method == "http" and scheme not in ("http", "https"):
        raise InvalidInput("value", f"proof checks fetch http and https URLs only, not {value!r}")
    allowed = {"http": HTTP_KEYS, "file": FILE_KEYS, "commit": COMMIT_KEYS}.get(method, ALL_KEYS)
    misplaced = sorted(set(proof) - allowed)
    if misplaced:
        raise InvalidInput(
            f"proof.{misplaced[0]}", f"does not apply to a {kind} artifact checked as {method}"
        )
    out: dict[str, Any] = {}
    for key, raw in proof.items():
        if key == "expect_status":
            if isinstance(raw, bool) or not isinstance(raw, int) or not 100 <= raw <= 599:
                raise InvalidInput("proof.expect_status", f"{raw!r} is not an HTTP status")
            out[key] = raw
        elif key in ("expect_text", "forbid_text"):
            _texts(raw, key)
            out[key] = raw
        elif key == "expect_header":
            headers = _texts(raw, key)
            for header in headers:
                name = header.partition(":")[0].strip()
                if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                    raise InvalidInput("proof.expect_header", f"{header!r} is not 'Name: value'")
            out[key] = raw
        elif key == "sha256":
            if not isinstance(raw, str) or not _SHA256.match(raw):
                raise InvalidInput("proof.sha256", "must be 64 hexadecimal characters")
            out[key] = raw.lower()
        elif key == "max_age":
            if isinstance(raw, bool):
                raise InvalidInput("proof.max_age", f"{raw!r} is not a duration")
            try:
                parse_duration(raw)
            except (ValueError, TypeError):
                raise InvalidInput("proof.max_age", f"{raw!r} is not a duration") from None
            out[key] = raw
        elif key == "exists":
            if raw is not True:
                raise InvalidInput("proof.exists", "must be true")
            out[key] = True
        elif key in ("repo", "branch"):
            if not isinstance(raw, str) or not raw.strip() or raw.startswith("-"):
                raise InvalidInput(f"proof.{key}", "must be a path or name, not an option")
            out[key] = raw
    if method == "commit":
        commit_target(value, out)  # raises when neither value nor proof names a repository
    return out


def check_method(kind: str, value: str) -> str:
    """How an artifact is checked: `http`, `file`, `commit`, or `none`."""
    if kind == ArtifactKind.COMMIT:
        return "commit"
    if kind == ArtifactKind.URL:
        return "http"
    if kind == ArtifactKind.FILE:
        return "file"
    lowered = value.strip().lower()
    if lowered.startswith(("http://", "https://")):
        return "http"
    if lowered.startswith("file://") or value.startswith(("/", "~", "./", "../")):
        return "file"
    return "none"


def commit_target(value: str, proof: Mapping[str, Any]) -> tuple[str, str]:
    repo, sep, sha = value.strip().rpartition("@")
    if not sep or not _HEX.match(sha):
        repo, sha = "", value.strip()
    repo = str(proof.get("repo") or repo)
    if not _HEX.match(sha):
        raise InvalidInput("value", f"{value!r} is not a commit (hex sha, or /path/to/repo@sha)")
    if not repo:
        raise InvalidInput("proof.repo", "name the repository (/path/to/repo@sha or proof.repo)")
    return repo, sha


# -- running checks ---------------------------------------------------------------------------


def run_checks(
    requests: Sequence[CheckRequest], limits: CheckLimits, now: datetime
) -> list[CheckResult]:
    """Run every check (at most `limits.concurrency` at a time, each within
    `limits.timeout`) and return the results in order. Safe to call from any thread; when
    the calling thread already runs an event loop, the checks run on a helper thread."""
    if not requests:
        return []
    return _run_coroutine(lambda: _run_all(requests, limits, now))


def _run_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as error:  # handed to the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="tasktrail-proof", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _run_all(
    requests: Sequence[CheckRequest], limits: CheckLimits, now: datetime
) -> list[CheckResult]:
    from ledger.proof_http import DenyList, make_pool

    deny = DenyList.parse(limits.deny)
    gate = asyncio.Semaphore(limits.concurrency)
    pool = make_pool(deny, limits.concurrency)

    async def one(request: CheckRequest) -> CheckResult:
        async with gate:
            try:
                async with asyncio.timeout(limits.timeout):
                    return await _check(request, limits, deny, pool, now)
            except TimeoutError:
                return CheckResult(False, f"timed out after {seconds(limits.timeout)}")
            except Exception as error:  # one broken check must not sink the others
                return CheckResult(False, f"check failed: {shorten(str(error) or repr(error))}")

    try:
        return list(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        await pool.aclose()


async def _check(
    request: CheckRequest,
    limits: CheckLimits,
    deny: Any,
    pool: Any,
    now: datetime,
) -> CheckResult:
    from ledger.proof_http import check_url
    from ledger.proof_local import check_commit, check_file

    method = check_method(request.kind, request.value)
    proof = request.proof
    if method == "http":
        return await check_url(request.value, proof, limits, deny, pool)
    if method == "file":
        return await asyncio.to_thread(check_file, request.value, proof, now)
    if method == "commit":
        return await check_commit(request.value, proof)
    return CheckResult(
        False, f"cannot check a {request.kind} artifact that is not a URL or file path", True
    )


def judge_needles(
    proof: Mapping[str, Any], occurs: Callable[[str], bool]
) -> tuple[bool, list[str]]:
    """`expect_text` entries must occur, `forbid_text` entries must not."""
    passed = True
    parts: list[str] = []
    for needle in as_list(proof.get("expect_text")):
        if occurs(needle):
            parts.append(f"{quote(needle)} found")
        else:
            passed = False
            parts.append(f"{quote(needle)} missing")
    for needle in as_list(proof.get("forbid_text")):
        if occurs(needle):
            passed = False
            parts.append(f"{quote(needle)} present")
        else:
            parts.append(f"{quote(needle)} absent")
    return passed, parts


# -- wording ----------------------------------------------------------------------------------


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def flat(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def shorten(text: str, limit: int = 120) -> str:
    one_line = flat(text)
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def quote(text: str) -> str:
    return "'" + shorten(text, _NEEDLE_SHOWN) + "'"


def limit_detail(text: str) -> str:
    return shorten(text, DETAIL_MAX)


def size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    return f"{value:.1f} GiB".replace(".0 ", " ")


def seconds(value: float) -> str:
    return f"{value:g}s"
