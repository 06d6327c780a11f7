"""Reply-to addresses: `slack:T123/C456[/1700000000.000100][@U789]`, `discord:G/C[/THREAD][@U]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ledger.exceptions import InvalidInput

_SLACK = re.compile(
    r"^slack:(?P<ws>[A-Z0-9]+)/(?P<channel>[A-Z0-9]+)"
    r"(?:/(?P<thread>\d{1,12}\.\d{1,9}))?(?:@(?P<user>[A-Z0-9]+))?$"
)
_DISCORD = re.compile(
    r"^discord:(?P<ws>\d{1,25})/(?P<channel>\d{1,25})"
    r"(?:/(?P<thread>\d{1,25}))?(?:@(?P<user>\d{1,25}))?$"
)
_PLATFORMS = {"slack": _SLACK, "discord": _DISCORD}


@dataclass(frozen=True, slots=True)
class Address:
    """Where a notice goes: a platform, a workspace (Slack team / Discord guild), a channel,
    optionally a thread inside it and the user to DM as a fallback."""

    platform: str
    workspace: str
    channel: str
    thread: str | None = None
    user: str | None = None

    def __str__(self) -> str:
        text = f"{self.platform}:{self.workspace}/{self.channel}"
        if self.thread:
            text += f"/{self.thread}"
        if self.user:
            text += f"@{self.user}"
        return text

    @property
    def tenant(self) -> str:
        return f"{self.platform}:{self.workspace}"

    @property
    def channel_key(self) -> str:
        """Identifies the destination channel for pacing (one rate per channel)."""
        return f"{self.platform}:{self.workspace}/{self.channel}"

    def with_thread(self, thread: str | None) -> Address:
        return Address(self.platform, self.workspace, self.channel, thread, self.user)

    def as_dict(self) -> dict[str, Any]:
        space_key = "guild" if self.platform == "discord" else "team"
        return {
            "platform": self.platform,
            space_key: self.workspace,
            "channel": self.channel,
            "thread": self.thread,
            "user": self.user,
        }


def parse_address(text: str, field: str = "reply_to") -> Address:
    """Parse an address string, or raise InvalidInput saying what the form is."""
    text = text.strip()
    platform = text.split(":", 1)[0]
    pattern = _PLATFORMS.get(platform)
    match = pattern.match(text) if pattern else None
    if match is None:
        raise InvalidInput(
            field,
            f"{text[:200]!r} is not an address; expected slack:TEAM/CHANNEL[/THREAD_TS][@USER] "
            "or discord:GUILD/CHANNEL[/THREAD][@USER]",
        )
    return Address(
        platform=platform,
        workspace=match["ws"],
        channel=match["channel"],
        thread=match["thread"],
        user=match["user"],
    )


def address_from_dict(data: dict[str, Any], field: str = "reply_to") -> Address:
    """Accept the JSON form `{platform, team|guild, channel, thread, user}` too."""
    platform = str(data.get("platform", ""))
    workspace = data.get("team") or data.get("guild") or data.get("workspace")
    text = f"{platform}:{workspace}/{data.get('channel')}"
    if data.get("thread"):
        text += f"/{data['thread']}"
    if data.get("user"):
        text += f"@{data['user']}"
    return parse_address(text, field)
