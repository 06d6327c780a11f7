"""`tasktrail discord invite-url` as a user runs it: a subprocess, exact scopes and bits."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

TASKTRAIL = [sys.executable, "-m", "bot"]


def invite(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "DISCORD_"))}
    return subprocess.run(
        [*TASKTRAIL, "discord", "invite-url", *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_invite_url_asks_for_exactly_the_scopes_and_permissions_the_bot_uses() -> None:
    result = invite("--client-id", "123456789012345678")
    assert result.returncode == 0, result.stderr
    url = urlsplit(result.stdout.strip())
    query = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://discord.com/oauth2/authorize"
    assert query["client_id"] == ["123456789012345678"]
    assert query["scope"] == ["bot applications.commands"]
    bits = int(query["permissions"][0])
    wanted = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 38)
    assert bits == wanted  # view, send, embed links, read history, send in threads
    assert not bits & (1 << 17)  # never "mention @everyone"
    assert not bits & (1 << 3)  # never Administrator


def test_the_application_id_is_derived_from_the_bot_token() -> None:
    head = base64.b64encode(b"987654321098765432").decode().rstrip("=")
    result = invite(DISCORD_BOT_TOKEN=f"{head}.GhIjKl.secret-part")
    assert result.returncode == 0, result.stderr
    assert "client_id=987654321098765432" in result.stdout


def test_without_any_application_id_it_says_what_to_set() -> None:
    result = invite()
    assert result.returncode == 2
    assert "--client-id" in result.stderr
    assert "DISCORD_CLIENT_ID" in result.stderr
