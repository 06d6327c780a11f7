"""Settings: the environment, optionally a TOML file, frozen once at start (SPEC §11).

The environment wins over the file. Every bad value is collected and reported together in
one `SettingsError`. Secrets are masked in `repr()` so they never reach a log.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from ledger.address import parse_address
from ledger.config import DEFAULT_NOTIFY, LedgerConfig
from ledger.exceptions import InvalidInput
from ledger.status import NotifyPolicy, Runtime
from ledger.timeutil import parse_duration

_SECRET_FIELDS = frozenset(
    {
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "discord_bot_token",
        "api_tokens",
    }
)

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_DISCORD_API_URL = "https://discord.com/api/v10"


class SettingsError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_tokens: tuple[tuple[str, str], ...] = ()
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    discord_bot_token: str | None = None
    discord_api_url: str = DEFAULT_DISCORD_API_URL
    discord_gateway_url: str | None = None
    discord_guild_id: str | None = None
    admins: tuple[str, ...] = ()
    openclaw_state_dir: str | None = None
    ledger: LedgerConfig = field(default_factory=LedgerConfig)

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token))

    @property
    def discord_enabled(self) -> bool:
        return bool(self.discord_bot_token)


_DURATIONS = {
    "TASKTRAIL_LEASE": "lease",
    "TASKTRAIL_LOST_GRACE": "lost_grace",
    "TASKTRAIL_STALE_QUEUED": "stale_queued",
    "TASKTRAIL_STALE_RUNNING": "stale_running",
    "TASKTRAIL_RETENTION": "retention",
    "TASKTRAIL_RETENTION_FAILED": "retention_failed",
    "TASKTRAIL_DELIVERY_DEADLINE": "delivery_deadline",
    "TASKTRAIL_DELIVERY_CLAIM_LEASE": "delivery_claim_lease",
    "TASKTRAIL_DELIVERY_STUCK": "delivery_stuck",
    "TASKTRAIL_CANCEL_STUCK": "cancel_stuck",
    "TASKTRAIL_PROGRESS_COALESCE": "progress_coalesce",
    "TASKTRAIL_RECONCILE_INTERVAL": "reconcile_interval",
    "TASKTRAIL_AUDIT_INTERVAL": "audit_interval",
    "TASKTRAIL_MAINTENANCE_INTERVAL": "maintenance_interval",
    "TASKTRAIL_PROOF_TIMEOUT": "proof_timeout",
    "TASKTRAIL_PROOF_DEADLINE": "proof_deadline",
    "TASKTRAIL_PROOF_INTERVAL": "proof_interval",
}


def _file_values(path: str) -> dict[str, str]:
    """Read a TOML file. Keys may be written as the env names or lower-case without the
    `TASKTRAIL_` prefix (`lease = "5m"`, `[slack] bot_token = ...` is not supported: flat)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise SettingsError([f"config file {path}: {error.strerror}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError([f"config file {path}: {error}"]) from None
    values: dict[str, str] = {}
    for key, value in data.items():
        name = key.upper()
        if not (name.startswith(("TASKTRAIL_", "SLACK_", "DISCORD_"))):
            name = "TASKTRAIL_" + name
        values[name] = value if isinstance(value, str) else str(value)
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("TASKTRAIL_CONFIG")
    source: dict[str, str] = _file_values(path) if path else {}
    source.update({k: v for k, v in env.items() if v != ""})
    problems: list[str] = []

    def get(name: str) -> str | None:
        return source.get(name)

    ledger_values: dict[str, Any] = {}
    for name, attr in _DURATIONS.items():
        raw = get(name)
        if raw is None:
            continue
        try:
            value = parse_duration(raw)
        except ValueError as error:
            problems.append(f"{name}: {error}")
            continue
        if value <= timedelta(0) and attr not in ("retention", "retention_failed"):
            problems.append(f"{name}: must be greater than zero, not {raw!r}")
            continue
        ledger_values[attr] = value

    per_runtime: dict[Runtime, timedelta] = {}
    for runtime in Runtime:
        raw = get(f"TASKTRAIL_LEASE_{runtime.value.upper()}")
        if raw is None:
            continue
        try:
            per_runtime[runtime] = parse_duration(raw)
        except ValueError as error:
            problems.append(f"TASKTRAIL_LEASE_{runtime.value.upper()}: {error}")
    ledger_values["lease_per_runtime"] = per_runtime

    notify = dict(DEFAULT_NOTIFY)
    raw_notify = get("TASKTRAIL_NOTIFY_DEFAULTS")
    if raw_notify:
        for item in filter(None, (p.strip() for p in raw_notify.split(","))):
            runtime_name, _, policy_name = item.partition("=")
            try:
                notify[Runtime(runtime_name.strip())] = NotifyPolicy(policy_name.strip())
            except ValueError:
                problems.append(
                    f"TASKTRAIL_NOTIFY_DEFAULTS: {item!r} is not runtime=policy "
                    "(runtimes: subagent, acp, cron, cli, media; policies: done_only, "
                    "state_changes, silent)"
                )
    ledger_values["notify_defaults"] = notify

    ops = get("TASKTRAIL_OPS_CHANNEL")
    if ops:
        try:
            ledger_values["ops_channel"] = str(parse_address(ops, "TASKTRAIL_OPS_CHANNEL"))
        except InvalidInput as error:
            problems.append(str(error))
    deny = get("TASKTRAIL_PROOF_DENY")
    if deny is not None:
        ledger_values["proof_deny"] = tuple(p.strip() for p in deny.split(",") if p.strip())
    sync = get("TASKTRAIL_SQLITE_SYNCHRONOUS")
    if sync is not None:
        if sync.lower() not in ("normal", "full"):
            problems.append(f"TASKTRAIL_SQLITE_SYNCHRONOUS: {sync!r} is not normal or full")
        else:
            ledger_values["sqlite_synchronous"] = sync.lower()

    port_text = get("TASKTRAIL_PORT") or "8000"
    port = 8000
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        problems.append(f"TASKTRAIL_PORT: {port_text!r} is not a port number (0-65535)")

    tokens: list[tuple[str, str]] = []
    for item in filter(None, (p.strip() for p in (get("TASKTRAIL_API_TOKENS") or "").split(","))):
        tenant, sep, token = item.partition(":")
        if not sep or not tenant or len(token) < 16:
            problems.append(
                "TASKTRAIL_API_TOKENS: each entry must be tenant:token with a token of at "
                "least 16 characters"
            )
            continue
        tokens.append((tenant, token))

    admins = tuple(p.strip() for p in (get("TASKTRAIL_ADMINS") or "").split(",") if p.strip())
    for admin in admins:
        kind, _, ident = admin.partition(":")
        if kind not in ("slack", "slack-group", "discord", "discord-role") or not ident:
            problems.append(
                f"TASKTRAIL_ADMINS: {admin!r} is not slack:U…, slack-group:S…, discord:ID or "
                "discord-role:ID"
            )

    for name in (
        "TASKTRAIL_SLACK_API_URL",
        "TASKTRAIL_DISCORD_API_URL",
        "TASKTRAIL_DISCORD_GATEWAY_URL",
    ):
        raw = get(name)
        if raw and not raw.startswith(("http://", "https://", "ws://", "wss://")):
            problems.append(f"{name}: {raw!r} is not an http(s) or ws(s) URL")
    slack_api = get("TASKTRAIL_SLACK_API_URL") or DEFAULT_SLACK_API_URL
    if not slack_api.endswith("/"):
        slack_api += "/"
    openclaw_dir = get("TASKTRAIL_OPENCLAW_STATE_DIR")
    if openclaw_dir and not Path(openclaw_dir).expanduser().is_dir():
        problems.append(f"TASKTRAIL_OPENCLAW_STATE_DIR: {openclaw_dir!r} is not a directory")

    if problems:
        raise SettingsError(problems)
    values: dict[str, Any] = {
        "database_url": get("TASKTRAIL_DATABASE_URL"),
        "host": get("TASKTRAIL_HOST") or "127.0.0.1",
        "port": port,
        "api_tokens": tuple(tokens),
        "slack_bot_token": get("SLACK_BOT_TOKEN"),
        "slack_signing_secret": get("SLACK_SIGNING_SECRET"),
        "slack_app_token": get("SLACK_APP_TOKEN"),
        "slack_api_url": slack_api,
        "discord_bot_token": get("DISCORD_BOT_TOKEN"),
        "discord_api_url": (get("TASKTRAIL_DISCORD_API_URL") or DEFAULT_DISCORD_API_URL).rstrip(
            "/"
        ),
        "discord_gateway_url": get("TASKTRAIL_DISCORD_GATEWAY_URL"),
        "discord_guild_id": get("TASKTRAIL_DISCORD_GUILD_ID"),
        "admins": admins,
        "openclaw_state_dir": openclaw_dir,
        "ledger": LedgerConfig(**ledger_values),
    }
    if overrides:
        values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
