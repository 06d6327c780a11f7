"""Readers of other task ledgers that tasktrail mirrors (OpenClaw's state database)."""

from ledger.importers.openclaw import import_openclaw, openclaw_watch_job
from ledger.importers.openclaw_source import OpenClawSourceError, resolve_openclaw_db
from ledger.importers.report import ImportReport, SkippedRow

__all__ = [
    "ImportReport",
    "OpenClawSourceError",
    "SkippedRow",
    "import_openclaw",
    "openclaw_watch_job",
    "resolve_openclaw_db",
]
