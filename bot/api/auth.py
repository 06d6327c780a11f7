"""Bearer tokens -> tenant. Static tokens come from `TASKTRAIL_API_TOKENS`; the rest from
`tasktrail token create` (sha256 in the database). Lookups are cached briefly, so a revoked
token stops working within `ttl` seconds."""

from __future__ import annotations

import threading
import time

from ledger.ledger import Ledger
from ledger.tokens import hash_secret, match_static, parse_static_tokens, tenant_for_secret


class Unauthorized(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class TokenAuth:
    def __init__(
        self, ledger: Ledger, static: tuple[tuple[str, str], ...] = (), ttl: float = 5.0
    ) -> None:
        self.ledger = ledger
        self.static = parse_static_tokens(static)
        self.ttl = ttl
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def tenant_for_header(self, header: str | None) -> str:
        if not header:
            raise Unauthorized("missing Authorization: Bearer <token> header")
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        tenant = self.tenant_for_secret(secret)
        if tenant is None:
            raise Unauthorized("invalid or revoked API token")
        return tenant

    def tenant_for_secret(self, secret: str) -> str | None:
        tenant = match_static(self.static, secret)
        if tenant is not None:
            return tenant
        digest = hash_secret(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        tenant = tenant_for_secret(self.ledger.engine, secret)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, tenant)
        return tenant
