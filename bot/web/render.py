"""HTML rendering for the web board: the shared renderer's `html` surface when it is part of
this build (autoescape on), else an equivalent Jinja2 environment over `templates/`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

import templates


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(templates.__file__).parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(renderer: Any, name: str, **context: Any) -> str:
    """Render `templates/<name>` with every interpolation HTML-escaped."""
    render = getattr(renderer, "render_html", None) if renderer is not None else None
    if callable(render):
        return str(render(name, **context))
    return _environment().get_template(name).render(**context)
