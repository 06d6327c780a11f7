"""`Ledger.batch()`: several operations, one transaction; each operation its own savepoint."""

from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.exceptions import IllegalTransition, InvalidInput


def test_a_refused_operation_keeps_its_refusal_and_the_rest_lands(ledger: Ledger) -> None:
    done = ledger.create(runtime="cli", label="done")
    ledger.finish(done.task_id, status="succeeded")
    with ledger.batch():
        first = ledger.create(runtime="cli", label="first")
        with pytest.raises(IllegalTransition):
            ledger.heartbeat(done.task_id)
        with pytest.raises(InvalidInput):
            ledger.create(runtime="cli", label="x" * 20_000)
        ledger.progress(first.task_id, "halfway")
    assert ledger.get(first.task_id).progress_summary == "halfway"
    assert [e.kind for e in ledger.events(done.task_id)][-1] == "late_update_ignored"
    assert sorted(t.label for t in ledger.list()) == ["done", "first"]


def test_an_error_out_of_the_batch_undoes_all_of_it(ledger: Ledger) -> None:
    kept = ledger.create(runtime="cli", label="kept")

    def give_up() -> None:
        with ledger.batch():
            ledger.create(runtime="cli", label="undone")
            ledger.finish(kept.task_id, status="failed")
            raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError):
        give_up()
    assert [t.label for t in ledger.list()] == ["kept"]
    assert ledger.get(kept.task_id).status == "running"
    assert [e.seq for e in ledger.events(kept.task_id)] == [1]


def test_batches_do_not_nest(ledger: Ledger) -> None:
    with ledger.batch(), pytest.raises(RuntimeError, match="already open"), ledger.batch():
        pass
