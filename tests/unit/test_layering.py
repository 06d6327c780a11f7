"""Dependencies point inward: `ledger` imports no chat SDK, template engine, scheduler,
web stack or anything from `bot`."""

from __future__ import annotations

import ast
from pathlib import Path

import ledger

FORBIDDEN = (
    "bot",
    "slack_bolt",
    "slack_sdk",
    "discord",
    "jinja2",
    "apscheduler",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "rich",
    "click",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_ledger_package_imports_nothing_from_the_outer_layers() -> None:
    root = Path(ledger.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(root.parent)} imports {name}")
    assert offenders == []
