"""`tasktrail token create|list|revoke`: API tokens, each mapped to one tenant."""

from __future__ import annotations

import click

from bot.cli.main import Context
from bot.cli.output import emit_json
from ledger.tokens import create_token, list_tokens, revoke_token

pass_ctx = click.make_pass_decorator(Context)


@click.group("token")
def token_cmd() -> None:
    """API tokens for the HTTP API (each belongs to one tenant)."""


@token_cmd.command("create")
@click.option("--tenant", required=True, help="The tenant this token may see and write.")
@click.option("--name", help="A note saying who or what uses the token.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def create(obj: Context, tenant: str, name: str | None, as_json: bool) -> None:
    """Create a token. The secret is printed once; only its hash is stored."""
    ledger = obj.ledger
    issued = create_token(ledger.engine, tenant, name, now=ledger.clock())
    if as_json:
        emit_json({"token": {**issued.record.to_json(), "secret": issued.secret}})
        return
    click.echo(issued.secret)
    click.echo(
        f"token {issued.record.token_id} for tenant {tenant!r}: store the secret above now, "
        "it is not shown again",
        err=True,
    )


@token_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def list_(obj: Context, as_json: bool) -> None:
    """List tokens (ids, tenants, names; never secrets)."""
    tokens = list_tokens(obj.ledger.engine)
    if as_json:
        emit_json({"tokens": [t.to_json() for t in tokens]})
        return
    if not tokens:
        click.echo("no API tokens (create one with: tasktrail token create --tenant NAME)")
        return
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        click.echo(f"{t.token_id}  {t.tenant:<24} {state:<24} {t.name or ''}")


@token_cmd.command("revoke")
@click.argument("token_id")
@pass_ctx
def revoke(obj: Context, token_id: str) -> None:
    """Revoke a token by its id (as `token list` shows it)."""
    record = revoke_token(obj.ledger.engine, token_id, now=obj.ledger.clock())
    click.echo(f"revoked {record.token_id} (tenant {record.tenant})")
