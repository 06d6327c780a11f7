"""The state and Web API semantics of the fake Slack workspace (no networking).

Channels, users, threads and messages, and the answers Slack gives to the Web API methods the
bot uses, with Slack's error codes. :class:`tests.fakes.slack_server.FakeSlack` serves it over
HTTP. Method handlers run with ``self._lock`` held; public accessors return deep copies.
"""

from __future__ import annotations

import base64
import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .slack_blocks import find_pings, message_problem, view_problems
from .slack_payloads import APP_ID, BOT_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID

JSON = dict[str, Any]
_FIRST_TS_MICROS = 1_700_000_000_000_100


@dataclass(frozen=True)
class Violation:
    """Content Slack refused (``invalid_blocks``, ``msg_too_long``, ``invalid_arguments``…)."""

    method: str
    channel: str | None
    error: str
    details: tuple[str, ...]


@dataclass
class Channel:
    id: str
    name: str
    archived: bool = False
    bot_member: bool = True
    is_private: bool = False
    is_im: bool = False
    user: str | None = None

    def as_json(self) -> JSON:
        body: JSON = {
            "id": self.id,
            "name": self.name,
            "is_channel": not (self.is_im or self.is_private),
            "is_group": False,
            "is_im": self.is_im,
            "is_private": self.is_private or self.is_im,
            "is_archived": self.archived,
            "is_member": self.bot_member,
            "created": 1_700_000_000,
        }
        if self.user is not None:
            body["user"] = self.user
        return body


def _err(error: str, **extra: Any) -> JSON:
    return {"ok": False, "error": error, **extra}


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _ts_key(ts: str) -> tuple[int, int]:
    seconds, _, micros = str(ts).partition(".")
    return int(seconds or 0), int((micros + "000000")[:6])


