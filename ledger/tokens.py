"""API tokens: each belongs to one tenant. The secret is shown once when created; only its
sha256 is stored, so a copy of the database grants nothing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from ledger import db
from ledger.exceptions import InvalidInput, LedgerError
from ledger.ids import new_token
from ledger.schema import api_tokens_table
from ledger.text import check_text
from ledger.timeutil import isoformat

K = api_tokens_table.c
#: Prefix of every secret this module issues, so leaked tokens are easy to grep for.
TOKEN_PREFIX = "ttk_"  # noqa: S105 - a prefix, not a secret


class TokenNotFound(LedgerError):
    http_status = 404

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        super().__init__(f"no API token with id {token_id!r}")


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    tenant: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "token_id": self.token_id,
            "tenant": self.tenant,
            "name": self.name,
            "created_at": isoformat(self.created_at),
            "revoked_at": isoformat(self.revoked_at),
            "last_used_at": isoformat(self.last_used_at),
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: `secret` exists only in this object."""

    record: TokenRecord
    secret: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(engine: Engine, tenant: str, name: str | None, *, now: datetime) -> IssuedToken:
    check_text(tenant, "tenant", 200, required=True)
    check_text(name, "name", 200)
    token_id = secrets.token_hex(6)
    secret = TOKEN_PREFIX + new_token(30)
    with db.write(engine) as conn:
        conn.execute(
            insert(api_tokens_table),
            {
                "token_id": token_id,
                "tenant": tenant,
                "token_hash": hash_secret(secret),
                "name": name,
                "created_at": now,
                "revoked_at": None,
                "last_used_at": None,
            },
        )
    record = TokenRecord(token_id, tenant, name, now, None, None)
    return IssuedToken(record, secret)


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[TokenRecord]:
    query = select(
        K.token_id, K.tenant, K.name, K.created_at, K.revoked_at, K.last_used_at
    ).order_by(K.created_at, K.token_id)
    if not include_revoked:
        query = query.where(K.revoked_at.is_(None))
    with db.read(engine) as conn:
        return [TokenRecord(*row) for row in conn.execute(query).all()]


def revoke_token(engine: Engine, token_id: str, *, now: datetime) -> TokenRecord:
    with db.write(engine) as conn:
        row = conn.execute(
            select(K.token_id, K.tenant, K.name, K.created_at, K.revoked_at, K.last_used_at).where(
                K.token_id == token_id
            )
        ).first()
        if row is None:
            raise TokenNotFound(token_id)
        record = TokenRecord(*row)
        if record.revoked_at is not None:
            return record
        conn.execute(update(api_tokens_table).where(K.token_id == token_id).values(revoked_at=now))
    return TokenRecord(
        record.token_id, record.tenant, record.name, record.created_at, now, record.last_used_at
    )


def tenant_for_secret(engine: Engine, secret: str) -> str | None:
    """The tenant of a live (not revoked) token with this secret, or None."""
    if not secret or len(secret) > 512:
        return None
    with db.read(engine) as conn:
        row = conn.execute(
            select(K.tenant).where(K.token_hash == hash_secret(secret), K.revoked_at.is_(None))
        ).first()
    return None if row is None else str(row[0])


def parse_static_tokens(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`TASKTRAIL_API_TOKENS` pairs (tenant, secret) -> {sha256(secret): tenant}."""
    table: dict[str, str] = {}
    for tenant, secret in pairs:
        if not tenant or not secret:
            raise InvalidInput("api_tokens", "each entry must be tenant:token")
        table[hash_secret(secret)] = tenant
    return table


def match_static(table: dict[str, str], secret: str) -> str | None:
    digest = hash_secret(secret)
    for known, tenant in table.items():
        if hmac.compare_digest(known, digest):
            return tenant
    return None
