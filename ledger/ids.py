"""Opaque, URL-safe task ids and other random identifiers."""

from __future__ import annotations

import base64
import secrets

#: Lowercase RFC 4648 base32: URL-safe, and sorts the same in every collation.
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
TASK_ID_LENGTH = 16  # 80 random bits
SHORT_ID_LENGTH = 8
MIN_PREFIX = 4
#: byte -> the ALPHABET character of its low five bits (256 is a multiple of 32: uniform)
_BYTE_TO_CHAR = bytes(ALPHABET.encode("ascii")[byte & 31] for byte in range(256))


def new_task_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


def new_task_ids(count: int) -> list[str]:
    """`count` ids like `new_task_id`'s (16 characters of ALPHABET, 80 random bits), from one
    draw: each random byte's low five bits pick a character, so the draw translates to text
    in C (a bulk import makes thousands at once)."""
    text = secrets.token_bytes(TASK_ID_LENGTH * count).translate(_BYTE_TO_CHAR).decode("ascii")
    return [text[i : i + TASK_ID_LENGTH] for i in range(0, len(text), TASK_ID_LENGTH)]


def new_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def short_id(task_id: str) -> str:
    return task_id[:SHORT_ID_LENGTH]


def looks_like_id_prefix(ref: str) -> bool:
    return len(ref) >= MIN_PREFIX and all(c in ALPHABET for c in ref)
