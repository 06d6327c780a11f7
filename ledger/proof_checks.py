"""The proof checks themselves: fetch a URL, look up a commit, inspect a file.

Each check turns one artifact and its expectations into a `CheckResult` (passed or not, a
short detail such as "200, 'canonical' found, 'checkout' missing", and whether retrying could
help). Checks run concurrently (bounded), each under a hard timeout.

URL checks speak HTTP/1.1 through httpcore with a guarded network backend: every hop of a
redirect chain is connected through it, so the host name and *every* address it resolves to
are checked against the deny list right before connecting, and the connection goes to the
address that was checked (no second lookup a rebinding DNS server could answer differently).
No proxy from the environment is used. Bodies are read up to a size cap.

Details quote response content (header values) and producers' needles: they are untrusted
text, stored as given; surfaces escape them.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import ipaddress
import os
import re
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpcore
import httpx

from ledger.config import LedgerConfig
from ledger.exceptions import InvalidInput
from ledger.status import ArtifactKind
from ledger.timeutil import humanize_age, parse_duration

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
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
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


class Denied(Exception):
    """A host the deny list forbids (raised by the guarded backend before connecting)."""


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
        _commit_target(value, out)  # raises when neither value nor proof names a repository
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


def _commit_target(value: str, proof: Mapping[str, Any]) -> tuple[str, str]:
    repo, sep, sha = value.strip().rpartition("@")
    if not sep or not _HEX.match(sha):
        repo, sha = "", value.strip()
    repo = str(proof.get("repo") or repo)
    if not _HEX.match(sha):
        raise InvalidInput("value", f"{value!r} is not a commit (hex sha, or /path/to/repo@sha)")
    if not repo:
        raise InvalidInput("proof.repo", "name the repository (/path/to/repo@sha or proof.repo)")
    return repo, sha


# -- deny list --------------------------------------------------------------------------------

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class DenyList:
    """Networks (`169.254.0.0/16`, `fe80::/10`), addresses, host names, and name suffixes
    (`.internal` or `*.internal`). The entry `default` stands for `DEFAULT_DENY`, so
    `TASKTRAIL_PROOF_DENY=default,10.0.0.0/8` adds to the built-in list instead of
    replacing it."""

    networks: tuple[IPNetwork, ...]
    hosts: frozenset[str]
    suffixes: tuple[str, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> DenyList:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        expanded: list[str] = []
        for raw in entries:
            expanded.extend(DEFAULT_DENY if raw.strip().lower() == "default" else [raw])
        for raw in expanded:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if entry.startswith(("*.", ".")):
                suffixes.append("." + entry.lstrip("*."))
            else:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), tuple(suffixes))

    def host_denied(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(s) or name == s[1:] for s in self.suffixes)

    def address_denied(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                candidates.append(address.ipv4_mapped)
            if address.sixtofour is not None:
                candidates.append(address.sixtofour)
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


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
    deny = DenyList.parse(limits.deny)
    gate = asyncio.Semaphore(limits.concurrency)
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(),
        max_connections=limits.concurrency,
        retries=0,
        network_backend=GuardedBackend(deny),
    )

    async def one(request: CheckRequest) -> CheckResult:
        async with gate:
            try:
                async with asyncio.timeout(limits.timeout):
                    return await _check(request, limits, deny, pool, now)
            except TimeoutError:
                return CheckResult(False, f"timed out after {_seconds(limits.timeout)}")
            except Exception as error:  # one broken check must not sink the others
                return CheckResult(False, f"check failed: {_shorten(str(error) or repr(error))}")

    try:
        return list(await asyncio.gather(*(one(r) for r in requests)))
    finally:
        await pool.aclose()


async def _check(
    request: CheckRequest,
    limits: CheckLimits,
    deny: DenyList,
    pool: Any,
    now: datetime,
) -> CheckResult:
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


# -- HTTP -------------------------------------------------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that refuses denied hosts and addresses, and connects to
    the very address it checked."""

    def __init__(self, deny: DenyList) -> None:
        self.deny = deny
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        addresses = await resolve_allowed(host, port, self.deny)
        problem = "no address"
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectTimeout:
                raise
            except (httpcore.ConnectError, OSError) as error:  # try the next address
                problem = _connection_problem(error)
        raise httpcore.ConnectError(problem)

    async def connect_unix_socket(self, *_args: Any, **_kwargs: Any) -> Any:
        raise Denied("unix sockets are not checked")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def resolve_allowed(host: str, port: int, deny: DenyList) -> list[IPAddress]:
    """Every address `host` stands for, or `Denied` when the name or any address is denied."""
    if deny.host_denied(host):
        raise Denied(f"{host} is in the deny list")
    literal = _literal_ip(host)
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise OSError(f"cannot resolve {host}: {error.strerror or error}") from None
        found = []
        for info in infos:
            address = _literal_ip(str(info[4][0]))
            if address is not None and address not in found:
                found.append(address)
        if not found:
            raise OSError(f"cannot resolve {host}")
    for address in found:
        if deny.address_denied(address):
            shown = host if literal is not None else f"{host} ({address})"
            raise Denied(f"{shown} is in the deny list")
    return found


