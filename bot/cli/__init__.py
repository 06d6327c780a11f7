"""The `tasktrail` command line (click). Commands load lazily so a ledger command imports
only what it needs."""
