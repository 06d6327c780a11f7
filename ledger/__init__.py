"""tasktrail's ledger: one record per detached run, its state machine, lookups, audit,
delivery outbox and proof checks. Imports no chat SDK, template engine or scheduler."""

from ledger.config import LedgerConfig
from ledger.exceptions import (
    AmbiguousRef,
    CancelRequested,
    IllegalTransition,
    InvalidInput,
    LedgerError,
    TaskNotFound,
)
from ledger.ledger import Ledger
from ledger.records import EventRecord, TaskRecord
from ledger.status import NotifyPolicy, Runtime, Status

__all__ = [
    "AmbiguousRef",
    "CancelRequested",
    "EventRecord",
    "IllegalTransition",
    "InvalidInput",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "NotifyPolicy",
    "Runtime",
    "Status",
    "TaskNotFound",
    "TaskRecord",
]
