"""tasktrail's outside edges: CLI, HTTP API, web board, Slack and Discord adapters,
scheduler, and the `serve` composition root. Builds on the `ledger` package."""
