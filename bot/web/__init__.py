"""The web board served by `tasktrail serve` at `/`."""
