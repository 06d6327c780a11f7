"""Who may do what from chat (SPEC §10): anyone in the tenant views; the requester and
configured admins cancel, change notify, retry and dismiss; only admins audit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.exceptions import PermissionDenied
from ledger.records import TaskRecord


@dataclass(frozen=True, slots=True)
class Actor:
    """The person behind a chat command.

    `group_ids` holds Slack user-group ids or Discord role ids the person belongs to;
    `is_guild_admin` is Discord's Manage Server permission.
    """

    platform: str
    user_id: str
    tenant: str
    group_ids: frozenset[str] = field(default_factory=frozenset)
    is_guild_admin: bool = False

    @property
    def key(self) -> str:
        """`slack:U123` / `discord:456`: the requester session key form and the audit actor."""
        return f"{self.platform}:{self.user_id}"

    @property
    def role_ids(self) -> frozenset[str]:
        return self.group_ids


_GROUP_KIND = {"slack": "slack-group", "discord": "discord-role"}


class Permissions:
    """Built once from `Settings.admins` (`slack:U…`, `slack-group:S…`, `discord:ID`,
    `discord-role:ID`)."""

    def __init__(self, admins: Iterable[str] = ()) -> None:
        self.admins = frozenset(a.strip() for a in admins if a.strip())

    def admin_group_ids(self, platform: str) -> frozenset[str]:
        """Configured admin groups/roles of one platform (Slack asks who is in them)."""
        prefix = _GROUP_KIND.get(platform, platform + "-group") + ":"
        return frozenset(a[len(prefix) :] for a in self.admins if a.startswith(prefix))

    def is_admin(self, actor: Actor) -> bool:
        if actor.key in self.admins:
            return True
        if actor.platform == "discord" and actor.is_guild_admin:
            return True
        return bool(actor.group_ids & self.admin_group_ids(actor.platform))

    @staticmethod
    def is_requester(actor: Actor, task: TaskRecord) -> bool:
        reply_to = task.reply_to
        if (
            reply_to is not None
            and reply_to.platform == actor.platform
            and reply_to.user == actor.user_id
        ):
            return True
        return task.requester_session_key == actor.key

    def can_change(self, actor: Actor, task: TaskRecord) -> bool:
        return task.tenant == actor.tenant and (
            self.is_requester(actor, task) or self.is_admin(actor)
        )

    def check_change(self, action: str, actor: Actor, task: TaskRecord) -> None:
        """Raise PermissionDenied unless `actor` is the requester of `task` or an admin."""
        if not self.can_change(actor, task):
            raise PermissionDenied(
                action, task.short_id, "only the requester and admins may do that"
            )

    def check_admin(self, action: str, actor: Actor) -> None:
        if not self.is_admin(actor):
            raise PermissionDenied(action, None, "admins only")
