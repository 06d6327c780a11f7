"""Errors raised by the ledger.

One root (`LedgerError`), data on the exception, and a message that names the problem.
The CLI, the HTTP API and the chat handlers translate these in one place each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from sqlalchemy.exc import DBAPIError

#: What the database driver raises when the database is unreachable or refuses (not a
#: `LedgerError`: nothing the ledger decided). Named here so outer layers can translate it
#: (503) without importing SQLAlchemy.
DatabaseError: TypeAlias = DBAPIError


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    #: HTTP status the API maps this error to.
    http_status: int = 400


class InvalidInput(LedgerError):
    """A value given to the ledger is malformed or out of range."""

    http_status = 422

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class TaskNotFound(LedgerError):
    http_status = 404

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"no task matches {ref!r}")


class AmbiguousRef(LedgerError):
    http_status = 409

    def __init__(self, ref: str, candidates: Sequence[str]) -> None:
        self.ref = ref
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:10])
        more = f" (+{len(self.candidates) - 10} more)" if len(self.candidates) > 10 else ""
        super().__init__(f"{ref!r} matches several tasks: {shown}{more}; give more characters")


class IllegalTransition(LedgerError):
    """A status move the state machine does not allow."""

    http_status = 409

    def __init__(self, task_id: str, current: str, requested: str, reason: str = "") -> None:
        self.task_id = task_id
        self.current = current
        self.requested = requested
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"task {task_id} is {current}; cannot move it to {requested}{detail}")


class ConcurrentUpdate(LedgerError):
    """Compare-and-set kept losing to other writers (should be rare)."""

    http_status = 409

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} changed under us repeatedly; try again")


class DatabaseBusy(LedgerError):
    """The database stayed locked or unreachable past the busy timeout."""

    http_status = 503

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(f"database busy or unreachable: {detail}")


class SchemaMismatch(LedgerError):
    """The database schema is newer than this code understands."""

    http_status = 500

    def __init__(self, found: str | None, expected: str) -> None:
        self.found = found
        self.expected = expected
        super().__init__(
            f"database schema revision {found!r} is not one this tasktrail knows "
            f"(expected {expected!r}); upgrade tasktrail"
        )


class PermissionDenied(LedgerError):
    http_status = 403

    def __init__(self, action: str, task_id: str | None = None, why: str = "") -> None:
        self.action = action
        self.task_id = task_id
        target = f" on {task_id}" if task_id else ""
        super().__init__(f"not allowed to {action}{target}" + (f": {why}" if why else ""))


class DeliveryError(LedgerError):
    """A transport could not deliver a notice. `permanent` decides retry vs next route."""

    def __init__(
        self, detail: str, *, permanent: bool, retry_after: float | None = None, code: str = ""
    ) -> None:
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after
        self.code = code
        super().__init__(detail)


class CancelRequested(LedgerError):
    """Raised inside `Ledger.track()` when an operator asked to cancel the task."""

    http_status = 409

    def __init__(self, task_id: str = "", reason: str | None = None) -> None:
        # Raised asynchronously by track()'s heartbeat thread, the class is instantiated
        # without arguments; the handle knows the task and the reason.
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id} was cancelled" + (f": {reason}" if reason else ""))
