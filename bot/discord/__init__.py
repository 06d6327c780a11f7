"""Discord: the `/tasks` app commands, persistent board components, and the delivery
transport, on discord.py (SPEC §10)."""

from bot.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
