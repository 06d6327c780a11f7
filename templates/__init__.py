"""Jinja2 templates for every rendered surface (Slack, Discord, text, HTML).

A package only so the templates ship inside the wheel; `bot.render` loads them with
`importlib.resources`."""
