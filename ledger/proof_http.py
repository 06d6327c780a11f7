"""URL proof checks: HTTP/1.1 through httpcore behind a deny list.

Every hop of a redirect chain connects through `GuardedBackend`, so the host name and
*every* address it resolves to are checked against the deny list right before connecting,
and the connection goes to the address that was checked (no second lookup a rebinding DNS
server could answer differently). No proxy from the environment is used; redirects are
followed up to a limit; bodies are read up to a size cap.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from ledger.proof_checks import (
    DEFAULT_DENY,
    CheckLimits,
    CheckResult,
    as_list,
    judge_needles,
    limit_detail,
    quote,
    seconds,
    shorten,
    size,
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class Denied(Exception):
    """A host the deny list forbids (raised by the guarded backend before connecting)."""


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
            if address in _NAT64:  # 64:ff9b::a9fe:a9fe reaches 169.254.169.254
                candidates.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return any(
            c in net for c in candidates for net in self.networks if c.version == net.version
        )


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


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


def make_pool(deny: DenyList, concurrency: int) -> httpcore.AsyncConnectionPool:
    return httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(),
        max_connections=concurrency,
        retries=0,
        network_backend=GuardedBackend(deny),
    )


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
        return CheckResult(False, f"not a URL: {shorten(str(error))}", True)
    hops = 0
    while True:
        problem = _url_problem(url)
        if problem:
            return CheckResult(
                False,
                problem + (f" (after {hops} redirect{'s' if hops != 1 else ''})" if hops else ""),
                True,
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
            return CheckResult(False, f"timed out after {seconds(limits.timeout)}")
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError, ssl.SSLError) as error:
            return CheckResult(False, _connection_problem(error))
        if oversized:
            return CheckResult(False, f"{status}, body over {size(limits.max_bytes)}")
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
    text_passed, text_parts = judge_needles(proof, text.__contains__)
    passed = passed and text_passed
    parts.extend(text_parts)
    for header in as_list(proof.get("expect_header")):
        name, sep, want = header.partition(":")
        name, want = name.strip(), want.strip()
        values = headers.get(name.lower())
        if values is None:
            passed = False
            parts.append(f"header {name} missing")
        elif sep and want and not any(want in v for v in values):
            passed = False
            parts.append(f"header {name} is {quote(', '.join(values))}")
        else:
            parts.append(f"header {name} ok")
    return CheckResult(passed, limit_detail(", ".join(parts)))


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
        return f"TLS certificate problem: {shorten(text)}"
    return f"cannot connect: {shorten(text)}"
