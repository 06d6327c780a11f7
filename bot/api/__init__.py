"""The HTTP API of `tasktrail serve` (SPEC §9)."""
