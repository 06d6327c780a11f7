"""Crash test (SPEC §5, "at most once visible, at least once attempted"): a real worker
process is SIGKILLed at random moments while delivering completions to a recording
transport that persists what it received; a fresh worker finishes the job. Every
completion must be shown exactly once.

CI runs a few small rounds; `bench/delivery_crash.py` runs the full 20 x 1,000 (or set
TASKTRAIL_CRASH_RUNS / TASKTRAIL_CRASH_COMPLETIONS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.testing import crash_scenario

RUNS = int(os.environ.get("TASKTRAIL_CRASH_RUNS", "2"))
COMPLETIONS = int(os.environ.get("TASKTRAIL_CRASH_COMPLETIONS", "150"))


@pytest.mark.parametrize("run", range(RUNS))
def test_killed_workers_never_lose_or_double_a_completion(
    db_url: str, tmp_path: Path, run: int
) -> None:
    Ledger.connect(db_url).close()  # migrate once, before any worker starts
    report = crash_scenario(db_url, tmp_path, completions=COMPLETIONS, kills=3, seed=run)
    assert len(report.shown) == COMPLETIONS
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.undelivered == 0
