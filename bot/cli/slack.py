"""`tasktrail slack manifest --url URL [--socket-mode] [--format json|yaml]`."""

from __future__ import annotations

import json

import click

from bot.slack.manifest import build_manifest


def _yaml(value: object, indent: int = 0) -> str:
    """A tiny YAML emitter for the manifest (dicts, lists, strings, bools)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines.append(_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                inner = _yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {inner}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return "\n".join(lines)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


@click.group("slack")
def slack_group() -> None:
    """Connect tasktrail to a Slack workspace."""


@slack_group.command("manifest")
@click.option("--url", help="Public base URL of `tasktrail serve`, e.g. https://tasks.example.com")
@click.option("--socket-mode", is_flag=True, help="Socket Mode: no public URL needed.")
@click.option("--name", default="tasktrail", show_default=True, help="App and bot name.")
@click.option(
    "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True
)
def manifest_cmd(url: str | None, socket_mode: bool, name: str, fmt: str) -> None:
    """Print a Slack app manifest: paste it at api.slack.com/apps → From a manifest."""
    try:
        manifest = build_manifest(url, socket_mode=socket_mode, name=name)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if fmt == "json":
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo(_yaml(manifest))
