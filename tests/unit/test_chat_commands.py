"""The `/tasks` grammar and chat permissions, shared by Slack and Discord."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.chat.commands import HELP_LINE, Command, CommandError, Verb, parse_command
from bot.chat.permissions import Actor, Permissions
from ledger.address import parse_address
from ledger.exceptions import PermissionDenied
from ledger.records import TaskRecord
from ledger.status import NotifyPolicy, Status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command(Verb.BOARD)),
        ("   ", Command(Verb.BOARD)),
        ("all", Command(Verb.BOARD, filter="all")),
        ("MINE", Command(Verb.BOARD, filter="mine")),
        ("running", Command(Verb.BOARD, filter="running")),
        ("failed", Command(Verb.BOARD, filter="failed")),
        ("lost", Command(Verb.BOARD, filter="lost")),
        ("queued", Command(Verb.BOARD, filter="queued")),
        ("runtime:cron", Command(Verb.BOARD, filter="runtime:cron")),
        ("board", Command(Verb.BOARD)),
        ("board failed", Command(Verb.BOARD, filter="failed")),
        ("show abcd1234", Command(Verb.SHOW, ref="abcd1234")),
        ("cancel abcd", Command(Verb.CANCEL, ref="abcd")),
        (
            "cancel abcd no longer needed",
            Command(Verb.CANCEL, ref="abcd", reason="no longer needed"),
        ),
        (
            "notify r-1 state_changes",
            Command(Verb.NOTIFY, ref="r-1", policy=NotifyPolicy.STATE_CHANGES),
        ),
        ("retry abcd", Command(Verb.RETRY, ref="abcd")),
        ("dismiss abcd", Command(Verb.DISMISS, ref="abcd")),
        ("follow abcd", Command(Verb.FOLLOW, ref="abcd")),
        ("unfollow abcd", Command(Verb.UNFOLLOW, ref="abcd")),
        ("audit", Command(Verb.AUDIT)),
        ("help", Command(Verb.HELP)),
    ],
)
def test_every_form_of_the_grammar_parses_to_its_command(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate", "unknown subcommand 'frobnicate'"),
        ("frobnicate abcd", "unknown subcommand 'frobnicate'"),
        ("show", "`show` needs a task reference"),
        ("cancel", "`cancel` needs a task reference"),
        ("notify abcd", "`notify` needs a policy"),
        ("notify abcd loudly", "unknown notify policy 'loudly'"),
        ("notify abcd silent extra", "`notify` takes a task reference and one policy"),
        ("retry a b", "`retry` takes one task reference"),
        ("runtime:nope", "unknown runtime 'nope'"),
        ("audit now", "`audit` takes no arguments"),
        ("board a b", "`board` takes at most one filter"),
        ("show " + "x" * 300, "task reference is too long"),
    ],
)
def test_bad_text_is_refused_with_a_specific_problem_and_the_help_line(
    text: str, problem: str
) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    assert caught.value.problem.startswith(problem)
    assert caught.value.help == HELP_LINE
    assert str(caught.value).endswith(HELP_LINE)


def test_only_changing_verbs_count_as_mutating() -> None:
    assert parse_command("cancel abcd").mutates
    assert not parse_command("show abcd").mutates
    assert not parse_command("follow abcd").mutates


def _task(**overrides: object) -> TaskRecord:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = dict(
        task_id="abcdefghijklmnop",
        tenant="slack:T1",
        runtime="subagent",
        task_kind=None,
        label="x",
        task=None,
        status=Status.RUNNING,
        version=1,
        run_id=None,
        source_id=None,
        child_session_key=None,
        requester_session_key=None,
        parent_task_id=None,
        reply_to=parse_address("slack:T1/C1/1.2@UREQ"),
        notify_policy="done_only",
        delivery_status="pending",
        created_at=at,
        started_at=at,
        ended_at=None,
        last_event_at=at,
        heartbeat_at=at,
        lease_expires_at=None,
        lease_seconds=None,
        grace_until=None,
        cleanup_after=None,
        progress_summary=None,
        terminal_summary=None,
        error=None,
        cancel_requested_at=None,
        cancel_reason=None,
        runner=None,
        probe_kind="heartbeat",
        probe_target=None,
        proof_required=False,
        proof_status=None,
        acknowledged_at=None,
        origin=None,
        origin_ref=None,
        origin_detail=None,
    )
    values.update(overrides)
    return TaskRecord(**values)  # type: ignore[arg-type]


PERMS = Permissions(["slack:UADMIN", "slack-group:SOPS", "discord:900", "discord-role:77"])


def test_the_requester_named_in_reply_to_may_change_the_task() -> None:
    PERMS.check_change("cancel", Actor("slack", "UREQ", "slack:T1"), _task())


def test_the_requester_session_key_also_identifies_the_requester() -> None:
    task = _task(reply_to=None, requester_session_key="slack:UOTHER")
    PERMS.check_change("cancel", Actor("slack", "UOTHER", "slack:T1"), task)


def test_a_bystander_may_not_change_someone_elses_task() -> None:
    with pytest.raises(PermissionDenied, match="only the requester and admins"):
        PERMS.check_change("cancel", Actor("slack", "UBYSTANDER", "slack:T1"), _task())


def test_a_same_named_user_on_another_platform_is_not_the_requester() -> None:
    assert not PERMS.can_change(Actor("discord", "UREQ", "slack:T1"), _task())


@pytest.mark.parametrize(
    "actor",
    [
        Actor("slack", "UADMIN", "slack:T1"),
        Actor("slack", "UX", "slack:T1", group_ids=frozenset({"SOPS"})),
    ],
)
def test_configured_slack_admins_and_admin_groups_may_change_any_task(actor: Actor) -> None:
    assert PERMS.can_change(actor, _task())
    PERMS.check_admin("run the audit", actor)


@pytest.mark.parametrize(
    "actor",
    [
        Actor("discord", "900", "discord:5"),
        Actor("discord", "1", "discord:5", group_ids=frozenset({"77"})),
        Actor("discord", "2", "discord:5", is_guild_admin=True),
    ],
)
def test_discord_admins_roles_and_server_managers_are_admins(actor: Actor) -> None:
    assert PERMS.is_admin(actor)


def test_an_admin_of_another_tenant_may_not_change_the_task() -> None:
    assert not PERMS.can_change(Actor("slack", "UADMIN", "slack:T2"), _task())


def test_audit_is_refused_to_non_admins() -> None:
    with pytest.raises(PermissionDenied, match="admins only"):
        PERMS.check_admin("run the audit", Actor("slack", "UREQ", "slack:T1"))


def test_admin_group_ids_are_listed_per_platform() -> None:
    assert PERMS.admin_group_ids("slack") == frozenset({"SOPS"})
    assert PERMS.admin_group_ids("discord") == frozenset({"77"})
