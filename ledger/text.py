"""Validation of untrusted text on the way in. Text is stored exactly as given (escaping
happens when a surface renders it); what cannot be stored faithfully is refused."""

from __future__ import annotations

from ledger.exceptions import InvalidInput

LABEL_MAX = 5_000
BRIEF_MAX = 100_000
SUMMARY_MAX = 20_000
KEY_MAX = 512
VALUE_MAX = 8_192


def check_text(value: str | None, field: str, limit: int, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(field, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be text, not {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limit:
        raise InvalidInput(field, f"is {len(value):,} characters; at most {limit:,} are accepted")
    if "\x00" in value:
        raise InvalidInput(field, "contains a NUL character, which cannot be stored")
    return value


def clip(value: str, limit: int) -> str:
    """Shorten text for storage of tails (summaries from producers' output)."""
    if len(value) <= limit:
        return value
    return "…" + value[-(limit - 1) :]
