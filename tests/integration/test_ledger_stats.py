"""The ledger's operational read model (`ledger.stats` through `Ledger`): what `/metrics`,
`/healthz`, the web board's tenant picker, the API's maintenance preview and `serve`'s
shutdown rely on, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from ledger import Ledger, db
from ledger.outbox import claim
from tests.conftest import T0

THREAD = "slack:T1/C1@U1"


def test_counts_group_tasks_by_status_and_runtime_and_deliveries_by_status(
    ledger: Ledger,
) -> None:
    ledger.create(runtime="cli", label="a", tenant="acme")
    ledger.create(runtime="cli", label="b", tenant="acme")
    done = ledger.create(runtime="subagent", label="c", reply_to=THREAD)
    ledger.finish(done.task_id, status="succeeded")
    counts = ledger.counts()
    tasks = {(c.status, c.runtime): c.count for c in counts.tasks}
    assert tasks == {("running", "cli"): 2, ("succeeded", "subagent"): 1}
    assert sum(d.count for d in counts.deliveries) == len(ledger.deliveries(limit=None)) > 0


def test_health_reports_the_due_backlog_and_the_age_of_the_last_auditor_pass(
    ledger: Ledger,
) -> None:
    assert ledger.health(now=T0).delivery_backlog == 0
    assert ledger.health(now=T0).last_auditor_pass_at is None
    done = ledger.create(runtime="cli", label="c", reply_to=THREAD)
    ledger.finish(done.task_id, status="succeeded")
    ledger.record_auditor_pass("audit", timedelta(minutes=5), now=T0)
    health = ledger.health(now=T0 + timedelta(minutes=1))
    assert health.backend == ledger.engine.dialect.name
    assert health.delivery_backlog == len(ledger.deliveries(limit=None)) > 0
    assert health.last_auditor_pass_age(T0 + timedelta(minutes=1)) == 60.0


def test_tenants_and_owned_ids_keep_tenants_apart(ledger: Ledger) -> None:
    mine = ledger.create(runtime="cli", label="a", tenant="acme")
    theirs = ledger.create(runtime="cli", label="b", tenant="globex")
    assert ledger.tenants() == ("acme", "globex")
    assert ledger.owned_task_ids([mine.task_id, theirs.task_id, "nope"], tenant="acme") == {
        mine.task_id
    }


def test_released_claims_are_due_again_for_any_worker(ledger: Ledger) -> None:
    done = ledger.create(runtime="cli", label="c", reply_to=THREAD)
    ledger.finish(done.task_id, status="succeeded")
    with db.write(ledger.engine) as conn:
        claimed = claim(conn, "w1", T0, timedelta(minutes=5), {"slack:T1/C1": 10})
    assert claimed
    assert {d.claimed_by for d in ledger.deliveries(limit=None)} == {"w1"}
    ledger.release_claims("w2")
    assert {d.claimed_by for d in ledger.deliveries(limit=None)} == {"w1"}
    ledger.release_claims("w1")
    assert {d.claimed_by for d in ledger.deliveries(limit=None)} == {None}


def test_followers_lists_the_threads_following_a_task(ledger: Ledger) -> None:
    task = ledger.create(runtime="cli", label="a")
    assert ledger.followers(task.task_id) == ()
    ledger.follow(task.task_id, "slack:T1/C1/1.2@U1")
    assert ledger.followers(task.task_id) == ("slack:T1/C1/1.2@U1",)
