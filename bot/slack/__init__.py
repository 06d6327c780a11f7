"""Slack adapter: Bolt app wiring, thin handlers, Block Kit builders, delivery transport."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.slack.app import SlackAdapter

__all__ = ["SlackAdapter"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `bot.slack.manifest` (the CLI) does not load Bolt.
    if name == "SlackAdapter":
        from bot.slack.app import SlackAdapter

        return SlackAdapter
    raise AttributeError(name)
