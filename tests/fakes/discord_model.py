"""The fake Discord's world: snowflakes, users, guilds, channels, messages and their wire shapes.

Everything here is plain data. Ids are ``int`` on the Python side and decimal strings on the
wire, as Discord sends them. Payload builders return exactly what the REST API and the gateway
would put on the wire for these objects (the fields discord.py reads, with Discord's names).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1_420_070_400_000

# Channel types.
GUILD_TEXT = 0
DM = 1
GUILD_CATEGORY = 4
GUILD_ANNOUNCEMENT = 5
ANNOUNCEMENT_THREAD = 10
PUBLIC_THREAD = 11
PRIVATE_THREAD = 12
THREAD_TYPES = frozenset({ANNOUNCEMENT_THREAD, PUBLIC_THREAD, PRIVATE_THREAD})

# Permission bits used by the fake.
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

USER_MENTION_RE = re.compile(r"<@!?(\d{15,21})>")
ROLE_MENTION_RE = re.compile(r"<@&(\d{15,21})>")
EVERYONE_RE = re.compile(r"@(everyone|here)\b")


class Snowflakes:
    """Monotonic Discord snowflakes (timestamp since the Discord epoch in the top bits)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
            self._last = max(candidate, self._last + 1)
            return self._last


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class FakeUser:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    dms_closed: bool = False
    """Sending to this user's DM channel answers 403 code 50007, as for a user with DMs off."""

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int = 0
    position: int = 0
    mentionable: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": self.mentionable,
            "flags": 0,
        }


@dataclass
class FakeMember:
    user: FakeUser
    role_ids: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=iso_now)

    def payload(self, *, permissions: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": self.user.payload(),
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.role_ids],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data


@dataclass
class FakeChannel:
    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    owner_id: int | None = None
    position: int = 0
    recipient_id: int | None = None
    archived: bool = False
    locked: bool = False
    missing_access: bool = False
    """Every call on the channel answers 403 code 50001 (the bot cannot see it)."""
    missing_permissions: bool = False
    """Posting and editing answer 403 code 50013 (the bot sees it but may not send)."""
    deleted: bool = False
    """The channel answers 404 code 10003 as if it never existed."""
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in THREAD_TYPES

    def payload(self, recipients: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": None if self.last_message_id is None else str(self.last_message_id),
            "flags": 0,
        }
        if self.type == DM:
            data["recipients"] = recipients or []
            return data
        data.update(
            {
                "guild_id": str(self.guild_id),
                "name": self.name,
                "position": self.position,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None if self.parent_id is None else str(self.parent_id),
                "rate_limit_per_user": 0,
            }
        )
        if self.type in (GUILD_TEXT, GUILD_ANNOUNCEMENT):
            data["topic"] = None
        if self.is_thread:
            data.update(
                {
                    "owner_id": str(self.owner_id),
                    "message_count": 0,
                    "member_count": 1,
                    "total_message_sent": 0,
                    "thread_metadata": {
                        "archived": self.archived,
                        "locked": self.locked,
                        "auto_archive_duration": 1440,
                        "archive_timestamp": iso_now(),
                        "invitable": True,
                        "create_timestamp": iso_now(),
                    },
                }
            )
        return data


@dataclass
class FakeGuild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, FakeRole] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)

    def permissions_of(self, user_id: int) -> int:
        if user_id == self.owner_id:
            return ALL_PERMISSIONS
        value = self.roles[self.id].permissions if self.id in self.roles else 0
        member = self.members.get(user_id)
        for role_id in member.role_ids if member else []:
            role = self.roles.get(role_id)
            if role is not None:
                value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value


@dataclass(frozen=True)
class Pings:
    """Who a message actually notifies once Discord applied ``allowed_mentions`` to it."""

    everyone: bool
    users: tuple[int, ...]
    roles: tuple[int, ...]

    @property
    def any(self) -> bool:
        return self.everyone or bool(self.users) or bool(self.roles)


def resolve_pings(content: str | None, allowed: Mapping[str, Any] | None) -> Pings:
    """Apply Discord's mention rules: without ``allowed_mentions`` everything in content pings."""
    text = content or ""
    if allowed is None:
        parse = {"users", "roles", "everyone"}
        explicit_users: set[int] = set()
        explicit_roles: set[int] = set()
    else:
        parse = set(allowed.get("parse") or [])
        explicit_users = {int(u) for u in allowed.get("users") or []}
        explicit_roles = {int(r) for r in allowed.get("roles") or []}
    everyone = "everyone" in parse and EVERYONE_RE.search(text) is not None
    users = tuple(
        dict.fromkeys(
            int(m)
            for m in USER_MENTION_RE.findall(text)
            if "users" in parse or int(m) in explicit_users
        )
    )
    roles = tuple(
        dict.fromkeys(
            int(m)
            for m in ROLE_MENTION_RE.findall(text)
            if "roles" in parse or int(m) in explicit_roles
        )
    )
    return Pings(everyone=everyone, users=users, roles=roles)


@dataclass
class StoredMessage:
    """A message the fake holds, with what was asked of it and what Discord made of it."""

    id: int
    channel_id: int
    payload: dict[str, Any]
    """The message exactly as the fake returns it on the wire."""
    request: dict[str, Any]
    """The JSON body that created it."""
    allowed_mentions: Any
    """``allowed_mentions`` as sent (``None`` when the body had none); see also ``pings``."""
    pings: Pings
    nonce: str | None = None
    ephemeral: bool = False
    interaction_id: int | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.payload.get("embeds") or [])

    @property
    def components(self) -> list[dict[str, Any]]:
        return list(self.payload.get("components") or [])


def message_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The displayed fields of a create or edit body, normalised the way Discord echoes them."""
    out: dict[str, Any] = {}
    if "content" in body:
        out["content"] = body["content"] or ""
    if "embeds" in body:
        out["embeds"] = [{"type": "rich", **e} for e in body["embeds"] or []]
    if "components" in body:
        out["components"] = list(body["components"] or [])
    if "flags" in body and body["flags"] is not None:
        out["flags"] = int(body["flags"])
    if "attachments" in body:
        out["attachments"] = []
    return out


def apply_pings(payload: dict[str, Any], pings: Pings, users: Mapping[int, FakeUser]) -> None:
    payload["mention_everyone"] = pings.everyone
    payload["mention_roles"] = [str(r) for r in pings.roles]
    payload["mentions"] = [
        users[u].payload() if u in users else FakeUser(u, f"user{u}").payload() for u in pings.users
    ]