def _url_problem(url: Any) -> str | None:
    if url.scheme not in ("http", "https"):
        return f"only http and https URLs are checked, not {url.scheme or 'no scheme'!r}"
    if not url.host:
        return "the URL names no host"
    return None


async def check_url(
    value: str, proof: Mapping[str, Any], limits: CheckLimits, deny: DenyList, pool: Any
) -> CheckResult:
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        return CheckResult(False, f"not a URL: {_shorten(str(error))}", True)
    hops = 0
    while True:
        problem = _url_problem(url)
        if problem:
            return CheckResult(
                False, problem + (f" (after {hops} redirects)" if hops else ""), True
            )
        target = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        headers = [
            (b"Host", url.netloc),
            (b"User-Agent", b"tasktrail-proof/1"),
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"identity"),
            (b"Connection", b"close"),
        ]
        timeouts = {
            "connect": limits.timeout,
            "read": limits.timeout,
            "write": limits.timeout,
            "pool": limits.timeout,
        }
        try:
            async with pool.stream(
                "GET", target, headers=headers, extensions={"timeout": timeouts}
            ) as response:
                status: int = response.status
                response_headers = _headers(response.headers)
                location = response_headers.get("location")
                if status in _REDIRECTS and location:
                    hops += 1
                    if hops > limits.max_redirects:
                        return CheckResult(
                            False, f"{status}, more than {limits.max_redirects} redirects"
                        )
                    try:
                        url = url.join(location[0])
                    except (httpx.InvalidURL, ValueError):
                        return CheckResult(False, f"{status}, bad redirect location")
                    continue
                body, oversized = await _read_capped(response, limits.max_bytes)
        except Denied as denied:
            return CheckResult(False, f"denied: {denied}", True)
        except httpcore.TimeoutException:
            return CheckResult(False, f"timed out after {_seconds(limits.timeout)}")
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError, ssl.SSLError) as error:
            return CheckResult(False, _connection_problem(error))
        if oversized:
            return CheckResult(False, f"{status}, body over {_size(limits.max_bytes)}")
        text = _decode(body, response_headers.get("content-type", [""])[0])
        return _judge_response(status, hops, response_headers, text, proof)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in raw:
        out.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1").strip())
    return out


