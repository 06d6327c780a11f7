"""One Jinja2 renderer for every surface: Slack mrkdwn, Discord markdown, plain text, HTML.

Templates live in the `templates` package (`templates/<dir>/*.j2`, shipped as package data)
and are loaded through `importlib.resources`. Escaping for the target surface is applied to
every `{{ ... }}` by default (`finalize` for chat surfaces, autoescape for HTML), so a
template cannot forget it. Values that are already safe for the surface are wrapped in
`markupsafe.Markup` (see the `link` global) and pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound
from markupsafe import Markup

from bot.chat.board import ICONS
from ledger.timeutil import humanize_age

#: Surface name -> template directory inside the `templates` package.
SURFACES: dict[str, str] = {"slack": "slack", "discord": "discord", "text": "text", "html": "web"}

_ZWSP = "\u200b"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MASS = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_SLACK_MARK = re.compile(r"(^|\s)([*_~`>])")
_DISCORD_MARK = re.compile(r"([\\*_~`|>#\[\]()-])")
_DISCORD_MENTION = re.compile(r"<(@[!&]?|#|/|:|a:|t:)")


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)


def escape_slack(value: object) -> str:
    """Untrusted text made inert for Slack mrkdwn: `&`, `<`, `>` as entities (so no
    `<!channel>`, `<@U1>` or links), mass-mention words broken with a zero-width space, and
    formatting markers at the start of a word neutralized."""
    text = _clean(str(value))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MASS.sub(lambda m: "@" + _ZWSP + m.group(1), text)
    return _SLACK_MARK.sub(lambda m: m.group(1) + _ZWSP + m.group(2), text)


def escape_discord(value: object) -> str:
    """Untrusted text made inert for Discord markdown: markdown characters backslashed,
    `@everyone`/`@here` broken with a zero-width space, `<@…>`, `<@&…>`, `<#…>` mentions
    broken so they show as text."""
    text = _clean(str(value))
    text = _DISCORD_MARK.sub(r"\\\1", text)
    text = _MASS.sub(lambda m: "@" + _ZWSP + m.group(1), text)
    return _DISCORD_MENTION.sub(lambda m: "<" + _ZWSP + m.group(1), text)


def escape_text(value: object) -> str:
    return _clean(str(value))


def shorten(value: object, width: int = 80, placeholder: str = "…") -> str:
    """One line, at most `width` characters (whitespace collapsed), ending in `…` when cut."""
    text = " ".join(str(value).split())
    if len(text) <= width:
        return text
    return text[: max(0, width - len(placeholder))].rstrip() + placeholder


def _finalizer(escape: Callable[[object], str]) -> Callable[[Any], Any]:
    def finalize(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, Markup):
            return str(value)
        return escape(value)

    return finalize


_ESCAPES: dict[str, Callable[[object], str]] = {
    "slack": escape_slack,
    "discord": escape_discord,
    "text": escape_text,
}


def _slack_link(url: str, text: str) -> Markup:
    safe_url = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return Markup(f"<{safe_url}|{escape_slack(shorten(text, 200))}>")  # noqa: S704 - escaped


def _discord_link(url: str, text: str) -> Markup:
    shown = escape_discord(shorten(text, 200))
    return Markup(f"[{shown}](<{url.replace('>', '%3E')}>)")  # noqa: S704 - escaped


def _text_link(url: str, text: str) -> Markup:
    return Markup(f"{escape_text(text)} ({escape_text(url)})")  # noqa: S704 - plain text


_LINKS: dict[str, Callable[[str, str], Markup]] = {
    "slack": _slack_link,
    "discord": _discord_link,
    "text": _text_link,
}


class _PackageLoader(BaseLoader):
    """Templates from the `templates` package via importlib.resources."""

    def __init__(self, package: str = "templates") -> None:
        self.package = package

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = resources.files(self.package)
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateNotFound(template)
            node = node.joinpath(part)
        if not node.is_file():
            raise TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def age(seconds: float) -> str:
    return humanize_age(seconds)


def icon(status: object) -> str:
    return ICONS.get(str(status), "•")


class Renderer:
    """`Renderer().render("slack", "board.j2", board=...)` → text for that surface.

    Templates are looked up as `<surface dir>/<name>` and may include any other template by
    its full path (`text/help.j2`)."""

    def __init__(self, package: str = "templates") -> None:
        loader = _PackageLoader(package)
        self._envs: dict[str, Environment] = {}
        for surface in SURFACES:
            if surface == "html":
                env = Environment(
                    loader=loader,
                    undefined=StrictUndefined,
                    autoescape=True,
                    trim_blocks=True,
                    lstrip_blocks=True,
                )
                env.globals["link"] = lambda url, text: Markup('<a href="{}">{}</a>').format(
                    url, text
                )
            else:
                # Chat surfaces: `finalize` escapes every interpolation for the platform.
                env = Environment(
                    loader=loader,
                    undefined=StrictUndefined,
                    autoescape=False,  # noqa: S701
                    finalize=_finalizer(_ESCAPES[surface]),
                    trim_blocks=True,
                    lstrip_blocks=True,
                    keep_trailing_newline=False,
                )
                env.globals["link"] = _LINKS[surface]
            env.filters["shorten"] = shorten
            env.filters["age"] = age
            env.filters["icon"] = icon
            env.globals["icons"] = ICONS
            env.globals["surface"] = surface
            self._envs[surface] = env

    def environment(self, surface: str) -> Environment:
        try:
            return self._envs[surface]
        except KeyError:
            raise ValueError(f"unknown surface {surface!r}; one of {sorted(SURFACES)}") from None

    def render(self, surface: str, name: str, /, **context: Any) -> str:
        env = self.environment(surface)
        template = env.get_template(f"{SURFACES[surface]}/{name}")
        return template.render(**context).strip()

    def render_string(self, surface: str, source: str, /, **context: Any) -> str:
        """Render an inline template with the surface's escaping (tests, small snippets)."""
        return self.environment(surface).from_string(source).render(**context).strip()