class SlackWorkspace:
    """Workspace ``T0TASKTRL`` with bot user ``U0TASKBOT`` (app ``A0TASKTRL``)."""

    def __init__(self, *, channels: Iterable[str] = ()) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._violations: list[Violation] = []
        self._pings: list[tuple[str, str | None, str]] = []
        self._channels: dict[str, Channel] = {}
        self._messages: dict[str, list[JSON]] = {}
        self._ephemerals: list[JSON] = []
        self._users: dict[str, JSON] = {}
        self._usergroups: dict[str, list[str]] = {}
        self._home_views: dict[str, JSON] = {}
        self._opened_views: list[JSON] = []
        self._revoked: set[str] = set()
        self._ts = itertools.count()
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._replies,
            "conversations.history": self._history,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_users,
        }
        for channel_id in channels:
            self.add_channel(channel_id)

    # Scenario set-up ------------------------------------------------------------------------
    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        archived: bool = False,
        bot_member: bool = True,
        is_private: bool = False,
    ) -> None:
        with self._lock:
            channel = Channel(channel_id, name or channel_id.lower(), archived, bot_member)
            channel.is_private = is_private
            self._channels[channel_id] = channel

    def update_channel(
        self, channel_id: str, *, archived: bool | None = None, bot_member: bool | None = None
    ) -> None:
        with self._lock:
            channel = self._channels[channel_id]
            channel.archived = channel.archived if archived is None else archived
            channel.bot_member = channel.bot_member if bot_member is None else bot_member

    def remove_channel(self, channel_id: str) -> None:
        with self._lock:
            self._channels.pop(channel_id, None)

    def add_user(
        self, user_id: str, name: str | None = None, *, is_admin: bool = False, tz: str = "UTC"
    ) -> None:
        name = name or user_id.lower()
        profile = {"display_name": name, "real_name": name.title()}
        with self._lock:
            self._users[user_id] = {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": name.title(),
                "deleted": False,
                "tz": tz,
                "tz_offset": 0,
                "is_admin": is_admin,
                "is_owner": False,
                "is_bot": False,
                "profile": profile,
            }

    def add_usergroup(self, usergroup_id: str, users: Iterable[str]) -> None:
        with self._lock:
            self._usergroups[usergroup_id] = list(users)

    def add_user_message(
        self, channel: str, text: str, *, user: str = "U0ALICE", thread_ts: str | None = None
    ) -> str:
        """Seed a message by a person (e.g. the one mentioning the bot); returns its ts."""
        with self._lock:
            return str(self._store(channel, {"text": text}, user, False, thread_ts)["ts"])

    def delete_message(self, channel: str, ts: str) -> None:
        with self._lock:
            self._messages[channel] = [m for m in self._messages.get(channel, []) if m["ts"] != ts]

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._revoked.add(token)

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)

    @property
    def pings(self) -> list[tuple[str, str | None, str]]:
        """``(method, channel, mention)`` for every ``<!here>``-style mass mention sent."""
        with self._lock:
            return list(self._pings)

    def messages(self, channel: str, thread_ts: str | None = None) -> list[JSON]:
        """Top-level messages of ``channel``, or the thread of ``thread_ts`` (parent first)."""
        with self._lock:
            msgs = self._messages.get(channel, [])
            if thread_ts is None:
                found = [m for m in msgs if m.get("thread_ts", m["ts"]) == m["ts"]]
            else:
                found = [m for m in msgs if m.get("thread_ts", m["ts"]) == thread_ts]
            return copy.deepcopy(found)

    def all_messages(self, channel: str) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    @property
    def ephemerals(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._ephemerals)

    def home_view(self, user_id: str) -> JSON | None:
        with self._lock:
            return copy.deepcopy(self._home_views.get(user_id))

    @property
    def opened_views(self) -> list[JSON]:
        with self._lock:
            return copy.deepcopy(self._opened_views)

    def answer(self, method: str, params: JSON, token: str) -> JSON:
        """Slack's answer to ``method`` called with ``params`` and bearer ``token``."""
        if not token:
            return _err("not_authed")
        if token in self._revoked:
            return _err("token_revoked")
        if not token.startswith(("xoxb-", "xoxp-", "xapp-")):
            return _err("invalid_auth")
        if (method == "apps.connections.open") != token.startswith("xapp-"):
            return _err("not_allowed_token_type")
        handler = self._methods.get(method)
        if handler is None:
            return _err("unknown_method")
        with self._lock:
            return handler(params)

    # Web API methods (called with the lock held) ------------------------------------------
    def _refuse(self, method: str, channel: str | None, error: str, details: list[str]) -> JSON:
        self._violations.append(Violation(method, channel, error, tuple(details)))
        body = _err(error)
        if details:
            body["errors"] = details
            body["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in details]}
        return body

    def _content_error(self, method: str, channel: str, params: JSON) -> JSON | None:
        problem = message_problem(params)
        if problem is not None:
            return self._refuse(method, channel, *problem)
        self._pings.extend((method, channel, p) for p in find_pings(params))
        return None

    def _next_ts(self) -> str:
        micros = _FIRST_TS_MICROS + 100 * next(self._ts)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _find(self, channel: str, ts: Any) -> JSON | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _store(
        self, channel: str, content: JSON, user: str, bot: bool, thread_ts: str | None
    ) -> JSON:
        msg: JSON = {"type": "message", "user": user, "text": content.get("text") or ""}
        msg.update(ts=self._next_ts(), team=TEAM_ID)
        if bot:
            msg.update(bot_id=BOT_ID, app_id=APP_ID)
        for key in ("blocks", "attachments", "metadata"):
            if content.get(key) is not None:
                msg[key] = copy.deepcopy(content[key])
        parent = self._find(channel, thread_ts) if thread_ts else None
        if parent is not None:
            msg.update(thread_ts=parent["ts"], parent_user_id=parent["user"])
            users = sorted({*parent.get("reply_users", []), user})
            parent.update(thread_ts=parent["ts"], reply_count=parent.get("reply_count", 0) + 1)
            parent.update(reply_users=users, reply_users_count=len(users), latest_reply=msg["ts"])
        self._messages.setdefault(channel, []).append(msg)
        return msg

    def _shown(self, msg: JSON, params: JSON) -> JSON:
        shown = copy.deepcopy(msg)
        if not _truthy(params.get("include_all_metadata")):
            shown.pop("metadata", None)
        return shown

    def _target(self, params: JSON, *, dm_by_user: bool = False) -> Channel | JSON:
        channel_id = params.get("channel")
        if dm_by_user and isinstance(channel_id, str) and channel_id[:1] in ("U", "W"):
            return self._open_dm(channel_id)[0]
        channel = self._channels.get(channel_id) if isinstance(channel_id, str) else None
        if channel is None:
            return _err("channel_not_found")
        return channel

    def _writable(self, params: JSON, *, dm_by_user: bool = False) -> Channel | JSON:
        channel = self._target(params, dm_by_user=dm_by_user)
        if isinstance(channel, Channel) and channel.archived:
            return _err("is_archived")
        if isinstance(channel, Channel) and not channel.bot_member:
            return _err("not_in_channel")
        return channel

    def _auth_test(self, params: JSON) -> JSON:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Tasktrail Test",
            "user": "tasktrail",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _post_message(self, params: JSON) -> JSON:
        channel = self._writable(params, dm_by_user=True)
        if not isinstance(channel, Channel):
            return channel
        refused = self._content_error("chat.postMessage", channel.id, params)
        if refused is not None:
            return refused
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            parent = self._find(channel.id, str(thread_ts))
            if parent is None:
                return _err("thread_not_found")
            thread_ts = parent.get("thread_ts", parent["ts"])
        msg = self._store(channel.id, params, BOT_USER_ID, True, thread_ts)
        shown = copy.deepcopy(msg)
        return {"ok": True, "channel": channel.id, "ts": msg["ts"], "message": shown}

    def _update(self, params: JSON) -> JSON:
        channel = self._writable(params)
        if not isinstance(channel, Channel):
            return channel
        msg = self._find(channel.id, params.get("ts"))
        if msg is None:
            return _err("message_not_found")
        if msg.get("bot_id") != BOT_ID:
            return _err("cant_update_message")
        refused = self._content_error("chat.update", channel.id, params)
        if refused is not None:
            return refused
        for key in ("text", "blocks", "attachments", "metadata"):
            if params.get(key) is not None:
                msg[key] = copy.deepcopy(params[key])
        msg["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        shown = copy.deepcopy(msg)
        return {
            "ok": True,
            "channel": channel.id,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": shown,
        }

    def _post_ephemeral(self, params: JSON) -> JSON:
        channel = self._writable(params)
        if not isinstance(channel, Channel):
            return channel
        if not params.get("user"):
            return _err("user_not_in_channel")
        refused = self._content_error("chat.postEphemeral", channel.id, params)
        if refused is not None:
            return refused
        ts = self._next_ts()
        self._ephemerals.append({**copy.deepcopy(params), "channel": channel.id, "message_ts": ts})
        return {"ok": True, "message_ts": ts}

    def _open_dm(self, user: str) -> tuple[Channel, bool]:
        dm_id = f"D{user[1:]}"
        existed = dm_id in self._channels
        if not existed:
            self._channels[dm_id] = Channel(dm_id, dm_id.lower(), is_im=True, user=user)
        return self._channels[dm_id], existed

    def _conversations_open(self, params: JSON) -> JSON:
        users = params.get("users") or ""
        ids = users if isinstance(users, list) else str(users).split(",")
        ids = [u.strip() for u in ids if u.strip()]
        if not ids:
            return _err("users_list_not_supplied")
        if any(u[:1] not in ("U", "W") for u in ids):
            return _err("user_not_found")
        if len(ids) == 1:
            channel, existed = self._open_dm(ids[0])
        else:
            mpim_id = "G" + uuid.uuid5(uuid.NAMESPACE_OID, ",".join(sorted(ids))).hex[:10].upper()
            existed = mpim_id in self._channels
            self._channels.setdefault(mpim_id, Channel(mpim_id, mpim_id.lower(), is_private=True))
            channel = self._channels[mpim_id]
        body: JSON = {"ok": True, "channel": {"id": channel.id}}
        if _truthy(params.get("return_im")):
            body["channel"] = channel.as_json()
        if existed:
            body.update(no_op=True, already_open=True)
        return body

    def _conversations_info(self, params: JSON) -> JSON:
        channel = self._target(params)
        return (
            {"ok": True, "channel": channel.as_json()} if isinstance(channel, Channel) else channel
        )

    def _page(self, items: list[JSON], params: JSON, key: str, default_limit: int) -> JSON:
        oldest = _ts_key(params.get("oldest") or "0")
        latest = _ts_key(params.get("latest") or "9999999999")
        inclusive = _truthy(params.get("inclusive"))
        items = [
            m
            for m in items
            if (
                oldest <= _ts_key(m["ts"]) <= latest
                if inclusive
                else oldest < _ts_key(m["ts"]) < latest
            )
        ]
        cursor = str(params.get("cursor") or "")
        try:
            start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
            limit = int(params.get("limit") or default_limit)
        except (ValueError, IndexError):
            return _err("invalid_cursor")
        page, more = items[start : start + limit], start + limit < len(items)
        next_cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode() if more else ""
        shown = [self._shown(m, params) for m in page]
        return {
            "ok": True,
            key: shown,
            "has_more": more,
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _readable(self, params: JSON) -> Channel | JSON:
        channel = self._target(params)
        if isinstance(channel, Channel) and not channel.bot_member:
            return _err("not_in_channel")
        return channel

    def _replies(self, params: JSON) -> JSON:
        channel = self._readable(params)
        if not isinstance(channel, Channel):
            return channel
        target = self._find(channel.id, params.get("ts"))
        if target is None:
            return _err("thread_not_found")
        root = target.get("thread_ts", target["ts"])
        if self._find(channel.id, root) is None:
            return _err("thread_not_found")
        thread = [m for m in self._messages[channel.id] if m.get("thread_ts", m["ts"]) == root]
        return self._page(thread, params, "messages", 1000)

    def _history(self, params: JSON) -> JSON:
        channel = self._readable(params)
        if not isinstance(channel, Channel):
            return channel
        msgs = self._messages.get(channel.id, [])
        top = [m for m in reversed(msgs) if m.get("thread_ts", m["ts"]) == m["ts"]]
        page = self._page(top, params, "messages", 100)
        return {**page, "pin_count": 0} if page["ok"] else page

    def _view(self, method: str, params: JSON, kind: str) -> JSON:
        view = params.get("view")
        problems = view_problems(view)
        if not problems and isinstance(view, dict) and view.get("type") != kind:
            problems = ["failed to match all allowed schemas [json-pointer:/view/type]"]
        if problems:
            refused = self._refuse(method, None, "invalid_arguments", problems)
            refused.pop("errors")
            return refused
        assert isinstance(view, dict)
        view_id = f"V{uuid.uuid4().hex[:10].upper()}"
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": uuid.uuid4().hex,
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "app_installed_team_id": TEAM_ID,
            **copy.deepcopy(view),
        }
        return {"ok": True, "view": stored}

    def _views_publish(self, params: JSON) -> JSON:
        user_id = params.get("user_id")
        if not isinstance(user_id, str) or not user_id:
            return _err("invalid_arguments")
        body = self._view("views.publish", params, "home")
        if body["ok"]:
            self._home_views[user_id] = body["view"]
        return body

    def _views_open(self, params: JSON) -> JSON:
        if not params.get("trigger_id"):
            return _err("invalid_trigger_id")
        body = self._view("views.open", params, "modal")
        if body["ok"]:
            self._opened_views.append({**body["view"], "trigger_id": params["trigger_id"]})
        return body

    def _users_info(self, params: JSON) -> JSON:
        user = self._users.get(str(params.get("user")))
        return {"ok": True, "user": copy.deepcopy(user)} if user else _err("user_not_found")

    def _usergroup_users(self, params: JSON) -> JSON:
        users = self._usergroups.get(str(params.get("usergroup")))
        return {"ok": True, "users": list(users)} if users is not None else _err("no_such_subteam")
