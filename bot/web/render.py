"""HTML rendering for the web board: the shared renderer's `html` surface (`bot.render`,
autoescape on, templates under `templates/web/`)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _default_renderer() -> Any:
    from bot.render import Renderer

    return Renderer()


def render_html(renderer: Any, name: str, **context: Any) -> str:
    """Render `templates/<name>` (`web/...`) with every interpolation HTML-escaped."""
    renderer = renderer if renderer is not None else _default_renderer()
    surface_dir = "web/"
    relative = name[len(surface_dir) :] if name.startswith(surface_dir) else name
    return str(renderer.render("html", relative, **context))
