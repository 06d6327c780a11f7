"""The full crash test of issue 5: 20 runs x 1,000 completions, each run SIGKILLing real
worker processes at random moments before a fresh worker drains the outbox; every
completion must be shown exactly once.

    .venv/bin/python bench/delivery_crash.py [--runs 20] [--completions 1000] [--kills 3]
                                             [--db postgresql+psycopg://.../DBNAME]

Without --db each run gets a fresh SQLite file. With --db (PostgreSQL) the outbox and
tasks are emptied before each run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from sqlalchemy import text  # noqa: E402

from ledger import Ledger  # noqa: E402
from ledger.testing import crash_scenario  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--completions", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--db")
    args = parser.parse_args()
    failures = 0
    totals = {"lost": 0, "duplicated": 0, "posted_unrecorded": 0}
    started = time.perf_counter()
    for run in range(args.runs):
        workdir = Path(tempfile.mkdtemp(prefix="tt-crash-"))
        url = args.db or f"sqlite:///{workdir / 'ledger.db'}"
        ledger = Ledger.connect(url)
        if args.db:
            with ledger.engine.begin() as conn:
                conn.execute(text("DELETE FROM deliveries"))
                conn.execute(text("DELETE FROM task_events"))
                conn.execute(text("DELETE FROM tasks"))
        ledger.close()
        t0 = time.perf_counter()
        report = crash_scenario(
            url, workdir, completions=args.completions, kills=args.kills, seed=run
        )
        ok = report.lost == 0 and report.duplicated == 0 and report.undelivered == 0
        failures += not ok
        totals["lost"] += report.lost
        totals["duplicated"] += report.duplicated
        totals["posted_unrecorded"] += report.posted_unrecorded
        print(
            f"run {run + 1:2d}: {report.completions} completions, {report.kills} kills, "
            f"shown after each kill {list(report.shown_after_kill)}, "
            f"posted-but-unrecorded at takeover {report.posted_unrecorded}, "
            f"lost {report.lost}, duplicated {report.duplicated}, "
            f"undelivered {report.undelivered}  [{time.perf_counter() - t0:.1f} s] "
            + ("ok" if ok else "FAILED"),
            flush=True,
        )
    print(
        f"{args.runs} runs x {args.completions} completions in "
        f"{time.perf_counter() - started:.0f} s: lost {totals['lost']}, duplicated "
        f"{totals['duplicated']}, crash-window notices recovered via find_posted "
        f"{totals['posted_unrecorded']}; {'PASS' if not failures else f'{failures} runs FAILED'}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
