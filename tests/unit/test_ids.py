"""Task ids: one at a time and in bulk, the same shape."""

from __future__ import annotations

from ledger.ids import ALPHABET, TASK_ID_LENGTH, new_task_id, new_task_ids


def test_ids_made_in_bulk_look_like_single_ones_and_are_distinct() -> None:
    ids = new_task_ids(1000)

    assert len(ids) == len(set(ids)) == 1000
    for task_id in [*ids, new_task_id()]:
        assert len(task_id) == TASK_ID_LENGTH
        assert set(task_id) <= set(ALPHABET)
    assert new_task_ids(0) == []