async def _read_capped(response: Any, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_stream():
        size += len(chunk)
        if size > cap:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False


def _decode(body: bytes, content_type: str) -> str:
    match = re.search(r"charset=[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    encoding = "utf-8"
    if match:
        try:
            encoding = codecs.lookup(match.group(1)).name
        except LookupError:
            encoding = "utf-8"
    return body.decode(encoding, errors="replace")


def _judge_response(
    status: int,
    hops: int,
    headers: Mapping[str, list[str]],
    text: str,
    proof: Mapping[str, Any],
) -> CheckResult:
    passed = True
    first = str(status)
    if hops:
        first += f" after {hops} redirect{'s' if hops != 1 else ''}"
    parts = [first]
    expected = proof.get("expect_status")
    if expected is not None and status != expected:
        passed = False
        parts[0] += f" (expected {expected})"
    elif expected is None and not 200 <= status < 300:
        passed = False
        parts[0] += " (expected 2xx)"
    text_passed, text_parts = _judge_needles(proof, text.__contains__)
    passed = passed and text_passed
    parts.extend(text_parts)
    for header in _as_list(proof.get("expect_header")):
        name, sep, want = header.partition(":")
        name, want = name.strip(), want.strip()
        values = headers.get(name.lower())
        if values is None:
            passed = False
            parts.append(f"header {name} missing")
        elif sep and want and not any(want in v for v in values):
            passed = False
            parts.append(f"header {name} is {_quote(', '.join(values))}")
        else:
            parts.append(f"header {name} ok")
    return CheckResult(passed, _limit(", ".join(parts)))


def _judge_needles(
    proof: Mapping[str, Any], occurs: Callable[[str], bool]
) -> tuple[bool, list[str]]:
    """`expect_text` entries must occur, `forbid_text` entries must not."""
    passed = True
    parts: list[str] = []
    for needle in _as_list(proof.get("expect_text")):
        if occurs(needle):
            parts.append(f"{_quote(needle)} found")
        else:
            passed = False
            parts.append(f"{_quote(needle)} missing")
    for needle in _as_list(proof.get("forbid_text")):
        if occurs(needle):
            passed = False
            parts.append(f"{_quote(needle)} present")
        else:
            parts.append(f"{_quote(needle)} absent")
    return passed, parts


def _connection_problem(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    lowered = text.lower()
    seen: list[BaseException] = [error]
    for cause in seen:  # the exception's causes and contexts, breadth first
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        for link in (cause.__cause__, cause.__context__):
            if link is not None and link not in seen and len(seen) < 12:
                seen.append(link)
    if "refused" in lowered:
        return "connection refused"
    if lowered.startswith(("cannot connect", "connection refused", "tls certificate")):
        return text
    if "certificate" in lowered:
        return f"TLS certificate problem: {_shorten(text)}"
    return f"cannot connect: {_shorten(text)}"


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
        return CheckResult(False, f"cannot read: {_shorten(error.strerror or str(error))}")
    if not path.is_file():
        return CheckResult(False, "not a regular file")
    passed = True
    parts = [f"present, {_size(stat.st_size)}"]
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
    needles = _as_list(proof.get("expect_text")) + _as_list(proof.get("forbid_text"))
    if want_sha or needles:
        try:
            digest, found = _scan(path, [n.encode() for n in needles])
        except OSError as error:
            return CheckResult(False, f"cannot read: {_shorten(error.strerror or str(error))}")
        if want_sha:
            if digest == want_sha:
                parts.append("sha256 ok")
            else:
                passed = False
                parts.append(f"sha256 is {digest[:12]}…, expected {str(want_sha)[:12]}…")
        hits = {n for n, hit in zip(needles, found, strict=True) if hit}
        text_passed, text_parts = _judge_needles(proof, hits.__contains__)
        passed = passed and text_passed
        parts.extend(text_parts)
    return CheckResult(passed, _limit(", ".join(parts)))


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
        repo, sha = _commit_target(value, proof)
    except InvalidInput as error:
        return CheckResult(False, error.problem, True)
    if "://" in repo or re.match(r"^[\w.-]+@[\w.-]+:", repo):
        return CheckResult(
            False, "remote repositories are not checked; give the path of a local clone", True
        )
    path = await asyncio.to_thread(file_path, repo)
    if not await asyncio.to_thread(path.is_dir):
        return CheckResult(False, f"repository {_quote(repo)} not found")
    code, output = await _git(path, ["cat-file", "-e", f"{sha}^{{commit}}"])
    if code != 0:
        if "not a git repository" in output.lower():
            return CheckResult(False, f"{_quote(repo)} is not a git repository")
        return CheckResult(False, f"commit {sha[:12]} not found")
    parts = [f"commit {sha[:12]} present"]
    branch = proof.get("branch")
    if branch:
        code, _ = await _git(path, ["merge-base", "--is-ancestor", sha, str(branch)])
        if code != 0:
            parts.append(f"not on {_quote(str(branch))}")
            return CheckResult(False, ", ".join(parts))
        parts.append(f"on {_quote(str(branch))}")
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


# -- wording ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _flat(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _shorten(text: str, limit: int = 120) -> str:
    flat = _flat(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _quote(text: str) -> str:
    return "'" + _shorten(text, _NEEDLE_SHOWN) + "'"


def _limit(text: str) -> str:
    return _shorten(text, DETAIL_MAX)


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    return f"{value:.1f} GiB".replace(".0 ", " ")


def _seconds(value: float) -> str:
    return f"{value:g}s"


__all__ = [
    "DEFAULT_DENY",
    "CheckLimits",
    "CheckRequest",
    "CheckResult",
    "DenyList",
    "check_method",
    "run_checks",
    "validate_expectations",
]
