"""What Slack sends to an app: signed HTTP bodies for slash commands, interactions and events.

The ``*_payload`` builders return the decoded payload (what a Socket Mode envelope carries); the
``*_body`` builders return the exact bytes Slack POSTs to the app's Request URL, ready for
:func:`sign_request`. Field sets follow Slack's payload references.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

TEAM_ID = "T0TASKTRL"
TEAM_DOMAIN = "tasktrail-test"
APP_ID = "A0TASKTRL"
BOT_ID = "B0TASKTRL"
BOT_USER_ID = "U0TASKBOT"
ENTERPRISE_ID: str | None = None
VERIFICATION_TOKEN = "verification-token"
DEFAULT_USER_ID = "U0ALICE"
DEFAULT_USER_NAME = "alice"
DEFAULT_CHANNEL_ID = "C0GENERAL"
DEFAULT_CHANNEL_NAME = "general"
DEFAULT_RESPONSE_URL = "https://hooks.slack.com/commands/T0TASKTRL/1/fake"

_counter = itertools.count(1)


def _trigger_id() -> str:
    return f"{next(_counter)}.{int(time.time())}.{uuid.uuid4().hex}"


def _now_ts() -> str:
    return f"{time.time():.6f}"


def sign_request(
    signing_secret: str,
    body: bytes | str,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """Headers Slack sends with ``body``: ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``.

    Bolt rejects a timestamp more than five minutes from its clock, so pass an old
    ``timestamp`` to exercise replay protection. ``Content-Type`` is JSON for a body starting
    with ``{`` and form-encoded otherwise, unless given.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(
        signing_secret.encode("utf-8"), b"v0:" + ts.encode("ascii") + b":" + raw, hashlib.sha256
    ).hexdigest()
    if content_type is None:
        is_json = raw.lstrip().startswith(b"{")
        content_type = "application/json" if is_json else "application/x-www-form-urlencoded"
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def slash_command_payload(
    command: str = "/tasks",
    text: str = "",
    *,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    response_url: str = DEFAULT_RESPONSE_URL,
    trigger_id: str | None = None,
    api_app_id: str = APP_ID,
    enterprise_id: str | None = ENTERPRISE_ID,
) -> dict[str, str]:
    """A slash command invocation as the flat string mapping Slack sends."""
    payload = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }
    if enterprise_id is not None:
        payload["enterprise_id"] = enterprise_id
        payload["enterprise_name"] = "Fake Enterprise"
    return payload


def slash_command_body(command: str = "/tasks", text: str = "", **kwargs: Any) -> bytes:
    """Form-encoded slash command body (same keywords as :func:`slash_command_payload`)."""
    return urlencode(slash_command_payload(command, text, **kwargs)).encode("utf-8")


def block_actions_payload(
    action_id: str,
    *,
    value: str | None = None,
    selected_option: dict[str, Any] | None = None,
    block_id: str = "block",
    action_type: str | None = None,
    user_id: str = DEFAULT_USER_ID,
    user_name: str = DEFAULT_USER_NAME,
    team_id: str = TEAM_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    channel_name: str = DEFAULT_CHANNEL_NAME,
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
    response_url: str = DEFAULT_RESPONSE_URL,
    trigger_id: str | None = None,
    is_ephemeral: bool = False,
    api_app_id: str = APP_ID,
) -> dict[str, Any]:
    """A ``block_actions`` interaction: a button (``value``) or menu (``selected_option``).

    With ``message`` (e.g. one read back from the fake) the container is that message; with
    ``view`` (an App Home or modal) the container is the view and, as in Slack, there is no
    channel, message or ``response_url``.
    """
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id,
        "type": action_type or ("overflow" if selected_option is not None else "button"),
        "action_ts": _now_ts(),
    }
    if value is not None:
        action["value"] = value
    if selected_option is not None:
        action["selected_option"] = selected_option
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action],
    }
    if view is not None:
        view_id = view.get("id", "V0FAKEVIEW")
        payload["container"] = {"type": "view", "view_id": view_id}
        payload["view"] = view
        return payload
    message = message or {"type": "message", "ts": _now_ts(), "text": "", "user": BOT_USER_ID}
    payload["container"] = {
        "type": "message",
        "message_ts": message["ts"],
        "channel_id": channel_id,
        "is_ephemeral": is_ephemeral,
    }
    if "thread_ts" in message:
        payload["container"]["thread_ts"] = message["thread_ts"]
    payload["channel"] = {"id": channel_id, "name": channel_name}
    payload["message"] = message
    payload["response_url"] = response_url
    return payload


def block_actions_body(action_id: str, **kwargs: Any) -> bytes:
    """Form body ``payload=<json>`` (same keywords as :func:`block_actions_payload`)."""
    payload = block_actions_payload(action_id, **kwargs)
    return urlencode({"payload": json.dumps(payload)}).encode("utf-8")


def event_callback(
    event: dict[str, Any], *, team_id: str = TEAM_ID, api_app_id: str = APP_ID
) -> dict[str, Any]:
    """Wrap an event in the Events API ``event_callback`` envelope."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def app_mention_event_payload(
    text: str = "",
    *,
    user_id: str = DEFAULT_USER_ID,
    channel_id: str = DEFAULT_CHANNEL_ID,
    ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = TEAM_ID,
    bot_user_id: str = BOT_USER_ID,
) -> dict[str, Any]:
    """``app_mention`` event callback; the text is ``<@BOT> {text}``."""
    ts = ts or _now_ts()
    full_text = f"<@{bot_user_id}> {text}".rstrip()
    event: dict[str, Any] = {
        "client_msg_id": str(uuid.uuid4()),
        "type": "app_mention",
        "text": full_text,
        "user": user_id,
        "ts": ts,
        "team": team_id,
        "blocks": [
            {
                "type": "rich_text",
                "block_id": uuid.uuid4().hex[:5],
                "elements": [
                    {
                        "type": "rich_text_section",
                        "elements": [{"type": "user", "user_id": bot_user_id}]
                        + ([{"type": "text", "text": f" {text}"}] if text else []),
                    }
                ],
            }
        ],
        "channel": channel_id,
        "event_ts": ts,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return event_callback(event, team_id=team_id)


def app_mention_event_body(text: str = "", **kwargs: Any) -> bytes:
    return json.dumps(app_mention_event_payload(text, **kwargs)).encode("utf-8")


def app_home_opened_event_payload(
    *,
    user_id: str = DEFAULT_USER_ID,
    channel_id: str | None = None,
    tab: str = "home",
    view: dict[str, Any] | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """``app_home_opened`` event callback; ``view`` is the currently published home, if any."""
    event: dict[str, Any] = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel_id or f"D{user_id[1:]}",
        "tab": tab,
        "event_ts": _now_ts(),
    }
    if view is not None:
        event["view"] = view
    return event_callback(event, team_id=team_id)


def app_home_opened_event_body(**kwargs: Any) -> bytes:
    return json.dumps(app_home_opened_event_payload(**kwargs)).encode("utf-8")


def url_verification_body(challenge: str = "fake-challenge") -> bytes:
    payload = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return json.dumps(payload).encode("utf-8")
