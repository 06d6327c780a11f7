"""Every interpolation is escaped for its surface; templates cannot forget it."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from bot.render import Renderer, escape_discord, escape_slack, shorten

HOSTILE = "<!channel> <@U123> *bold* &amp; @here <!subteam^S1> @everyone"


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_slack_escaping_turns_control_sequences_into_entities() -> None:
    out = escape_slack(HOSTILE)
    assert "<" not in out
    assert ">" not in out
    assert "&lt;!channel&gt;" in out
    assert "&lt;@U123&gt;" in out
    assert "&amp;amp;" in out
    assert "@\u200bhere" in out
    assert "@\u200beveryone" in out
    assert "\u200b*bold*" in out


def test_discord_escaping_breaks_mentions_and_markdown() -> None:
    out = escape_discord("@everyone <@&123> <@456> **bold** `code` @here")
    assert "@everyone" not in out
    assert "@here" not in out
    assert "<@&123>" not in out
    assert "<@456>" not in out
    assert "\\*\\*bold\\*\\*" in out
    assert "\\`code\\`" in out


def test_every_interpolation_is_escaped_for_slack_by_default(renderer: Renderer) -> None:
    out = renderer.render_string("slack", "label: {{ label }}", label=HOSTILE)
    assert out == "label: " + escape_slack(HOSTILE)


def test_every_interpolation_is_escaped_for_discord_by_default(renderer: Renderer) -> None:
    out = renderer.render_string("discord", "{{ label }}", label="@everyone")
    assert out == "@\u200beveryone"


def test_html_autoescapes(renderer: Renderer) -> None:
    out = renderer.render_string("html", "<b>{{ label }}</b>", label="<script>x</script>")
    assert out == "<b>&lt;script&gt;x&lt;/script&gt;</b>"


def test_links_built_by_the_link_helper_pass_through_with_escaped_text(
    renderer: Renderer,
) -> None:
    out = renderer.render_string(
        "slack", "{{ link('https://x.test/a?b=1&c=2', '<!here>') }}", label=""
    )
    assert out == "<https://x.test/a?b=1&amp;c=2|&lt;!here&gt;>"


def test_a_missing_variable_is_an_error_not_an_empty_string(renderer: Renderer) -> None:
    with pytest.raises(UndefinedError):
        renderer.render_string("slack", "{{ nope }}")


def test_an_unknown_surface_is_refused(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="unknown surface"):
        renderer.render("fax", "board.j2")


def test_shorten_collapses_whitespace_and_marks_the_cut() -> None:
    assert shorten("a\n\nb   c", 80) == "a b c"
    assert shorten("x" * 5000, 10) == "x" * 9 + "…"


def test_shortening_happens_before_escaping_so_entities_are_never_cut(
    renderer: Renderer,
) -> None:
    out = renderer.render_string("slack", "{{ label | shorten(5) }}", label="&&&&&&&&")
    assert out == "&amp;&amp;&amp;&amp;…"


def test_templates_load_from_the_templates_package(renderer: Renderer) -> None:
    assert renderer.render("text", "help.j2", help="usage") == "usage"
