"""`bot` reaches the database only through `ledger`'s public API (CONVENTIONS.md): no bot
module imports the ledger's tables, transactions, transition or lookup internals, or
SQLAlchemy itself."""

from __future__ import annotations

import ast
from pathlib import Path

import bot

FORBIDDEN = ("ledger.schema", "ledger.db", "ledger.transitions", "ledger.lookup", "sqlalchemy")

#: (module path relative to the repository, imported name) -> why it is allowed. Empty:
#: the composition root passes `Ledger` (and its `engine`) around without importing either.
ALLOWED: dict[tuple[str, str], str] = {}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, including `from ledger import db` as `ledger.db`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)


def _offenders(root: Path) -> list[str]:
    offenders = []
    for path in sorted(root.rglob("*.py")):
        where = str(path.relative_to(root.parent))
        for name in sorted(_imports(path)):
            if _forbidden(name) and (where, name) not in ALLOWED:
                offenders.append(f"{where} imports {name}")
    return offenders


def test_no_bot_module_imports_ledger_internals_or_sqlalchemy() -> None:
    assert _offenders(Path(bot.__file__).parent) == []


def test_the_check_catches_a_table_import_a_transaction_import_and_sqlalchemy(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bot"
    root.mkdir()
    (root / "a.py").write_text("from ledger.schema import tasks_table\n")
    (root / "b.py").write_text("def f() -> None:\n    from ledger import db\n")
    (root / "c.py").write_text("import sqlalchemy.exc\n")
    (root / "d.py").write_text("from ledger.ledger import Ledger\nfrom ledger import Ledger\n")
    assert _offenders(root) == [
        "bot/a.py imports ledger.schema",
        "bot/a.py imports ledger.schema.tasks_table",
        "bot/b.py imports ledger.db",
        "bot/c.py imports sqlalchemy.exc",
    ]
