"""The Slack app manifest for a real workspace (`tasktrail slack manifest --url URL`).

Paste the printed YAML/JSON into https://api.slack.com/apps → Create New App → From a
manifest. Scopes are exactly what the adapter calls: slash command, posting and updating
its own messages (with metadata), reading thread replies to find already-posted notices,
opening DMs for the fallback route, user-group membership for admin groups, App Home.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

BOT_SCOPES = (
    "app_mentions:read",  # @tasktrail follow REF in a thread
    "channels:history",  # find an already-posted notice in a public thread (crash recovery)
    "groups:history",  # ... and in a private one
    "im:history",  # ... and in the DM fallback
    "chat:write",  # post notices, anchors and boards
    "commands",  # /tasks
    "im:write",  # conversations.open for the DM fallback route
    "usergroups:read",  # TASKTRAIL_ADMINS slack-group:S... membership
)
BOT_EVENTS = ("app_mention", "app_home_opened")


def build_manifest(
    url: str | None,
    *,
    socket_mode: bool = False,
    name: str = "tasktrail",
    command: str = "/tasks",
) -> dict[str, Any]:
    """The manifest as a dict. `url` is the public base URL of `tasktrail serve` (HTTP
    mode); with `socket_mode` no public URL is needed."""
    events_url: str | None = None
    if not socket_mode:
        if not url:
            raise ValueError("--url is required unless --socket-mode is given")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL like https://tasks.example.com")
        events_url = url.rstrip("/") + "/slack/events"
    slash: dict[str, Any] = {
        "command": command,
        "description": "Background tasks: board, show, cancel, notify, follow",
        "usage_hint": "[all|mine|running|failed|lost|queued|runtime:R] | show REF | cancel REF",
        "should_escape": False,
    }
    if events_url:
        slash["url"] = events_url
    interactivity: dict[str, Any] = {"is_enabled": True}
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    if events_url:
        interactivity["request_url"] = events_url
        events["request_url"] = events_url
    return {
        "display_information": {
            "name": name,
            "description": "A ledger and /tasks board for background work",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": False,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": [slash],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket_mode,
            "token_rotation_enabled": False,
        },
    }
