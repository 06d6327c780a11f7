"""The fake Discord's world and its state: guilds, channels, members, messages, commands.

:class:`DiscordWorld` holds everything the REST handlers and the gateway read and change, and
builds the gateway's READY and GUILD_CREATE payloads from it. ``FakeDiscord`` (in
``discord_server``) adds the HTTP server, fault injection, records and interactions on top.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_model import (
    ADMINISTRATOR,
    DEFAULT_EVERYONE_PERMISSIONS,
    DM,
    GUILD_TEXT,
    PRIVATE_THREAD,
    PUBLIC_THREAD,
    FakeChannel,
    FakeGuild,
    FakeMember,
    FakeRole,
    FakeUser,
    Snowflakes,
    StoredMessage,
    apply_pings,
    iso_now,
    message_fields,
    resolve_pings,
)

if TYPE_CHECKING:
    from tests.fakes.discord_interactions import InteractionRecord


class DiscordWorld:
    """State of the fake platform; ``populate=True`` creates one ready-to-use guild."""

    def __init__(
        self, *, bot_username: str = "tasktrail", populate: bool = True, nonce_window: float = 300.0
    ) -> None:
        self.nonce_window = nonce_window
        """Seconds within which an enforced nonce returns the first message (Discord: minutes)."""
        self.snowflakes = Snowflakes()
        self.application_id = self.snowflakes.next()
        self.bot_user = FakeUser(self.snowflakes.next(), bot_username, bot=True)
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        """Every bulk overwrite as sent: ``(guild_id or None, commands)``."""
        self._nonces: dict[tuple[int, str], tuple[int, float]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._dm_channels: dict[int, int] = {}
        # Ids of the default world (``populate=True``); 0 when the world was left empty.
        self.guild_id = self.channel_id = self.other_channel_id = self.ops_channel_id = 0
        self.thread_id = self.owner_user_id = self.user_id = self.other_user_id = 0
        self.admin_user_id = self.everyone_role_id = self.admin_role_id = self.ops_role_id = 0
        if populate:
            self._populate()

    def notify(self) -> None:
        """Called after every change; the server wakes its waiters here."""

    # -- the world ----------------------------------------------------------------------------

    def _populate(self) -> None:
        owner = self.add_user("guild-owner")
        guild = self.add_guild("tasktrail-test", owner_id=owner.id)
        self.guild_id = guild.id
        self.owner_user_id = owner.id
        self.everyone_role_id = guild.id
        self.admin_role_id = self.add_role(guild.id, "admins", permissions=ADMINISTRATOR).id
        self.ops_role_id = self.add_role(guild.id, "ops", mentionable=True).id
        bot_role = self.add_role(guild.id, "tasktrail", permissions=DEFAULT_EVERYONE_PERMISSIONS)
        self.add_member(guild.id, self.bot_user.id, role_ids=[bot_role.id])
        self.user_id = self.add_member(guild.id, self.add_user("requester").id).user.id
        self.other_user_id = self.add_member(guild.id, self.add_user("bystander").id).user.id
        admin = self.add_user("admin")
        self.admin_user_id = self.add_member(
            guild.id, admin.id, role_ids=[self.admin_role_id]
        ).user.id
        self.channel_id = self.add_channel(guild.id, "tasks").id
        self.other_channel_id = self.add_channel(guild.id, "general").id
        self.ops_channel_id = self.add_channel(guild.id, "ops").id
        self.thread_id = self.add_thread(self.channel_id, "deploy-review", owner_id=self.user_id).id

    def add_user(self, username: str, *, user_id: int | None = None, bot: bool = False) -> FakeUser:
        user = FakeUser(user_id or self.snowflakes.next(), username, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self, name: str, *, guild_id: int | None = None, owner_id: int | None = None
    ) -> FakeGuild:
        gid = guild_id or self.snowflakes.next()
        owner = owner_id or self.add_user(f"{name}-owner").id
        guild = FakeGuild(gid, name, owner)
        guild.roles[gid] = FakeRole(gid, "@everyone", permissions=DEFAULT_EVERYONE_PERMISSIONS)
        self.guilds[gid] = guild
        self.add_member(gid, owner)
        if self.bot_user.id not in guild.members:
            self.add_member(gid, self.bot_user.id)
        return guild

    def add_role(
        self, guild_id: int, name: str, *, permissions: int = 0, mentionable: bool = False
    ) -> FakeRole:
        guild = self.guilds[guild_id]
        role = FakeRole(
            self.snowflakes.next(), name, permissions, len(guild.roles), mentionable=mentionable
        )
        guild.roles[role.id] = role
        return role

    def add_member(
        self, guild_id: int, user_id: int, *, role_ids: Sequence[int] = ()
    ) -> FakeMember:
        member = FakeMember(self.ensure_user(user_id), list(role_ids))
        self.guilds[guild_id].members[user_id] = member
        return member

    def add_channel(
        self, guild_id: int, name: str, *, type: int = GUILD_TEXT, channel_id: int | None = None
    ) -> FakeChannel:
        guild = self.guilds[guild_id]
        channel = FakeChannel(
            channel_id or self.snowflakes.next(),
            type,
            name,
            guild_id=guild_id,
            position=len(guild.channel_ids),
        )
        self.channels[channel.id] = channel
        guild.channel_ids.append(channel.id)
        return channel

    def add_thread(
        self,
        parent_id: int,
        name: str,
        *,
        owner_id: int | None = None,
        archived: bool = False,
        locked: bool = False,
        private: bool = False,
    ) -> FakeChannel:
        parent = self.channels[parent_id]
        assert parent.guild_id is not None
        thread = FakeChannel(
            self.snowflakes.next(),
            PRIVATE_THREAD if private else PUBLIC_THREAD,
            name,
            guild_id=parent.guild_id,
            parent_id=parent_id,
            owner_id=owner_id or self.bot_user.id,
            archived=archived,
            locked=locked,
        )
        self.channels[thread.id] = thread
        self.guilds[parent.guild_id].channel_ids.append(thread.id)
        return thread

    def set_channel(self, channel_id: int, **changes: Any) -> FakeChannel:
        """Change a channel: ``missing_access``, ``missing_permissions``, ``archived``,
        ``locked``, ``deleted``, ``name``."""
        channel = self.channels[channel_id]
        for key, value in changes.items():
            if not hasattr(channel, key) or key in ("id", "type"):
                raise TypeError(f"set_channel() cannot change {key!r}")
            setattr(channel, key, value)
        return channel

    def set_user(self, user_id: int, *, dms_closed: bool) -> FakeUser:
        user = self.ensure_user(user_id)
        user.dms_closed = dms_closed
        return user

    def ensure_user(self, user_id: int) -> FakeUser:
        if user_id not in self.users:
            self.users[user_id] = FakeUser(user_id, f"user{user_id}")
        return self.users[user_id]

    def ensure_member(self, guild_id: int, user_id: int) -> FakeMember:
        guild = self.guilds[guild_id]
        return guild.members.get(user_id) or self.add_member(guild_id, user_id)

    def bot_permissions(self, channel: FakeChannel) -> int:
        if channel.guild_id is None:
            return DEFAULT_EVERYONE_PERMISSIONS
        return self.guilds[channel.guild_id].permissions_of(self.bot_user.id)

    def dm_channel_for(self, user_id: int) -> FakeChannel:
        self.ensure_user(user_id)
        if user_id not in self._dm_channels:
            channel = FakeChannel(self.snowflakes.next(), DM, recipient_id=user_id)
            self.channels[channel.id] = channel
            self._dm_channels[user_id] = channel.id
        return self.channels[self._dm_channels[user_id]]

    def channel_messages(
        self, channel_id: int, *, include_ephemeral: bool = False
    ) -> list[StoredMessage]:
        """Messages in a channel, oldest first (deleted ones left out)."""
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel_id == channel_id
                and not m.deleted
                and (include_ephemeral or not m.ephemeral)
            ),
            key=lambda m: m.id,
        )

    def message(self, message_id: int) -> StoredMessage:
        return self.messages[message_id]

    # -- messages (used by the REST handlers) ----------------------------------------------

    def find_by_nonce(self, channel_id: int, nonce: str) -> StoredMessage | None:
        found = self._nonces.get((channel_id, nonce))
        if found is None or time.monotonic() - found[1] > self.nonce_window:
            return None
        message = self.messages.get(found[0])
        return None if message is None or message.deleted else message

    def store_message(
        self,
        channel: FakeChannel,
        body: Mapping[str, Any],
        *,
        author: FakeUser,
        interaction: InteractionRecord | None = None,
        ephemeral: bool = False,
    ) -> StoredMessage:
        message_id = self.snowflakes.next()
        allowed = body.get("allowed_mentions")
        pings = resolve_pings(body.get("content"), allowed)
        payload: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "author": author.payload(),
            "content": "",
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": bool(body.get("tts")),
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        payload.update(message_fields(body))
        nonce = None if body.get("nonce") is None else str(body["nonce"])
        if nonce is not None:
            payload["nonce"] = nonce
        reference = body.get("message_reference")
        if reference:
            referenced = self.messages.get(int(reference.get("message_id") or 0))
            payload["type"] = 19
            payload["message_reference"] = {
                "type": 0,
                "message_id": str(reference.get("message_id")),
                "channel_id": str(reference.get("channel_id") or channel.id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            }
            payload["referenced_message"] = referenced.payload if referenced else None
        if interaction is not None:
            payload["webhook_id"] = str(self.application_id)
            payload["application_id"] = str(self.application_id)
            payload["type"] = 20 if interaction.type == 2 else 0
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get(
                "user"
            )
            payload["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": interaction.payload.get(
                    "authorizing_integration_owners", {}
                ),
            }
        apply_pings(payload, pings, self.users)
        stored = StoredMessage(
            id=message_id,
            channel_id=channel.id,
            payload=payload,
            request=dict(body),
            allowed_mentions=allowed,
            pings=pings,
            nonce=nonce,
            ephemeral=ephemeral,
            interaction_id=None if interaction is None else interaction.id,
        )
        self.messages[message_id] = stored
        if not ephemeral:
            channel.last_message_id = message_id
        if nonce is not None and body.get("enforce_nonce"):
            self._nonces[(channel.id, nonce)] = (message_id, time.monotonic())
        self.notify()
        return stored

    def edit_stored(self, message: StoredMessage, body: Mapping[str, Any]) -> None:
        message.edits.append(dict(body))
        message.payload.update(message_fields(body))
        message.payload["edited_timestamp"] = iso_now()
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.pings = resolve_pings(message.payload.get("content"), message.allowed_mentions)
        apply_pings(message.payload, message.pings, self.users)
        self.notify()

    def channel_payload(self, channel: FakeChannel) -> dict[str, Any]:
        recipients = None
        if channel.recipient_id is not None:
            recipients = [self.ensure_user(channel.recipient_id).payload()]
        return channel.payload(recipients)

    # -- application and commands ---------------------------------------------------------

    def application_payload(self) -> dict[str, Any]:
        owner = self.users.get(self.owner_user_id) or self.bot_user
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": False,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner.payload(),
            "team": None,
            "flags": 0,
            "rpc_origins": [],
            "interactions_endpoint_url": None,
            "bot": self.bot_user.payload(),
        }

    def store_commands(
        self, guild_id: int | None, commands: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        stored: list[dict[str, Any]] = []
        for command in commands:
            kind = int(command.get("type", 1))
            key = (guild_id, str(command["name"]), kind)
            command_id = self._command_ids.setdefault(key, self.snowflakes.next())
            entry: dict[str, Any] = {
                "default_member_permissions": None,
                "nsfw": False,
                "description": "",
                "options": [],
                **command,
                "id": str(command_id),
                "application_id": str(self.application_id),
                "version": str(self.snowflakes.next()),
                "type": kind,
            }
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        self.command_syncs.append((guild_id, [dict(c) for c in commands]))
        self.notify()
        return stored

    def synced_command(self, name: str, guild_id: int | None) -> dict[str, Any] | None:
        pools = [self.guild_commands.get(guild_id, [])] if guild_id is not None else []
        for pool in [*pools, self.global_commands]:
            for command in pool:
                if command["name"] == name and command.get("type", 1) == 1:
                    return command
        return None

    # -- gateway backend ------------------------------------------------------------------

    def ready_payload(self, session_id: str, resume_gateway_url: str) -> dict[str, Any]:
        return {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session_id,
            "resume_gateway_url": resume_gateway_url,
            "session_type": "normal",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }

    def guild_create_payloads(self) -> list[dict[str, Any]]:
        return [self._guild_create(guild) for guild in self.guilds.values()]

    def _guild_create(self, guild: FakeGuild) -> dict[str, Any]:
        channels = [self.channels[c] for c in guild.channel_ids]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500_000,
            "features": [],
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "joined_at": iso_now(),
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "members": [m.payload() for m in guild.members.values()],
            "channels": [c.payload() for c in channels if not c.is_thread and not c.deleted],
            "threads": [c.payload() for c in channels if c.is_thread and not c.deleted],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def members_chunk(self, guild_id: int, request: dict[str, Any]) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        members = list(guild.members.values())
        wanted = {int(u) for u in request.get("user_ids") or []}
        if wanted:
            members = [m for m in members if m.user.id in wanted]
        elif request.get("query"):
            members = [m for m in members if m.user.username.startswith(request["query"])]
        limit = int(request.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(guild_id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
        }
        if request.get("nonce") is not None:
            chunk["nonce"] = request["nonce"]
        if wanted:
            chunk["not_found"] = [str(u) for u in wanted - {m.user.id for m in members}]
        return chunk
