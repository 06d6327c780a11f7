"""Importing OpenClaw's sample ledger: every row mirrored, counts equal to the source, the
mapping of ids, times, policies, delivery statuses and reply addresses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.importers.openclaw import import_openclaw
from ledger.importers.openclaw_source import DELIVERY_MAP
from tests.conftest import T0
from tests.integration.openclaw_helpers import (
    copy_sample,
    event_count,
    mirror_counts,
    mirror_snapshot,
    mirror_versions,
    one_source_row,
    source_counts,
    source_query,
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "openclaw")


def test_full_import_mirrors_every_row_with_the_sources_status_and_runtime_counts(
    ledger: Ledger, source: Path
) -> None:
    (total,) = source_query(source, "SELECT count(*) FROM task_runs")[0]

    report = ledger.import_openclaw(source)

    assert report.rows_read == total
    assert report.created == total
    assert (report.updated, report.unchanged, report.skipped) == (0, 0, 0)
    assert dict(report.by_status) == source_counts(source, "status")
    assert dict(report.by_runtime) == source_counts(source, "runtime")
    assert mirror_counts(ledger, "status") == source_counts(source, "status")
    assert mirror_counts(ledger, "runtime") == source_counts(source, "runtime")


def test_a_second_import_changes_nothing(ledger: Ledger, source: Path) -> None:
    ledger.import_openclaw(source)
    before = mirror_versions(ledger)
    events_before = event_count(ledger)

    again = ledger.import_openclaw(source)

    assert (again.created, again.updated, again.refused, again.skipped) == (0, 0, 0, 0)
    assert again.unchanged == again.rows_read
    assert mirror_versions(ledger) == before
    assert event_count(ledger) == events_before


def test_a_mirrored_task_is_found_by_its_openclaw_id_and_remembers_its_origin(
    ledger: Ledger, source: Path
) -> None:
    ref, _ = one_source_row(source, "runtime = 'subagent' AND status = 'succeeded'")
    ledger.import_openclaw(source)

    task = ledger.get(ref)

    assert task.origin == "openclaw"
    assert task.origin_ref == ref
    assert task.task_id != ref
    assert task.to_json()["origin"]["source"] == "openclaw"
    (run_id, label, brief, summary) = source_query(
        source,
        "SELECT run_id, label, task, terminal_summary FROM task_runs WHERE task_id = ?",
        (ref,),
    )[0]
    assert task.run_id == run_id
    assert task.label == (label or brief.splitlines()[0])
    assert task.task == brief
    assert task.terminal_summary == summary


def test_epoch_millisecond_times_become_utc_datetimes(ledger: Ledger, source: Path) -> None:
    ref, _ = one_source_row(source, "ended_at IS NOT NULL AND cleanup_after IS NOT NULL")
    created, started, ended, last, cleanup = source_query(
        source,
        "SELECT created_at, started_at, ended_at, last_event_at, cleanup_after "
        "FROM task_runs WHERE task_id = ?",
        (ref,),
    )[0]
    ledger.import_openclaw(source)

    task = ledger.get(ref)

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert task.created_at == epoch + timedelta(milliseconds=created)
    assert task.started_at == epoch + timedelta(milliseconds=max(started, created))
    assert task.ended_at == epoch + timedelta(milliseconds=ended)
    assert task.last_event_at == epoch + timedelta(milliseconds=last)
    assert task.cleanup_after == epoch + timedelta(milliseconds=cleanup)
    assert task.created_at.tzinfo is not None
    assert task.lease_expires_at is None


@pytest.mark.parametrize("openclaw_status", ["session_queued", "parent_missing", "dismissed"])
def test_openclaw_delivery_statuses_map_onto_ours_and_the_original_stays_visible(
    ledger: Ledger, source: Path, openclaw_status: str
) -> None:
    ref, _ = one_source_row(source, f"delivery_status = '{openclaw_status}'")
    ledger.import_openclaw(source)

    task = ledger.get(ref)

    assert task.delivery_status == DELIVERY_MAP[openclaw_status]
    assert task.origin_detail is not None
    assert task.origin_detail["delivery_status"] == openclaw_status


def test_mirrored_tasks_are_silent_unless_tasktrail_is_asked_to_notify(
    ledger: Ledger, source: Path, tmp_path: Path
) -> None:
    ledger.import_openclaw(source)
    assert mirror_counts(ledger, "notify_policy") == {
        "silent": source_query(source, "SELECT count(*) FROM task_runs")[0][0]
    }

    ledger.import_openclaw(source, tenant="loud", notify_from_tasktrail=True)

    assert mirror_counts(ledger, "notify_policy", tenant="loud") == source_counts(
        source, "notify_policy"
    )
    task = ledger.get(one_source_row(source, "notify_policy = 'done_only'")[0], tenant="default")
    assert task.origin_detail is not None
    assert task.origin_detail["notify_policy"] == "done_only"


def test_slack_and_discord_origins_become_reply_addresses_in_the_tenants_workspace(
    ledger: Ledger, source: Path
) -> None:
    def origin_ref(channel: str) -> tuple[str, dict[str, str]]:
        ref, origin = source_query(
            source,
            "SELECT task_id, requester_origin_json FROM task_delivery_state "
            "WHERE json_extract(requester_origin_json, '$.channel') = ? ORDER BY task_id LIMIT 1",
            (channel,),
        )[0]
        return str(ref), json.loads(origin)

    slack_ref, slack_origin = origin_ref("slack")
    discord_ref, discord_origin = origin_ref("discord")
    other_ref, _ = origin_ref("telegram")

    ledger.import_openclaw(source, tenant="slack:T0123")
    ledger.import_openclaw(source, tenant="discord:4242")

    slack_task = ledger.get(slack_ref, tenant="slack:T0123")
    channel = slack_origin["to"].split(":")[-1]
    assert str(slack_task.reply_to) == f"slack:T0123/{channel}/{slack_origin['threadId']}"
    discord_task = ledger.get(discord_ref, tenant="discord:4242")
    assert str(discord_task.reply_to) == f"discord:4242/{discord_origin['to'].split(':')[-1]}"
    # no workspace to address: a Discord origin in a Slack tenant, and other channels
    assert ledger.get(discord_ref, tenant="slack:T0123").reply_to is None
    assert ledger.get(other_ref, tenant="slack:T0123").reply_to is None
    assert ledger.get(other_ref, tenant="slack:T0123").origin_detail is not None


def test_owner_child_and_parent_keys_are_kept(ledger: Ledger, source: Path) -> None:
    ledger.import_openclaw(source)
    rows = source_query(
        source,
        "SELECT task_id, parent_task_id FROM task_runs WHERE parent_task_id IS NOT NULL "
        "AND parent_task_id IN (SELECT task_id FROM task_runs)",
    )
    for ref, parent_ref in rows:
        assert ledger.get(ref).parent_task_id == ledger.get(parent_ref).task_id
    ref, _ = one_source_row(source, "scope_kind = 'session' AND child_session_key IS NOT NULL")
    child, owner, requester = source_query(
        source,
        "SELECT child_session_key, owner_key, requester_session_key FROM task_runs "
        "WHERE task_id = ?",
        (ref,),
    )[0]
    task = ledger.get(ref)
    assert task.child_session_key == child
    assert task.requester_session_key == (requester or owner)
    assert task.origin_detail is not None
    assert task.origin_detail["owner_key"] == owner


def test_an_import_in_many_small_pages_mirrors_what_one_page_does(
    ledger: Ledger, source: Path
) -> None:
    whole = ledger.import_openclaw(source, tenant="whole")
    paged = import_openclaw(
        ledger.engine, ledger.config, source, now=T0, tenant="paged", page_size=37
    )

    assert mirror_snapshot(ledger, "paged") == mirror_snapshot(ledger, "whole")
    assert len(mirror_snapshot(ledger, "paged")) == paged.created == whole.created
    assert (paged.rows_read, paged.by_status, paged.watermark) == (
        whole.rows_read,
        whole.by_status,
        whole.watermark,
    )
