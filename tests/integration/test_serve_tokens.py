"""API tokens on each backend: the secret is shown once and stored only as a hash;
revoked tokens stop mapping to their tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ledger import Ledger, db
from ledger.schema import api_tokens_table
from ledger.tokens import (
    TokenNotFound,
    create_token,
    hash_secret,
    list_tokens,
    revoke_token,
    tenant_for_secret,
)
from tests.conftest import T0


def test_a_created_token_maps_to_its_tenant_and_only_its_hash_is_stored(ledger: Ledger) -> None:
    issued = create_token(ledger.engine, "acme", "ci", now=T0)
    assert issued.secret.startswith("ttk_") and len(issued.secret) > 30
    assert tenant_for_secret(ledger.engine, issued.secret) == "acme"
    assert tenant_for_secret(ledger.engine, issued.secret + "x") is None
    with db.read(ledger.engine) as conn:
        stored = [tuple(r) for r in conn.execute(select(api_tokens_table))]
    assert issued.secret not in repr(stored)
    assert hash_secret(issued.secret) in repr(stored)


def test_a_revoked_token_no_longer_authenticates(ledger: Ledger) -> None:
    keep = create_token(ledger.engine, "acme", None, now=T0)
    gone = create_token(ledger.engine, "globex", "old", now=T0)
    revoked = revoke_token(ledger.engine, gone.record.token_id, now=T0)
    assert revoked.revoked_at == T0
    assert tenant_for_secret(ledger.engine, gone.secret) is None
    assert tenant_for_secret(ledger.engine, keep.secret) == "acme"
    listed = {t.token_id: t for t in list_tokens(ledger.engine)}
    assert listed[gone.record.token_id].revoked_at == T0
    assert listed[keep.record.token_id].revoked_at is None
    with pytest.raises(TokenNotFound):
        revoke_token(ledger.engine, "nope", now=T0)
