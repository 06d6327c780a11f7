"""`tasktrail discord invite-url`: the OAuth2 link that adds the bot to a server."""

from __future__ import annotations

import base64
import binascii
import os
from urllib.parse import urlencode

import click

#: Exactly what the bot uses, nothing more:
#:   bot                   - join the server as a bot user (posts notices, boards)
#:   applications.commands - register the `/tasks` app commands
SCOPES = ("bot", "applications.commands")

#: Permission bits (https://discord.com/developers/docs/topics/permissions):
VIEW_CHANNEL = 1 << 10  # see the channels it posts boards and notices into
SEND_MESSAGES = 1 << 11  # post notices at a channel's top level (fallback route, digests)
EMBED_LINKS = 1 << 14  # notices and boards are embeds
READ_MESSAGE_HISTORY = 1 << 16  # find an already-posted notice after a crash (no double post)
SEND_MESSAGES_IN_THREADS = 1 << 38  # post completions into the requester's thread
PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY | SEND_MESSAGES_IN_THREADS
)
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"


def application_id_from_token(token: str) -> str | None:
    """A bot token's first part is the bot's user id (= the application id), base64-encoded."""
    head = token.strip().split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded if decoded.isdigit() else None


def invite_url(client_id: str, guild_id: str | None = None) -> str:
    query = {"client_id": client_id, "scope": " ".join(SCOPES), "permissions": str(PERMISSIONS)}
    if guild_id:
        query["guild_id"] = guild_id
    return f"{AUTHORIZE_URL}?{urlencode(query)}"


@click.group("discord")
def discord_group() -> None:
    """Discord setup helpers."""


@discord_group.command("invite-url")
@click.option(
    "--client-id",
    metavar="ID",
    help="Application id (default: DISCORD_CLIENT_ID, else derived from DISCORD_BOT_TOKEN).",
)
@click.option("--guild", "guild_id", metavar="ID", help="Preselect this server in the dialog.")
def invite_url_cmd(client_id: str | None, guild_id: str | None) -> None:
    """Print the OAuth2 URL that adds the bot with exactly the scopes and permissions it needs."""
    client_id = client_id or os.environ.get("DISCORD_CLIENT_ID")
    if not client_id:
        token = os.environ.get("DISCORD_BOT_TOKEN", "")
        client_id = application_id_from_token(token) if token else None
    if not client_id or not client_id.isdigit():
        raise click.UsageError(
            "no application id: pass --client-id, or set DISCORD_CLIENT_ID or DISCORD_BOT_TOKEN"
        )
    if guild_id is not None and not guild_id.isdigit():
        raise click.BadParameter("a server id is a number", param_hint="--guild")
    click.echo(invite_url(client_id, guild_id))
